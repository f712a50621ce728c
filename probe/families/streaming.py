"""Streaming (stateful) models run over a whole clip as one module with a time axis.

A streaming model is a *cell*: ``cell(chunk, state) -> (output, state)`` on a fixed-size
chunk of samples (voice-activity detectors, keyword spotters, online enhancers).
:class:`StreamingModule` runs it chunk by chunk over a clip and returns the outputs stacked
on a last **time axis** — one step per chunk, ``chunk / sample_rate`` seconds per step.

Capture sees one time series per layer, not one record per call: while the chunk loop
runs, the cell's own forward hooks (capture's, shape probes') are set aside; each module's
per-chunk outputs are collected, stacked on a new last axis, and the set-aside hooks are
called **once** with the stacked tensor. ``probe capture`` on a cell called 133 times thus
gives ``cell.conv1`` of shape ``(..., 133)``, not ``conv1@0 … conv1@132``.

In a spec file::

    [model]
    factory = "vad:build_cell"        # returns the cell
    streaming = {chunk = 512, context = 64}
    [input]
    kind = "waveform"
    sample_rate = 16000
    [output]
    kind = "frame_probs"              # the stacked cell outputs (B, C, n_chunks)
    classes = ["speech"]

Notes
-----
Gradients flow through the chunk loop (the stacked output is built from every chunk's
graph), so attribution works; records captured from inside the cell are stacked copies,
so ``capture(..., grads=True)`` gives no gradients for them. One forward at a time runs on
a given StreamingModule (the set-aside hooks are per module, guarded by a lock).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

from ..errors import SpecError

__all__ = ["StreamingModule", "streaming_from_spec"]


def _stack(items, dim: int = -1):
    """Stack a list of per-chunk outputs (tensors, tuples/lists/dicts of them, or None) on a new ``dim``."""
    import torch

    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(items), dim=dim if dim >= 0 else first.ndim + 1 + dim)
    if isinstance(first, (tuple, list)):
        return type(first)(_stack([it[k] for it in items], dim) for k in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items], dim) for k in first}
    return first


def _make_class():
    import torch
    import torch.nn as nn

    class StreamingModule(nn.Module):
        """Run ``cell(chunk, state) -> (output, state)`` over a clip; outputs stacked on a last time axis.

        Parameters
        ----------
        cell : torch.nn.Module
            Called as ``cell(x, state)`` with ``x`` of shape ``(B, context + chunk)`` (or
            ``(B, 1, context + chunk)`` with ``cell_layout="bcn"``) and ``state=None`` on the
            first chunk; returns ``(output, new_state)`` (a bare tensor = stateless).
        chunk : int
            New samples per call; one output step per chunk.
        context : int
            Samples of the previous audio prepended to each chunk (zeros before the start).
        cell_layout : {"bn", "bcn"}

        Examples
        --------
        >>> import torch
        >>> class Energy(torch.nn.Module):
        ...     def forward(self, x, state):
        ...         e = x.pow(2).mean(-1, keepdim=True)
        ...         s = e if state is None else 0.5 * state + 0.5 * e
        ...         return s, s
        >>> m = StreamingModule(Energy(), chunk=160)
        >>> tuple(m(torch.ones(2, 1600)).shape)      # (B, 1, n_chunks): 10 steps of 10 ms
        (2, 1, 10)
        """

        def __init__(self, cell, *, chunk: int, context: int = 0, cell_layout: str = "bn"):
            super().__init__()
            if int(chunk) < 1 or int(context) < 0:
                raise SpecError(f"streaming needs chunk >= 1 and context >= 0, given chunk={chunk}, context={context}")
            if cell_layout not in ("bn", "bcn"):
                raise SpecError(f"streaming cell_layout must be 'bn' or 'bcn', given {cell_layout!r}")
            self.cell = cell
            self.chunk, self.context, self.cell_layout = int(chunk), int(context), cell_layout
            self._lock = threading.RLock()

        def __getstate__(self):  # copies (deepcopy, pickle) get a lock of their own
            state = self.__dict__.copy()
            state.pop("_lock", None)
            return state

        def __setstate__(self, state):
            super().__setstate__(state)
            self._lock = threading.RLock()

        def extra_repr(self) -> str:
            return f"chunk={self.chunk}, context={self.context}, cell_layout={self.cell_layout!r}"

        def n_steps(self, n_samples: int) -> int:
            """Output steps for ``n_samples`` of audio (the last partial chunk is zero-padded)."""
            return max(1, math.ceil(int(n_samples) / self.chunk))

        def forward(self, y):
            if y.ndim == 3 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 2:
                raise SpecError(f"StreamingModule takes a waveform batch (B, n), given shape {tuple(y.shape)}")
            n_chunks = self.n_steps(y.shape[-1])
            y = torch.nn.functional.pad(y, (self.context, n_chunks * self.chunk - y.shape[-1]))
            modules = [m for _, m in self.cell.named_modules()]
            with self._lock:
                saved, seen = {}, {}
                try:
                    for m in modules:   # set the outer hooks aside; collect each module's calls instead
                        saved[m] = (m._forward_hooks, m._forward_hooks_with_kwargs)
                        m._forward_hooks, m._forward_hooks_with_kwargs = OrderedDict(), OrderedDict()
                        if saved[m][0]:
                            m.register_forward_hook(self._collector(seen, m))
                    outs, state = [], None
                    for k in range(n_chunks):
                        x = y[:, k * self.chunk: k * self.chunk + self.context + self.chunk]
                        r = self.cell(x.unsqueeze(1) if self.cell_layout == "bcn" else x, state)
                        out, state = (r[0], r[1]) if isinstance(r, (tuple, list)) and len(r) == 2 else (r, None)
                        outs.append(out)
                finally:
                    for m, (hooks, kw) in saved.items():
                        m._forward_hooks, m._forward_hooks_with_kwargs = hooks, kw
                # replay: every set-aside hook sees one call with the stacked time series
                for m, (hooks, kw) in saved.items():
                    if not hooks or m not in seen:
                        continue
                    args = _stack([a for a, _ in seen[m]])
                    out_m = _stack([o for _, o in seen[m]])
                    for hid, hook in list(hooks.items()):
                        if kw.get(hid):
                            hook(m, args, {}, out_m)
                        else:
                            hook(m, args, out_m)
            return _stack(outs)

        @staticmethod
        def _collector(seen, m):
            def hook(mod, args, out):
                seen.setdefault(m, []).append((args, out))
            return hook

    return StreamingModule


_CLASS = None


def __getattr__(name):
    global _CLASS
    if name == "StreamingModule":
        if _CLASS is None:
            _CLASS = _make_class()
        return _CLASS
    raise AttributeError(name)


def streaming_from_spec(cell, options) -> "StreamingModule":
    """``[model] streaming = {chunk = 512, context = 64, cell_layout = "bn"}`` → a :class:`StreamingModule`."""
    if not isinstance(options, dict) or "chunk" not in options:
        raise SpecError(f"[model] streaming must be a table with chunk (and optional context, cell_layout), "
                        f"given {options!r}")
    unknown = set(options) - {"chunk", "context", "cell_layout"}
    if unknown:
        raise SpecError(f"[model] streaming has unknown keys {sorted(unknown)}; known: chunk, context, cell_layout")
    cls = __getattr__("StreamingModule")
    return cls(cell, chunk=options["chunk"], context=options.get("context", 0),
               cell_layout=options.get("cell_layout", "bn"))
