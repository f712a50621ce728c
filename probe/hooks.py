"""Capture activations (and gradients) of any PyTorch audio model, with seconds attached.

::

    with probe.capture(spec, layers="blstm*") as cache:
        spec.forward(y)
    rec = cache["blstm"]
    rec.tensor.shape, rec.axes, rec.seconds_per_step

Hooks are registered on entry and removed in ``finally``, so they never outlive the
``with`` block, even when the forward raises. Hooks only record calls made from the
thread that entered the context, so two threads capturing from one shared model (the
app's sessions) never see each other's records. Nothing here is module-level state.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._shapes import PROBING_ATTR, _tensors, preserved_mode, probe_shapes  # noqa: F401
from .errors import CaptureError, LayerNotFoundError, SpecError

__all__ = ["capture", "capture_audio", "Capture", "Cache", "Record", "select_layers"]


# ---- layer selection -------------------------------------------------------------------
def select_layers(model, layers, *, _named=None) -> list[str]:
    """Resolve a layer selector to module paths, in module order.

    ``layers`` may be a glob (``"blstm*"``, ``"*"`` = every submodule), an exact name, a
    regex (``re.compile(...)`` or a string starting with ``"re:"``), a list of names/globs,
    a module type (``torch.nn.Conv1d``) or tuple of types, or a predicate
    ``f(name, module) -> bool``. A selector that matches nothing raises
    :class:`LayerNotFoundError` listing the closest names.
    """
    import torch.nn as nn

    named = _named if _named is not None else [(n, m) for n, m in model.named_modules() if n]
    names = [n for n, _ in named]
    if not names:
        raise LayerNotFoundError(f"{type(model).__name__} has no submodules, so there is no layer to select; wrap it "
                                 "(torch.nn.Sequential(model)) to capture its output")
    if layers is None:
        layers = "*"
    if isinstance(layers, type) and issubclass(layers, nn.Module) or (
            isinstance(layers, tuple) and layers and all(isinstance(t, type) for t in layers)):
        out = [n for n, m in named if isinstance(m, layers)]
        if not out:
            raise LayerNotFoundError(f"no module of type {layers} in {type(model).__name__}; "
                                     f"types present: {sorted({type(m).__name__ for _, m in named})[:12]}")
        return out
    if isinstance(layers, re.Pattern):
        out = [n for n in names if layers.search(n)]
        if not out:
            raise LayerNotFoundError(f"regex {layers.pattern!r} matches no layer; layers: {names[:20]}")
        return out
    if callable(layers) and not isinstance(layers, str):
        out = [n for n, m in named if layers(n, m)]
        if not out:
            raise LayerNotFoundError("the layer predicate selected no layer")
        return out
    selectors = [layers] if isinstance(layers, str) else list(layers)
    chosen: set = set()
    for sel in selectors:
        if not isinstance(sel, str):
            raise LayerNotFoundError(f"layer selectors must be strings here, given {sel!r}")
        if sel.startswith("re:"):
            try:
                pattern = re.compile(sel[3:])
            except re.error as exc:
                raise LayerNotFoundError(f"layer selector {sel!r} is not a valid regular expression: {exc}") from None
            hit = [n for n in names if pattern.search(n)]
        elif any(c in sel for c in "*?["):
            hit = fnmatch.filter(names, sel)
        else:
            hit = [sel] if sel in names else []
        if not hit:
            close = difflib.get_close_matches(sel, names, n=5, cutoff=0.4)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; layers: {', '.join(names[:12])}"
            raise LayerNotFoundError(f"no layer named {sel!r} in {type(model).__name__}{hint}")
        chosen.update(hit)
    return [n for n in names if n in chosen]


def _check_hookable(model, modules=None) -> None:
    import torch

    modules = model.modules() if modules is None else modules
    if isinstance(model, torch.jit.ScriptModule) or any(isinstance(m, torch.jit.ScriptModule) for m in modules):
        raise CaptureError(
            f"{type(model).__name__} is (or contains) a TorchScript module: compiled graphs do not call Python hooks. "
            "Capture the eager nn.Module instead (the model before torch.jit.script/trace, rebuilt from its code "
            "and state_dict).")


# ---- records ---------------------------------------------------------------------------
@dataclass
class Record:
    """One captured tensor.

    Attributes
    ----------
    name : str
        Key in the cache: the module path, with ``/i/j`` for parts of tuple/dict outputs
        (``"blstm/1/0"`` is an LSTM's ``h_n``) and ``@k`` for the k-th extra call.
    tensor : torch.Tensor
        Detached copy (on ``device``, in ``dtype`` if requested).
    axes : list of str
        Meaning of each axis: ``batch``, ``time``, ``freq`` (linear bins) or ``mel``,
        ``channel``, ``dim1``… (``None`` until known; known for ModelSpec captures).
    time_axis : int or None
    seconds_per_step : float or None
        Seconds between consecutive steps along ``time_axis`` (after any ``every``).
    time_offset : float or None
        Seconds of the centre of step 0: step ``k`` describes the audio around
        ``time_offset + k * seconds_per_step`` (a model with a 1.6 s window and a 0.1 s hop
        has ``time_offset = 0.8``). ``None`` reads as 0.
    time_source : str or None
        ``"inferred"`` (exact shape probe), ``"spec"`` (the spec's ``[time]`` table) or
        ``"given"`` (an argument / CLI override).
    grad : torch.Tensor or None
        Gradient w.r.t. this output, when ``grads=True`` and a backward pass ran.
    inputs : list of torch.Tensor or None
        The module's tensor inputs, when ``inputs=True``.
    """

    name: str
    module: str
    module_type: str
    call: int
    tensor: Any = None
    axes: list | None = None
    time_axis: int | None = None
    seconds_per_step: float | None = None
    time_offset: float | None = None
    time_source: str | None = None
    grad: Any = None
    inputs: list | None = None
    reduced: str | None = None
    path: Path | None = field(default=None, repr=False)

    def load(self):
        """The tensor, read from disk for streamed records."""
        if self.tensor is None and self.path is not None:
            from safetensors.torch import load_file

            return load_file(str(self.path))["tensor"]
        return self.tensor

    @property
    def shape(self) -> tuple:
        return tuple(self.load().shape)

    def times(self) -> np.ndarray | None:
        """Seconds of every step along the time axis: ``time_offset + k * seconds_per_step`` (``None`` if no time axis)."""
        if self.time_axis is None or self.seconds_per_step is None:
            return None
        return (self.time_offset or 0.0) + np.arange(self.shape[self.time_axis]) * self.seconds_per_step

    def numpy(self) -> np.ndarray:
        return self.load().float().numpy()

    def to(self, device=None, dtype=None) -> "Record":
        r = Record(**{k: getattr(self, k) for k in ("name", "module", "module_type", "call", "axes", "time_axis",
                                                    "seconds_per_step", "time_offset", "time_source", "reduced",
                                                    "path")})
        r.tensor = self.load().to(device=device, dtype=dtype)
        r.grad = None if self.grad is None else self.grad.to(device=device, dtype=dtype)
        r.inputs = None if self.inputs is None else [t.to(device=device, dtype=dtype) for t in self.inputs]
        return r

    def describe(self) -> dict:
        return {"shape": list(self.shape), "axes": self.axes, "time_axis": self.time_axis,
                "seconds_per_step": self.seconds_per_step, "time_offset": self.time_offset,
                "time_source": self.time_source, "module_type": self.module_type, "reduced": self.reduced}


class Cache:
    """Dict-like view of captured records, keyed by name (see :class:`Record`).

    ``cache[name]`` is the :class:`Record`; ``cache.tensors()`` maps names to tensors;
    ``cache.to(device)`` copies everything.
    """

    def __init__(self, records=None, spec_dict=None):
        self._records: "OrderedDict[str, Record]" = OrderedDict(records or {})
        self._spec_dict = spec_dict  # a dict, or a callable producing it on first use
        self.audio: dict = {}

    @property
    def spec_dict(self) -> dict | None:
        """The model spec's description (see ``ModelSpec.to_dict``), if captured through a spec."""
        if callable(self._spec_dict):
            self._spec_dict = self._spec_dict()
        return self._spec_dict

    def __getitem__(self, name: str) -> Record:
        try:
            return self._records[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._records), n=5, cutoff=0.4)
            raise LayerNotFoundError(f"nothing captured under {name!r}"
                                     + (f"; did you mean {', '.join(map(repr, close))}?" if close else
                                        f"; captured: {', '.join(list(self._records)[:12])}")) from None

    def __contains__(self, name) -> bool:
        return name in self._records

    def __iter__(self):
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def keys(self):
        return self._records.keys()

    def values(self):
        return self._records.values()

    def items(self):
        return self._records.items()

    names = keys

    def tensors(self) -> dict:
        return {k: r.load() for k, r in self._records.items()}

    def to(self, device=None, dtype=None) -> "Cache":
        c = Cache(OrderedDict((k, r.to(device, dtype)) for k, r in self._records.items()), self.spec_dict)
        c.audio = dict(self.audio)
        return c

    def describe(self) -> dict:
        return {k: r.describe() for k, r in self._records.items()}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {tuple(r.shape)}" for k, r in list(self._records.items())[:6])
        more = "" if len(self) <= 6 else f", … ({len(self)} records)"
        return f"Cache({inner}{more})"


# ---- the context manager -------------------------------------------------------------------
def _annotate_axes(spec, names: list[str]) -> dict:
    """``{(module, call, j): LayerTime}`` for the selected layers' outputs (model-wide probe, cached on the spec)."""
    from ._shapes import time_probe

    tp = time_probe(spec)
    wanted = set(names)
    return {(k[0], k[1], k[3]): r for k, r in tp.results.items() if k[2] == "out" and k[0] in wanted}


def _spec_time(spec, module: str) -> dict:
    """The spec's ``[time]`` overrides that apply to ``module`` (per-layer entries win)."""
    t = getattr(spec, "time", None) or {}
    out = {k: t[k] for k in ("seconds_per_step", "offset", "time_axis") if t.get(k) is not None}
    out.update({k: v for k, v in (t.get("layers") or {}).get(module, {}).items() if v is not None})
    return out


class Capture:
    """Context manager behind :func:`capture`; entering returns the :class:`Cache`."""

    def __init__(self, target, layers="*", *, grads: bool = False, inputs: bool = False, dtype=None,
                 device="cpu", reduce: str | None = None, every: int | None = None, max_steps: int | None = None,
                 stream_to=None, seconds_per_step: dict | float | None = None, time_axis: dict | int | None = None,
                 time_offset: dict | float | None = None, copy: bool | None = None):
        from .adapter import ModelSpec

        self.spec = target if isinstance(target, ModelSpec) else None
        self.model = target.model if self.spec is not None else target
        import torch.nn as nn

        if not isinstance(self.model, nn.Module):
            raise SpecError(f"capture needs a ModelSpec or torch.nn.Module, given {type(target).__name__}")
        # one traversal of the module tree serves selection, checks and hook registration
        self._named = [(n, m) for n, m in self.model.named_modules() if n]
        _check_hookable(self.model, [m for _, m in self._named])
        if reduce not in (None, "mean", "max"):
            raise SpecError(f"reduce must be None, 'mean' or 'max', given {reduce!r}")
        if every is not None and int(every) < 1 or max_steps is not None and int(max_steps) < 1:
            raise SpecError(f"every and max_steps must be positive, given every={every}, max_steps={max_steps}")
        self.names = select_layers(self.model, layers, _named=self._named)
        self.grads, self.inputs, self.dtype, self.device = grads, inputs, dtype, device
        self.reduce, self.every, self.max_steps = reduce, every, max_steps
        self.stream_to = Path(stream_to) if stream_to is not None else None
        self.sps_override, self.time_override, self.offset_override = seconds_per_step, time_axis, time_offset
        # copy=None (auto): copy records only if the model has in-place modules; otherwise keep
        # zero-copy views and verify at exit, via version counters, that nothing rewrote them
        self.copy = copy if copy is not None else any(getattr(m, "inplace", False) for _, m in self._named)
        self._reducing = bool(reduce or every or max_steps)
        self._to_cpu = str(device) == "cpu"
        self._views: list = []
        self._handles: list = []
        self._tid = None
        self._calls: dict = {}
        self._axes: dict = {}
        self.cache = Cache(spec_dict=self.spec.to_dict if self.spec is not None else None)

    # overrides may be global or per layer
    def _override(self, value, name):
        if isinstance(value, dict):
            return value.get(name)
        return value

    def __enter__(self) -> Cache:
        needs_axes = self.reduce or self.every or self.max_steps
        if self.spec is not None and needs_axes:
            self._axes = _annotate_axes(self.spec, self.names)
        if self.stream_to is not None:
            self.stream_to.mkdir(parents=True, exist_ok=True)
        self._tid = threading.get_ident()
        modules = dict(self._named)
        try:
            for name in self.names:
                self._handles.append(modules[name].register_forward_hook(self._make_hook(name, type(modules[name]).__name__)))
        except BaseException:
            self._remove()
            raise
        return self.cache

    def __exit__(self, exc_type, exc, tb):
        self._remove()
        if exc_type is None:
            changed = [name for name, t, v in self._views if t._version != v]
            self._views.clear()
            if changed:
                raise CaptureError(f"the outputs of {', '.join(changed[:5])} were modified in place after capture "
                                   "(an in-place op in forward()); capture again with copy=True")
            if self.spec is not None:
                self._fill_axes()
        self._views.clear()
        return False

    def _remove(self):
        while self._handles:
            self._handles.pop().remove()

    def _time_axis_for(self, name, call, j, ndim):
        t = self._override(self.time_override, name)
        if t is not None:
            return int(t) % ndim
        ax = self._axes.get((name, call, j)) or self._axes.get((name, 0, j))
        return ax.time_axis if ax else None

    def _make_hook(self, name: str, mtype: str) -> Callable:
        import torch

        def hook(module, inp, out):
            if threading.get_ident() != self._tid:
                return  # another thread's forward through the shared model
            probing = self.model.__dict__.get(PROBING_ATTR)
            if probing and self._tid in probing:
                return  # a shape probe's forward, not the user's
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            leaves = [("", out)] if isinstance(out, torch.Tensor) else list(_leaf_paths(out))
            in_tensors = [t.detach().to(self.device, copy=True) for t in _tensors(inp)] if self.inputs else None
            for j, (path, t) in enumerate(leaves):
                key = name + path + (f"@{call}" if call else "")
                rec = Record(name=key, module=name, module_type=mtype, call=call)
                if j == 0:
                    rec.inputs = in_tensors
                x = t.detach()
                if self._reducing:
                    tax = self._time_axis_for(name, call, j, t.ndim)
                    if tax is not None:
                        x, rec.reduced = self._reduce(x, tax)
                if self.dtype is not None:
                    x = x.to(self.dtype)
                if self.copy or self.stream_to is not None:
                    # a copy: later in-place ops (ReLU(inplace=True)) must not rewrite the record
                    x = x.to(self.device, copy=True)
                else:
                    if not (self._to_cpu and x.device.type == "cpu"):
                        x = x.to(self.device)
                    if x.data_ptr() == t.data_ptr():
                        self._views.append((key, x, x._version))
                if self.grads and t.requires_grad:
                    t.register_hook(_grad_setter(rec, self.device))
                if self.stream_to is not None:
                    from safetensors.torch import save_file

                    rec.path = self.stream_to / f"{len(self.cache):05d}.safetensors"
                    save_file({"tensor": x.contiguous()}, str(rec.path))
                else:
                    rec.tensor = x
                self.cache._records[key] = rec

        return hook

    def _reduce(self, x, tax):
        how = []
        if self.every:
            x = x.index_select(tax, _arange(x, tax, self.every))
            how.append(f"every={self.every}")
        if self.max_steps and x.shape[tax] > self.max_steps:
            idx = np.linspace(0, x.shape[tax] - 1, self.max_steps).round().astype(int)
            import torch

            x = x.index_select(tax, torch.as_tensor(idx, device=x.device))
            how.append(f"max_steps={self.max_steps}")
        if self.reduce == "mean":
            x = x.mean(dim=tax, keepdim=True)
            how.append("mean over time")
        elif self.reduce == "max":
            x = x.amax(dim=tax, keepdim=True)
            how.append("max over time")
        return x, ", ".join(how) or None

    def _fill_axes(self):
        names_needed = sorted({r.module for r in self.cache.values()})
        if not names_needed:
            return
        if not self._axes:
            try:
                self._axes = _annotate_axes(self.spec, self.names)
            except Exception:  # axis inference is a convenience; never lose the records for it
                self._axes = {}
        for rec in self.cache.values():
            j = _leaf_index(rec, self.cache)
            ax = self._axes.get((rec.module, rec.call, j)) or self._axes.get((rec.module, 0, j))
            if ax and len(ax.axes) == len(rec.shape):
                rec.axes, rec.time_axis = list(ax.axes), ax.time_axis
                if ax.seconds_per_step is not None:
                    rec.seconds_per_step = float(ax.seconds_per_step)
                    rec.time_offset = float(ax.offset) if ax.offset is not None else None
                    rec.time_source = "inferred"
            if rec.seconds_per_step is not None:
                if self.every and rec.reduced and "every" in rec.reduced:
                    rec.seconds_per_step *= self.every
                if self.max_steps and rec.reduced and "max_steps" in rec.reduced:
                    rec.seconds_per_step = None  # uneven after subsampling to a budget
                if self.reduce:
                    rec.seconds_per_step = None
            given = _spec_time(self.spec, rec.module)
            source = (getattr(self.spec, "time", None) or {}).get("source", "spec")
            for key, value in (("seconds_per_step", self.sps_override), ("offset", self.offset_override),
                               ("time_axis", self.time_override)):
                v = self._override(value, rec.module)
                if v is not None:
                    given[key] = v
                    source = "given"
            if given.get("time_axis") is not None:
                rec.time_axis = int(given["time_axis"]) % len(rec.shape)
                if rec.axes:
                    rec.axes = ["channel" if a == "time" else a for a in rec.axes]
                    rec.axes[rec.time_axis] = "time"
            if rec.time_axis is not None:
                if given.get("seconds_per_step") is not None:
                    rec.seconds_per_step, rec.time_source = float(given["seconds_per_step"]), source
                if given.get("offset") is not None:
                    rec.time_offset, rec.time_source = float(given["offset"]), source


def _arange(x, tax, every):
    import torch

    return torch.arange(0, x.shape[tax], every, device=x.device)


def _leaf_index(rec: Record, cache: Cache) -> int:
    """Position of this record among the leaves of its module call (0 = primary output)."""
    base = rec.module
    suffix = rec.name[len(base):].split("@")[0]
    if not suffix:
        return 0
    same = [k for k, r in cache.items() if r.module == rec.module and r.call == rec.call]
    return same.index(rec.name)


def _grad_setter(rec: Record, device):
    def set_grad(g):
        rec.grad = g.detach().to(device, copy=True)
    return set_grad


def _leaf_paths(obj, prefix=""):
    """(path, tensor) for every tensor in a nested output; the first leaf gets the empty path."""
    import torch
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

    first = [True]

    def walk(o, p):
        if isinstance(o, torch.Tensor):
            yield ("" if first[0] else p), o
            first[0] = False
        elif isinstance(o, PackedSequence):
            padded, _ = pad_packed_sequence(o, batch_first=True)
            yield ("" if first[0] else p), padded
            first[0] = False
        elif isinstance(o, (tuple, list)):
            for i, v in enumerate(o):
                yield from walk(v, f"{p}/{i}")
        elif isinstance(o, dict):
            for k, v in o.items():
                yield from walk(v, f"{p}/{k}")

    yield from walk(obj, prefix)


def capture(target, layers="*", **kwargs) -> Capture:
    """Record the outputs of selected layers while the ``with`` block runs the model.

    Parameters
    ----------
    target : ModelSpec or torch.nn.Module
        With a :class:`~probe.ModelSpec`, every record learns its axes (batch/time/freq/
        channel) and seconds per time step, inferred by comparing the layer's output
        shapes on two input lengths.
    layers : str, list, regex, type or callable
        See :func:`select_layers`. ``"*"`` selects every submodule.
    grads : bool
        Also record the gradient of each output (tensor hooks, filled by ``backward``).
    inputs : bool
        Also record each module's tensor inputs.
    dtype : torch.dtype, optional
        Store records in this dtype (e.g. ``torch.float16`` to halve memory).
    device : str
        Where records live (default ``"cpu"``).
    reduce : {None, "mean", "max"}
        Reduce each record over its time axis at capture time (needs a ModelSpec or ``time_axis``).
    every : int, optional
        Keep every k-th time step.
    max_steps : int, optional
        Keep at most this many (evenly spaced) time steps.
    copy : bool, optional
        Copy every record (safe under in-place ops) or keep zero-copy views. The default
        copies only when the model holds in-place modules (``ReLU(inplace=True)``); views
        are checked at exit and an in-place rewrite raises :class:`CaptureError`.
    stream_to : path, optional
        Write each record to a safetensors file as it is captured instead of keeping it in memory.
    seconds_per_step, time_offset, time_axis : float/int or dict of layer → value, optional
        Override the inferred values (the record's ``time_source`` becomes ``"given"``);
        a spec's ``[time]`` table overrides them the same way (``"spec"``).

    Returns
    -------
    Capture
        A context manager; ``with capture(...) as cache`` binds the :class:`Cache`.

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 16, stride=8), torch.nn.ReLU())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> with capture(spec, layers="*") as cache:
    ...     _ = spec.forward(np.zeros(16000, dtype=np.float32))
    >>> cache["0"].axes, cache["0"].seconds_per_step
    (['batch', 'channel', 'time'], 0.0005)
    """
    return Capture(target, layers, **kwargs)


def _chunk_step(spec) -> int:
    """Samples that are a whole number of steps of every layer (the LCM of their integer hops)."""
    import math

    step = spec.grid.hop_length if spec.input_kind != "waveform" else 1
    try:
        from ._shapes import time_probe

        hops = {r.hop for r in time_probe(spec).results.values() if r.hop is not None and r.hop.denominator == 1}
    except Exception:
        return step
    for h in hops:
        step = math.lcm(step, int(h) * (1 if spec.input_kind == "waveform" else spec.grid.hop_length))
    return step


def capture_audio(spec, y, layers="*", *, chunk_seconds: float | None = None, overlap_seconds: float = 0.0,
                  progress: bool = False, on_chunk: Callable | None = None, **kwargs) -> Cache:
    """Run ``spec`` on audio under ``no_grad`` and return the cache, optionally in chunks.

    Chunking bounds memory for long audio: each chunk's records are cut to its own span
    (``overlap_seconds`` of context on each side is computed and then dropped) and
    concatenated along their time axis. Records without a time axis keep the first chunk's value.

    ``on_chunk(records)``, when given, receives each chunk's ``{name: (Record, tensor)}``
    (tensors already cut to the chunk's span) instead of keeping them, and the returned
    cache is empty: :func:`probe.store.capture_to_run` streams long captures to disk this way.
    """
    import torch

    from .audio import validate_audio

    y = validate_audio(np.asarray(y, dtype=np.float32), sr=spec.sample_rate)
    if chunk_seconds is None or len(y) <= chunk_seconds * spec.sample_rate:
        with torch.no_grad(), capture(spec, layers, **kwargs) as cache:
            spec.model(spec.features(y))
        return cache
    from tqdm.auto import tqdm

    hop = int(chunk_seconds * spec.sample_rate)
    ctx = int(overlap_seconds * spec.sample_rate)
    # chunk boundaries must fall on every layer's frame boundaries so concatenated frames stay on the grid
    step = _chunk_step(spec)
    hop -= hop % step
    ctx -= ctx % step
    parts: dict = OrderedDict()
    meta: dict = {}
    starts = list(range(0, len(y), hop))
    for s in tqdm(starts, disable=not progress, desc="capture", unit="chunk"):
        a, b = max(0, s - ctx), min(len(y), s + hop + ctx)
        if b - a < max(2 * spec.grid.n_fft, 2):
            continue
        with torch.no_grad(), capture(spec, layers, **kwargs) as cache:
            spec.model(spec.features(y[a:b]))
        if on_chunk is not None:
            chunk_parts, parts = parts, OrderedDict()
        for k, rec in cache.items():
            t = rec.load()
            if rec.time_axis is not None and rec.seconds_per_step:
                lo = int(round((s - a) / spec.sample_rate / rec.seconds_per_step))
                n_keep = int(round((min(s + hop, len(y)) - s) / spec.sample_rate / rec.seconds_per_step))
                last = s + hop >= len(y)
                n_keep = t.shape[rec.time_axis] - lo if last else max(0, min(n_keep, t.shape[rec.time_axis] - lo))
                t = t.narrow(rec.time_axis, lo, n_keep)
                parts.setdefault(k, []).append(t)
            elif k not in parts:
                parts[k] = [t]
            meta.setdefault(k, rec)
        if on_chunk is not None:
            on_chunk(OrderedDict((k, (rec, parts[k][0])) for k, rec in cache.items() if k in parts))
            parts = chunk_parts
    out = Cache(spec_dict=spec.to_dict)
    for k, ts in parts.items():
        rec = meta[k]
        rec.tensor = torch.cat(ts, dim=rec.time_axis) if rec.time_axis is not None and len(ts) > 1 else ts[0]
        rec.path = None
        out._records[k] = rec
    return out


__all__ += ["preserved_mode"]
