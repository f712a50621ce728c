"""The per-batch function: clips in, one table of per-clip × per-layer rows out.

:class:`CorpusWorker` is the *only* place where audio meets the model in a corpus run.
The in-process engine calls one instance batch after batch; on the Ray engine each Ray
worker process builds one (and loads the model) on its first batch and keeps it for later
batches and runs (see ``probe.corpus.run._ray_task``). Both therefore produce the same
rows from the same clips.

One output row per (clip, layer, variant), where variant is ``"trained"`` or
``"random"`` (a randomly initialised copy of the model, the control every analysis
compares with). A clip that cannot be used yields one row with ``status="bad"`` and
the reason, so the engines count it and a resumed run does not retry it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..errors import AnalysisError, AudioError, ProbeError
from .concepts import DEFAULT_CONCEPTS, align_tracks, concept_tracks, octave_bands
from .inputs import Clip, load_clip

__all__ = ["RunOptions", "CorpusWorker", "random_init_copy", "output_schema", "concept_names", "resolve_spec"]

log = logging.getLogger("probe.corpus")


@dataclass(frozen=True)
class RunOptions:
    """Every default of a corpus run (the CLI and the pipeline read them from here).

    Attributes
    ----------
    layers : tuple of str
        Module paths or globs (see :func:`probe.hooks.select_layers`); each selected
        module's primary output is analysed.
    frames_per_clip : int or None
        Budget of evenly spaced steps kept per clip and layer for the frame table
        (dissection, frame probes, quantiles). ``None`` keeps every step. Pooled features
        (mean/max) and unit statistics always use every step. Even spacing keeps the
        order, so circular-shift nulls stay meaningful.
    concepts : tuple of str
        Acoustic concepts (see :mod:`probe.corpus.concepts`); ``()`` for none.
    random_init : bool
        Also run a randomly initialised copy of the model (the dissection and probing
        baseline). Doubles the model time.
    seed : int
        Seed of the random-init copy.
    batch_size : int
        Clips per batch (and per Ray ``map_batches`` call).
    min_seconds, max_seconds : float
        Clips outside these durations are skipped as bad.
    top_k : int
        Top activating excerpts kept per unit.
    hop_seconds : float
        Base grid of the concept tracks.
    engine : {"inprocess", "ray"}
        ``ray`` runs the same worker in Ray Data tasks on Ray's worker processes.
    workers : int
        Ray workers (tasks at a time), one CPU each (ignored in-process).
    ray_address : str, optional
        A Ray cluster to join instead of starting a local Ray.
    """

    layers: tuple = ()
    frames_per_clip: int | None = 64
    concepts: tuple = DEFAULT_CONCEPTS
    random_init: bool = True
    seed: int = 0
    batch_size: int = 8
    min_seconds: float = 0.1
    max_seconds: float = 600.0
    top_k: int = 5
    hop_seconds: float = 0.01
    engine: str = "inprocess"
    workers: int = 1
    ray_address: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"], d["concepts"] = list(self.layers), list(self.concepts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunOptions":
        d = dict(d)
        d["layers"], d["concepts"] = tuple(d.get("layers", ())), tuple(d.get("concepts", ()))
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


def concept_names(concepts, sr: int) -> list[str]:
    """Names of the tracks ``concepts`` produce at rate ``sr``, in table order."""
    out = []
    for c in DEFAULT_CONCEPTS:
        if c not in concepts:
            continue
        if c == "bands":
            out += [f"band_{lo}_{hi}" for lo, hi in octave_bands(sr)]
        elif c == "f0":
            out += ["voiced", "register"]
        else:
            out.append(c)
    return out


def output_schema(concepts: list[str]):
    """The pyarrow schema of worker rows (fixed per run, so every part file matches)."""
    import pyarrow as pa

    f32, f64 = pa.list_(pa.float32()), pa.list_(pa.float64())
    fields = [("clip_id", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("duration", pa.float64()),
              ("layer", pa.string()), ("variant", pa.string()), ("n_units", pa.int32()), ("n_steps", pa.int32()),
              ("seconds_per_step", pa.float64()), ("time_offset", pa.float64()),
              ("step_index", pa.list_(pa.int32())), ("step_time", f32), ("acts", f32),
              ("pooled_mean", f32), ("pooled_max", f32), ("unit_sum", f64), ("unit_sumsq", f64),
              ("unit_max", f32), ("unit_argmax_time", f32)]
    fields += [(f"c:{c}", f32) for c in concepts]
    return pa.schema(fields)


def resolve_spec(model):
    """A ModelSpec from a spec, a ``zoo:NAME`` / ``.toml`` reference, or a zero-argument factory."""
    from ..adapter import ModelSpec

    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        from ..resolve import load

        return load(model)
    if callable(model):
        spec = model()
        if not isinstance(spec, ModelSpec):
            raise AnalysisError(f"the model factory returned {type(spec).__name__}, not a ModelSpec")
        return spec
    raise AnalysisError(f"model must be a ModelSpec, a reference string or a factory, given {type(model).__name__}")


def random_init_copy(spec, *, seed: int = 0):
    """The same architecture with freshly initialised weights (every ``reset_parameters``), seeded.

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> spec = ModelSpec(torch.nn.Conv1d(1, 2, 4), input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> rnd = random_init_copy(spec, seed=0)
    >>> bool(torch.equal(rnd.model.weight, spec.model.weight)), rnd.name
    (False, 'Conv1d:random-init')
    """
    import torch

    model = copy.deepcopy(spec.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in model.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
    model.eval()
    return dataclasses.replace(spec, model=model, name=f"{spec.name}:random-init", info=dict(spec.info))


class _NoBatchAxis(AnalysisError):
    """A layer folds the batch into another axis (frames into the batch, say): its clips run one at a time."""


def _unit_tensor(rec, n_items: int) -> np.ndarray:
    """A layer's record → ``(n_items, n_steps, n_units)`` float32; axes other than batch/time/units are averaged.

    Examples
    --------
    >>> import torch
    >>> from probe.hooks import Record
    >>> rec = Record(name="conv", module="conv", module_type="Conv1d", call=0,
    ...              tensor=torch.arange(24.).reshape(2, 3, 4), axes=["batch", "channel", "time"], time_axis=2)
    >>> _unit_tensor(rec, 2).shape  # (clips, steps, units)
    (2, 4, 3)
    """
    x = rec.numpy()
    axes = list(rec.axes or [])
    tax = rec.time_axis
    if tax is None or not axes:
        raise AnalysisError(f"layer {rec.name!r} has no time axis (shape {list(x.shape)}, axes {axes}); "
                            "pick a layer that keeps time")
    if "batch" in axes:
        bax = axes.index("batch")
    else:  # no batch axis: one item
        if n_items != 1:
            raise _NoBatchAxis(f"layer {rec.name!r} has no batch axis (axes {axes}) but the batch holds {n_items} clips")
        x, axes, bax = x[None], ["batch"] + axes, 0
    x = np.moveaxis(x, bax, 0)
    axes = axes[:bax] + axes[bax + 1:]  # the per-item axes
    tax = axes.index("time")
    unit_ax = next((i for i, a in enumerate(axes) if a == "channel" or a.startswith("dim")), None)
    if unit_ax is None:
        unit_ax = next((i for i, a in enumerate(axes) if i != tax), None)
    if unit_ax is None:
        x = x[:, None]
        axes = ["unit"] + axes
        unit_ax, tax = 0, tax + 1
    other = tuple(i for i in range(len(axes)) if i not in (unit_ax, tax))
    if other:
        x = x.mean(axis=tuple(1 + i for i in other))
        keep = [i for i in range(len(axes)) if i not in other]
        unit_ax, tax = keep.index(unit_ax), keep.index(tax)
    return np.ascontiguousarray(np.moveaxis(x, (1 + tax, 1 + unit_ax), (1, 2)), dtype=np.float32)


class CorpusWorker:
    """Build once (model, random-init copy, layers), then call on batch after batch.

    Parameters
    ----------
    model : ModelSpec, str or callable
        A spec, or a reference (``zoo:NAME``, spec ``.toml``) or zero-argument factory,
        resolved here. (The Ray engine hands each Ray worker the spec the driver checked the
        layers with, its caches included; the reference only when that spec cannot be pickled.)
    options : RunOptions or dict

    threads : int, optional
        Set torch's intra-op threads in this process (a Ray worker given one CPU uses one
        thread, as the in-process engine does at one core); ``None`` leaves it alone.

    Call with a batch (a ``pyarrow.Table`` or dict of columns ``clip_id``, ``path``,
    ``label``, ``events``, ``split``, ``group``) and get a ``pyarrow.Table`` of
    :func:`output_schema` rows.
    """

    def __init__(self, model, options, threads: int | None = None):
        from ..hooks import select_layers

        if threads is not None:
            import torch

            torch.set_num_threads(int(threads))

        self.options = options if isinstance(options, RunOptions) else RunOptions.from_dict(options)
        self.spec = resolve_spec(model)
        self.spec.model.eval()
        if not self.options.layers:
            raise AnalysisError("name at least one layer to analyse (layers=...)")
        self.layers = select_layers(self.spec.model, list(self.options.layers))
        self.random = random_init_copy(self.spec, seed=self.options.seed) if self.options.random_init else None
        self.concepts = concept_names(self.options.concepts, self.spec.sample_rate)
        self.schema = output_schema(self.concepts)
        self.seconds = {"load": 0.0, "model": 0.0, "concepts": 0.0}
        self._one_clip_per_forward = False  # set once a layer is found without a batch axis

    def describe_layers(self, seconds: float = 1.0, longest: float = 32.0) -> dict:
        """Run one short noise clip and return each layer's ``n_units``, ``seconds_per_step``, ``time_offset``.

        The clip is ``seconds`` long, doubled up to ``longest`` while the model refuses it (a windowed
        encoder that needs more input). Raises :class:`~probe.errors.AnalysisError` for a layer without
        a time axis, before a corpus run starts rather than on its first batch.
        """
        rng = np.random.default_rng(0)
        while True:
            y = (1e-2 * rng.standard_normal(int(seconds * self.spec.sample_rate))).astype(np.float32)
            try:
                rows = self._forward([(Clip("probe", ""), y)], variants=("trained",))[0]
                break
            except ProbeError:
                raise
            except Exception:  # too short for this model: try a longer clip
                if seconds * 2 > longest:
                    raise
                seconds *= 2
        return {r["layer"]: {"n_units": int(r["n_units"]), "seconds_per_step": r["seconds_per_step"],
                             "time_offset": r["time_offset"]} for r in rows}

    # ---- one batch --------------------------------------------------------------------
    def __call__(self, batch):
        import pyarrow as pa

        cols = batch.to_pydict() if isinstance(batch, pa.Table) else {k: list(v) for k, v in batch.items()}
        clips = [Clip.from_row({k: cols[k][i] for k in cols}) for i in range(len(cols["clip_id"]))]
        rows: list = []
        good: list = []
        sr = self.spec.sample_rate
        for clip in clips:
            t0 = time.perf_counter()
            try:
                y = load_clip(clip, sr, min_seconds=self.options.min_seconds, max_seconds=self.options.max_seconds)
            except AudioError as exc:
                log.warning("skipping clip %s: %s", clip.clip_id, exc)
                rows.append(self._bad_row(clip, str(exc)))
                continue
            finally:
                self.seconds["load"] += time.perf_counter() - t0
            good.append((clip, y))
        # equal-length clips share one forward pass; the rest run alone (no padding changes any output)
        groups: dict = {}
        for clip, y in good:
            groups.setdefault(len(y), []).append((clip, y))
        out_rows: dict = {}
        for n, items in groups.items():
            try:
                if self._one_clip_per_forward and len(items) > 1:
                    raise _NoBatchAxis("known")
                per_clip = self._forward(items)
            except _NoBatchAxis:  # a layer mixes the clips of a batch: one forward per clip
                self._one_clip_per_forward = True
                per_clip = [self._forward([item])[0] for item in items]
            except ProbeError:
                raise
            except Exception as exc:  # a model that fails on this length: the clips are bad, not the run
                for clip, _ in items:
                    out_rows[clip.clip_id] = [self._bad_row(clip, f"model failed: {type(exc).__name__}: {exc}")]
                continue
            for (clip, y), layer_rows in zip(items, per_clip):
                t0 = time.perf_counter()
                ct = concept_tracks(y, sr, concepts=self.options.concepts, hop_seconds=self.options.hop_seconds) \
                    if self.concepts else None
                self.seconds["concepts"] += time.perf_counter() - t0
                for r in layer_rows:
                    r["duration"] = len(y) / sr
                    if ct is not None:
                        aligned = align_tracks(ct, r["step_time"], r["seconds_per_step"])
                        for c in self.concepts:
                            r[f"c:{c}"] = aligned[c]
                out_rows[clip.clip_id] = layer_rows
        for clip in clips:  # input order
            rows.extend(out_rows.get(clip.clip_id, []))
        return self._table(rows)

    def _forward(self, items, variants=("trained", "random")) -> list:
        import torch

        from ..hooks import capture

        ys = np.stack([y for _, y in items])
        per_clip = [[] for _ in items]
        for variant, spec in (("trained", self.spec), ("random", self.random)):
            if spec is None or variant not in variants:
                continue
            t0 = time.perf_counter()
            with torch.no_grad(), capture(spec, self.layers) as cache:
                spec.model(spec.features(ys))
            self.seconds["model"] += time.perf_counter() - t0
            for layer in self.layers:
                rec = cache[layer]
                sps = rec.seconds_per_step
                if sps is None:
                    raise AnalysisError(f"layer {layer!r} has no time axis with seconds per step (axes {rec.axes}); "
                                        "pick a layer that keeps time")
                offset = float(getattr(rec, "time_offset", None) or 0.0)
                rows = self._layer_rows([clip for clip, _ in items], layer, variant, _unit_tensor(rec, len(items)),
                                        float(sps), offset)
                for b, row in enumerate(rows):
                    per_clip[b].append(row)
        return per_clip

    def _layer_rows(self, clips, layer, variant, A, sps, offset) -> list:
        """One row per clip from the batch's ``(n_items, n_steps, n_units)`` unit tensor ``A``; the statistics
        are computed over the whole batch at once (each item's own steps only)."""
        n_items, n_steps, n_units = A.shape
        budget = self.options.frames_per_clip
        if budget and n_steps > budget:
            keep = np.unique(np.linspace(0, n_steps - 1, int(budget)).round().astype(np.int32))
        else:
            keep = np.arange(n_steps, dtype=np.int32)
        times = (offset + np.arange(n_steps) * sps).astype(np.float32)
        A64 = A.astype(np.float64)
        pooled_mean, unit_max = A.mean(axis=1), A.max(axis=1)
        unit_sum, unit_sumsq = A64.sum(axis=1), (A64 * A64).sum(axis=1)
        argmax_time = times[A.argmax(axis=1)]
        acts = A[:, keep]
        step_time = times[keep]
        return [{"clip_id": clip.clip_id, "status": "ok", "reason": None, "layer": layer, "variant": variant,
                 "n_units": n_units, "n_steps": n_steps, "seconds_per_step": sps, "time_offset": offset,
                 "step_index": keep, "step_time": step_time, "acts": acts[b].ravel(),
                 "pooled_mean": pooled_mean[b], "pooled_max": unit_max[b],
                 "unit_sum": unit_sum[b], "unit_sumsq": unit_sumsq[b],
                 "unit_max": unit_max[b], "unit_argmax_time": argmax_time[b]} for b, clip in enumerate(clips)]

    def _bad_row(self, clip, reason: str) -> dict:
        return {"clip_id": clip.clip_id, "status": "bad", "reason": reason}

    def _table(self, rows):
        """Rows → one pyarrow table, column by column: list columns are built from the numpy
        arrays themselves (values + offsets), never through Python lists."""
        import pyarrow as pa

        arrays = []
        for f in self.schema:
            vals = [r.get(f.name) for r in rows]
            if pa.types.is_list(f.type):
                arrays.append(_list_array(vals, f.type))
            else:
                arrays.append(pa.array(vals, type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _list_array(vals: list, typ):
    """A pyarrow list array from per-row numpy arrays (``None`` = null row), without copying to Python."""
    import pyarrow as pa

    dtype = typ.value_type.to_pandas_dtype()
    present = [v is not None for v in vals]
    lengths = np.array([len(v) if v is not None else 0 for v in vals], dtype=np.int32)
    offsets = np.zeros(len(vals) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    parts = [np.asarray(v, dtype=dtype).ravel() for v in vals if v is not None]
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    mask = None if all(present) else pa.array(~np.asarray(present, dtype=bool))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=typ.value_type), type=typ, mask=mask)


def clips_table(clips):
    """The manifest's clips as a pyarrow table (the engines' input)."""
    import pyarrow as pa

    rows = [c.to_row() for c in clips]
    return pa.Table.from_pylist(rows, schema=pa.schema([("clip_id", pa.string()), ("path", pa.string()),
                                                         ("label", pa.string()), ("events", pa.string()),
                                                         ("split", pa.string()), ("group", pa.string())]))


__all__ += ["clips_table"]
