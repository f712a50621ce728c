"""What the app (and the HTML report) needs from the library, without importing streamlit.

The Streamlit app in ``apps/`` only places widgets and figures; everything it computes
comes from here:

* :class:`SharedModel` — one loaded :class:`~probe.ModelSpec` shared by every app session
  (Streamlit's ``st.cache_resource`` hands the *same* object to all of them), guarded by a
  lock that every forward pass, capture and attribution holds. Nothing here changes the
  model's weights or flags outside the lock (attribution toggles ``requires_grad`` and
  restores it, which is why it must not overlap another session's forward).
* loaders that turn what a user picks (``zoo:NAME``, a spec file, ``example:NAME:i``, an
  uploaded file) into a model or an :class:`~probe.AudioExample`, raising probe's own
  errors with messages fit to show as they are;
* analyses returning plain, picklable results (numpy arrays and fitted estimators) that the
  app caches with ``st.cache_data`` keyed by model, audio hash and parameters;
* :func:`figure_builder`, which finds a figure builder of another ``probe.figures`` module
  and says clearly when that piece is not installed yet.

Every function accepts a :class:`SharedModel` or a bare :class:`~probe.ModelSpec` (then
without locking), so scripts and the report use the same code path as the app.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AnalysisError, AudioError, ProbeError, SpecError

__all__ = [
    "SharedModel", "Unavailable", "load_shared_model", "model_ref_key", "zoo_models", "default_model_ref",
    "model_card", "card_metrics", "example_refs", "load_example_ref", "load_upload", "UPLOAD_TYPES",
    "MAX_UPLOAD_SECONDS", "spectrogram", "model_outputs", "filter_banks", "analyse_filters", "layer_names",
    "Activation", "capture_layer", "time_layers", "default_layer", "embedding_layers", "analyse_embeddings", "target_options",
    "ATTRIBUTION_METHODS", "analyse_attribution", "figure_builder",
]

#: file types the app accepts for upload (what soundfile decodes everywhere)
UPLOAD_TYPES = ("wav", "flac", "ogg")
#: longest upload the app analyses (seconds): the analyses are interactive, not batch jobs
MAX_UPLOAD_SECONDS = 120.0
#: attribution methods offered in the app, fastest first
ATTRIBUTION_METHODS = ("saliency", "ixg", "ig", "gradshap", "occlusion", "gradcam")


class Unavailable(ProbeError):
    """A part of probe the app wants (a figure module, a trained checkpoint) is not there yet."""


# =====================================================================================
# The shared model
# =====================================================================================
class SharedModel:
    """A :class:`~probe.ModelSpec` shared between threads, with a lock around every use.

    Parameters
    ----------
    spec : ModelSpec
        Loaded in eval mode. Treat it as read-only: run it only inside :meth:`locked`.
    ref : str
        What it was loaded from (``zoo:NAME`` or a spec-file path).

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> spec = ModelSpec(torch.nn.Conv1d(1, 2, 4), input_kind="waveform", grid=TFGrid(8000), input_layout="bcn")
    >>> m = SharedModel(spec, "demo")
    >>> with m.locked() as s:
    ...     s.forward(np.zeros(100, np.float32)).shape
    torch.Size([1, 2, 97])
    """

    def __init__(self, spec, ref: str):
        self.spec = spec
        self.ref = str(ref)
        self.lock = threading.RLock()

    @contextmanager
    def locked(self):
        """Hold the lock and yield the spec (re-entrant: nested helpers may lock again)."""
        with self.lock:
            yield self.spec

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def sample_rate(self) -> int:
        return int(self.spec.sample_rate)

    def __repr__(self) -> str:
        return f"SharedModel({self.ref!r}, {self.spec.input_kind} → {self.spec.output_kind})"


def _spec_and_lock(model):
    """``(spec, context manager)`` for a SharedModel or a bare ModelSpec."""
    if isinstance(model, SharedModel):
        return model.spec, model.lock
    return model, nullcontext()


def model_ref_key(ref: str) -> str:
    """Cache key of a model reference: a spec file's key changes when the file (or its folder) changes."""
    ref = str(ref)
    if ref.startswith("zoo:"):
        from .resolve import zoo_entry

        try:
            registry = importlib.import_module(zoo_entry("models").__module__)
            p = registry.checkpoint_path(ref[4:])
            return f"{ref}@{p.stat().st_mtime_ns if p.is_file() else 0}"
        except Exception:
            return ref
    p = Path(ref)
    if p.is_file():
        stamps = [p.stat().st_mtime_ns] + [q.stat().st_mtime_ns for q in p.parent.glob("*") if q.is_file()]
        return f"{p.resolve()}@{max(stamps)}"
    return ref


def load_shared_model(ref: str) -> SharedModel:
    """Load ``zoo:NAME`` or a spec-file path into a :class:`SharedModel`.

    Raises
    ------
    SpecError, CheckpointError
        Unknown name, bad spec file, or a zoo model whose checkpoint is not trained yet
        (the message says how to train it).
    Unavailable
        A zoo model listed in the catalogue whose code is not installed yet.
    """
    from .resolve import load

    ref = str(ref).strip()
    if not ref:
        raise SpecError("no model given: pick a zoo model or enter the path of a .toml spec file")
    try:
        spec = load(ref)
    except ImportError as exc:  # a zoo entry whose module is still being written
        raise Unavailable(f"{ref} is not available yet ({exc})") from None
    spec.model.eval()
    return SharedModel(spec, ref)


# =====================================================================================
# What can be picked
# =====================================================================================
def zoo_models() -> list[dict]:
    """The zoo catalogue (``[]`` when no zoo is installed), each entry with a ``ref`` and a ``label``."""
    from .resolve import zoo_entry

    try:
        entries = zoo_entry("catalogue")()
    except (SpecError, ImportError):
        return []
    out = []
    for e in entries:
        task = e.get("task") or ""
        state = "trained" if e.get("trained") else "not trained yet"
        out.append({**e, "ref": f"zoo:{e['name']}", "label": f"{e['name']}" + (f" · {task}" if task else "") + f" ({state})"})
    return out


def default_model_ref() -> str | None:
    """The first trained zoo model, or ``None`` when none is trained (or no zoo is installed)."""
    for e in zoo_models():
        if e.get("trained"):
            return e["ref"]
    return None


def example_refs(model_ref: str, n: int = 8) -> list[str]:
    """``example:NAME:i`` for the first ``n`` test items of a zoo model (``[]`` for spec files)."""
    ref = str(model_ref)
    if not ref.startswith("zoo:"):
        return []
    return [f"example:{ref[4:]}:{i}" for i in range(int(n))]


def load_example_ref(ref: str, sr: int | None = None):
    """``example:NAME:i`` (or an audio file path) → :class:`~probe.AudioExample` at ``sr``."""
    from .resolve import resolve_audio

    return resolve_audio(ref, sr, max_seconds=MAX_UPLOAD_SECONDS if not str(ref).startswith("example:") else 3600.0)


def load_upload(filename: str, data: bytes, sr: int, *, max_seconds: float | None = MAX_UPLOAD_SECONDS):
    """Validate and decode an uploaded file into an :class:`~probe.AudioExample` at ``sr``.

    Parameters
    ----------
    filename : str
        The user's file name (its extension must be one of :data:`UPLOAD_TYPES`).
    data : bytes
        File content.
    sr : int
        The model's sample rate (the audio is resampled to it).

    Raises
    ------
    AudioError
        Wrong extension, empty, undecodable, non-finite, too long; the message names the
        uploaded file (never the temporary copy).
    """
    from .audio import AudioExample, audio_hash, load_audio

    name = Path(str(filename or "upload")).name
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in UPLOAD_TYPES:
        raise AudioError(f"{name!r} is not a supported audio file: upload one of {', '.join('.' + t for t in UPLOAD_TYPES)}")
    if not data:
        raise AudioError(f"{name!r} is empty (0 bytes)")
    fd, tmp = tempfile.mkstemp(suffix="." + ext, prefix="probe-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            y, rate = load_audio(tmp, sr, max_seconds=max_seconds)
        except AudioError as exc:
            raise AudioError(str(exc).replace(tmp, name)) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return AudioExample(y=y, sr=rate, name=name, info={"source": f"upload:{name}", "hash": audio_hash(y, rate)})


# =====================================================================================
# Model card
# =====================================================================================
def _flatten(d, prefix=""):
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            yield key, v


def card_metrics(card: dict | None) -> list[tuple[str, object]]:
    """``[(name, value)]`` of a model card's ``metrics`` and ``oracle`` entries, flattened (``a.b``)."""
    if not card:
        return []
    rows = list(_flatten(card.get("metrics") or {}))
    rows += [(f"oracle.{k}", v) for k, v in _flatten(card.get("oracle") or {})]
    return rows


#: the task an output kind usually serves, for models without a card
_TASKS = {"frame_probs": "detection", "clip_scores": "classification", "masks": "separation", "sources": "separation",
          "tf_embeddings": "separation (embeddings)", "features": None}


def model_card(model) -> dict:
    """What the Overview shows about a model: identity, input, output, size, card metrics."""
    spec, _ = _spec_and_lock(model)
    g = spec.grid
    card = spec.info.get("card") or {}
    n_params = int(sum(p.numel() for p in spec.model.parameters()))
    task = spec.info.get("task") or card.get("task") or _TASKS.get(spec.output_kind)
    out = {
        "name": spec.name, "task": task, "input_kind": spec.input_kind,
        "output_kind": spec.output_kind, "sample_rate": int(g.sample_rate), "n_fft": int(g.n_fft),
        "hop_length": int(g.hop_length), "n_mels": g.n_mels, "frame_seconds": float(g.seconds_per_frame),
        "classes": list(spec.classes or []), "n_sources": spec.n_sources, "params": n_params,
        "checkpoint": spec.info.get("checkpoint") or spec.info.get("spec_file"),
        "metrics": card_metrics(card), "data": card.get("data"), "licence": card.get("licence") or card.get("license"),
    }
    return out


# =====================================================================================
# Spectrogram and outputs
# =====================================================================================
def spectrogram(y, grid, *, max_frames: int = 1500, top_db: float = 80.0) -> dict:
    """Log-magnitude STFT of a clip on ``grid`` for display.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    grid : TFGrid
    max_frames : int
        Frames kept (evenly decimated) so a long clip stays a light figure.
    top_db : float
        Floor below the peak.

    Returns
    -------
    dict
        ``times [shape=(T,)]`` s, ``freqs [shape=(F,)]`` Hz, ``db [shape=(F, T)]`` dB re peak,
        ``duration`` s, ``sr``.
    """
    import torch

    y = np.asarray(y, np.float32)
    mag = grid.magnitude(torch.as_tensor(y)).numpy()
    db = 20 * np.log10(np.maximum(mag, 1e-10))
    db = np.maximum(db - db.max(), -float(top_db)).astype(np.float32)
    times = grid.frame_times(db.shape[1])
    if db.shape[1] > max_frames:
        keep = np.linspace(0, db.shape[1] - 1, max_frames).round().astype(int)
        db, times = db[:, keep], times[keep]
    return {"times": times, "freqs": grid.bin_frequencies(), "db": db, "duration": len(y) / grid.sample_rate,
            "sr": int(grid.sample_rate)}


def model_outputs(model, y) -> dict:
    """Run the model once and return its canonical output for plotting.

    Returns
    -------
    dict
        ``kind``; ``values`` (``frame_probs``: ``(C, T)`` with ``times``; ``clip_scores``:
        ``(C,)``; ``sources``: ``(S, n)`` audio plus ``spectrograms`` (one :func:`spectrogram`
        dict each); ``masks``: ``(S, F, T)`` with ``times`` and ``freqs``; others: ``shape``
        only), ``labels`` (class / source names).
    """
    import torch

    from .attribution.targets import output_frame_times

    spec, lock = _spec_and_lock(model)
    y = np.asarray(y, np.float32)
    with lock, torch.no_grad():
        out = spec.forward(y)
    x = out.detach().float().cpu().numpy()[0] if hasattr(out, "detach") else None
    kind = spec.output_kind
    res = {"kind": kind, "shape": list(out.shape) if hasattr(out, "shape") else None}
    if x is None:
        return res
    if kind == "frame_probs":
        times, _ = output_frame_times(x.shape[-1], len(y), spec)
        res.update(values=x, times=np.asarray(times), labels=list(spec.classes or [f"class {i}" for i in range(x.shape[0])]))
    elif kind == "clip_scores":
        res.update(values=x, labels=list(spec.classes or [f"class {i}" for i in range(x.shape[0])]))
    elif kind == "sources":
        names = spec.info.get("source_names") or [f"source {i + 1}" for i in range(x.shape[0])]
        res.update(values=x.astype(np.float32), labels=list(names), sr=spec.sample_rate,
                   spectrograms=[spectrogram(s, spec.grid, max_frames=600) for s in x])
    elif kind == "masks":
        F, T = x.shape[-2:]
        res.update(values=x, labels=[f"source {i + 1}" for i in range(x.shape[0])],
                   times=spec.grid.frame_times(T), freqs=_freq_hz(spec, F))
    return res


# =====================================================================================
# Filters
# =====================================================================================
def filter_banks(model) -> dict:
    """``{layer: FilterBank}`` of the model (the discovery runs the model, hence the lock)."""
    from .filterbank import filters

    spec, lock = _spec_and_lock(model)
    with lock:
        return filters(spec)


def analyse_filters(bank, *, span: str = "full", threshold: float = 0.5) -> dict:
    """Responses, scale fit and reference matches of one bank.

    Returns
    -------
    dict
        ``summary`` (JSON-able, as ``probe filters`` prints it), ``responses``
        (FilterResponses), and when the bank has ≥ 3 centre frequencies ``fit`` (ScaleFit)
        and ``refs`` ({"mel", "gammatone", "cqt"} → ReferenceMatch); ``note`` otherwise.
    """
    from .cli.filters import analyse_bank

    summary, objs = analyse_bank(bank, span=span, threshold=threshold)
    return {"summary": summary, **objs, "note": summary.get("note")}


# =====================================================================================
# Activations
# =====================================================================================
def layer_names(model) -> list[str]:
    """Module paths that :func:`probe.capture` can record, in module order."""
    spec, _ = _spec_and_lock(model)
    return [n for n, _ in spec.model.named_modules() if n]


def time_layers(model, y) -> list[str]:
    """Module paths whose output has a time axis on clip ``y`` (one capture of every layer, under the lock)."""
    from .hooks import capture_audio

    spec, lock = _spec_and_lock(model)
    names = set(layer_names(model))
    y = np.asarray(y, np.float32)[: 2 * spec.sample_rate]  # axes come from shape probes; a short piece is enough
    with lock:
        cache = capture_audio(spec, y, "*", max_steps=4)
    out = []
    for k, rec in cache.items():
        if k in names and rec.time_axis is not None and k not in out:
            out.append(k)
    return out


def default_layer(model, y, *, purpose: str = "activations") -> str | None:
    """A sensible first layer to show: the last time-resolved layer before the output head.

    ``purpose="embeddings"`` returns ``"output"`` for a ``tf_embeddings`` model.
    """
    spec, _ = _spec_and_lock(model)
    if purpose == "embeddings" and spec.output_kind == "tf_embeddings":
        return "output"
    layers = time_layers(model, y)
    if not layers:
        return None
    # drop leaves of the last module (the head) and containers of everything
    top = [n for n in layers if not any(o != n and o.startswith(n + ".") for o in layers)]
    pick = top[-2] if len(top) >= 2 else top[-1]
    return pick


@dataclass
class Activation:
    """One captured layer flattened to a heatmap over seconds.

    Attributes
    ----------
    name : str
    values : np.ndarray [shape=(rows, T)]
        Rows: the layer's non-time axes (per ``view``), time last.
    times : np.ndarray [shape=(T,)] or None
        Seconds of each column (``None`` when the layer has no time axis).
    axes : list of str
        The record's axes.
    shape : tuple
        The record's full shape.
    row_label : str
        What a row is (``channel``, ``freq``, ``channel × freq`` …).
    row_freqs : np.ndarray or None
        Hz of each row when rows are a frequency axis.
    seconds_per_step : float or None
    """

    name: str
    values: np.ndarray
    times: np.ndarray | None
    axes: list
    shape: tuple
    row_label: str
    row_freqs: np.ndarray | None = None
    seconds_per_step: float | None = None
    module_type: str = ""
    views: list = field(default_factory=list)


def _freq_hz(spec, n: int):
    from .analyze.embeddings import _record_freqs

    try:
        return np.asarray(_record_freqs(spec, n), float)
    except Exception:
        return None


def capture_layer(model, y, layer: str, *, view: str = "auto", max_rows: int = 512, max_steps: int = 2000) -> Activation:
    """Capture ``layer`` on clip ``y`` and arrange it as rows × time.

    Parameters
    ----------
    view : {"auto", "channels", "frequency", "all"}
        With both a channel-like and a frequency axis: ``channels`` averages over
        frequency, ``frequency`` averages over channels, ``all`` keeps every (channel,
        bin) row; ``auto`` picks ``channels``.
    max_rows : int
        Rows beyond this are averaged in groups (keeps the heatmap light).
    max_steps : int
        Time steps beyond this are averaged in blocks (``times`` then hold block centres).

    Raises
    ------
    LayerNotFoundError
        Unknown layer (with close matches).
    AnalysisError
        A layer whose output has no time axis.
    """
    from .hooks import capture_audio

    spec, lock = _spec_and_lock(model)
    y = np.asarray(y, np.float32)
    with lock:
        cache = capture_audio(spec, y, [layer])
    if layer not in cache:
        raise AnalysisError(f"layer {layer!r} produced no tensor output to show")
    rec = cache[layer]
    x = rec.numpy()
    axes = list(rec.axes or [f"dim{i}" for i in range(x.ndim)])
    if "batch" in axes:
        x = np.take(x, 0, axis=axes.index("batch"))
        axes = [a for a in axes if a != "batch"] if axes.count("batch") == 1 else axes[1:]
    if "time" not in axes:
        raise AnalysisError(f"layer {layer!r} has no time axis (axes {axes}, shape {tuple(x.shape)}): nothing to show over "
                            "seconds; pick a layer before the model pools over time")
    tax = axes.index("time")
    fax = next((i for i, a in enumerate(axes) if a in ("freq", "mel")), None)
    rest = [i for i in range(x.ndim) if i not in (tax, fax)]
    views = ["channels", "frequency", "all"] if fax is not None and rest else []
    if view == "auto" or (view not in views and views):
        view = "channels" if views else "auto"
    row_freqs = None
    if fax is not None and rest:
        z = x.transpose(rest + [fax, tax]).reshape(-1, x.shape[fax], x.shape[tax])  # (C, F, T)
        if view == "frequency":
            z2, row_label, row_freqs = np.abs(z).mean(0), axes[fax], _freq_hz(spec, x.shape[fax])
        elif view == "all":
            z2, row_label = z.reshape(-1, z.shape[-1]), "channel × " + axes[fax]
        else:
            z2, row_label = z.mean(1), "channel"
    elif fax is not None:
        z2, row_label, row_freqs = x.transpose([fax, tax]), axes[fax], _freq_hz(spec, x.shape[fax])
    else:
        z2 = x.transpose(rest + [tax]).reshape(-1, x.shape[tax]) if rest else x.reshape(1, -1)
        row_label = " × ".join(axes[i] for i in rest) or "value"
    z2 = np.asarray(z2, np.float32)
    if z2.shape[0] > max_rows:
        g = int(np.ceil(z2.shape[0] / max_rows))
        pad = (-z2.shape[0]) % g
        z2 = np.pad(z2, ((0, pad), (0, 0)), constant_values=np.nan)
        z2 = np.nanmean(z2.reshape(-1, g, z2.shape[1]), axis=1)
        row_label += f" (groups of {g})"
        row_freqs = None
    times = rec.times() if rec.seconds_per_step else None
    if times is not None and len(times) != z2.shape[1]:
        times = None
    if z2.shape[1] > max_steps:  # average blocks of steps: the heatmap stays light, the seconds stay right
        k = int(np.ceil(z2.shape[1] / max_steps))
        n = z2.shape[1] // k * k
        z2 = z2[:, :n].reshape(z2.shape[0], -1, k).mean(-1)
        times = None if times is None else times[:n].reshape(-1, k).mean(-1)
    return Activation(name=layer, values=z2, times=times, axes=list(rec.axes or []), shape=tuple(rec.shape),
                      row_label=row_label, row_freqs=row_freqs, seconds_per_step=rec.seconds_per_step,
                      module_type=rec.module_type, views=views)


# =====================================================================================
# Embeddings
# =====================================================================================
def embedding_layers(model) -> list[str]:
    """Layers to map: ``"output"`` first for a ``tf_embeddings`` model, then every module path."""
    spec, _ = _spec_and_lock(model)
    head = ["output"] if spec.output_kind == "tf_embeddings" else []
    return head + layer_names(model)


def analyse_embeddings(model, example, layer: str = "output", *, projection: str = "pca", n_clusters: int = 2,
                       budget: int = 2000, threshold_db: float = 40.0, seed: int = 0) -> dict:
    """Embeddings of one clip at ``layer``: points, a 2-D map, clusters, their audio and oracle agreement.

    Parameters
    ----------
    model : SharedModel or ModelSpec
    example : AudioExample or np.ndarray [shape=(n,)]
    layer : str
        ``"output"`` for the model's ``tf_embeddings``; otherwise a module path (captured).
    projection : {"pca", "umap"}
        PCA is instant; UMAP shows clusters better but compiles numba kernels on first use.
    n_clusters : int
    budget : int
        Most points drawn (energy-stratified).

    Returns
    -------
    dict
        ``clip`` (ClipEmbeddings), ``points`` (EmbeddingPoints), ``coords [shape=(n, 2)]``,
        ``trustworthiness``, ``projection``, ``clusters`` (fitted EmbeddingClusters),
        ``colourings`` (name → values/kind/names), ``cluster_audio [shape=(k, n)]``,
        ``cluster_masks [shape=(k, F, T)]``, ``agreement`` (dict or None), ``sr``.
    """
    from .analyze import embeddings as E

    spec, lock = _spec_and_lock(model)
    with lock:
        if layer in (None, "", "output", "tf_embeddings"):
            if spec.output_kind != "tf_embeddings":
                raise AnalysisError(f"{spec.name} emits {spec.output_kind!r}, not tf_embeddings: pick a layer to map")
            clip = E.embeddings_from_model(spec, example)
        else:
            clip = E.embeddings_from_layer(spec, example, layer)
    points = E.select_points(clip, threshold_db=threshold_db, budget=budget, seed=seed)
    if len(points) < max(3, n_clusters):
        raise AnalysisError(f"only {len(points)} non-silent embedding cells at layer {layer!r}; need at least "
                            f"{max(3, n_clusters)}")
    if projection == "umap":
        try:  # numba's machine code cached on disk: later app processes skip most of the JIT time
            E.enable_jit_cache()
        except Exception:  # pragma: no cover - a read-only home only costs the cache
            pass
    emap = E.EmbeddingMap(projection, cache_size=0).fit(points)
    km = E.EmbeddingClusters(int(n_clusters), random_state=seed).fit(points)
    audio = km.separate(clip)
    agreement = None
    if points.source is not None:
        try:
            agreement = E.oracle_agreement(km, points)
        except AnalysisError:
            agreement = None
    return {"clip": clip, "points": points, "coords": emap.embedding_, "trustworthiness": float(emap.trustworthiness_),
            "projection": projection, "clusters": km, "colourings": E.colourings(points, clusters=km),
            "cluster_audio": audio, "cluster_masks": km.masks(clip), "agreement": agreement, "sr": clip.sr,
            "layer": layer, "kind": clip.kind}


# =====================================================================================
# Attribution
# =====================================================================================
def target_options(model, example=None) -> list[str]:
    """Target strings that make sense for this model and clip (first = the default).

    Detection: each ground-truth event of the example (class over its span), then each
    class over the whole clip. Separation: each source. Embeddings: each cluster.
    """
    spec, _ = _spec_and_lock(model)
    kind = spec.output_kind
    opts: list[str] = []
    if kind in ("frame_probs", "clip_scores"):
        for ev in (getattr(example, "events", None) or []):
            t = f",t={float(ev['onset']):.2f}:{float(ev['offset']):.2f}" if kind == "frame_probs" else ""
            s = f"class={ev['label']}{t}"
            if s not in opts:
                opts.append(s)
        opts += [f"class={c}" for c in (spec.classes or [])]
    elif kind in ("masks", "sources"):
        n = spec.n_sources or 2
        opts += [f"source={i + 1}" for i in range(int(n))]
    elif kind == "tf_embeddings":
        opts += [f"cluster={i + 1}" for i in range(int(spec.n_sources or 2))]
    return opts


def analyse_attribution(model, example, target: str | None = None, *, method: str = "saliency", steps: int = 16,
                        baseline: str = "silence", top_percent: float = 10.0, deletion: bool = True,
                        n_fractions: int = 11, seed: int = 0) -> dict:
    """Attribute a target, make it listenable and test it by deletion.

    Parameters
    ----------
    target : str, optional
        A target string (``"class=bell,t=3:3.5"``, ``"source=1"``, ``"cluster=1"``);
        ``None``: the model's default for this example.
    method : str
        One of :data:`probe.attribution.METHODS`.
    steps : int
        IG / GradientShap steps.
    top_percent : float
        Share of bins kept in the listenable explanation.
    deletion : bool
        Also run the deletion test (attribution order vs random order).

    Returns
    -------
    dict
        ``attribution`` (Attribution), ``explanation`` and ``complement`` (audio ``(n,)``),
        ``sr``, ``deletion`` (dict from :func:`probe.analyze.faithfulness.deletion_test` or
        ``None``), ``summary``.
    """
    from .attribution import attribute, listen

    spec, lock = _spec_and_lock(model)
    with lock:
        attr = attribute(spec, example, target or None, method=method, steps=int(steps), baseline=baseline, seed=seed)
        expl, comp = listen(attr, top_percent=float(top_percent))
        dele = None
        if deletion:
            from .analyze.faithfulness import deletion_test

            fr = np.round(np.linspace(0.0, 1.0, int(n_fractions)), 4)
            dele = deletion_test(spec, attr, fractions=fr, n_random=1, seed=seed, insertion=False)
    peak = max(1.0, float(np.abs(expl).max(initial=0)), float(np.abs(comp).max(initial=0)))
    return {"attribution": attr, "explanation": (expl / peak).astype(np.float32),
            "complement": (comp / peak).astype(np.float32), "sr": attr.sample_rate, "deletion": dele,
            "summary": attr.summary(), "target": str(attr.target), "top_percent": float(top_percent)}


# =====================================================================================
# Figure modules written by others
# =====================================================================================
def figure_builder(area: str, name: str):
    """``probe.figures.<area>.<name>``, or :class:`Unavailable` saying which piece is missing.

    The app's pages call the builders through this, so a figure module that is still being
    written shows up as a message on its page instead of breaking the app.
    """
    try:
        module = importlib.import_module(f"probe.figures.{area}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("probe.figures"):
            raise Unavailable(f"the figure module probe.figures.{area} is not installed yet") from None
        raise
    fn = getattr(module, name, None)
    if fn is None:
        raise Unavailable(f"probe.figures.{area} has no figure builder {name!r} yet "
                          f"(it has: {', '.join(n for n in getattr(module, '__all__', []) if not n.startswith('_'))})")
    return fn
