"""Shape probing: run a model on short noise and note every module's input/output shapes.

Axis meaning (which axis is time, which is frequency) is read off by running the model on
two inputs of different length: the axis that changes is time, and how much it changes
gives seconds per step. This is done once per model and layer set and cached on the
:class:`~probe.adapter.ModelSpec`; the probe runs in eval mode under ``no_grad`` and
restores every module's train/eval flag, so the model is left exactly as it was.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np


#: attribute set on a model (only while a shape probe runs) holding the probing threads' ids
PROBING_ATTR = "_probe_shape_probe_threads"


@contextmanager
def preserved_mode(model):
    """Switch to eval for the duration and restore each module's own ``training`` flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, f in flags:
            m.training = f


def _tensors(obj):
    """Flatten tuples/lists/dicts/PackedSequence into tensors, in order."""
    import torch
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, PackedSequence):
        yield obj.data
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def probe_shapes(spec, n_samples: int, names=None, seed: int = 0) -> dict:
    """Run ``spec`` on ``n_samples`` of quiet noise; return ``{name: [(in_shapes, out_shapes), ...]}``.

    One entry per call of the module (modules called twice get two).
    """
    import torch

    model = spec.model
    wanted = dict(model.named_modules()) if names is None else {n: model.get_submodule(n) for n in names}
    seen: dict = {}
    handles = []

    def make(name):
        def hook(mod, inp, out):
            seen.setdefault(name, []).append(([tuple(t.shape) for t in _tensors(inp)], [tuple(t.shape) for t in _tensors(out)]))
        return hook

    y = np.random.default_rng(seed).standard_normal(int(n_samples)).astype(np.float32) * 0.01
    # mark this thread as probing so that captures already active on the model ignore these forwards
    tid = threading.get_ident()
    probing = model.__dict__.setdefault(PROBING_ATTR, set())
    probing.add(tid)
    try:
        for n, m in wanted.items():
            handles.append(m.register_forward_hook(make(n)))
        with torch.no_grad(), preserved_mode(model):
            spec.model(spec.features(y))
    finally:
        for h in handles:
            h.remove()
        probing.discard(tid)
        if not probing:
            model.__dict__.pop(PROBING_ATTR, None)
    return seen


def infer_axes(shape_a, shape_b, *, steps_a: int, steps_b: int, step_seconds: float, batch: int = 1,
               n_freqs: int | None = None, freq_label: str = "freq"):
    """Name the axes of one tensor from its shapes on two input lengths.

    Returns ``(axes, time_axis, seconds_per_step)``; ``time_axis`` is ``None`` when no
    axis grew with the input (pooled or clip-level outputs).
    """
    axes = ["dim"] * len(shape_a)
    time_axis = None
    sps = None
    if len(shape_a) == len(shape_b):
        changed = [i for i, (a, b) in enumerate(zip(shape_a, shape_b)) if a != b]
        if changed:
            # several axes can change (a flattened T*F axis); the one with the largest growth is time
            time_axis = max(changed, key=lambda i: shape_a[i] - shape_b[i])
            da = shape_a[time_axis] - shape_b[time_axis]
            ratio = (steps_a - steps_b) / da if da else None
            if ratio:
                # snap to an integer down-sampling (or up-sampling) factor when close
                r = round(ratio) if ratio >= 1 else 1 / round(1 / ratio)
                ratio = r if abs(r - ratio) / max(ratio, 1e-9) < 0.05 else ratio
                sps = float(ratio * step_seconds)
            axes[time_axis] = "time"
    # batch: the first axis equal to the batch size that is not time
    for i, a in enumerate(shape_a):
        if i != time_axis and a == batch and "batch" not in axes:
            axes[i] = "batch"
            break
    if n_freqs:
        for i, a in enumerate(shape_a):
            if axes[i] == "dim" and a == n_freqs:
                axes[i] = freq_label
                break
    n_chan = 0
    for i in range(len(axes)):
        if axes[i] == "dim":
            axes[i] = "channel" if n_chan == 0 else f"dim{n_chan}"
            n_chan += 1
    return axes, time_axis, sps
