"""Checks that keep an attribution from reporting figures that look fine but mean nothing.

* :func:`locate_nonfinite` — when the target, a gradient or the map is NaN/Inf, find the
  first module where it goes non-finite: forward hooks register tensor hooks on every
  module's inputs and outputs, one forward and one backward pass are run, and the module
  whose output (forward) or input gradient (backward) is the first to go non-finite while
  what feeds it is finite is named, with the usual cause and fix.
* :func:`target_warnings` — a target that is near zero for the model, or that barely
  differs between the clip and the baseline (IG, deletion and completeness all divide by
  ``f(x) - f(baseline)``).
* :func:`map_warnings` — a map that is zero, or near-empty (99 % of the relevance in
  fewer than 0.1 % of the bins, or 90 % of it in one frequency row).

Thresholds are module constants, documented here because a warning is only as good as
its definition.
"""

from __future__ import annotations

import numpy as np

__all__ = ["locate_nonfinite", "nonfinite_message", "target_warnings", "map_warnings", "is_tiny_difference",
           "TINY_DIFFERENCE", "TINY_TARGET", "EMPTY_MASS", "EMPTY_BINS", "ROW_MASS"]

#: |f(x) - f(b)| at or under this share of the output's scale is "no difference to explain"
TINY_DIFFERENCE = 0.01
#: a probability-like target at or under this share of the top class's score is "near zero"
TINY_TARGET = 0.05
#: a map is near-empty when EMPTY_MASS of its absolute relevance sits in fewer than EMPTY_BINS of its bins
EMPTY_MASS, EMPTY_BINS = 0.99, 0.001
#: ... or when this share of it sits in a single frequency row
ROW_MASS = 0.9


def _finite(t) -> bool:
    import torch

    return bool(torch.isfinite(t).all()) if isinstance(t, torch.Tensor) else bool(np.all(np.isfinite(t)))


def locate_nonfinite(fwd, points) -> dict | None:
    """Where a forward value or a gradient first goes non-finite, for the first point that shows it.

    Parameters
    ----------
    fwd : TFForward
        Its ``model`` must be private to the caller (the attribution's shadow): hooks are
        registered on it and removed again.
    points : list of torch.Tensor [shape=(F, T)]
        Magnitudes to try in turn (the clip, a point on IG's path, the baseline).

    Returns
    -------
    dict or None
        ``{"stage": "forward" | "gradient", "module": name, "module_type": type,
        "point": i}`` (module ``None`` when the model's modules are all finite and the
        T-F front end itself produced it), or None when every point is finite.

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> from probe.attribution.domain import TFForward
    >>> from probe.attribution.targets import TargetContext
    >>> class Sqrt(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x.sqrt()
    >>> net = torch.nn.Sequential(Sqrt(), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    >>> g = TFGrid(8000, n_fft=64, hop_length=16)
    >>> _ = net(torch.zeros(1, 33, 10))
    >>> spec = ModelSpec(net, input_kind="stft", grid=g, output_kind="clip_scores", classes=["x"])
    >>> fwd = TFForward(spec, lambda out, ctx: out[:, 0], TargetContext(spec, 144))
    >>> locate_nonfinite(fwd, [torch.zeros(33, 10)])["module"]
    '0'
    """
    import torch

    model = fwd.model
    for i, p in enumerate(points):
        found = _probe_point(fwd, model, p)
        if found is not None:
            found["point"] = i
            return found
    return None


def _probe_point(fwd, model, point):
    import torch

    from .._shapes import _tensors

    names = {id(m): n for n, m in model.named_modules()}
    order: list = []  # modules in the order their forward finished
    fwd_bad: list = []  # (depth, index, name, type) of modules whose outputs go non-finite from finite inputs
    grads: dict = {}  # call index -> {"out": [finite...], "in": [finite...]}
    seq = [0]

    def hook(mod, inp, out):
        k = len(order)
        name = names.get(id(mod), "?")
        order.append((name, type(mod).__name__))
        ins = [t for t in _tensors(inp) if t.is_floating_point()]
        outs = [t for t in _tensors(out) if t.is_floating_point()]
        if all(_finite(t) for t in ins) and not all(_finite(t) for t in outs):
            fwd_bad.append((name.count(".") + (name != ""), k, name, type(mod).__name__))
        rec = grads.setdefault(k, {"out": [], "in": [], "seq": []})

        def setter(which):
            def f(g):
                rec[which].append(_finite(g))
                seq[0] += 1
                rec["seq"].append(seq[0])
            return f

        for t in outs:
            if t.requires_grad:
                t.register_hook(setter("out"))
        for t in ins:
            if t.requires_grad:
                t.register_hook(setter("in"))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.enable_grad():
            x = point.detach()[None].clone().requires_grad_(True)
            val = fwd(x)
            if not _finite(val) and not fwd_bad:
                return {"stage": "forward", "module": None, "module_type": None}
            if fwd_bad:
                depth, k, name, mtype = sorted(fwd_bad, key=lambda r: (r[1], -r[0]))[0]
                return {"stage": "forward", "module": name, "module_type": mtype}
            (g,) = torch.autograd.grad(val.sum(), x, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    if g is not None and _finite(g):
        return None
    cands = [(k, r) for k, r in grads.items() if r["out"] and all(r["out"]) and r["in"] and not all(r["in"])]
    if not cands:
        return {"stage": "gradient", "module": None, "module_type": None}
    # the innermost module (deepest name) that turns a finite gradient into a non-finite one; ties: earliest in backward
    k, _ = max(cands, key=lambda kr: (order[kr[0]][0].count(".") + (order[kr[0]][0] != ""), -min(kr[1]["seq"])))
    return {"stage": "gradient", "module": order[k][0], "module_type": order[k][1]}


def nonfinite_message(where: dict | None, spec, what: str) -> str:
    """One warning line: what went non-finite, where, and what to try."""
    kind = getattr(spec, "input_kind", "?")
    if where is None:
        return (f"{what} is NaN/Inf but a re-run of the clip, the path midpoint and the baseline is finite "
                "(the quadrature hit a singular point); figures are unavailable: try another baseline "
                "(baseline='noise:-60') or fewer/more steps")
    mod = ("the T-F front end (input kind " + repr(kind) + ")" if where["module"] is None
           else ("the model's own forward (outside any submodule)" if where["module"] == ""
                 else f"module {where['module']!r} ({where['module_type']})"))
    if where["stage"] == "forward":
        return (f"{what} is NaN/Inf: {mod} outputs NaN/Inf from finite inputs on this clip; figures are unavailable. "
                "Check the model on this input (e.g. log/sqrt/division of zero, overflow); digital silence "
                "or a constant clip often triggers it")
    return (f"{what} is NaN/Inf: {mod} turns a finite gradient into NaN/Inf (sqrt, log, pow or division at 0 — "
            "e.g. exact digital silence in the clip or a silent baseline); figures are unavailable. Fix: add an "
            "epsilon inside the model (sqrt(x + 1e-8), log(x + 1e-8)), or use a baseline above zero "
            "(baseline='noise:-60') and a clip without exact zeros")


def is_tiny_difference(fx: float, fb: float, scale: float | None) -> bool:
    """``|f(x) - f(b)|`` at most :data:`TINY_DIFFERENCE` of ``max(scale, |f(x)|, |f(b)|)``."""
    ref = max(abs(fx), abs(fb), abs(scale or 0.0))
    return abs(fx - fb) <= TINY_DIFFERENCE * ref or abs(fx - fb) < 1e-12


def target_warnings(target, fx: float, fb: float, scale: float | None, *, top: str | None = None) -> list[str]:
    """Warnings for a near-zero target or a target the baseline hardly changes.

    ``scale`` is the typical size of the target's quantity (for a class probability: the
    top class's score on the clip); ``top`` names what scored it.
    """
    out = []
    if not (np.isfinite(fx) and np.isfinite(fb)):
        return out
    if scale and abs(fx) <= TINY_TARGET * scale:
        out.append(f"near-zero target: {target} = {fx:.3g} while {top or 'the top output'} reaches {scale:.3g} on this "
                   "clip; the map explains a score the model hardly produces. Try a target the model responds to "
                   f"({top or 'the top class'}), another time span, or score='logit'")
    if is_tiny_difference(fx, fb, scale):
        out.append(f"near-zero difference: f(x) = {fx:.4g} and f(baseline) = {fb:.4g} hardly differ, so IG, completeness "
                   "and deletion/insertion have almost nothing to explain (their ratios are unavailable). Try another "
                   "baseline (noise:-30, smooth) or a target the clip actually changes")
    return out


def map_warnings(amap: np.ndarray, freqs=None) -> list[str]:
    """Warnings for a zero or near-empty map.

    Near-empty: :data:`EMPTY_MASS` of the absolute relevance in fewer than
    :data:`EMPTY_BINS` of the bins (a handful of bins), or at least :data:`ROW_MASS` of it
    in one frequency row (a gradient artefact such as the Nyquist row; a real tone leaks
    into neighbouring bins).
    """
    a2 = np.abs(np.asarray(amap, np.float64))
    a = a2.ravel()
    if not np.all(np.isfinite(a)):
        return []
    total = a.sum()
    if total == 0:
        return ["empty map: every bin has zero relevance (the target does not depend on the input here, e.g. a "
                "saturated or dead unit); try IG with another baseline, or a target the model responds to"]
    if a.size < 200:
        return []
    hint = ("often a gradient artefact rather than evidence. Try IG (steps='auto', spacing='adaptive'), another "
            "baseline, or check the map with the deletion test")
    m = max(1, int(np.ceil(EMPTY_BINS * a.size)))  # the top m bins, without sorting the whole map
    top = np.sort(np.partition(a, a.size - m)[a.size - m:])[::-1]
    k = int(np.searchsorted(np.cumsum(top), EMPTY_MASS * total) + 1)
    if k < m and k < EMPTY_BINS * a.size:
        return [f"near-empty map: {EMPTY_MASS:.0%} of the relevance sits in {k} of {a.size} bins ({k / a.size:.2%}); "
                + hint]
    if a2.ndim == 2 and a2.shape[0] >= 16:
        rows = a2.sum(1) / total
        r = int(np.argmax(rows))
        if rows[r] >= ROW_MASS:
            where = f"{float(freqs[r]):.0f} Hz" if freqs is not None else f"row {r}"
            return [f"near-empty map: {rows[r]:.0%} of the relevance sits in one frequency row ({where}); " + hint]
    return []
