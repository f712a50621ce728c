"""Attribution of one output to time-frequency regions, made listenable and tested by deletion."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from ._base import Result, locked, rounded

__all__ = ["AttributionOptions", "AttributionAnalysis", "analyse_attribution", "attribution_warnings", "cluster_target",
           "match_event", "peak_normalise"]

#: completeness error (|Σ map − (f(x) − f(b))| / |f(x) − f(b)|) that ``steps="auto"`` stops at
AUTO_COMPLETENESS = 0.01
#: IG steps tried in turn by ``steps="auto"`` when :func:`probe.attribute` cannot choose them itself
AUTO_STEPS = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class AttributionOptions:
    """Options of :func:`analyse_attribution` (the only place their defaults live).

    Attributes
    ----------
    target : str, optional
        ``"class=bell,t=3:3.5"``, ``"source=1,f=200:1000"``, ``"cluster=1"``; ``None``: the
        example's first event / source 1 / the top class.
    method : str
        One of :data:`probe.attribution.METHODS`. Integrated gradients by default: the only
        method here with a completeness check.
    baseline : str
        ``silence``, ``noise[:DB]``, ``smooth[:SECONDS]``, ``bandstop:LO:HI``.
    steps : int or "auto"
        IG steps / GradientShap samples. ``"auto"`` raises IG's steps until the completeness
        error is at most 1 % (``steps_used`` says how many it took).
    spacing : {"linear", "adaptive", "db[:D]"}
        IG node spacing; ``adaptive`` reaches a given completeness with the fewest steps on
        detectors that switch on within a few dB.
    path : {"straight", "geometric"}
    smooth : {"smoothgrad", "smoothgrad_sq", "vargrad"}, optional
    layer : str, optional
        GradCAM layer.
    chunk_seconds : float, optional
        Attribute long audio in chunks of this length (cross-faded by ``overlap_seconds``).
    top_percent : float
        Share of bins kept in the listenable explanation.
    deletion : bool
        Also run the deletion / insertion test (skipped for chunked audio).
    random_orders : int
        Random orders averaged in the deletion test.
    seed : int
    progress : bool
        A progress bar over chunks.
    clusters : EmbeddingOptions, optional
        The clustering a ``"cluster=j"`` target refers to: :func:`analyse_embeddings` at the model's
        ``tf_embeddings`` output with these options (``None``: its defaults; ``layer`` is ignored),
        so cluster ``j`` here is cluster ``j`` of the Embeddings page/command (numbered from 1 by
        decreasing energy). Embedding models' default target is ``"cluster=1"``, the louder one.
    """

    target: str | None = None
    method: str = "ig"
    baseline: str = "silence"
    steps: int | str = "auto"
    spacing: str = "adaptive"
    path: str = "straight"
    smooth: str | None = None
    layer: str | None = None
    chunk_seconds: float | None = None
    overlap_seconds: float = 2.0
    top_percent: float = 10.0
    deletion: bool = True
    random_orders: int = 3
    seed: int = 0
    progress: bool = False
    clusters: object = None


@dataclass
class AttributionAnalysis(Result):
    """An attribution with its listenable explanation and faithfulness numbers.

    Attributes
    ----------
    attribution : Attribution
    explanation, complement : np.ndarray [shape=(n,)]
        The top ``top_percent`` % of bins resynthesised, and the rest; both scaled by one
        common factor so the louder peaks at 1 at most.
    sr : int
    deletion : dict or None
        From :func:`probe.analyze.faithfulness.deletion_test`.
    localisation : dict or None
        Relevance inside the example's event box the target explains.
    event : dict or None
        That event.
    stem_snr_db : float or None
        SNR (dB) of the explanation against the true stem (event stem or source).
    steps_used : int or None
    """

    attribution: object
    explanation: np.ndarray
    complement: np.ndarray
    sr: int
    target: str
    top_percent: float
    deletion: dict | None = None
    localisation: dict | None = None
    event: dict | None = None
    stem_snr_db: float | None = None
    steps_used: int | None = None
    notes: list | None = None
    target_name: str | None = None

    @property
    def summary(self) -> dict:
        return self.attribution.summary()

    def relevance_time(self) -> dict | None:
        """Where in time the relevance lies: the frame of largest summed ``|relevance|`` and its centroid (s).

        Times are the map's own frame centres on the model's STFT grid (``grid.frame_times``).
        """
        a = self.attribution
        m = np.abs(np.nan_to_num(np.asarray(a.map, float))).sum(0)
        t = np.asarray(a.times, float)
        if m.size == 0 or m.shape != t.shape or not m.sum() > 0:
            return None
        return {"peak_s": rounded(float(t[int(np.argmax(m))]), 4),
                "centroid_s": rounded(float((m * t).sum() / m.sum()), 4)}

    def to_json(self) -> dict:
        a = self.attribution
        out = {"method": a.method, "target": str(a.target), "grid": a.grid.to_dict(),
               "audio_seconds": round(len(a.audio) / a.sample_rate, 4), "baseline": a.baseline_name,
               "completeness_error": rounded(a.completeness_error), "convergence_delta": rounded(a.convergence_delta),
               "target_value": rounded(a.target_value), "baseline_value": rounded(a.baseline_value),
               "steps_used": self.steps_used}
        if self.target_name:
            out["target_name"] = self.target_name
        bins = getattr(a.target, "bins", None)
        if getattr(a.target, "cluster", None) is not None and bins is not None:
            out["target_bins"] = int(np.asarray(bins, bool).sum())
        out["relevance_time"] = self.relevance_time()
        if a.reconstruction_error_db is not None:
            out["reconstruction_error_db"] = rounded(a.reconstruction_error_db, 2)
        if "chunks_n" in a.info:
            out["chunks"] = a.info["chunks_n"]
        if self.deletion is not None:
            out["deletion"] = {k: rounded(self.deletion[k]) for k in ("auc", "auc_random", "drop_at_10",
                                                                       "drop_at_10_random", "drop_ratio",
                                                                       "insertion_auc", "insertion_auc_random")
                               if k in self.deletion}
        elif self.notes and any("deletion" in n for n in self.notes):
            out["deletion"] = None
        if self.localisation is not None:
            loc, ev = self.localisation, self.event
            out["localisation"] = {"relevance_mass": rounded(loc["relevance_mass"]), "pointing_game": loc["pointing_game"],
                                   "rank_accuracy": rounded(loc["rank_accuracy"]),
                                   "box_fraction": rounded(loc["box_fraction"]),
                                   "box": {k: ev.get(k) for k in ("label", "onset", "offset", "fmin", "fmax")}}
        if self.stem_snr_db is not None:
            out["explanation"] = {"top_percent": self.top_percent, "snr_db_vs_true_stem": rounded(self.stem_snr_db, 3)}
        if self.notes:
            out["notes"] = list(self.notes)
        out["warnings"] = list(self.warnings)
        return out


def attribution_warnings(warnings, deletion, completeness_error, *, steps="auto") -> list:
    """Every warning about one attribution, each once: the input's and the map's, the deletion test's, completeness.

    The CLI, the report and the app all show this list, so a map that is no better than random
    deletion, or an IG map that does not add up, is flagged the same way on every face.

    Parameters
    ----------
    warnings : list of str
        Warnings already raised (about the input, the target, the map).
    deletion : dict or None
        :func:`probe.analyze.faithfulness.deletion_test`'s result (its ``warnings``; its
        ``reason`` when it gave no figures).
    completeness_error : float or None
        IG's relative completeness error.
    steps : int or "auto"
        The IG steps asked for (the advice differs).

    Examples
    --------
    >>> attribution_warnings([], {"auc": 0.9, "warnings": ["deletion no better than random: ..."]}, 0.002)
    ['deletion no better than random: ...']
    >>> attribution_warnings([], None, 0.3, steps=16)[0].split(":")[0]
    'completeness error 30.0% > 1%'
    """
    out = list(warnings or [])
    d = deletion or {}
    out += list(d.get("warnings") or [])
    if d.get("reason") and d.get("auc") is None and not any("deletion" in w for w in out):
        out.append(f"no deletion test: {d['reason']}")  # unless a warning (a near-zero target) already says why
    err = completeness_error
    if err is not None and err > AUTO_COMPLETENESS and not any("completeness" in w for w in out):
        out.append(f"completeness error {err:.1%} > {AUTO_COMPLETENESS:.0%}: the map does not add up to f(clip) − "
                   "f(baseline); " + ("set IG steps to auto" if steps != "auto" else "try another baseline"))
    return list(dict.fromkeys(out))


def match_event(example, target):
    """``(index, event)`` of the example's event that ``target`` explains (same class, overlapping span), or ``(None, None)``."""
    from ..attribution import ClassTarget

    events = getattr(example, "events", None) or []
    if not isinstance(target, ClassTarget):
        return None, None
    for i, ev in enumerate(events):
        if str(ev.get("label")) != str(target.cls):
            continue
        if target.t is None or (ev["onset"] < target.t[1] and ev["offset"] > target.t[0]):
            return i, ev
    return None, None


def peak_normalise(*signals):
    """The signals scaled by one common factor so the loudest peaks at 1 (quieter ones are left as they are).

    Examples
    --------
    >>> a, b = peak_normalise(np.array([2.0, -1.0]), np.array([0.5]))
    >>> a.tolist(), b.tolist()
    ([1.0, -0.5], [0.25])
    """
    peak = max([1.0] + [float(np.abs(s).max(initial=0)) for s in signals])
    return tuple((np.asarray(s) / peak).astype(np.float32) for s in signals)


def _attribute_supports_auto(attribute) -> bool:
    p = inspect.signature(attribute).parameters.get("steps")
    return p is not None and (p.default == "auto" or "str" in str(p.annotation))


def _attribute(spec, example, o: AttributionOptions, target=None):
    """``(Attribution, steps_used)`` for the options; ``steps="auto"`` handled here when probe.attribute cannot."""
    import dataclasses

    from ..attribution import attribute

    if target is not None:
        o = dataclasses.replace(o, target=target)

    kw = dict(method=o.method, baseline=o.baseline, path=o.path, smooth=o.smooth, layer=o.layer,
              chunk_seconds=o.chunk_seconds, overlap_seconds=o.overlap_seconds, seed=o.seed, progress=o.progress)
    if o.method == "ig" and o.path == "straight":  # node spacing only means something on IG's straight path
        kw["spacing"] = o.spacing
    if o.steps != "auto":
        a = attribute(spec, example, o.target, steps=int(o.steps), **kw)
        return a, getattr(a, "steps_used", None) or (int(o.steps) if o.method in ("ig", "gradshap") else None)
    if _attribute_supports_auto(attribute):
        a = attribute(spec, example, o.target, steps="auto", **kw)
        return a, getattr(a, "steps_used", None)
    if o.method != "ig":  # only IG has a completeness check to steer by
        a = attribute(spec, example, o.target, steps=AUTO_STEPS[1], **kw)
        return a, AUTO_STEPS[1] if o.method == "gradshap" else None
    for steps in AUTO_STEPS:
        a = attribute(spec, example, o.target, steps=steps, **kw)
        err = a.completeness_error
        if err is None or not np.isfinite(err) or err <= AUTO_COMPLETENESS:
            break
    return a, steps


def cluster_target(spec, example, options: AttributionOptions = AttributionOptions(), *, clustering=None, lock=None):
    """The :class:`~probe.attribution.EmbeddingTarget` of ``options.target`` (``"cluster=j"``) with the
    bins and name of cluster ``j`` of the shared clustering; ``None`` when the target is no cluster.

    ``clustering`` (an :class:`EmbeddingAnalysis` of the output, e.g. a cached one) is used as given;
    otherwise the same clustering step (:func:`probe.analyze.embedding_clusters.shared_clustering`) runs with
    ``options.clusters`` (the same points, seed and order as :func:`analyse_embeddings`, without the map).
    """
    from ..attribution import EmbeddingTarget, parse_target
    from .embedding import EmbeddingOptions

    if spec.output_kind != "tf_embeddings" or options.chunk_seconds is not None:
        return None
    text = options.target if options.target is not None else "cluster=1"
    tgt = parse_target(text) if isinstance(text, str) else text
    if not isinstance(tgt, EmbeddingTarget) or tgt.cluster is None or tgt.bins is not None:
        return None
    if clustering is None:  # the clustering analyse_embeddings makes with these options (no map needed)
        from ..analyze.embedding_clusters import shared_clustering

        eo = options.clusters or EmbeddingOptions()
        with locked(lock):
            clustering = shared_clustering(spec, example, n_clusters=eo.n_clusters, threshold_db=eo.threshold_db,
                                           budget=eo.budget, seed=eo.seed, method=eo.method)
    return EmbeddingTarget.from_clustering(clustering, tgt.cluster, of=tgt.of)


def analyse_attribution(spec, example, options: AttributionOptions = AttributionOptions(), *,
                        lock=None, clustering=None) -> AttributionAnalysis:
    """Attribute a target, make it listenable, test it by deletion and (with ground truth) by localisation.

    Parameters
    ----------
    spec : ModelSpec
    example : AudioExample or np.ndarray [shape=(n,)]
        With an AudioExample, its events / sources give the default target, the box for
        localisation and the stem the explanation is compared with.
    options : AttributionOptions
    lock : context manager, optional
        Held while the model runs (attribution runs on a shadow copy and never changes the model).
    clustering : EmbeddingAnalysis, optional
        For ``"cluster=j"`` targets: the clustering to take cluster ``j``'s bins from (it must be
        :func:`analyse_embeddings` of this clip at the output); by default computed with
        ``options.clusters`` (see :func:`cluster_target`).

    Returns
    -------
    AttributionAnalysis

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> class Energy(torch.nn.Module):
    ...     def forward(self, x):  # (B, T, F) magnitude -> (B, T, 1) in [0, 1]
    ...         return torch.sigmoid(x.sum(-1, keepdim=True) - 1.0)
    >>> spec = ModelSpec(Energy(), input_kind="magnitude", grid=TFGrid(8000, 256, 64), input_layout="btf",
    ...                  output_kind="frame_probs", classes=["loud"])
    >>> y = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000).astype(np.float32)
    >>> res = analyse_attribution(spec, y, AttributionOptions(target="class=loud", random_orders=1))
    >>> res.attribution.completeness_error <= 0.01, res.explanation.shape
    (True, (8000,))
    """
    from ..analyze.faithfulness import deletion_test, localisation
    from ..attribution import SourceTarget, listen, snr_db

    from ..diagnostics import input_warnings
    from ..errors import ModelError

    o = options
    notes = []
    audio_warnings = input_warnings(spec, example)  # refuses a clip shorter than one frame
    ctarget = cluster_target(spec, example, o, clustering=clustering, lock=lock)
    with locked(lock):
        attr, steps_used = _attribute(spec, example, o, target=ctarget)
        if attr.nonfinite is not None and attr.nonfinite.get("what") == "the target f(x)":
            # the model's own output on the clip is NaN/Inf: no attribution of it means anything
            raise ModelError(" ".join(w for w in attr.warnings if "is NaN/Inf" in w)[:600]
                             or "the model output is NaN/Inf on this clip")
        expl, comp = listen(attr, top_percent=float(o.top_percent))
        dele = None
        if o.deletion:
            if "chunks_n" in attr.info:
                notes.append("deletion test skipped for chunked (long) audio")
            else:
                dele = deletion_test(spec, attr, n_random=max(1, int(o.random_orders)), seed=o.seed)
    # ground truth from an example: the event box for localisation, the stem the explanation should sound like
    idx, event = match_event(example, attr.target)
    loc, stem = None, None
    if event is not None:
        loc = localisation(attr, event)
        stems = getattr(example, "event_stems", None)
        if stems is not None and idx < len(stems):
            stem = np.asarray(stems[idx])
    elif isinstance(attr.target, SourceTarget) and getattr(example, "sources", None) is not None \
            and attr.target.index < len(example.sources):
        stem = np.asarray(example.sources[attr.target.index])
    snr = float(snr_db(expl, stem)) if stem is not None else None
    expl, comp = peak_normalise(expl, comp)
    warnings = attribution_warnings(audio_warnings + list(getattr(attr, "warnings", None) or attr.info.get("warnings")
                                                          or []), dele, attr.completeness_error, steps=o.steps)
    return AttributionAnalysis(attribution=attr, explanation=expl, complement=comp, sr=attr.sample_rate,
                               target=str(attr.target), target_name=getattr(attr.target, "name", None), top_percent=float(o.top_percent), deletion=dele,
                               localisation=loc, event=event, stem_snr_db=snr, steps_used=steps_used,
                               notes=notes or None, warnings=warnings)
