"""Embeddings as points that remember where they came from: clips, the T-F/frame grid, and point selection.

:func:`clip_embeddings` (and :func:`embeddings_from_model` / ``_from_record`` / ``_from_layer``)
turn a tensor of embeddings into a :class:`ClipEmbeddings` aligned with the clip's STFT (energies,
oracle sources and event classes pooled onto the embedding grid); :func:`select_points` drops
silent cells and draws an energy-stratified sample, an :class:`EmbeddingPoints`. The map lives
in :mod:`probe.analyze.embedding_map`, clusters in :mod:`probe.analyze.embedding_clusters`; the
whole story (and the measurements behind the defaults) is told in :mod:`probe.analyze.embeddings`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import AnalysisError, AudioError

__all__ = ["ClipEmbeddings", "EmbeddingPoints", "clip_embeddings", "embeddings_from_model", "embeddings_from_record",
           "embeddings_from_layer", "output_record", "record_freqs", "select_points", "DEFAULT_THRESHOLD_DB",
           "DEFAULT_BUDGET"]

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
    time_source: str | None = None

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


def record_freqs(spec_or_grid, n: int):
    """Hz of a frequency axis of length ``n`` in a layer of a model on this grid."""
    grid = getattr(spec_or_grid, "grid", spec_or_grid)
    input_kind = getattr(spec_or_grid, "input_kind", None)
    base = grid.mel_frequencies() if (input_kind == "logmel" or (input_kind is None and grid.n_mels == n)) and grid.n_mels \
        else grid.bin_frequencies()
    if len(base) == n:
        return base
    edges = np.linspace(0, len(base), n + 1).round().astype(int)  # pooled axis: mean centre of each group
    return np.array([base[a:max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:])])



_record_freqs = record_freqs  # the name it had before the split

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
    # step k is centred at offset + k * step (a 1.6 s window's frame 0 describes 0.8 s, not 0 s)
    offset = float(getattr(record, "time_offset", None) or 0.0)
    times = offset + np.arange(E.shape[-1]) * sps if sps else None
    if times is None and E.shape[-1] != grid.n_frames(y_len):
        times = (np.arange(E.shape[-1]) + 0.5) * (y_len / grid.sample_rate / E.shape[-1])
    freqs = record_freqs(spec_or_grid, E.shape[1]) if E.ndim == 3 else None
    clip = clip_embeddings(E, audio, grid, times=times, freqs=freqs, layer=kwargs.pop("layer", name),
                           model=kwargs.pop("model", getattr(spec_or_grid, "name", None)), **kwargs)
    if sps:
        clip.time_source = getattr(record, "time_source", None) or "inferred"
    else:
        clip.time_source = "grid" if E.shape[-1] == grid.n_frames(y_len) else "spread"
    return clip


def output_record(spec, audio):
    """The model's canonical output on ``audio`` as a :class:`probe.hooks.Record`, axes inferred.

    The time axis, its exact seconds per step and the offset of step 0's centre come from
    the model-wide shape probe (:func:`probe._shapes.time_probe`), as for captured layers;
    when the probe cannot place the output, from two lengths of quiet noise (which axis
    grows, and by how much). The spec's ``[time]`` table (and ``--seconds-per-step`` /
    ``--time-offset``) override both.

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
    offset, source = None, "inferred" if sps else None
    probed = _probed_output_time(spec, tuple(out.shape))
    if probed is not None:
        if tax is not None:
            axes[tax] = f"dim{tax}"
        tax, sps, offset = probed.time_axis, float(probed.seconds_per_step), float(probed.offset or 0)
        axes[tax], source = "time", "inferred"
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
    given = {k: v for k, v in (getattr(spec, "time", None) or {}).items()
             if k in ("seconds_per_step", "offset") and v is not None}
    if tax is not None and given:
        sps = float(given.get("seconds_per_step", sps)) if given.get("seconds_per_step", sps) is not None else None
        offset = float(given["offset"]) if "offset" in given else offset
        source = (getattr(spec, "time", None) or {}).get("source", "spec")
    return Record(name="output", module="", module_type=type(spec.model).__name__, call=0, tensor=out.detach(),
                  axes=axes, time_axis=tax, seconds_per_step=sps, time_offset=offset if sps else None,
                  time_source=source if sps else None)


def _probed_output_time(spec, shape: tuple):
    """The shape probe's :class:`~probe._shapes.LayerTime` of the model's output of ``shape`` (``None`` if unplaced).

    The root module's output leaf whose non-time axes match ``shape`` and whose time step is known.
    """
    try:
        from .._shapes import time_probe

        results = time_probe(spec).results or {}
    except Exception:  # the probe is a refinement; the two-length fallback still names the axes
        return None
    for key, r in results.items():
        if key[0] != "" or key[2] != "out" or r.time_axis is None or r.seconds_per_step is None or r.batch_folded:
            continue
        if len(r.shape) == len(shape) and all(a == b for i, (a, b) in enumerate(zip(r.shape, shape)) if i != r.time_axis):
            return r
    return None


def _emits_tf_embeddings(spec, audio) -> bool:
    """Whether the model's raw output is a dict with a ``tf_embeddings`` entry (e.g. a chimera net's second head)."""
    import torch

    y = np.asarray(audio.y if hasattr(audio, "y") else audio, np.float32)[: spec.sample_rate]
    try:
        with torch.no_grad():
            raw = spec.model(spec.features(y))
    except Exception:  # a model that refuses a short piece: the output record path will say what is wrong
        return False
    return isinstance(raw, dict) and "tf_embeddings" in raw


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
        if spec.output_kind == "tf_embeddings" or layer == "tf_embeddings" or _emits_tf_embeddings(spec, audio):
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
