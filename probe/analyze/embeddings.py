"""Embedding clusters you can see and hear.

Deep-clustering style models map every time-frequency bin to a D-dimensional embedding;
any other layer with a time axis gives one embedding per frame. This module turns those
tensors into *points that remember where they came from* (clip, seconds, Hz, dB), draws
them in 2-D, clusters them in the original space and turns each cluster back into a
time-frequency mask and a waveform you can listen to.

The pipeline, one function (or estimator) per step::

    clip   = embeddings_from_model(spec, example)          # or embeddings_from_record / _from_layer
    points = select_points(clip, threshold_db=40, budget=4000)
    emap   = EmbeddingMap("umap").fit(points)              # emap.embedding_, emap.trustworthiness_
    km     = EmbeddingClusters(2).fit(points)              # km.labels_
    audio  = km.separate(clip)                              # (2, n): "listen to a cluster"
    oracle_agreement(km, points)                           # ARI, NMI, mask accuracy vs the IBM
    clusterability(points.X, points.energy_db)             # reference-free separability scores

Two grids meet here. The *embedding grid* is the tensor's own (frequency × time) lattice
(a deep-clustering output has the STFT's; a pooled CNN layer has a coarser one; a frame
embedding has a single "frequency"). The *STFT grid* is the model's :class:`~probe.grid.TFGrid`
applied to the audio: energies and oracle labels are measured there, pooled onto the
embedding grid, and masks are painted back onto it for resynthesis. Every STFT cell maps
to its nearest embedding cell in seconds and Hz, so the two stay aligned whatever the layer's
down-sampling.

UMAP and the cold start
-----------------------
umap-learn compiles its numba kernels on first use: 7–30 s in a fresh process depending
on machine load. Three things keep that off the interactive path:

* :meth:`EmbeddingMap.preview` (PCA, milliseconds) draws a first picture at once;
* :func:`enable_jit_cache` makes umap's kernels cache their machine code on disk (numba's
  ``cache=True``, in ``NUMBA_CACHE_DIR`` or ``~/.cache/probe/numba``), which cuts a later
  process's first fit to about the warm time;
* :func:`warm_up` compiles everything on a few hundred random points (optionally in a
  background thread while the preview is shown).

Independently, neighbours are computed here exactly (blocked matrix products) and handed
to umap as ``precomputed_knn``; umap's own path for fewer than 4096 points calls a Python
distance function for every pair (16 M calls, ~25 s for 4000 points), so this is what makes
the warm path take ~2 s instead.

Threads
-------
The estimators and scores here run their BLAS/OpenMP work on one thread by default
(``n_threads=1``, through threadpoolctl, restored on exit). The matrices are small, and on
a shared, loaded two-core machine spinning OpenBLAS/OpenMP threads made a 4000-point GMM fit
take 26 s instead of 0.7 s and k-means 6 s instead of 0.05 s. ``n_threads=None`` leaves the
pools as configured.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnalysisError, AudioError

__all__ = [
    "ClipEmbeddings", "EmbeddingPoints", "EmbeddingMap", "EmbeddingClusters",
    "clip_embeddings", "embeddings_from_model", "embeddings_from_record", "embeddings_from_layer",
    "select_points", "embedding_map", "trustworthiness", "cluster_embeddings", "separate_clusters",
    "mask_accuracy", "oracle_agreement", "silhouette", "clusterability", "colourings", "write_cluster_audio",
    "enable_jit_cache", "warm_up", "DEFAULT_THRESHOLD_DB", "DEFAULT_BUDGET",
]

#: bins further than this below their clip's loudest bin are "silent" (deep clustering's −40 dB)
DEFAULT_THRESHOLD_DB = 40.0
#: points drawn for a map: enough to show structure, few enough for a ~2 s UMAP on one core
DEFAULT_BUDGET = 4000
_TINY = 1e-20


def _threads(n: int | None):
    """Limit BLAS/OpenMP thread pools to ``n`` for the block (``None``: leave them alone).

    The matrices here are small (thousands × 20): extra threads only add synchronisation,
    and on a shared, loaded machine OpenBLAS/OpenMP threads that spin for a busy core made a
    GaussianMixture fit 40× and a k-means fit 100× slower than one thread (measured).
    """
    from contextlib import nullcontext

    if n is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(n))


# =====================================================================================
# Containers
# =====================================================================================
@dataclass
class ClipEmbeddings:
    """The embeddings of one clip on their own grid, with the clip's STFT and ground truth.

    Built by :func:`clip_embeddings` (and the ``embeddings_from_*`` helpers); not usually
    made by hand.

    Attributes
    ----------
    embeddings : np.ndarray [shape=(D, F, T), dtype=float32]
        ``F = 1`` for per-frame embeddings (``kind == "frame"``).
    times : np.ndarray [shape=(T,)]
        Seconds of each embedding frame.
    freqs : np.ndarray [shape=(F,)]
        Hz of each embedding frequency row (``nan`` for frame embeddings).
    power : np.ndarray [shape=(F, T)]
        Mixture power pooled onto the embedding grid (mean over the STFT cells of each cell).
    stft : np.ndarray [shape=(n_freqs, n_frames), dtype=complex64]
        Mixture STFT on ``grid``: what masks are applied to.
    f_map, t_map : np.ndarray [shape=(n_freqs,)], [shape=(n_frames,)]
        Index of the embedding row/column nearest each STFT bin/frame.
    grid : TFGrid
    y : np.ndarray [shape=(n,)]
        The mixture.
    dominant : np.ndarray [shape=(F, T)] or None
        Oracle dominant source on the embedding grid (largest pooled source power).
    dominant_stft : np.ndarray [shape=(n_freqs, n_frames)] or None
        Oracle dominant source per STFT bin: the ideal binary mask's labels.
    classes : np.ndarray [shape=(F, T)] or None
        Index into ``class_names`` of the event whose box holds each cell, ``-1`` for none.
    """

    embeddings: np.ndarray
    times: np.ndarray
    freqs: np.ndarray
    power: np.ndarray
    stft: np.ndarray
    f_map: np.ndarray
    t_map: np.ndarray
    grid: object
    y: np.ndarray
    kind: str = "tf"
    dominant: np.ndarray | None = None
    dominant_stft: np.ndarray | None = None
    source_names: list | None = None
    classes: np.ndarray | None = None
    class_names: list | None = None
    name: str = "clip"
    audio_hash: str = ""
    model: str | None = None
    layer: str | None = None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def shape(self) -> tuple:
        """``(F, T)`` of the embedding grid."""
        return tuple(self.embeddings.shape[1:])

    @property
    def sr(self) -> int:
        return int(self.grid.sample_rate)

    def flat(self) -> np.ndarray:
        """All embeddings as rows, ``(F * T, D)``, row-major over (F, T)."""
        return self.embeddings.reshape(self.dim, -1).T

    def energy_db(self) -> np.ndarray:
        """``10 log10`` of :attr:`power`, shape ``(F, T)``."""
        return 10.0 * np.log10(self.power + _TINY)

    def to_stft_grid(self, values: np.ndarray) -> np.ndarray:
        """Paint ``(..., F, T)`` values on the embedding grid onto the STFT grid ``(..., n_freqs, n_frames)``."""
        values = np.asarray(values)
        return values[..., self.f_map[:, None], self.t_map[None, :]]


@dataclass
class EmbeddingPoints:
    """A selection of embedding vectors, each with its origin.

    Attributes
    ----------
    X : np.ndarray [shape=(n, D), dtype=float32]
    clip : np.ndarray [shape=(n,)]
        Index into :attr:`clips`.
    frame, row : np.ndarray [shape=(n,)]
        Time and frequency index on the clip's embedding grid.
    time : np.ndarray [shape=(n,)]
        Seconds.
    freq : np.ndarray [shape=(n,)]
        Hz (``nan`` for frame embeddings).
    energy_db : np.ndarray [shape=(n,)]
        Mixture power at the point, dB (absolute, ``10 log10 |X|^2``).
    rel_db : np.ndarray [shape=(n,)]
        The same relative to the clip's loudest cell (≤ 0).
    weight : np.ndarray [shape=(n,)]
        Inverse inclusion probability of the stratified draw: weighted statistics over the
        points estimate statistics over all non-silent cells.
    source : np.ndarray [shape=(n,)] or None
        Oracle dominant source index.
    label : np.ndarray [shape=(n,)] or None
        Event class index, ``-1`` for none.
    clips : list of ClipEmbeddings
    meta : dict
        model, layer, audio hashes, selection parameters (part of the projection cache key).
    """

    X: np.ndarray
    clip: np.ndarray
    frame: np.ndarray
    row: np.ndarray
    time: np.ndarray
    freq: np.ndarray
    energy_db: np.ndarray
    rel_db: np.ndarray
    weight: np.ndarray
    source: np.ndarray | None = None
    label: np.ndarray | None = None
    source_names: list | None = None
    class_names: list | None = None
    kind: str = "tf"
    clips: list = field(default_factory=list, repr=False)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def digest(self) -> str:
        """Content hash of the vectors (and their count and dimension)."""
        h = hashlib.sha1(np.ascontiguousarray(self.X, dtype=np.float32).tobytes())
        h.update(str(self.X.shape).encode())
        return h.hexdigest()[:16]


# =====================================================================================
# Building clips
# =====================================================================================
def _as_audio(audio, sr: int):
    """``audio`` (array or AudioExample) → (y, sources, source_names, events, name)."""
    from ..audio import AudioExample, validate_audio

    if isinstance(audio, AudioExample):
        if int(audio.sr) != int(sr):
            raise AudioError(f"audio is at {audio.sr} Hz but the grid is at {sr} Hz; resample it (load_audio(..., sr={sr}))")
        y = validate_audio(np.asarray(audio.y, np.float32), sr=sr)
        return y, audio.sources, audio.source_names, audio.events, audio.name
    return validate_audio(np.asarray(audio, np.float32) if not hasattr(audio, "detach") else audio, sr=sr), None, None, None, "clip"


def _nearest(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of an increasing array for every query."""
    v = np.asarray(sorted_values, float)
    q = np.asarray(queries, float)
    if len(v) == 1:
        return np.zeros(len(q), dtype=np.int64)
    i = np.clip(np.searchsorted(v, q), 1, len(v) - 1)
    left_closer = np.abs(q - v[i - 1]) <= np.abs(v[i] - q)
    return (i - left_closer).astype(np.int64)


def _pool(P: np.ndarray, f_map: np.ndarray, t_map: np.ndarray, F: int, T: int, f_near, t_near) -> np.ndarray:
    """Mean of STFT-grid values ``(..., n_freqs, n_frames)`` over each embedding cell ``(..., F, T)``.

    Embedding cells that no STFT cell maps to (a grid finer than the STFT) take their nearest STFT cell.
    """
    lead = P.shape[:-2]
    flat_idx = (f_map[:, None] * T + t_map[None, :]).ravel()
    counts = np.bincount(flat_idx, minlength=F * T).astype(float)
    Pf = P.reshape(-1, P.shape[-2] * P.shape[-1])
    out = np.stack([np.bincount(flat_idx, weights=row, minlength=F * T) for row in Pf]).reshape(*lead, F, T)
    out = out / np.maximum(counts, 1).reshape(F, T)
    empty = counts.reshape(F, T) == 0
    if empty.any():
        fe, te = np.nonzero(empty)
        out[..., fe, te] = P[..., f_near[fe], t_near[te]]
    return out


def _event_classes(events, times, freqs):
    """Event label per embedding cell from T-F boxes; ``(classes (F, T), names)`` or ``(None, None)``."""
    if not events:
        return None, None
    names = sorted({str(e["label"]) for e in events})
    F, T = len(freqs), len(times)
    out = np.full((F, T), -1, dtype=np.int64)
    for e in events:
        tin = (times >= float(e["onset"])) & (times < float(e["offset"]))
        if np.all(np.isnan(freqs)):
            fin = np.ones(F, bool)
        else:
            lo = float(e.get("fmin", 0.0) or 0.0)
            hi = float(e["fmax"]) if e.get("fmax") is not None else np.inf
            fin = (freqs >= lo) & (freqs <= hi)
        cell = fin[:, None] & tin[None, :] & (out < 0)  # first listed event wins where boxes overlap
        out[cell] = names.index(str(e["label"]))
    return out, names


def clip_embeddings(E, audio, grid, *, times=None, freqs=None, sources=None, source_names=None, events=None,
                    name: str | None = None, model: str | None = None, layer: str | None = None) -> ClipEmbeddings:
    """Attach a clip's STFT, energies and ground truth to an embedding tensor.

    Parameters
    ----------
    E : array [shape=(D, F, T) or (D, T)]
        Per-T-F embeddings (``(D, F, T)``, e.g. one item of a deep-clustering
        ``tf_embeddings`` output) or per-frame embeddings (``(D, T)``).
    audio : np.ndarray [shape=(n,)] or AudioExample
        The clip the embeddings were computed from; an AudioExample brings its
        ``sources`` (oracle colouring and metrics) and ``events`` (class colouring).
    grid : TFGrid
        STFT geometry of the model (``spec.grid``); energies, oracle labels and masks live on it.
    times : array [shape=(T,)], optional
        Seconds of each embedding frame; default ``grid.frame_times(T)`` when ``T`` equals the
        STFT's frame count, else ``T`` frames spread evenly over the clip.
    freqs : array [shape=(F,)], optional
        Hz of each embedding row; default the grid's bin frequencies when ``F == n_freqs``
        (mel centres when ``F == n_mels``), else ``F`` equal bands over 0..Nyquist.
    sources : array [shape=(S, n)], optional
        Ground-truth stems (override the AudioExample's).
    events : list of dict, optional
        ``{"label", "onset", "offset", "fmin", "fmax"}`` boxes for the class colouring.

    Returns
    -------
    ClipEmbeddings

    Examples
    --------
    >>> from probe.grid import TFGrid
    >>> g = TFGrid(8000, n_fft=256, hop_length=64)
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> E = np.random.default_rng(0).standard_normal((20, 129, 126)).astype(np.float32)
    >>> c = clip_embeddings(E, y, g)
    >>> c.shape, c.kind, round(float(c.freqs[-1]))
    ((129, 126), 'tf', 4000)
    """
    import torch

    E = np.asarray(E.detach().cpu().numpy() if hasattr(E, "detach") else E, dtype=np.float32)
    if E.ndim == 2:
        E, kind = E[:, None, :], "frame"
    elif E.ndim == 3:
        kind = "tf"
    else:
        raise AnalysisError(f"embeddings must be (D, F, T) or (D, T), given E.shape={E.shape}")
    if not np.isfinite(E).all():
        raise AnalysisError(f"embeddings hold {int((~np.isfinite(E)).sum())} non-finite values")
    D, F, T = E.shape
    y, ex_sources, ex_names, ex_events, ex_name = _as_audio(audio, grid.sample_rate)
    sources = ex_sources if sources is None else sources
    source_names = source_names or ex_names
    events = ex_events if events is None else events

    X = grid.stft(torch.as_tensor(y)).numpy().astype(np.complex64)
    n_freqs, n_frames = X.shape
    stft_times = grid.frame_times(n_frames)
    if times is None:
        times = stft_times if T == n_frames else (np.arange(T) + 0.5) * (len(y) / grid.sample_rate / T)
    times = np.asarray(times, float)
    if times.shape != (T,):
        raise AnalysisError(f"times must have one entry per frame (T={T}), given times.shape={times.shape}")
    bin_hz = grid.bin_frequencies()
    if kind == "frame":
        freqs = np.array([np.nan])
    elif freqs is None:
        if F == n_freqs:
            freqs = bin_hz
        elif grid.n_mels and F == grid.n_mels:
            freqs = grid.mel_frequencies()
        else:
            freqs = (np.arange(F) + 0.5) * grid.nyquist / F
    freqs = np.asarray(freqs, float)
    if freqs.shape != (F,):
        raise AnalysisError(f"freqs must have one entry per frequency row (F={F}), given freqs.shape={freqs.shape}")

    t_map = _nearest(times, stft_times)
    t_near = _nearest(stft_times, times)
    if kind == "frame":
        f_map = np.zeros(n_freqs, np.int64)
        f_near = np.zeros(1, np.int64)
    else:
        f_map = _nearest(freqs, bin_hz)
        f_near = _nearest(bin_hz, freqs)

    def pool(P):  # (..., n_freqs, n_frames) on the STFT grid → (..., F, T); a frame's power sums its bins
        if kind == "frame":
            return _pool(P.sum(-2, keepdims=True), np.zeros(1, np.int64), t_map, 1, T, f_near, t_near)
        return _pool(P, f_map, t_map, F, T, f_near, t_near)

    power = pool(np.abs(X).astype(np.float64) ** 2)

    dominant = dominant_stft = None
    if sources is not None:
        S = np.asarray(sources, np.float32)
        if S.ndim != 2 or S.shape[1] != len(y):
            raise AnalysisError(f"sources must be (S, n) with n={len(y)}, given sources.shape={S.shape}")
        Sp = np.abs(grid.stft(torch.as_tensor(S)).numpy()).astype(np.float64) ** 2
        dominant_stft = Sp.argmax(0)
        dominant = pool(Sp).argmax(0)
        source_names = list(source_names) if source_names else [f"source {i}" for i in range(S.shape[0])]

    classes, class_names = _event_classes(events, times, freqs)
    from ..audio import audio_hash

    return ClipEmbeddings(embeddings=E, times=times, freqs=freqs, power=power, stft=X, f_map=f_map, t_map=t_map,
                          grid=grid, y=y, kind=kind, dominant=dominant, dominant_stft=dominant_stft,
                          source_names=source_names, classes=classes, class_names=class_names,
                          name=name or ex_name, audio_hash=audio_hash(y, grid.sample_rate), model=model, layer=layer)


def embeddings_from_model(spec, audio, *, kind: str = "tf_embeddings", batch_index: int = 0, **kwargs) -> ClipEmbeddings:
    """Run a model and take its canonical ``tf_embeddings`` output ``(batch, D, F, T)``.

    Parameters
    ----------
    spec : ModelSpec
        A model whose output (or one entry of its dict output) is ``tf_embeddings``.
    audio : np.ndarray [shape=(n,)] or AudioExample
        At ``spec.sample_rate``.
    kind : str
        Output kind to take (``tf_embeddings``; ``features`` with a ``bdft`` layout also works).
    **kwargs
        Passed to :func:`clip_embeddings` (``sources``, ``events``, ``freqs``, ``name``).

    Examples
    --------
    >>> import torch
    >>> from probe.adapter import ModelSpec
    >>> from probe.grid import TFGrid
    >>> class Net(torch.nn.Module):  # (B, F, T) log-magnitude → (B, 3, F, T) unit vectors
    ...     def forward(self, x):
    ...         return torch.nn.functional.normalize(torch.stack([x, -x, torch.ones_like(x)], 1), dim=1)
    >>> spec = ModelSpec(Net(), input_kind="logmag", grid=TFGrid(8000, 256, 64), output_kind="tf_embeddings")
    >>> embeddings_from_model(spec, np.zeros(8000, np.float32) + 0.1).embeddings.shape
    (3, 129, 126)
    """
    import torch

    y = audio.y if hasattr(audio, "y") else audio
    with torch.no_grad():
        out = spec.forward(np.asarray(y, np.float32), kind=kind)
    out = out.detach().float().cpu().numpy()
    if out.ndim != 4:
        raise AnalysisError(f"{spec.name} output {kind!r} has shape {out.shape}; tf_embeddings are (batch, D, F, T) "
                            "(declare output_layout if the model emits another order)")
    return clip_embeddings(out[batch_index], audio, spec.grid, model=spec.name, layer=kwargs.pop("layer", kind), **kwargs)


def _record_freqs(spec_or_grid, n: int):
    """Hz of a frequency axis of length ``n`` in a layer of a model on this grid."""
    grid = getattr(spec_or_grid, "grid", spec_or_grid)
    input_kind = getattr(spec_or_grid, "input_kind", None)
    base = grid.mel_frequencies() if (input_kind == "logmel" or (input_kind is None and grid.n_mels == n)) and grid.n_mels \
        else grid.bin_frequencies()
    if len(base) == n:
        return base
    edges = np.linspace(0, len(base), n + 1).round().astype(int)  # pooled axis: mean centre of each group
    return np.array([base[a:max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:])])


def embeddings_from_record(record, audio, spec_or_grid, *, batch_index: int = 0, freq_axis: int | None = None,
                           axes=None, **kwargs) -> ClipEmbeddings:
    """Per-T-F or per-frame embeddings from a captured tensor (:class:`probe.hooks.Record`).

    The record's ``axes`` say which axis is time and which (if any) frequency
    (``"freq"``/``"mel"``); the remaining non-batch axes are flattened into the embedding
    dimension. With a frequency axis the result is per-T-F (``(D, F, T)``), without one
    per-frame (``(D, T)``).

    Parameters
    ----------
    record : Record
        Needs ``tensor``, ``axes`` (or pass ``axes=``) and ideally ``seconds_per_step``
        (without it the frames are spread evenly over the clip).
    audio : np.ndarray [shape=(n,)] or AudioExample
        The clip the record was captured on.
    spec_or_grid : ModelSpec or TFGrid
        Gives the STFT grid and, for a spec, whether a frequency axis is linear or mel.
    freq_axis : int, optional
        Treat this axis as frequency (e.g. a pooled CNN axis the shape probe could not name).

    Examples
    --------
    >>> import torch
    >>> from probe.adapter import ModelSpec
    >>> from probe.hooks import capture
    >>> from probe.grid import TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 6, 64, stride=32), torch.nn.Tanh())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000, 256, 64), input_layout="bcn")
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> with capture(spec, layers="1") as cache:
    ...     _ = spec.forward(y)
    >>> c = embeddings_from_record(cache["1"], y, spec)
    >>> c.kind, c.embeddings.shape, round(float(c.times[1] - c.times[0]), 4)
    ('frame', (6, 1, 249), 0.004)
    """
    t = record.load() if hasattr(record, "load") else record.tensor
    x = np.asarray(t.detach().float().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float32)
    axes = list(axes or getattr(record, "axes", None) or [])
    name = getattr(record, "name", None)
    if len(axes) != x.ndim:
        raise AnalysisError(f"record {name!r} has shape {x.shape} but axes {axes or None}; capture with a ModelSpec "
                            "(axes are inferred then) or pass axes=[...] naming batch/time/freq")
    if "time" not in axes:
        raise AnalysisError(f"record {name!r} has no time axis (axes {axes}): clip-level outputs cannot be mapped to "
                            "seconds; pick a layer with a time axis")
    tax = axes.index("time")
    fax = freq_axis % x.ndim if freq_axis is not None else next((i for i, a in enumerate(axes) if a in ("freq", "mel")), None)
    bax = next((i for i, a in enumerate(axes) if a == "batch"), None)
    if bax is not None:
        if not 0 <= batch_index < x.shape[bax]:
            raise AnalysisError(f"batch_index={batch_index} out of range for batch size {x.shape[bax]}")
        x = np.take(x, batch_index, axis=bax)
        keep = [i for i in range(len(axes)) if i != bax]
        tax, fax = keep.index(tax), (keep.index(fax) if fax is not None else None)
    rest = [i for i in range(x.ndim) if i not in (tax, fax)]
    if fax is None:
        E = x.transpose(rest + [tax]).reshape(-1, x.shape[tax])
    else:
        E = x.transpose(rest + [fax, tax]).reshape(-1, x.shape[fax], x.shape[tax])
    sps = getattr(record, "seconds_per_step", None)
    y_len = len(audio.y if hasattr(audio, "y") else audio)
    grid = getattr(spec_or_grid, "grid", spec_or_grid)
    times = np.arange(E.shape[-1]) * sps if sps else None
    if times is None and E.shape[-1] != grid.n_frames(y_len):
        times = (np.arange(E.shape[-1]) + 0.5) * (y_len / grid.sample_rate / E.shape[-1])
    freqs = _record_freqs(spec_or_grid, E.shape[1]) if E.ndim == 3 else None
    return clip_embeddings(E, audio, grid, times=times, freqs=freqs, layer=kwargs.pop("layer", name),
                           model=kwargs.pop("model", getattr(spec_or_grid, "name", None)), **kwargs)


def output_record(spec, audio):
    """The model's canonical output on ``audio`` as a :class:`probe.hooks.Record`, axes inferred.

    The time axis (if any) and seconds per step are found as for captured layers: by
    running the model on two lengths of quiet noise and seeing which axis grows.

    Examples
    --------
    >>> import torch
    >>> from probe.adapter import ModelSpec
    >>> from probe.grid import TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 3, 64, stride=32), torch.nn.Sigmoid())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000, 256, 64), input_layout="bcn",
    ...                  output_kind="frame_probs", classes=["a", "b", "c"], output_layout="bct")
    >>> r = output_record(spec, np.zeros(8000, np.float32))
    >>> r.axes, r.seconds_per_step
    (['batch', 'channel', 'time'], 0.004)
    """
    import torch

    from ..hooks import Record

    y = np.asarray(audio.y if hasattr(audio, "y") else audio, np.float32)
    g = spec.grid
    base = max(int(0.6 * spec.sample_rate), 8 * g.n_fft)
    n_a, n_b = base + 8 * g.hop_length * 4, base
    rng = np.random.default_rng(0)
    with torch.no_grad():
        out = spec.forward(y)
        sa = tuple(spec.forward(rng.standard_normal(n_a).astype(np.float32) * 0.01).shape)
        sb = tuple(spec.forward(rng.standard_normal(n_b).astype(np.float32) * 0.01).shape)
    if not isinstance(out, torch.Tensor):
        raise AnalysisError(f"{spec.name}'s {spec.output_kind!r} output is a {type(out).__name__}, not a tensor")
    axes, tax, sps = ["batch"] + [f"dim{i}" for i in range(1, len(sa))], None, None
    changed = [i for i, (a, b) in enumerate(zip(sa, sb)) if a != b] if len(sa) == len(sb) else []
    if changed:  # the axis that grows with the input is time; its growth rate gives seconds per step
        tax = max(changed, key=lambda i: sa[i] - sb[i])
        ratio = (spec.input_steps(n_a) - spec.input_steps(n_b)) / max(sa[tax] - sb[tax], 1)
        ratio = round(ratio) if ratio >= 1 and abs(round(ratio) - ratio) < 0.05 * ratio else ratio
        sps = float(ratio * spec.input_step_seconds)
        axes[tax] = "time"
    from ..adapter import OUTPUT_LAYOUTS

    canon = OUTPUT_LAYOUTS.get(spec.output_kind)
    if canon and len(canon) == len(sa) and (tax is None or canon[tax] == "t"):  # canonical layouts name every axis
        letters = {"b": "batch", "t": "time", "f": "mel" if spec.input_kind == "logmel" else "freq"}
        axes = [letters.get(c, "dim") for c in canon]
        if tax is None and "time" in axes:
            axes[axes.index("time")] = "dim"
    extra = [i for i, a in enumerate(axes) if a.startswith("dim")]
    for k, i in enumerate(extra):
        axes[i] = "channel" if k == 0 else f"dim{k}"
    return Record(name="output", module="", module_type=type(spec.model).__name__, call=0, tensor=out.detach(),
                  axes=axes, time_axis=tax, seconds_per_step=sps)


def embeddings_from_layer(spec, audio, layer: str | None = None, **kwargs) -> ClipEmbeddings:
    """Embeddings of ``audio`` at ``layer`` of ``spec``: the model's ``tf_embeddings`` output when
    ``layer`` is ``None`` / ``"tf_embeddings"`` / ``"output"``, else a captured module output.

    Examples
    --------
    >>> import torch
    >>> from probe.adapter import ModelSpec
    >>> from probe.grid import TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 6, 64, stride=32), torch.nn.Tanh())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000, 256, 64), input_layout="bcn")
    >>> embeddings_from_layer(spec, np.zeros(8000, np.float32) + 0.1, "0").embeddings.shape
    (6, 1, 249)
    """
    if layer in (None, "", "tf_embeddings", "output"):
        if spec.output_kind == "tf_embeddings" or layer == "tf_embeddings":
            return embeddings_from_model(spec, audio, **kwargs)
        # any other output kind: the model's own output, with its time axis found like a layer's
        return embeddings_from_record(output_record(spec, audio), audio, spec, layer="output", **kwargs)
    from ..hooks import capture_audio

    y = audio.y if hasattr(audio, "y") else audio
    cache = capture_audio(spec, np.asarray(y, np.float32), [layer])
    return embeddings_from_record(cache[layer], audio, spec, layer=layer, **kwargs)


# =====================================================================================
# Point selection
# =====================================================================================
def _water_fill(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` as evenly as possible over groups of the given sizes (none gets more than it has)."""
    sizes = np.asarray(sizes, np.int64)
    take = np.zeros_like(sizes)
    if budget >= sizes.sum():
        return sizes.copy()
    left = int(budget)
    open_ = sizes > 0
    while left > 0 and open_.any():
        share = max(1, left // int(open_.sum()))
        for i in np.flatnonzero(open_):
            add = min(share, sizes[i] - take[i], left)
            take[i] += add
            left -= add
            if take[i] >= sizes[i]:
                open_[i] = False
            if left == 0:
                break
    return take


def select_points(clips, *, threshold_db: float | None = DEFAULT_THRESHOLD_DB, budget: int | None = DEFAULT_BUDGET,
                  n_strata: int = 8, seed: int = 0) -> EmbeddingPoints:
    """Drop silent cells, then draw an energy-stratified sample of at most ``budget`` points.

    Parameters
    ----------
    clips : ClipEmbeddings or list of ClipEmbeddings
        One clip or several pooled (the budget is shared evenly between clips).
    threshold_db : float or None
        Keep cells within this many dB of their clip's loudest cell (deep clustering's
        40 dB: quieter cells carry no reliable source identity). ``None`` keeps all.
    budget : int or None
        Most points to keep (``None``: all non-silent cells).
    n_strata : int
        Equal-width dB bands between the threshold and the peak; the budget is split evenly
        between bands, so the few loud cells (which decide separation quality) are not
        drowned by the many quiet ones. :attr:`EmbeddingPoints.weight` undoes the tilt.
    seed : int
        Seed of the draw (same inputs, same points).

    Returns
    -------
    EmbeddingPoints

    Examples
    --------
    >>> from probe.grid import TFGrid
    >>> g = TFGrid(8000, n_fft=256, hop_length=64)
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> c = clip_embeddings(np.ones((4, 129, 126), np.float32), y, g)
    >>> p = select_points(c, budget=500)
    >>> len(p), bool(p.rel_db.min() >= -40)
    (500, True)
    """
    clips = [clips] if isinstance(clips, ClipEmbeddings) else list(clips)
    if not clips:
        raise AnalysisError("select_points needs at least one clip")
    kinds = {c.kind for c in clips}
    dims = {c.dim for c in clips}
    if len(kinds) > 1 or len(dims) > 1:
        raise AnalysisError(f"pooled clips must share kind and dimension, given kinds {sorted(kinds)}, dims {sorted(dims)}")
    if budget is not None and int(budget) < 1:
        raise AnalysisError(f"budget must be positive or None, given budget={budget}")
    if threshold_db is not None and threshold_db <= 0:
        raise AnalysisError(f"threshold_db is a distance below the peak and must be > 0, given threshold_db={threshold_db}")
    rng = np.random.default_rng(seed)
    cands = []
    for ci, c in enumerate(clips):
        db = c.energy_db().ravel()
        rel = db - db.max()
        keep = np.flatnonzero(rel >= -threshold_db) if threshold_db is not None else np.arange(rel.size)
        lo = -threshold_db if threshold_db is not None else float(rel.min())
        edges = np.linspace(lo, 0.0, int(n_strata) + 1)
        band = np.clip(np.searchsorted(edges, rel[keep], side="right") - 1, 0, int(n_strata) - 1)
        cands.append((ci, keep, band, rel, db))
    per_clip = _water_fill(np.array([len(k) for _, k, _, _, _ in cands]),
                           sum(len(k) for _, k, _, _, _ in cands) if budget is None else int(budget))
    parts = []
    for (ci, keep, band, rel, db), want in zip(cands, per_clip):
        groups = [keep[band == b] for b in range(int(n_strata))]
        take = _water_fill(np.array([len(g) for g in groups]), int(want))
        for g, k in zip(groups, take):
            if k == 0:
                continue
            chosen = np.sort(rng.choice(g, size=int(k), replace=False)) if k < len(g) else g
            parts.append((ci, chosen, np.full(len(chosen), len(g) / k), rel, db))
    if not parts:
        raise AnalysisError("no cell passed the silence threshold (is the audio all zeros?)")
    clip_idx = np.concatenate([np.full(len(ch), ci) for ci, ch, _, _, _ in parts])
    flat = np.concatenate([ch for _, ch, _, _, _ in parts])
    weight = np.concatenate([w for _, _, w, _, _ in parts])
    X, frame, row, tsec, fhz, edb, rdb, src, lab = [], [], [], [], [], [], [], [], []
    for ci, ch, _, rel, db in parts:
        c = clips[ci]
        F, T = c.shape
        r, t = np.divmod(ch, T)
        X.append(c.embeddings[:, r, t].T)
        row.append(r)
        frame.append(t)
        tsec.append(c.times[t])
        fhz.append(c.freqs[r])
        edb.append(db[ch])
        rdb.append(rel[ch])
        src.append(c.dominant[r, t] if c.dominant is not None else np.full(len(ch), -1))
        lab.append(c.classes[r, t] if c.classes is not None else np.full(len(ch), -1))
    has_src = any(c.dominant is not None for c in clips)
    has_lab = any(c.classes is not None for c in clips)
    class_names = clips[0].class_names
    if has_lab and len(clips) > 1:  # pooled clips: re-index labels into one shared name list
        class_names = sorted({n for c in clips for n in (c.class_names or [])})
        lab = [np.array([class_names.index(clips[ci].class_names[v]) if v >= 0 else -1 for v in l], np.int64)
               for (ci, _, _, _, _), l in zip(parts, lab)]
    meta = {"model": clips[0].model, "layer": clips[0].layer, "audio": [c.audio_hash for c in clips],
            "threshold_db": threshold_db, "budget": budget, "n_strata": int(n_strata), "seed": int(seed),
            "kind": clips[0].kind}
    return EmbeddingPoints(X=np.ascontiguousarray(np.concatenate(X), dtype=np.float32), clip=clip_idx,
                           frame=np.concatenate(frame), row=np.concatenate(row), time=np.concatenate(tsec),
                           freq=np.concatenate(fhz), energy_db=np.concatenate(edb), rel_db=np.concatenate(rdb),
                           weight=weight, source=np.concatenate(src).astype(np.int64) if has_src else None,
                           label=np.concatenate(lab).astype(np.int64) if has_lab else None,
                           source_names=clips[0].source_names, class_names=class_names, kind=clips[0].kind,
                           clips=clips, meta=meta)


def _X(points_or_X) -> np.ndarray:
    X = points_or_X.X if isinstance(points_or_X, EmbeddingPoints) else points_or_X
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise AnalysisError(f"embedding points must be (n, D), given shape {X.shape}")
    if not np.isfinite(X).all():
        raise AnalysisError(f"embedding points hold {int((~np.isfinite(X)).sum())} non-finite values")
    return X


# =====================================================================================
# Projection
# =====================================================================================
def _is_unit_norm(X: np.ndarray, tol: float = 1e-2) -> bool:
    n = np.linalg.norm(X, axis=1)
    return bool(len(n) and np.all(np.abs(n - 1.0) < tol))


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _pairwise_block(A: np.ndarray, B: np.ndarray, metric: str, *, b_unit: np.ndarray | None = None,
                    b_sq: np.ndarray | None = None) -> np.ndarray:
    """Distances ``(len(A), len(B))`` in the dtype of the inputs, computed in place (one temporary).

    ``b_unit`` (rows of B normalised) / ``b_sq`` (squared row norms of B) may be passed
    precomputed when B is reused across blocks.
    """
    if metric == "cosine":
        bn = _unit_rows(B) if b_unit is None else b_unit
        D = _unit_rows(A) @ bn.T
        np.subtract(1.0, D, out=D)
        return np.maximum(D, 0.0, out=D)
    if metric == "euclidean":
        D = A @ B.T
        D *= -2.0
        D += (A * A).sum(1)[:, None]
        D += ((B * B).sum(1) if b_sq is None else b_sq)[None, :]
        np.maximum(D, 0.0, out=D)
        return np.sqrt(D, out=D)
    raise AnalysisError(f"unknown metric {metric!r}; known: cosine, euclidean")


def _block_args(X: np.ndarray, metric: str) -> dict:
    return {"b_unit": _unit_rows(X)} if metric == "cosine" else {"b_sq": (X * X).sum(1)}


def _exact_knn(X: np.ndarray, k: int, metric: str, block: int = 1024):
    """Exact k nearest neighbours (self included first), ``(indices (n, k) int64, distances (n, k) float32)``."""
    X = X.astype(np.float32)
    n = len(X)
    k = min(k, n)
    idx = np.empty((n, k), np.int64)
    dst = np.empty((n, k), np.float32)
    pre = _block_args(X, metric)
    for s in range(0, n, block):
        Dm = _pairwise_block(X[s:s + block], X, metric, **pre)
        rows = np.arange(Dm.shape[0])
        Dm[rows, s + rows] = -1.0  # self first, whatever the rounding
        part = np.argpartition(Dm, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (Dm.shape[0], 1))
        d = np.take_along_axis(Dm, part, 1)
        order = np.argsort(d, axis=1, kind="stable")
        idx[s:s + block] = np.take_along_axis(part, order, 1)
        dst[s:s + block] = np.maximum(np.take_along_axis(d, order, 1), 0.0)
    return idx, dst


def trustworthiness(X, Z, *, n_neighbors: int = 10, metric: str = "euclidean", exact_limit: int = 2000,
                    n_threads: int | None = 1) -> float:
    """Trustworthiness of a 2-D map: are the map's neighbours true neighbours? (1 = perfect).

    The score of :func:`sklearn.manifold.trustworthiness` (Venna & Kaski): for each point,
    the map's ``k`` nearest neighbours are ranked by distance in the original space and
    ranks beyond ``k`` are penalised. Up to ``exact_limit`` points sklearn computes it; above
    that, the same quantity is computed here in blocks (sklearn argsorts the full n×n
    matrix: 1.5 s and 200 MB at n = 5000), counting for each map neighbour how many points
    are closer in the original space (against a partitioned head of each row, the full row
    only for far neighbours). Ties aside, the two agree (tested).

    Parameters
    ----------
    X : array [shape=(n, D)]
    Z : array [shape=(n, 2)]
    n_neighbors : int
        Clamped below ``n / 2`` as sklearn requires.
    metric : {"euclidean", "cosine"}
        Distance in the original space.
    n_threads : int or None
        BLAS/OpenMP threads for the block (``None``: as configured).

    Returns
    -------
    float (``nan`` for fewer than 6 points)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.standard_normal((300, 2)) @ rng.standard_normal((2, 10))
    >>> from sklearn.decomposition import PCA
    >>> round(trustworthiness(plane, PCA(2).fit_transform(plane)), 3)
    1.0
    """
    X = np.asarray(X)
    X = X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)
    with _threads(n_threads):
        return _trustworthiness(X, np.asarray(Z, np.float64), n_neighbors, metric, exact_limit)


def _trustworthiness(X, Z, n_neighbors, metric, exact_limit) -> float:
    n = len(X)
    if n < 6:
        return float("nan")
    k = int(min(n_neighbors, (n - 1) // 2 - 1 if (n - 1) // 2 - 1 >= 1 else 1))
    if n <= exact_limit:
        from sklearn.manifold import trustworthiness as sk_trust

        return float(sk_trust(X, Z, n_neighbors=k, metric=metric))
    from sklearn.neighbors import NearestNeighbors

    nbr = NearestNeighbors(n_neighbors=k).fit(Z).kneighbors(return_distance=False)
    penalty = 0.0
    m_head = int(min(n - 1, 8 * k + 64))
    block = max(1, int(8_000_000 // n))
    pre = _block_args(X, metric)
    for s in range(0, n, block):
        Dm = _pairwise_block(X[s:s + block], X, metric, **pre)
        rows = np.arange(Dm.shape[0])
        Dm[rows, s + rows] = np.inf
        dj = np.take_along_axis(Dm, nbr[s:s + block], 1)  # (b, k) original distance to each map neighbour
        # rank = 1 + number of points closer than the neighbour; count it against the M smallest
        # distances of the row (a partition, O(n)), and against the whole row only past those
        head = np.sort(np.partition(Dm, m_head - 1, axis=1)[:, :m_head], axis=1)
        ranks = 1 + (head[:, None, :] < dj[:, :, None]).sum(-1)
        far_rows = np.flatnonzero((dj > head[:, -1:]).any(1))
        if len(far_rows):
            full = np.sort(Dm[far_rows], axis=1)
            for r, row in zip(far_rows, full):
                ranks[r] = 1 + np.searchsorted(row, dj[r], side="left")
        penalty += np.maximum(ranks - k, 0).sum()
    return float(1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def _default_cache_root() -> Path:
    root = os.environ.get("PROBE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "probe"


def enable_jit_cache(cache_dir=None) -> Path:
    """Cache umap-learn's numba-compiled kernels on disk, so new processes skip most JIT time.

    umap declares its kernels without numba's ``cache=True``; this turns caching on for
    every compiled function in umap's modules and points numba at ``cache_dir`` (default
    ``$NUMBA_CACHE_DIR``, else ``$PROBE_CACHE_DIR/numba``, else ``~/.cache/probe/numba``).
    The first process still compiles (and writes ~3 MB); later ones load machine code.
    Idempotent; affects umap in this process only.

    Returns
    -------
    Path
        The cache directory in use.
    """
    import numba
    from numba.core.registry import CPUDispatcher

    target = Path(cache_dir or os.environ.get("NUMBA_CACHE_DIR") or _default_cache_root() / "numba")
    target.mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = str(target)
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils

    for mod in (umap.umap_, umap.layouts, umap.utils, umap.spectral):
        for value in list(vars(mod).values()):
            if isinstance(value, CPUDispatcher) and type(value._cache).__name__ == "NullCache":
                try:
                    value.enable_caching()
                except Exception:  # pragma: no cover - a kernel numba cannot cache stays uncached
                    pass
    return target


def warm_up(*, background: bool = False, cache: bool = True):
    """Compile umap's kernels now (a tiny fit), so the first real map is fast.

    Parameters
    ----------
    background : bool
        Run in a daemon thread and return it (show :meth:`EmbeddingMap.preview` meanwhile).
    cache : bool
        Call :func:`enable_jit_cache` first.

    Returns
    -------
    float or threading.Thread
        Seconds taken, or the started thread.
    """
    def _run():
        t0 = time.perf_counter()
        if cache:
            enable_jit_cache()
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 8)).astype(np.float32)
        _umap_2d(X / np.linalg.norm(X, axis=1, keepdims=True), metric="cosine", n_neighbors=15, min_dist=0.1,
                 n_epochs=10, random_state=0, init="spectral")
        return time.perf_counter() - t0

    if background:
        import threading

        th = threading.Thread(target=_run, name="probe-umap-warm-up", daemon=True)
        th.start()
        return th
    return _run()


def _umap_2d(X, *, metric, n_neighbors, min_dist, n_epochs, random_state, init):
    import umap

    k = int(min(n_neighbors, len(X) - 1))
    idx, dst = _exact_knn(X, k + 0, metric)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*is not an NNDescent object.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric=metric, n_epochs=n_epochs,
                            random_state=random_state, init=init, precomputed_knn=(idx, dst, None),
                            force_approximation_algorithm=True, low_memory=False)
        return np.asarray(reducer.fit_transform(X), np.float32)


def _pca_2d(X: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    if X.shape[1] < 2:
        return np.column_stack([X[:, 0], np.zeros(len(X))]).astype(np.float32)
    return PCA(n_components=2, random_state=0).fit_transform(X).astype(np.float32)


class EmbeddingMap:
    """2-D map of embedding points (PCA or UMAP) with its trustworthiness, cached.

    Parameters
    ----------
    projection : {"umap", "pca"}
        ``pca`` is instant and linear (a preview); ``umap`` shows clusters and manifolds.
    metric : {"auto", "cosine", "euclidean"}
        UMAP's (and trustworthiness's) distance; ``auto`` picks ``cosine`` for unit-norm
        embeddings (deep clustering normalises every bin's vector) and ``euclidean`` otherwise.
    n_neighbors, min_dist : int, float
        UMAP's locality and packing. umap-learn's defaults (15, 0.1) scatter deep-clustering
        embeddings into dozens of islands (a trained network maps many bins to near-identical
        unit vectors: 75 % of the bins of a well-separated mixture have a neighbour within
        cosine distance 1e-3), hiding the two-source structure; 30 and 0.3 keep the map in a
        few groups at a trustworthiness 0.004–0.03 lower (0.93–0.985 on zoo test mixtures).
    n_epochs : int
        UMAP optimisation epochs. 200 (umap uses 500 below 10 000 points) halves the time and
        leaves trustworthiness within ~0.005 on deep-clustering embeddings.
    random_state : int
        Seed: the same points give the same map.
    trust_neighbors : int
        ``k`` of the trustworthiness score.
    cache_size : int
        Maps kept in this object's in-memory LRU, keyed by (model, audio hashes, layer,
        selection and projection parameters, content hash of the points).
    cache_dir : path, optional
        Also keep maps as ``.npz`` files here (survives restarts).
    n_threads : int or None
        BLAS/OpenMP threads while fitting (default 1, see *Threads* in the module notes; ``None``
        leaves them alone).

    Attributes
    ----------
    embedding_ : np.ndarray [shape=(n, 2)]
    trustworthiness_ : float
    seconds_ : float
        Time of the fit that produced the map (0 from the in-memory cache).
    metric_ : str
    projection_ : str
        The projection used: ``pca`` also for ``umap`` when there are too few points
        (``n <= n_neighbors + 1``) for a neighbour graph.
    from_cache_ : {None, "memory", "disk"}
    key_ : str

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 2)) @ rng.standard_normal((2, 6))
    >>> m = EmbeddingMap("pca").fit(X)
    >>> m.embedding_.shape, round(m.trustworthiness_, 3)
    ((200, 2), 1.0)
    >>> m.fit(X).from_cache_
    'memory'
    """

    def __init__(self, projection: str = "umap", *, metric: str = "auto", n_neighbors: int = 30,
                 min_dist: float = 0.3, n_epochs: int = 200, random_state: int = 0, trust_neighbors: int = 10,
                 cache_size: int = 16, cache_dir=None, n_threads: int | None = 1):
        self.projection = projection
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.trust_neighbors = trust_neighbors
        self.cache_size = cache_size
        self.cache_dir = cache_dir
        self.n_threads = n_threads

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("projection", "metric", "n_neighbors", "min_dist", "n_epochs",
                                              "random_state", "trust_neighbors")}

    def _key(self, points_or_X, X: np.ndarray) -> str:
        meta = dict(points_or_X.meta) if isinstance(points_or_X, EmbeddingPoints) else {}
        h = hashlib.sha1(np.ascontiguousarray(X).tobytes())
        h.update(str(X.shape).encode())
        blob = json.dumps({"model": meta.get("model"), "audio": meta.get("audio"), "layer": meta.get("layer"),
                           "selection": {k: meta.get(k) for k in ("threshold_db", "budget", "n_strata", "seed")},
                           "params": self.get_params(), "points": h.hexdigest()}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    @property
    def _lru(self) -> OrderedDict:
        if not hasattr(self, "_lru_store"):
            self._lru_store = OrderedDict()
        return self._lru_store

    def cache_clear(self) -> None:
        """Empty the in-memory cache (disk files stay)."""
        self._lru.clear()

    def preview(self, points) -> np.ndarray:
        """PCA coordinates ``(n, 2)`` at once, to show while UMAP runs (no caching, no score)."""
        return _pca_2d(_X(points))

    def fit(self, points) -> "EmbeddingMap":
        """Project ``points`` (EmbeddingPoints or an ``(n, D)`` array) to 2-D."""
        if self.projection not in ("umap", "pca"):
            raise AnalysisError(f"unknown projection {self.projection!r}; known: umap, pca")
        if self.metric not in ("auto", "cosine", "euclidean"):
            raise AnalysisError(f"unknown metric {self.metric!r}; known: auto, cosine, euclidean")
        X = _X(points)
        if len(X) < 3:
            raise AnalysisError(f"a map needs at least 3 points, given {len(X)}")
        metric = self.metric if self.metric != "auto" else ("cosine" if _is_unit_norm(X) else "euclidean")
        key = self._key(points, X)
        self.key_, self.metric_ = key, metric
        self.projection_ = "pca" if self.projection == "pca" or len(X) <= self.n_neighbors + 1 else "umap"
        lru = self._lru
        if key in lru:
            lru.move_to_end(key)
            self.embedding_, self.trustworthiness_, _ = lru[key]
            self.seconds_, self.from_cache_ = 0.0, "memory"
            return self
        path = Path(self.cache_dir) / f"embedmap-{key}.npz" if self.cache_dir else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                emb, tw, secs = z["embedding"], float(z["trustworthiness"]), float(z["seconds"])
            self._remember(key, emb, tw, secs)
            self.embedding_, self.trustworthiness_, self.seconds_, self.from_cache_ = emb, tw, 0.0, "disk"
            return self
        t0 = time.perf_counter()
        with _threads(self.n_threads):
            if self.projection_ == "pca":
                emb = _pca_2d(X)
            else:
                emb = _umap_2d(X, metric=metric, n_neighbors=self.n_neighbors, min_dist=self.min_dist,
                               n_epochs=self.n_epochs, random_state=self.random_state, init="spectral")
            tw = trustworthiness(X, emb, n_neighbors=self.trust_neighbors, metric=metric, n_threads=None)
        secs = time.perf_counter() - t0
        self._remember(key, emb, tw, secs)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, embedding=emb, trustworthiness=tw, seconds=secs)
            os.replace(tmp, path)
        self.embedding_, self.trustworthiness_, self.seconds_, self.from_cache_ = emb, tw, secs, None
        return self

    def _remember(self, key, emb, tw, secs):
        lru = self._lru
        lru[key] = (emb, tw, secs)
        lru.move_to_end(key)
        while len(lru) > max(0, int(self.cache_size)):
            lru.popitem(last=False)

    def fit_transform(self, points) -> np.ndarray:
        return self.fit(points).embedding_


def embedding_map(points, projection: str = "umap", **params) -> tuple[np.ndarray, float]:
    """Function twin of :class:`EmbeddingMap`: ``(coords (n, 2), trustworthiness)``.

    Examples
    --------
    >>> X = np.random.default_rng(0).standard_normal((100, 2)) @ np.ones((2, 5))
    >>> Z, tw = embedding_map(X, "pca")
    >>> Z.shape
    (100, 2)
    """
    m = EmbeddingMap(projection, cache_size=0, **params).fit(points)
    return m.embedding_, m.trustworthiness_


# =====================================================================================
# Clustering and listening
# =====================================================================================
class EmbeddingClusters:
    """Cluster embeddings in their original space; turn clusters into masks and audio.

    Parameters
    ----------
    n_clusters : int
        ``k`` (the number of sources for separation).
    method : {"kmeans", "gmm"}
        k-means (deep clustering's inference) or a Gaussian mixture (soft, elliptical).
    normalize : bool
        L2-normalise rows first (cosine geometry for embeddings that are not unit-norm).
    n_init : int
        Restarts; the best objective is kept.
    random_state : int
    n_threads : int or None
        BLAS/OpenMP threads while fitting and predicting (default 1; ``None`` leaves them alone).

    Attributes
    ----------
    labels_ : np.ndarray [shape=(n,)]
        Cluster of each fitted point.
    centers_ : np.ndarray [shape=(k, D)]
    estimator_ : sklearn estimator
    objective_ : float
        k-means inertia, or the GMM's mean log-likelihood.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, .1, (50, 3)) + 1, rng.normal(0, .1, (50, 3)) - 1])
    >>> km = EmbeddingClusters(2).fit(X)
    >>> len(set(km.labels_[:50])), len(set(km.labels_[50:])), bool(km.labels_[0] != km.labels_[-1])
    (1, 1, True)
    """

    def __init__(self, n_clusters: int = 2, *, method: str = "kmeans", normalize: bool = False, n_init: int = 4,
                 random_state: int = 0, n_threads: int | None = 1):
        self.n_clusters = n_clusters
        self.method = method
        self.normalize = normalize
        self.n_init = n_init
        self.random_state = random_state
        self.n_threads = n_threads

    def _prep(self, X) -> np.ndarray:
        X = _X(X).astype(np.float64)
        if self.normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return X

    def fit(self, points) -> "EmbeddingClusters":
        with _threads(self.n_threads):
            return self._fit(points)

    def _fit(self, points) -> "EmbeddingClusters":
        X = self._prep(points)
        k = int(self.n_clusters)
        if k < 1 or len(X) < k:
            raise AnalysisError(f"cannot make {k} clusters from {len(X)} points")
        if self.method == "kmeans":
            from sklearn.cluster import KMeans

            est = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(X)
            self.labels_, self.centers_, self.objective_ = est.labels_.astype(np.int64), est.cluster_centers_, float(est.inertia_)
        elif self.method == "gmm":
            from sklearn.mixture import GaussianMixture

            est = GaussianMixture(n_components=k, covariance_type=_cov_type(X.shape[1]), n_init=self.n_init,
                                  reg_covar=1e-4, random_state=self.random_state).fit(X)
            self.labels_, self.centers_, self.objective_ = est.predict(X).astype(np.int64), est.means_, float(est.score(X))
        else:
            raise AnalysisError(f"unknown clustering method {self.method!r}; known: kmeans, gmm")
        self.estimator_ = est
        self.n_clusters_ = k
        return self

    def _check(self):
        if not hasattr(self, "estimator_"):
            raise AnalysisError("EmbeddingClusters is not fitted: call fit(points) first")

    def predict(self, X) -> np.ndarray:
        """Cluster of each row of ``X (n, D)``."""
        self._check()
        with _threads(self.n_threads):
            return self.estimator_.predict(self._prep(X)).astype(np.int64)

    def predict_clip(self, clip: ClipEmbeddings) -> np.ndarray:
        """Cluster of every embedding cell, ``(F, T)``: silent cells go to their nearest cluster."""
        self._check()
        return self.predict(clip.flat()).reshape(clip.shape)

    def masks(self, clip: ClipEmbeddings) -> np.ndarray:
        """Binary masks ``(k, n_freqs, n_frames)`` on the clip's STFT grid (each bin in exactly one)."""
        lab = clip.to_stft_grid(self.predict_clip(clip))
        return np.stack([(lab == j) for j in range(self.n_clusters_)]).astype(np.float32)

    def separate(self, clip: ClipEmbeddings) -> np.ndarray:
        """Audio of every cluster, ``(k, n)``: ``istft(mask * STFT(mixture))`` with the mixture's phase."""
        return _resynthesise(clip, self.masks(clip))

    def write_audio(self, clip: ClipEmbeddings, out_dir, *, prefix: str = "cluster") -> list:
        """Write ``{prefix}_{j}.wav`` (float, at the grid's rate) for every cluster; returns the paths."""
        return write_cluster_audio(self.separate(clip), clip.sr, out_dir, prefix=prefix)


def _cov_type(D: int) -> str:
    """Full covariances up to 32 dimensions; diagonal above, where 1000 points cannot pin D² numbers."""
    return "full" if D <= 32 else "diag"


def _resynthesise(clip: ClipEmbeddings, masks: np.ndarray) -> np.ndarray:
    import torch

    M = torch.as_tensor(np.asarray(masks, np.float32))
    X = torch.as_tensor(clip.stft)
    return clip.grid.istft(M * X[None], length=len(clip.y)).numpy().astype(np.float32)


def write_cluster_audio(audio: np.ndarray, sr: int, out_dir, *, prefix: str = "cluster") -> list:
    """Write each row of ``audio (k, n)`` to ``out_dir/{prefix}_{j}.wav`` (32-bit float)."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, a in enumerate(np.asarray(audio, np.float32)):
        p = out / f"{prefix}_{j}.wav"
        sf.write(str(p), a, int(sr), subtype="FLOAT")
        paths.append(str(p))
    return paths


def cluster_embeddings(points, n_clusters: int = 2, *, method: str = "kmeans", **params) -> np.ndarray:
    """Function twin of :class:`EmbeddingClusters`: cluster labels ``(n,)``.

    Examples
    --------
    >>> X = np.r_[np.zeros((10, 2)), np.ones((10, 2))]
    >>> cluster_embeddings(X, 2).reshape(2, 10).std(1).tolist()
    [0.0, 0.0]
    """
    return EmbeddingClusters(n_clusters, method=method, **params).fit(points).labels_


def separate_clusters(clip: ClipEmbeddings, n_clusters: int = 2, *, method: str = "kmeans",
                      threshold_db: float | None = DEFAULT_THRESHOLD_DB, budget: int | None = None, seed: int = 0):
    """Deep-clustering inference on one clip: fit on its non-silent cells, mask every bin, resynthesise.

    Returns
    -------
    audio : np.ndarray [shape=(k, n)]
    masks : np.ndarray [shape=(k, n_freqs, n_frames)]
    clusters : EmbeddingClusters
    """
    pts = select_points(clip, threshold_db=threshold_db, budget=budget, seed=seed)
    km = EmbeddingClusters(n_clusters, method=method, random_state=seed).fit(pts)
    masks = km.masks(clip)
    return _resynthesise(clip, masks), masks, km


# =====================================================================================
# Metrics
# =====================================================================================
def mask_accuracy(labels, oracle, weights=None) -> tuple[float, dict]:
    """Permutation-invariant, weighted agreement of cluster labels with oracle labels.

    Clusters are matched one-to-one to sources by the Hungarian algorithm on the weighted
    confusion matrix (``scipy.optimize.linear_sum_assignment``); the accuracy is the weight
    of correctly labelled cells over the total. With more clusters than sources the extra
    clusters stay unmatched and count as errors.

    Parameters
    ----------
    labels, oracle : array of int, same shape
    weights : array, same shape, optional
        E.g. mixture power ``|X|^2``: energy-weighted accuracy vs the ideal binary mask.

    Returns
    -------
    accuracy : float
    mapping : dict {cluster: source}

    Examples
    --------
    >>> mask_accuracy(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))
    (1.0, {0: 1, 1: 0})
    """
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels).ravel()
    oracle = np.asarray(oracle).ravel()
    if labels.shape != oracle.shape:
        raise AnalysisError(f"labels and oracle must have the same size, given {labels.size} and {oracle.size}")
    w = np.ones(labels.size) if weights is None else np.asarray(weights, float).ravel()
    ok = oracle >= 0
    labels, oracle, w = labels[ok], oracle[ok], w[ok]
    if w.sum() <= 0:
        return float("nan"), {}
    K, S = int(labels.max()) + 1, int(oracle.max()) + 1
    C = np.zeros((K, S))
    np.add.at(C, (labels, oracle), w)
    r, c = linear_sum_assignment(-C)
    return float(C[r, c].sum() / C.sum()), {int(a): int(b) for a, b in zip(r, c)}


def oracle_agreement(clusters, points: EmbeddingPoints) -> dict:
    """How well clusters recover the oracle dominant source.

    Parameters
    ----------
    clusters : EmbeddingClusters (fitted) or array [shape=(n,)]
        Fitted clusters (gives mask accuracy on every STFT bin) or labels of ``points``.
    points : EmbeddingPoints
        With oracle ``source`` labels (clips built from stems).

    Returns
    -------
    dict
        ``ari``, ``nmi`` (adjusted Rand index / normalised mutual information on the
        non-silent points), ``mask_accuracy`` (energy-weighted, permutation-invariant
        agreement with the ideal binary mask over *all* STFT bins, mean over clips, each
        clip matched on its own), ``per_clip`` accuracies.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if points.source is None:
        raise AnalysisError("these points have no oracle sources: build the clip from an AudioExample with sources "
                            "(or pass sources=)")
    labels = clusters.labels_ if isinstance(clusters, EmbeddingClusters) else np.asarray(clusters)
    if len(labels) != len(points):
        raise AnalysisError(f"{len(labels)} labels for {len(points)} points")
    out = {"ari": float(adjusted_rand_score(points.source, labels)),
           "nmi": float(normalized_mutual_info_score(points.source, labels))}
    per = []
    if isinstance(clusters, EmbeddingClusters):
        for c in points.clips:
            if c.dominant_stft is None:
                per.append(float("nan"))
                continue
            lab = c.to_stft_grid(clusters.predict_clip(c))
            per.append(mask_accuracy(lab, c.dominant_stft, np.abs(c.stft) ** 2)[0])
    else:  # labels only: weighted by the points' energy over the points
        for ci in range(len(points.clips)):
            m = points.clip == ci
            per.append(mask_accuracy(labels[m], points.source[m], 10 ** (points.energy_db[m] / 10) * points.weight[m])[0])
    out["mask_accuracy"] = float(np.nanmean(per)) if per else float("nan")
    out["per_clip"] = per
    return out


def silhouette(X, labels, *, metric: str = "euclidean", sample_size: int = 2000, random_state: int = 0) -> float:
    """Mean silhouette (on a seeded sample of at most ``sample_size`` points)."""
    from sklearn.metrics import silhouette_score

    X = _X(X)
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(X) < 3:
        return float("nan")
    return float(silhouette_score(X, labels, metric=metric, sample_size=min(sample_size, len(X)),
                                  random_state=random_state))


def clusterability(X, energy_db=None, *, n_loudest: int = 1000, n_clusters: int = 2, random_state: int = 0,
                   n_threads: int | None = 1) -> dict:
    """Reference-free scores of how cleanly the loudest bins split into clusters.

    Separation by clustering works when the embeddings of the bins that carry the energy
    form tight, separate groups. These scores need no reference sources, so they can rank
    mixtures by expected separation quality (see docs/findings_embeddings.md).

    Parameters
    ----------
    X : array [shape=(n, D)] or EmbeddingPoints
    energy_db : array [shape=(n,)], optional
        Selects the ``n_loudest`` points (taken from EmbeddingPoints when given those).
    n_loudest : int
    n_clusters : int
    n_threads : int or None
        BLAS/OpenMP threads (default 1; ``None`` leaves them alone).

    Returns
    -------
    dict
        ``silhouette`` of k-means(k) labels (higher = more separable);
        ``gmm_ll_gain``: mean log-likelihood per point of a k-component GMM minus one
        Gaussian (nats; higher = more multimodal); ``bic_gain``: (BIC₁ − BIC_k) per point
        (penalises the extra parameters); ``kmeans_ratio``: k-means objective with k over
        with one cluster (lower = more separable); ``n`` points used.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> two = np.r_[rng.normal(0, .1, (200, 4)) + 1, rng.normal(0, .1, (200, 4)) - 1]
    >>> one = rng.normal(0, 1, (400, 4))
    >>> clusterability(two)["silhouette"] > 0.8 > clusterability(one)["silhouette"]
    True
    """
    with _threads(n_threads):
        return _clusterability(X, energy_db, n_loudest, n_clusters, random_state)


def _clusterability(X, energy_db, n_loudest, n_clusters, random_state) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    if isinstance(X, EmbeddingPoints):
        energy_db = X.energy_db if energy_db is None else energy_db
        X = X.X
    X = _X(X).astype(np.float64)
    if energy_db is not None and len(X) > n_loudest:
        X = X[np.argsort(np.asarray(energy_db))[::-1][:n_loudest]]
    if len(X) < 4 * n_clusters:
        raise AnalysisError(f"clusterability needs at least {4 * n_clusters} points, given {len(X)}")
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=random_state).fit(X)
    total = float(((X - X.mean(0)) ** 2).sum())
    cov = _cov_type(X.shape[1])
    g1 = GaussianMixture(1, covariance_type=cov, reg_covar=1e-4, random_state=random_state).fit(X)
    gk = GaussianMixture(n_clusters, covariance_type=cov, reg_covar=1e-4, n_init=2, random_state=random_state).fit(X)
    sil = float(silhouette_score(X, km.labels_)) if len(np.unique(km.labels_)) > 1 else float("nan")
    return {"silhouette": sil, "gmm_ll_gain": float(gk.score(X) - g1.score(X)),
            "bic_gain": float((g1.bic(X) - gk.bic(X)) / len(X)),
            "kmeans_ratio": float(km.inertia_ / total) if total > 0 else float("nan"), "n": int(len(X))}


# =====================================================================================
# Colourings
# =====================================================================================
def colourings(points: EmbeddingPoints, *, clusters=None) -> dict:
    """Every way to colour the points: ``{name: {"values", "kind", "names"}}``.

    ``kind`` is ``"categorical"`` (``values`` are ints, ``names`` their labels) or
    ``"continuous"`` (``names`` is the unit). Present: ``time`` (s), ``freq`` (Hz, per-T-F
    only), ``energy`` (dB), ``clip`` (pooled sets), ``source`` (oracle dominant source,
    with stems), ``class`` (event boxes), ``cluster`` (with ``clusters``: fitted
    EmbeddingClusters or labels).
    """
    out = {"time": {"values": points.time, "kind": "continuous", "names": "s"},
           "energy": {"values": points.energy_db, "kind": "continuous", "names": "dB"}}
    if points.kind == "tf":
        out["freq"] = {"values": points.freq, "kind": "continuous", "names": "Hz"}
    if len(points.clips) > 1:
        out["clip"] = {"values": points.clip, "kind": "categorical", "names": [c.name for c in points.clips]}
    if points.source is not None:
        out["source"] = {"values": points.source, "kind": "categorical",
                         "names": list(points.source_names or [f"source {i}" for i in range(int(points.source.max()) + 1)])}
    if points.label is not None:
        out["class"] = {"values": np.where(points.label < 0, len(points.class_names or []), points.label),
                        "kind": "categorical", "names": list(points.class_names or []) + ["(none)"]}
    if clusters is not None:
        lab = clusters.labels_ if isinstance(clusters, EmbeddingClusters) else np.asarray(clusters)
        if len(lab) != len(points):
            raise AnalysisError(f"{len(lab)} cluster labels for {len(points)} points")
        out["cluster"] = {"values": lab, "kind": "categorical", "names": [f"cluster {j}" for j in range(int(lab.max()) + 1)]}
    return out
