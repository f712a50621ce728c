"""Targets: small objects that turn a model's canonical output into one scalar per batch item.

Attribution explains a scalar. A target says which one: a class over a time span
(detection), the energy of a separated source in a time span / frequency band
(separation), the similarity of chosen T-F bins to a cluster centroid (embeddings), or
any callable. Every target is called as ``target(out, ctx) -> Tensor [shape=(B,)]`` where
``out`` is :meth:`~probe.adapter.ModelSpec.select_output` of the model's raw output and
``ctx`` a :class:`TargetContext` (segment length, offset inside a longer clip, the
magnitude batch being explained).

Targets are also written as strings (the CLI's ``--target``)::

    "class=bell,t=3.0:3.5"        mean probability of class "bell" over 3.0–3.5 s
    "class=bell,t=3:3.5,reduce=max"
    "class=bell,t=3:3.5,score=logit"   … of the log-odds instead of the probability
    "class=2"                     class index 2 (0-based) over the whole clip / clip score
    "source=1"                    energy of the FIRST source (sources are 1-based in strings)
    "source=1,f=200:1000,t=0:2"   … within 200–1000 Hz and 0–2 s
    "source=2,of=mask"            mean of source 2's mask instead of its output energy
    "cluster=1"                   deep-clustering embeddings: the magnitude the loudest cluster's soft mask
                                  assigns (0 for silence, like source=1 of a mask model)
    "cluster=1,of=similarity"     … the cosine of the cluster's bins to its centroid instead
    "embedding,t=1:2,f=0:500"     embeddings of a region vs that region's own centroid (of=energy: its mask's magnitude)
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import AnalysisError

__all__ = ["Target", "TargetContext", "ClassTarget", "SourceTarget", "EmbeddingTarget", "FeatureTarget",
           "CallableTarget", "parse_target", "as_target", "default_target", "output_frame_times"]


@dataclass
class TargetContext:
    """What a target needs to know besides the output tensor.

    Attributes
    ----------
    spec : ModelSpec
    n_samples : int
        Samples of the segment the model sees.
    offset_seconds : float
        Where that segment starts inside the whole clip (chunked attribution).
    total_seconds : float, optional
        Duration of the whole clip; ``None`` means the segment is the whole clip.
    magnitude : torch.Tensor [shape=(B, F, T)], optional
        The magnitude batch being explained (set by the forward wrapper); a mask
        target's separated output is ``mask * magnitude``.
    """

    spec: Any
    n_samples: int
    offset_seconds: float = 0.0
    total_seconds: float | None = None
    magnitude: Any = None

    @property
    def sr(self) -> int:
        return self.spec.sample_rate

    @property
    def duration(self) -> float:
        return self.n_samples / self.sr

    @property
    def total(self) -> float:
        return self.duration if self.total_seconds is None else float(self.total_seconds)

    @property
    def chunked(self) -> bool:
        return self.offset_seconds > 0 or abs(self.total - self.duration) > 0.5 / self.sr


def output_frame_times(n_out: int, n_samples: int, spec) -> tuple[np.ndarray, float]:
    """Centre time (s, from the segment start) of each output frame, and the frame step.

    The spec's ``[time]`` table (``--seconds-per-step`` / ``--time-offset``) wins; next, the
    shape probe's exact step and offset of the model's output (frame ``j`` at
    ``offset + j * step``: a 1.6 s window's frame 0 is at 0.8 s). Failing both, when the
    output has ``n_in / k`` frames, ``n_in`` the STFT frames of the model's grid and ``k`` an integer (pooling factor; 1 for masks and frame-rate detectors, waveform
    ones included), output frame ``j`` covers STFT frames ``jk … jk+k-1`` and sits at their
    centre on the grid; otherwise times follow the output length vs the input duration:
    ``(j + 0.5) * duration / n_out``.

    Returns
    -------
    times : np.ndarray [shape=(n_out,)]
    step : float
        Seconds between consecutive output frames.
    """
    g = spec.grid
    timed = _output_time_axis(spec)
    if timed is not None:
        offset, step = timed
        return offset + np.arange(n_out) * step, step
    if n_out > 0:
        n_in = g.n_frames(n_samples)
        k = max(1, int(round(n_in / n_out)))
        if n_out in (n_in // k, -(-n_in // k)):
            times = g.frames_to_seconds(np.arange(n_out) * k + (k - 1) / 2.0)
            return np.asarray(times, float), k * g.seconds_per_frame
    step = n_samples / spec.sample_rate / max(n_out, 1)
    return (np.arange(n_out) + 0.5) * step, step


def _output_time_axis(spec):
    """``(offset, step)`` in seconds of the output's time axis: ``[time]`` overrides, else the shape probe; or ``None``."""
    t = getattr(spec, "time", None) or {}
    probed = spec._axes_cache.get("__output_time__", False) if hasattr(spec, "_axes_cache") else None
    if probed is False:
        probed = None
        try:
            from .._shapes import time_probe

            found = {(r.seconds_per_step, r.offset or 0) for k, r in (time_probe(spec).results or {}).items()
                     if k[0] == "" and k[2] == "out" and r.time_axis is not None and r.seconds_per_step is not None
                     and not r.batch_folded}
            probed = next(iter(found)) if len(found) == 1 else None  # several output clocks: ambiguous
        except Exception:  # the probe is a refinement; the grid arithmetic below still applies
            probed = None
        spec._axes_cache["__output_time__"] = probed
    step = t.get("seconds_per_step") or (probed[0] if probed else None)
    if step is None:
        return None
    offset = t.get("offset") if t.get("offset") is not None else (probed[1] if probed else 0.0)
    return float(offset), float(step)


def _span_selection(times, step, ctx: TargetContext, span):
    """Local indices of frames inside ``span`` (global seconds) and the normaliser.

    The normaliser is the number of frames of the *whole clip* inside the span, so a
    mean target split over chunks keeps each frame's weight (chunked maps then add up).
    """
    off, total = ctx.offset_seconds, ctx.total
    t0, t1 = (-np.inf, np.inf) if span is None else (float(span[0]), float(span[1]))
    gtimes = times + off
    sel = np.flatnonzero((gtimes >= t0) & (gtimes < t1))
    if sel.size == 0:
        mid = 0.5 * (t0 + t1)
        if span is not None and off <= mid < off + ctx.duration and len(times):
            sel = np.array([int(np.argmin(np.abs(gtimes - mid)))])  # a span shorter than one frame
        return sel, 1
    if not ctx.chunked:
        return sel, int(sel.size)
    # frames the whole clip would have on the same step, counted inside the span
    first = float(times[0]) if len(times) else 0.0
    g = np.arange(int(np.floor((total - first) / step + 1e-9)) + 1) * step + first
    n = int(((g >= t0) & (g < t1)).sum())
    return sel, max(n, 1)


def _fmt_span(name, span):
    return "" if span is None else f",{name}={span[0]:g}:{span[1]:g}"


class Target:
    """Base class: ``target(out, ctx) -> Tensor [shape=(B,)]``.

    Subclasses may override :meth:`bind` to look at the unperturbed output once before
    attribution (an embedding target fixes its centroid there) and :meth:`track` to
    return the quantity over time for plots.
    """

    def __call__(self, out, ctx: TargetContext):  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, out, ctx: TargetContext) -> "Target":
        """Return the target to use for this input (default: itself)."""
        return self

    def track(self, out, ctx: TargetContext):
        """``(times [s], values)`` of the target's per-frame quantity, or ``None``."""
        return None

    def describe(self) -> str:
        return str(self)

    @property
    def span(self):
        return getattr(self, "t", None)


# ---- detection -----------------------------------------------------------------------------
@dataclass
class ClassTarget(Target):
    """Class ``cls`` of a detector: mean (or max) frame probability over span ``t``, or a clip score.

    Parameters
    ----------
    cls : str or int
        Class name (looked up in ``spec.classes``) or 0-based index.
    t : (float, float), optional
        Time span in seconds (whole clip when omitted). Ignored for clip-score models
        only when omitted; a span on a clip-score model is an error.
    reduce : {"mean", "max"}
        ``mean`` is additive over frames (chunked attribution is exact away from edges);
        ``max`` explains the single most confident frame.
    score : {"prob", "logit"}
        Explain the probabilities as the model emits them, or their log-odds
        ``log(p / (1 - p))`` (no saturation near 0 and 1; probabilities are clipped to
        [1e-6, 1 - 1e-6] first).
    """

    cls: Any
    t: tuple | None = None
    reduce: str = "mean"
    score: str = "prob"

    def __post_init__(self):
        if self.reduce not in ("mean", "max"):
            raise AnalysisError(f"reduce must be 'mean' or 'max', given {self.reduce!r}")
        if self.score not in ("prob", "logit"):
            raise AnalysisError(f"score must be 'prob' or 'logit', given {self.score!r}")
        if self.t is not None:
            self.t = (float(self.t[0]), float(self.t[1]))
            if self.t[1] <= self.t[0]:
                raise AnalysisError(f"time span must have end > start, given t={self.t[0]:g}:{self.t[1]:g}")

    def index(self, spec) -> int:
        classes = spec.classes or []
        if isinstance(self.cls, str) and self.cls in classes:
            return classes.index(self.cls)
        try:
            i = int(self.cls)
        except (TypeError, ValueError):
            raise AnalysisError(f"unknown class {self.cls!r}; the model's classes are {classes}") from None
        n = len(classes) if classes else None
        if i < 0 or (n is not None and i >= n):
            raise AnalysisError(f"class index {i} out of range for {n} classes {classes}")
        return i

    def __call__(self, out, ctx):
        import torch

        kind = ctx.spec.output_kind
        c = self.index(ctx.spec)
        if kind == "clip_scores":
            if self.t is not None:
                raise AnalysisError("a clip-score model has no time axis: drop t=… from the target")
            return self._score(out[:, c])
        if kind != "frame_probs":
            raise AnalysisError(f"a class target needs a frame_probs or clip_scores model; this one emits {kind!r}")
        if c >= out.shape[1]:
            raise AnalysisError(f"class index {c} out of range: the model emits {out.shape[1]} classes")
        track = self._score(out[:, c, :])
        times, step = output_frame_times(track.shape[-1], ctx.n_samples, ctx.spec)
        sel, n = _span_selection(times, step, ctx, self.t)
        if sel.size == 0:
            return track.sum(-1) * 0.0
        if sel[-1] - sel[0] + 1 == sel.size:  # a contiguous span: a slice (cheaper than a gather, and its backward)
            part = track[:, int(sel[0]):int(sel[-1]) + 1]
        else:
            part = track[:, torch.as_tensor(sel, device=track.device)]
        return part.sum(-1) / n if self.reduce == "mean" else part.max(-1).values

    def _score(self, p):
        if self.score == "prob":
            return p
        p = p.clamp(1e-6, 1 - 1e-6)
        return p.log() - (-p).log1p()

    def track(self, out, ctx):
        if ctx.spec.output_kind != "frame_probs":
            return None
        v = self._score(out[0, self.index(ctx.spec), :]).detach().cpu().numpy()
        times, _ = output_frame_times(v.shape[-1], ctx.n_samples, ctx.spec)
        return times + ctx.offset_seconds, v

    def __str__(self):
        s = f"class={self.cls}{_fmt_span('t', self.t)}"
        return s + (",reduce=max" if self.reduce == "max" else "") + (",score=logit" if self.score == "logit" else "")


# ---- separation ----------------------------------------------------------------------------
@dataclass
class SourceTarget(Target):
    """Energy of separated source ``index`` (0-based) in a time span / frequency band.

    For a mask model the separated magnitude is ``mask_k * |X|`` and the target is its
    mean power over the selected bins (``of="mask"``: the mean mask value instead). For a
    waveform-output model it is the mean power of the source's samples in the span, or of
    its STFT on the model's grid when a band is given.
    """

    index: int
    t: tuple | None = None
    f: tuple | None = None
    of: str = "output"

    def __post_init__(self):
        if self.of not in ("output", "mask"):
            raise AnalysisError(f"of must be 'output' or 'mask', given {self.of!r}")
        if int(self.index) < 0:
            raise AnalysisError(f"source index must be >= 0 (0-based here; strings are 1-based), given {self.index}")
        self.index = int(self.index)
        for name in ("t", "f"):
            v = getattr(self, name)
            if v is not None:
                v = (float(v[0]), float(v[1]))
                if v[1] <= v[0]:
                    raise AnalysisError(f"{name} range must have end > start, given {name}={v[0]:g}:{v[1]:g}")
                setattr(self, name, v)

    def _check_index(self, n):
        if self.index >= n:
            raise AnalysisError(f"source {self.index + 1} (1-based) out of range: the model emits {n} sources")

    def _band_rows(self, n_rows, spec):
        import torch

        freqs = spec.grid.bin_frequencies() if n_rows == spec.grid.n_freqs else np.linspace(0, spec.grid.nyquist, n_rows)
        if self.f is None:
            return None, n_rows
        rows = np.flatnonzero((freqs >= self.f[0]) & (freqs <= self.f[1]))
        if rows.size == 0:
            rows = np.array([int(np.argmin(np.abs(freqs - 0.5 * (self.f[0] + self.f[1]))))])
        return torch.as_tensor(rows), int(rows.size)

    def _tf_energy(self, P, ctx):
        """Mean of ``P [shape=(B, F, T)]`` over the band × span."""
        import torch

        rows, n_rows = self._band_rows(P.shape[-2], ctx.spec)
        if rows is not None:
            P = P[:, rows.to(P.device), :]
        times, step = output_frame_times(P.shape[-1], ctx.n_samples, ctx.spec)
        sel, n = _span_selection(times, step, ctx, self.t)
        if sel.size == 0:
            return P.sum((-1, -2)) * 0.0
        return P[:, :, torch.as_tensor(sel, device=P.device)].sum((-1, -2)) / (n * n_rows)

    def __call__(self, out, ctx):
        import torch

        kind = ctx.spec.output_kind
        if kind == "masks":
            self._check_index(out.shape[1])
            m = out[:, self.index]
            if self.of == "mask":
                return self._tf_energy(m, ctx)
            mag = ctx.magnitude
            if mag is None or mag.shape[-2:] != m.shape[-2:]:
                raise AnalysisError(f"mask shape {tuple(m.shape[-2:])} does not match the input magnitude "
                                    f"{None if mag is None else tuple(mag.shape[-2:])}; use of=mask")
            return self._tf_energy((m * mag) ** 2, ctx)
        if kind == "sources":
            if self.of == "mask":
                raise AnalysisError("this model emits waveforms, not masks: drop of=mask")
            self._check_index(out.shape[1])
            s = out[:, self.index]
            if self.f is not None:
                return self._tf_energy(ctx.spec.grid.stft(s).abs() ** 2, ctx)
            times = np.arange(s.shape[-1]) / ctx.sr
            sel, n = _span_selection(times, 1.0 / ctx.sr, ctx, self.t)
            if sel.size == 0:
                return s.sum(-1) * 0.0
            if self.t is None and not ctx.chunked:
                return (s ** 2).mean(-1)
            return (s[:, torch.as_tensor(sel, device=s.device)] ** 2).sum(-1) / n
        raise AnalysisError(f"a source target needs a masks or sources model; this one emits {kind!r}")

    def track(self, out, ctx):
        kind = ctx.spec.output_kind
        if kind == "masks":
            m = out[:1, self.index]
            P = m if self.of == "mask" else (m * ctx.magnitude[:1]) ** 2
            rows, _ = self._band_rows(P.shape[-2], ctx.spec)
            if rows is not None:
                P = P[:, rows.to(P.device), :]
            v = P[0].mean(0).detach().cpu().numpy()
        elif kind == "sources":
            s = out[:1, self.index]
            v = (ctx.spec.grid.stft(s).abs() ** 2)[0]
            rows, _ = self._band_rows(v.shape[-2], ctx.spec)
            v = (v if rows is None else v[rows.to(v.device)]).mean(0).detach().cpu().numpy()
            # frames of probe's own STFT of the output waveform: the grid's frame times, not the model output's
            # axis (one step per sample, which put a 4-s track into its first 63 ms)
            return np.asarray(ctx.spec.grid.frame_times(v.shape[-1]), float) + ctx.offset_seconds, v
        else:
            return None
        times, _ = output_frame_times(v.shape[-1], ctx.n_samples, ctx.spec)
        return times + ctx.offset_seconds, v

    def __str__(self):
        s = f"source={self.index + 1}{_fmt_span('t', self.t)}{_fmt_span('f', self.f)}"
        return s + (",of=mask" if self.of == "mask" else "")


# ---- embeddings ----------------------------------------------------------------------------
#: what an embedding target explains: the energy its cluster's soft mask assigns, or a cosine similarity
EMBEDDING_OF = ("energy", "similarity")
#: inverse temperature of the soft mask ``softmax_k(s · cos(e, c_k))`` (cosines span [-1, 1])
SOFTMASK_SHARPNESS = 10.0


@dataclass
class EmbeddingTarget(Target):
    """Mean cosine similarity of chosen T-F embeddings to a centroid (deep clustering).

    Parameters
    ----------
    centroid : array [shape=(D,)], optional
        Fixed direction. When omitted it is taken from the unperturbed input: the mean
        unit embedding of the chosen bins, or the k-means centroid of ``cluster``.
    t, f : (float, float), optional
        Region of bins (seconds, Hz) when no ``bins`` / ``cluster`` is given.
    bins : bool array [shape=(F, T)], optional
        Explicit bins on the embedding's grid.
    cluster : int, optional
        1-based cluster number: k-means (``n_clusters``, default ``spec.n_sources`` or 2)
        on the unit embeddings of bins within 40 dB of the loudest; clusters are numbered
        by decreasing energy; chosen bins are the cluster's members. With ``bins`` as well,
        those bins are the cluster (no k-means here): :func:`probe.pipelines.analyse_attribution`
        passes the clustering of :func:`probe.pipelines.analyse_embeddings` this way.
    name : str, optional
        The cluster's name (e.g. the oracle source it holds), shown in descriptions.
    of : {"energy", "similarity"}, optional
        What is explained. ``"energy"`` (the default for ``cluster=j``): the magnitude the
        cluster's soft mask assigns, ``mean over all bins of m_j · |X|`` with
        ``m_j = softmax_k(SOFTMASK_SHARPNESS · cos(e, c_k))`` over the ``k`` centroids — the
        separated source's level, zero for a silent input, so a silence baseline leaves the
        whole value to explain (the deep-clustering analogue of ``source=j``).
        ``"similarity"`` (the default for ``embedding,t=…,f=…`` regions): the mean cosine of the
        chosen bins to the centroid; nearly unchanged between clip and a silent baseline
        for log-magnitude models, so IG has little to explain.
    centroids : array [shape=(k, D)], optional
        All cluster centroids, in cluster order (the soft mask competes between them); set
        from the clustering. Without them the mask is ``max(cos(e, c), 0)``.
    """

    centroid: Any = None
    t: tuple | None = None
    f: tuple | None = None
    bins: Any = None
    cluster: int | None = None
    n_clusters: int | None = None
    seed: int = 0
    name: str | None = None
    of: str | None = None
    centroids: Any = None
    _bound: bool = field(default=False, repr=False)
    _row: int = field(default=0, repr=False)

    def __post_init__(self):
        if self.of is None:
            self.of = "energy" if self.cluster is not None else "similarity"
        if self.of not in EMBEDDING_OF:
            raise AnalysisError(f"of must be one of {', '.join(EMBEDDING_OF)} for an embedding target, given {self.of!r}")

    @classmethod
    def from_clustering(cls, clustering, cluster: int, *, of: str | None = None) -> "EmbeddingTarget":
        """Cluster ``cluster`` (from 1) of a shared clustering: its bins, name and every centroid.

        ``clustering`` is a :class:`probe.analyze.embedding_clusters.ClipClustering` or a
        :class:`probe.pipelines.EmbeddingAnalysis` of the model's ``tf_embeddings`` output.
        """
        k = int(clustering.n_clusters)
        if not 1 <= int(cluster) <= k:
            raise AnalysisError(f"cluster must be in 1..{k} (numbered from 1 by decreasing energy), given {cluster}")
        j = int(cluster)
        names = clustering.cluster_names or [f"cluster {i}" for i in range(1, k + 1)]
        centers = getattr(clustering.clusters, "centers_", None)
        if centers is not None and (np.ndim(centers) != 2 or len(centers) != k):
            centers = None  # no centroid per cluster in the embedding space
        return cls(cluster=j, n_clusters=k, bins=np.asarray(clustering.cluster_bins[j - 1], bool), name=names[j - 1],
                   of=of, centroids=centers, centroid=None if centers is None else centers[j - 1])

    def _region(self, F, T, ctx):
        spec = ctx.spec
        if self.bins is not None:
            b = np.asarray(self.bins, bool)
            if b.shape != (F, T):
                raise AnalysisError(f"bins mask has shape {b.shape}, the embeddings are (F, T) = {(F, T)}")
            return b
        if F == spec.grid.n_freqs:
            freqs = spec.grid.bin_frequencies()
        elif spec.grid.n_mels and F == spec.grid.n_mels:
            freqs = spec.grid.mel_frequencies()
        else:
            freqs = np.linspace(0, spec.grid.nyquist, F)
        fr = np.ones(F, bool) if self.f is None else (freqs >= self.f[0]) & (freqs <= self.f[1])
        times, step = output_frame_times(T, ctx.n_samples, spec)
        sel, _ = _span_selection(times, step, ctx, self.t)
        tr = np.zeros(T, bool)
        tr[sel] = True
        return fr[:, None] & tr[None, :]

    def bind(self, out, ctx):
        import torch

        if ctx.spec.output_kind != "tf_embeddings":
            raise AnalysisError(f"an embedding target needs a tf_embeddings model; this one emits {ctx.spec.output_kind!r}")
        e = torch.nn.functional.normalize(out[0].detach().float(), dim=0).cpu().numpy()  # (D, F, T)
        D, F, T = e.shape
        bins, centroid, centroids = self.bins, self.centroid, self.centroids
        if self.cluster is not None and self.bins is None:  # chunks of long audio: a k-means on this chunk
            from sklearn.cluster import KMeans

            k = int(self.n_clusters or ctx.spec.n_sources or 2)
            if not 1 <= self.cluster <= k:
                raise AnalysisError(f"cluster must be in 1..{k} (1-based), given {self.cluster}")
            mag = ctx.magnitude[0].detach().cpu().numpy() if ctx.magnitude is not None else None
            if mag is not None and mag.shape == (F, T):
                db = 20 * np.log10(mag + 1e-12)
                loud = db > db.max() - 40
            else:
                mag, loud = np.ones((F, T)), np.ones((F, T), bool)
            X = e.reshape(D, -1).T
            km = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(X[loud.ravel()])
            labels = km.predict(X).reshape(F, T)
            energy = [float((mag ** 2)[(labels == j) & loud].sum()) for j in range(k)]
            order = np.argsort(energy)[::-1]
            j = int(order[self.cluster - 1])
            bins = (labels == j) & loud
            centroid = km.cluster_centers_[j]
            centroids = km.cluster_centers_[order]
        else:
            bins = self._region(F, T, ctx) if bins is None else np.asarray(bins, bool)
            if not bins.any():
                raise AnalysisError("the embedding target selects no bins (check t=/f=)")
            if centroid is None:
                centroid = e[:, bins].mean(axis=1)
        centroid = np.asarray(centroid, np.float32).ravel()
        if centroid.shape[0] != D:
            raise AnalysisError(f"centroid has {centroid.shape[0]} dims, the embeddings have {D}")
        centroid = centroid / (np.linalg.norm(centroid) + 1e-12)
        of, j = self.of, 0
        if of == "energy":
            mag = ctx.magnitude
            if mag is None or tuple(mag.shape[-2:]) != (F, T):
                of = "similarity"  # embeddings on another grid (mel, pooled): no bin-wise mask of |X|
            if centroids is not None:
                centroids = np.asarray(centroids, np.float32).reshape(-1, D)
                centroids = centroids / (np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12)
                j = (self.cluster - 1 if self.cluster is not None and 1 <= self.cluster <= len(centroids)
                     else int(np.argmax(centroids @ centroid)))  # rows are in cluster order
        return dataclasses.replace(self, centroid=centroid, centroids=centroids, bins=bins, of=of, _row=j, _bound=True)

    def soft_mask(self, out):
        """``m_j [shape=(B, F, T)]``: the cluster's soft mask from embeddings ``out [shape=(B, D, F, T)]``."""
        import torch

        e = torch.nn.functional.normalize(out, dim=1)
        if self.centroids is None:
            c = torch.as_tensor(self.centroid, dtype=e.dtype, device=e.device)
            return torch.einsum("bdft,d->bft", e, c).clamp_min(0)
        C = torch.as_tensor(np.asarray(self.centroids), dtype=e.dtype, device=e.device)
        return torch.softmax(SOFTMASK_SHARPNESS * torch.einsum("bdft,kd->bkft", e, C), dim=1)[:, self._row]

    def __call__(self, out, ctx):
        import torch

        if not self._bound:
            raise AnalysisError("EmbeddingTarget must be bound to an input first (attribute() does this)")
        if self.of == "energy":
            return (self.soft_mask(out) * ctx.magnitude.to(out.dtype)).mean((-1, -2))
        e = torch.nn.functional.normalize(out, dim=1)
        c = torch.as_tensor(self.centroid, dtype=e.dtype, device=e.device)
        sim = torch.einsum("bdft,d->bft", e, c)
        b = torch.as_tensor(np.asarray(self.bins), device=e.device)
        if b.shape != sim.shape[-2:]:
            raise AnalysisError(f"bound bins {tuple(b.shape)} do not match embeddings {tuple(sim.shape[-2:])}")
        return (sim * b).sum((-1, -2)) / b.sum().clamp_min(1)

    def track(self, out, ctx):
        if not self._bound or self.of != "energy" or ctx.magnitude is None:
            return None
        v = (self.soft_mask(out[:1]) * ctx.magnitude[:1].to(out.dtype))[0].mean(0).detach().cpu().numpy()
        times, _ = output_frame_times(v.shape[-1], ctx.n_samples, ctx.spec)
        return times + ctx.offset_seconds, v

    def describe(self) -> str:
        named = self.name and self.cluster is not None and self.name != f"cluster {self.cluster}"
        return f"{self}" + (f" ({self.name})" if named else "")

    def __str__(self):
        if self.cluster is not None:
            return f"cluster={self.cluster}" + ("" if self.of == "energy" else f",of={self.of}")
        s = f"embedding{_fmt_span('t', self.t)}{_fmt_span('f', self.f)}"
        return s + ("" if self.of == "similarity" else f",of={self.of}")


# ---- encoders (features) -----------------------------------------------------------------
def _features_time_axis(spec, ndim: int):
    """Index of the time axis of a ``features`` output with ``ndim`` axes, or ``None`` for a clip-level vector.

    The spec's ``[output] layout`` (its ``t``) wins; next, the shape probe's time axis of the
    model's output; a 2-D output ``(batch, dim)`` has none.
    """
    lay = getattr(spec, "output_layout", None)
    if lay and len(lay) == ndim:
        return lay.index("t") if "t" in lay else None
    if ndim <= 2:
        return None
    cache = getattr(spec, "_axes_cache", None)
    key = ("__features_time_axis__", ndim)
    if cache is not None and key in cache:
        return cache[key]
    found = set()
    try:
        from .._shapes import time_probe

        found = {r.time_axis for k, r in (time_probe(spec).results or {}).items()
                 if k[0] == "" and k[2] == "out" and r.time_axis is not None and not r.batch_folded
                 and 0 < r.time_axis < ndim}
    except Exception:  # the probe is best effort; the error below names the fix
        found = set()
    if len(found) != 1:
        raise AnalysisError(f"cannot tell which axis of the model's {ndim}-D features output is time; declare it: "
                            '[output] layout = "btc" (batch, time, channels) in the spec file '
                            '(output_layout="btc" in Python)')
    ax = found.pop()
    if cache is not None:
        cache[key] = ax
    return ax


def _units(out, spec):
    """A features output as ``(B, units, T)`` (time last, other axes flattened in C order), or ``(B, units)``."""
    ta = _features_time_axis(spec, out.ndim)
    if ta is None:
        return out.reshape(out.shape[0], -1)
    x = out.movedim(ta, -1)
    return x.reshape(x.shape[0], -1, x.shape[-1])


@dataclass
class FeatureTarget(Target):
    """What an encoder emits (a ``features`` output): its vectors' L2 norm, or one unit, averaged over a span.

    Parameters
    ----------
    unit : int, optional
        0-based index of the feature channel (as ``probe capture`` stores it; axes other than
        batch and time are flattened in C order). ``None`` (the default): the L2 norm of the
        feature vector of each frame — how strongly the encoder responds, whatever it encodes.
    t : (float, float), optional
        Time span in seconds (frames on the output's own clock); the whole clip when omitted.

    Examples
    --------
    >>> str(FeatureTarget(t=(0.5, 1.0))), str(FeatureTarget(3))
    ('feature=norm,t=0.5:1', 'feature=3')
    """

    unit: int | None = None
    t: tuple | None = None

    def __post_init__(self):
        if self.unit is not None:
            self.unit = int(self.unit)
            if self.unit < 0:
                raise AnalysisError(f"feature units are numbered from 0, given feature={self.unit}")
        if self.t is not None:
            self.t = (float(self.t[0]), float(self.t[1]))
            if self.t[1] <= self.t[0]:
                raise AnalysisError(f"time span must have end > start, given t={self.t[0]:g}:{self.t[1]:g}")

    def _frames(self, out, ctx):
        """``(B, T)`` per-frame values, or ``(B,)`` for a clip-level output."""
        if ctx.spec.output_kind != "features":
            raise AnalysisError(f"a feature target needs a 'features' model; this one emits {ctx.spec.output_kind!r} "
                                "(use class=, source= or cluster=)")
        x = _units(out, ctx.spec)
        if x.ndim == 2 and self.t is not None:
            raise AnalysisError("the model's features have no time axis (one vector per clip): drop t=… from the target")
        if self.unit is not None and self.unit >= x.shape[1]:
            raise AnalysisError(f"feature unit {self.unit} out of range: the model emits {x.shape[1]} feature channels")
        return x[:, self.unit] if self.unit is not None else x.norm(dim=1)

    @classmethod
    def most_active(cls, out, spec) -> "FeatureTarget":
        """The unit that varies most over the clip (largest variance over time; for one vector per
        clip, the largest magnitude): the default for an encoder, whose vectors' norm is often
        constant (a final LayerNorm fixes it), so ``feature=norm`` would explain nothing."""
        x = _units(out.detach(), spec)[0].double()
        if x.ndim == 1:
            return cls(int(x.abs().argmax()))
        return cls(int(x.var(dim=-1).argmax()) if x.shape[-1] > 1 else int(x[:, 0].abs().argmax()))

    def __call__(self, out, ctx):
        v = self._frames(out, ctx)
        if v.ndim == 1:
            return v
        times, step = output_frame_times(v.shape[-1], ctx.n_samples, ctx.spec)
        sel, n = _span_selection(times, step, ctx, self.t)
        if sel.size == 0:
            return v.sum(-1) * 0.0
        return v[:, int(sel[0]):int(sel[-1]) + 1].sum(-1) / n

    def track(self, out, ctx):
        v = self._frames(out[:1], ctx)
        if v.ndim == 1:
            return None
        v = v[0].detach().cpu().numpy()
        times, _ = output_frame_times(v.shape[-1], ctx.n_samples, ctx.spec)
        return times + ctx.offset_seconds, v

    def __str__(self):
        return f"feature={'norm' if self.unit is None else self.unit}{_fmt_span('t', self.t)}"


# ---- anything else -------------------------------------------------------------------------
@dataclass
class CallableTarget(Target):
    """Wrap ``fn(out) -> (B,)`` or ``fn(out, ctx) -> (B,)``."""

    fn: Callable
    name: str | None = None

    def __post_init__(self):
        try:
            n = len([p for p in inspect.signature(self.fn).parameters.values()
                     if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
        except (TypeError, ValueError):
            n = 1
        self._two = n >= 2

    def __call__(self, out, ctx):
        v = self.fn(out, ctx) if self._two else self.fn(out)
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.ndim != 1:
            raise AnalysisError(f"a target callable must return one value per batch item (B,), returned shape {tuple(v.shape)}")
        return v

    def __str__(self):
        return self.name or getattr(self.fn, "__name__", "callable")


# ---- strings -------------------------------------------------------------------------------
_KEYS = ("class", "source", "cluster", "embedding", "feature", "t", "f", "reduce", "of", "score")


def _range(key, text):
    try:
        a, b = text.split(":")
        return float(a), float(b)
    except ValueError:
        raise AnalysisError(f"{key}= needs START:END in {'seconds' if key == 't' else 'Hz'}, given {key}={text!r}") from None


def parse_target(text: str) -> Target:
    """Parse ``"class=bell,t=3.0:3.5"``, ``"source=1,f=200:1000"``, ``"cluster=1"`` … into a :class:`Target`.

    Sources and clusters are numbered from 1 in strings (as printed); classes are names,
    or 0-based indices when the text is not a class name.

    Examples
    --------
    >>> parse_target("class=bell,t=3.0:3.5")
    ClassTarget(cls='bell', t=(3.0, 3.5), reduce='mean', score='prob')
    >>> str(parse_target("source=1,f=200:1000"))
    'source=1,f=200:1000'
    """
    if not isinstance(text, str) or not text.strip():
        raise AnalysisError(f"empty target string; write e.g. 'class=bell,t=3.0:3.5' or 'source=1'")
    kv: dict = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        k, _, v = part.partition("=")
        k = k.strip().lower()
        if k not in _KEYS:
            raise AnalysisError(f"unknown key {k!r} in target {text!r}; known keys: {', '.join(_KEYS)}")
        kv[k] = v.strip()
    t = _range("t", kv["t"]) if "t" in kv else None
    f = _range("f", kv["f"]) if "f" in kv else None
    kinds = [k for k in ("class", "source", "cluster", "embedding", "feature") if k in kv]
    if len(kinds) != 1:
        raise AnalysisError(f"a target names exactly one of class=, source=, cluster=, embedding, feature=; given {text!r}")
    kind = kinds[0]
    if kind == "class":
        if f is not None or "of" in kv:
            raise AnalysisError(f"f= and of= do not apply to a class target: {text!r}")
        return ClassTarget(kv["class"], t=t, reduce=kv.get("reduce", "mean"), score=kv.get("score", "prob"))
    if "reduce" in kv or "score" in kv:
        raise AnalysisError(f"reduce= and score= apply to class targets only: {text!r}")
    if kind == "feature":
        if f is not None or "of" in kv:
            raise AnalysisError(f"f= and of= do not apply to a feature target: {text!r}")
        v = kv["feature"].strip().lower()
        if v in ("", "norm"):
            return FeatureTarget(None, t=t)
        try:
            unit = int(v)
        except ValueError:
            raise AnalysisError(f"feature= needs 'norm' or a 0-based unit index, given {kv['feature']!r}") from None
        return FeatureTarget(unit, t=t)
    if kind == "source":
        try:
            k = int(kv["source"])
        except ValueError:
            raise AnalysisError(f"source= needs a 1-based integer, given {kv['source']!r}") from None
        if k < 1:
            raise AnalysisError(f"sources are numbered from 1 in target strings, given source={k}")
        return SourceTarget(k - 1, t=t, f=f, of=kv.get("of", "output"))
    if kind == "cluster":
        try:
            k = int(kv["cluster"])
        except ValueError:
            raise AnalysisError(f"cluster= needs a 1-based integer, given {kv['cluster']!r}") from None
        return EmbeddingTarget(cluster=k, of=kv.get("of"))
    return EmbeddingTarget(t=t, f=f, of=kv.get("of"))


def default_target(spec, example=None) -> Target:
    """The target used when none is given.

    With an :class:`~probe.audio.AudioExample` that has events: its first event's class
    over its time span (detection). Separation models: source 1. Detection without events and
    encoders: ``None`` here (:func:`~probe.attribution.default_target_for` looks at the clip: the
    class with the highest mean score, the feature unit that varies most).
    """
    kind = spec.output_kind
    if kind in ("masks", "sources"):
        return SourceTarget(0)
    if kind in ("frame_probs", "clip_scores") and example is not None and getattr(example, "events", None):
        ev = example.events[0]
        t = (float(ev["onset"]), float(ev["offset"])) if kind == "frame_probs" else None
        return ClassTarget(ev["label"], t=t)
    if kind == "tf_embeddings":
        return EmbeddingTarget(cluster=1)
    return None  # detectors without events, encoders: chosen on the clip (probe.attribution.default_target_for)


def as_target(obj, spec=None) -> Target:
    """Accept a :class:`Target`, a target string, or a callable."""
    if isinstance(obj, Target):
        return obj
    if isinstance(obj, str):
        return parse_target(obj)
    if callable(obj):
        return CallableTarget(obj)
    raise AnalysisError(f"a target is a Target, a string like 'class=bell,t=3:3.5', or a callable; given {type(obj).__name__}")
