"""Layer-wise linear probes over a corpus run, with the baselines that make a score mean something.

For each layer, a linear model reads the label from the layer's features:

* a clip label (``label="label"``, from the manifest): logistic regression on each clip's
  time-pooled features;
* a frame-level event class (``label="event"``): logistic regression on sampled frames,
  the class being the manifest event active at the frame (``"none"`` elsewhere);
* a continuous concept (``label="loudness"``, any concept of the run): ridge regression
  on sampled frames, scored by R².

Folds are grouped (scikit-learn ``GroupKFold``) by the manifest's ``group`` (else by clip),
so no clip is ever in both the training and the test fold. Every score sits beside

* the **control task** — the same probe on labels re-assigned at random per group for
  clip labels (Hewitt & Liang's control tasks, with the group as the "type"); for frame
  targets (events, concepts), the targets circularly shifted within each clip, which keeps
  their runs and rates and breaks only their alignment with the audio. High control
  scores mean the probe memorises rather than reads;
* the **random-init model** — the same layer of a randomly initialised copy;
* **chance** — a feature-free probe (most frequent class, or the mean) under the same
  folds. With few groups per fold, balanced accuracy's chance is 1 / (classes present in
  the test fold), not 1 / classes.

:func:`linear_cka` adds a probe-free similarity between a layer and the concept tracks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .concepts import is_binary
from .inputs import CorpusError

__all__ = ["ProbeOptions", "probe_layers", "linear_cka"]


@dataclass(frozen=True)
class ProbeOptions:
    """Defaults of :func:`probe_layers`.

    Attributes
    ----------
    label : str
        ``"label"`` (clip label), ``"event"`` (frame event class) or a concept name.
    layers : tuple of str
        Empty: every layer of the run.
    folds : int
        Grouped cross-validation folds (fewer when there are fewer groups).
    pooling : {"mean", "max"}
        Time pooling of clip-level features.
    C : float
        Inverse regularisation of the logistic probes.
    alpha : float
        Ridge penalty of the regression probes.
    control : bool
    control_repeats : int
        Control-task draws averaged (one draw on a small corpus is a noisy estimate of chance).
    random_init : bool
        Also probe the random-init model (needs a run with ``random_init``).
    cka : bool
        Also compute linear CKA between each layer and the continuous concept tracks.
    seed : int
    """

    label: str = "label"
    layers: tuple = ()
    folds: int = 5
    pooling: str = "mean"
    C: float = 1.0
    alpha: float = 1.0
    control: bool = True
    control_repeats: int = 5
    random_init: bool = True
    cka: bool = True
    seed: int = 0


def linear_cka(X, Y) -> float:
    """Linear centred kernel alignment between two feature sets on the same rows.

    Parameters
    ----------
    X : np.ndarray [shape=(n, p)]
    Y : np.ndarray [shape=(n, q)]

    Returns
    -------
    float
        In [0, 1]; 1 when one set is an orthogonal transform (times a scale) of the other.

    Examples
    --------
    >>> rng = np.random.default_rng(0); X = rng.standard_normal((200, 5))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    >>> round(linear_cka(X, 3 * X @ Q), 6), linear_cka(X, rng.standard_normal((200, 5))) < 0.2
    (1.0, True)
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.shape[0] != Y.shape[0] or X.shape[0] < 2:
        raise CorpusError(f"CKA needs the same rows (>= 2) in both sets, given {X.shape} and {Y.shape}")
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    xy = np.linalg.norm(Y.T @ X) ** 2
    xx = np.linalg.norm(X.T @ X)
    yy = np.linalg.norm(Y.T @ Y)
    return float(xy / (xx * yy)) if xx > 0 and yy > 0 else 0.0


def _groups(run, idx) -> np.ndarray:
    return np.array([run.clips[i].group or run.clips[i].clip_id for i in idx])


def _control_labels(y, groups, rng) -> np.ndarray:
    """Each group (the "type") gets one label drawn from the clips' label distribution, at random."""
    ug = list(dict.fromkeys(groups.tolist()))
    for _ in range(100):
        drawn = rng.choice(np.asarray(y, dtype=object), size=len(ug), replace=True)
        if len(set(drawn.tolist())) > 1 or len(set(np.asarray(y).tolist())) < 2:
            break
    new = dict(zip(ug, drawn))
    return np.array([new[g] for g in groups], dtype=object)


def _cv(X, y, groups, *, kind: str, options: ProbeOptions, dummy: bool = False) -> float:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(set(groups.tolist()))
    k = min(int(options.folds), n_groups)
    if k < 2:
        raise CorpusError(f"probing needs at least 2 groups of clips for cross-validation, found {n_groups}")
    if kind == "classify":
        model = make_pipeline(StandardScaler(), LogisticRegression(C=options.C, max_iter=2000))
        scoring = "balanced_accuracy"
    else:
        model = make_pipeline(StandardScaler(), Ridge(alpha=options.alpha))
        scoring = "r2"
    if dummy:
        from sklearn.dummy import DummyClassifier, DummyRegressor

        model = DummyClassifier(strategy="most_frequent") if kind == "classify" else DummyRegressor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a test fold holding one class of a grouped split
        try:
            scores = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(n_splits=k), scoring=scoring,
                                     error_score="raise")
        except ValueError as exc:  # e.g. a training fold with a single class
            raise CorpusError(f"the probe cannot be fitted: {str(exc).strip().splitlines()[-1]}") from None
    return float(np.mean(scores))


def _frame_event_labels(run, fr) -> np.ndarray:
    y = np.full(len(fr), "none", dtype=object)
    for name, track in sorted(fr.concepts.items()):
        if name.startswith("event:"):
            y[(track > 0.5) & (y == "none")] = name[len("event:"):]
    return y


def _dataset(run, layer, variant, options, rng):
    """(X, y, groups, kind, control_y) for one layer and variant."""
    label = options.label
    if label == "label":
        X, idx = run.pooled(layer, variant, options.pooling)
        y = np.array([run.clips[i].label for i in idx], dtype=object)
        keep = np.array([v is not None for v in y])
        X, y, idx = X[keep], y[keep], idx[keep]
        groups = _groups(run, idx)
        return X, y, groups, "classify", idx
    fr = run.frames(layer, variant)
    groups = _groups(run, fr.clip)
    if label == "event":
        return fr.acts, _frame_event_labels(run, fr), groups, "classify", fr.clip
    if label not in fr.concepts:
        known = ["label", "event"] + sorted(fr.concepts)
        raise CorpusError(f"unknown probe target {label!r}; known: {', '.join(known)}")
    y = fr.concepts[label].astype(np.float64)
    keep = np.isfinite(y)
    kind = "classify" if is_binary(label) else "regress"
    if kind == "classify":
        y = np.where(y > 0.5, "yes", "no").astype(object)
    return fr.acts[keep], y[keep], groups[keep], kind, fr.clip[keep]


def _shift_within_clips(y, clips, rng) -> np.ndarray:
    """Frame targets rolled by a random offset within each clip: same runs and rates, alignment broken."""
    out = np.array(y, copy=True)
    for g in dict.fromkeys(np.asarray(clips).tolist()):
        sel = np.flatnonzero(clips == g)
        if len(sel) > 1:
            out[sel] = np.roll(y[sel], int(rng.integers(1, len(sel))))
    return out


def probe_layers(run, *, options: ProbeOptions | None = None) -> dict:
    """Probe every layer of a run for one target, with control task, random-init and chance.

    Returns
    -------
    dict
        ``layers``: one row per layer (``score``, ``control``, ``random_init``, ``chance``,
        ``n``, ``metric``, ``cka``, ``cka_random``); ``label``, ``kind``, ``classes``.
    """
    from .run import CorpusRun

    run = run if isinstance(run, CorpusRun) else CorpusRun(run)
    options = options or ProbeOptions()
    layers = [run.check_layer(la) for la in options.layers] or list(run.layers)
    use_random = options.random_init and "random" in run.variants
    if options.random_init and not use_random:
        raise CorpusError("this run has no random-init variant (run with random_init on, or probe with random_init=False)")
    rows = []
    kind = None
    classes = None
    for layer in layers:
        rng = np.random.default_rng(options.seed)
        X, y, groups, kind, clips = _dataset(run, layer, "trained", options, rng)
        if len(y) < 4:
            raise CorpusError(f"only {len(y)} labelled examples for {options.label!r}; probing needs more")
        if kind == "classify":
            classes = sorted(set(y.tolist()))
            if len(classes) < 2:
                raise CorpusError(f"target {options.label!r} has a single class ({classes}); nothing to probe")
        # chance under these very folds: a probe that ignores the features (with few groups per fold,
        # balanced accuracy's chance is 1 / classes *in the fold*, not 1 / classes)
        chance = _cv(X, y, groups, kind=kind, options=options, dummy=True)
        row = {"layer": layer, "metric": "balanced_accuracy" if kind == "classify" else "r2", "n": int(len(y)),
               "dim": int(X.shape[1]), "chance": chance, "score": _cv(X, y, groups, kind=kind, options=options)}
        if options.control:
            draws = []
            for _ in range(max(1, int(options.control_repeats))):
                yc = _control_labels(y, groups, rng) if options.label == "label" else _shift_within_clips(y, clips, rng)
                draws.append(_cv(X, yc, groups, kind=kind, options=options))
            row["control"] = float(np.mean(draws))
        if use_random:
            Xr, yr, gr, _, _ = _dataset(run, layer, "random", options, rng)
            row["random_init"] = _cv(Xr, yr, gr, kind=kind, options=options)
        if options.cka:
            row["cka"] = _concept_cka(run, layer, "trained")
            if use_random:
                row["cka_random"] = _concept_cka(run, layer, "random")
        rows.append(row)
    return {"label": options.label, "kind": kind, "classes": classes, "layers": rows,
            "folds": int(options.folds), "grouped_by": "group" if any(c.group for c in run.clips) else "clip"}


def _concept_cka(run, layer, variant):
    fr = run.frames(layer, variant)
    names = [n for n in sorted(fr.concepts) if not is_binary(n) and np.isfinite(fr.concepts[n]).all()]
    if not names:
        return None
    C = np.stack([fr.concepts[n] for n in names], axis=1)
    sd = C.std(axis=0)
    C = (C - C.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return linear_cka(fr.acts, C)
