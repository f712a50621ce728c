"""The attribution methods: one small builder per method, in a registry.

A builder turns the options, the forward function (:class:`~probe.attribution.domain.TFForward`)
the clip ``x`` and the baseline into a :class:`Plan`: the Captum object to call, its keyword
arguments, and how to turn its result into an ``(F, T)`` map. :func:`run_method` runs any
plan the same way (NoiseTunnel smoothing, batching, errors). Adding a method means adding a
builder to :data:`BUILDERS` and a line to :data:`METHODS`.

Integrated gradients has three more parts here: the quadrature node spacing
(:func:`spacing_knots`); for waveform models, the integral taken in the waveform domain
with one chain-rule step through the inverse STFT at the end (:func:`_ig_waveform`); and
the nested open trapezoid rule (:class:`NestedIG`) that ``steps="auto"`` uses, where doubling
the steps keeps every gradient already computed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import AnalysisError

__all__ = ["METHODS", "BUILDERS", "MethodOptions", "Plan", "method_name", "run_method", "spacing_knots", "find_layer",
           "COMPLETE", "SMOOTHABLE", "AUTO_STEPS", "NestedIG", "nested_quadrature"]

#: method name → what it is (aliases in :data:`ALIASES`)
METHODS = {
    "saliency": "Saliency: |d target / d |X|| (Simonyan et al. 2014)",
    "ixg": "InputXGradient: |X| * gradient",
    "ig": "IntegratedGradients (Sundararajan et al. 2017), Gauss-Legendre quadrature",
    "gradshap": "GradientShap: expected gradients over a baseline distribution",
    "deeplift": "DeepLift rescale rule (Shrikumar et al. 2017); needs nonlinearities as modules",
    "occlusion": "Occlusion of T-F patches by the baseline",
    "ablation": "FeatureAblation over bands x segments regions",
    "gradcam": "LayerGradCam on a conv layer, upsampled to the T-F grid",
}
ALIASES = {"input_x_gradient": "ixg", "inputxgradient": "ixg", "integrated_gradients": "ig",
           "integratedgradients": "ig", "gradient_shap": "gradshap", "gradientshap": "gradshap",
           "feature_ablation": "ablation", "featureablation": "ablation", "layer_gradcam": "gradcam",
           "grad_cam": "gradcam", "layergradcam": "gradcam"}
COMPLETE = ("ig", "deeplift", "gradshap")  # methods with a completeness (summation-to-delta) axiom
SMOOTHABLE = ("saliency", "ixg", "ig", "deeplift", "gradshap", "gradcam")
#: IG quadrature points (gradient evaluations) tried in turn by ``steps="auto"`` until the completeness
#: error is at most 1 %: :class:`NestedIG` on 32, 64, … 512 intervals, each node set containing the last
AUTO_STEPS = (31, 63, 127, 255, 511)
#: adaptive spacing's scan (:func:`spacing_knots`): scales on each of its two grids, and intervals refined
SCAN_POINTS, SCAN_REFINE = 48, 8
# modules whose nonlinearities live inside one op: DeepLift's rescale rule would silently treat them as linear
_NO_DEEPLIFT = ("RNNBase", "MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer")


def method_name(method: str) -> str:
    """Canonical method name (aliases accepted); :class:`AnalysisError` for an unknown one."""
    m = str(method).strip().lower().replace("-", "_")
    m = ALIASES.get(m, m)
    if m not in METHODS:
        raise AnalysisError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    return m


@dataclass
class MethodOptions:
    """Every method's settings (see :func:`probe.attribute` for their meaning)."""

    method: str
    steps: int = 50
    internal_batch_size: int = 8
    smooth: str | None = None
    nt_samples: int = 8
    nt_stdev: float = 0.05
    layer: Any = None
    layer_axes: str | None = None
    patch: tuple | None = None
    stride: tuple | None = None
    bands: int = 12
    segment_seconds: float = 0.25
    feature_mask: Any = None
    n_baselines: int = 8
    abs: bool = True
    seed: int = 0
    baseline: Any = "silence"
    path: str = "straight"
    quadrature: str = "gausslegendre"
    spacing: str = "linear"

    @property
    def draws(self) -> bool:
        """Whether the method draws random numbers (then it runs under the RNG lock)."""
        return self.method == "gradshap" or self.smooth is not None


@dataclass
class Plan:
    """What :func:`run_method` calls.

    Attributes
    ----------
    algo : captum attribution object, or None when ``run`` computes the map itself
    kwargs : dict
        Keyword arguments of ``algo.attribute``.
    x : torch.Tensor [shape=(1, F, T)]
        The input handed to Captum (IG with spacing passes ones).
    needs_grad : bool
    post : callable, optional
        ``captum result → (F, T) map`` (default: drop the batch axis).
    run : callable, optional
        ``() → (map, delta)``: replaces the Captum call (waveform IG).
    """

    algo: Any
    kwargs: dict
    x: Any
    needs_grad: bool = True
    post: Callable | None = None
    run: Callable | None = None
    extra: dict = field(default_factory=dict)


# ---- builders ------------------------------------------------------------------------------------
def _saliency(o, fwd, x, base, state):
    import captum.attr as ca

    return Plan(ca.Saliency(fwd), {"abs": o.abs}, x)


def _ixg(o, fwd, x, base, state):
    import captum.attr as ca

    return Plan(ca.InputXGradient(fwd), {}, x)


def _ig(o, fwd, x, base, state):
    import captum.attr as ca
    import torch

    extra = {"path": o.path, "quadrature": o.quadrature, "spacing": o.spacing}
    kw = {"n_steps": int(o.steps), "method": o.quadrature, "internal_batch_size": o.internal_batch_size,
          "return_convergence_delta": True}
    if o.path == "geometric":
        # the path b^(1-a) x^a: straight in log|X|, so log front ends see a smooth integrand
        if not bool((base > 0).all()):
            raise AnalysisError("path='geometric' needs a baseline above 0 in every bin (e.g. 'noise:-60'); "
                                "silence is log(0) = -inf on that path")
        z = torch.log(x.clamp_min(float(base.min()) * 1e-6))
        return Plan(ca.IntegratedGradients(lambda v: fwd(torch.exp(v))), {**kw, "baselines": torch.log(base)}, z,
                    extra=extra)
    knots = None
    if o.spacing != "linear":
        if "knots" not in state:  # the scan is forward passes only; steps="auto" reuses it at every step count
            state["knots"] = spacing_knots(o, fwd, x, base)
        knots = state["knots"]
        extra["spacing_knots"] = int(len(knots[0]))
    in_waveform = fwd.waveform_model and not o.smooth and fwd.spec.output_kind not in ("masks", "tf_embeddings")
    if nested_quadrature(o):
        nested = state.get("nested")
        if nested is None or nested.knots is not knots:  # every step count on this segment shares the gradients
            nested = state["nested"] = NestedIG(fwd, x, base, knots, o.internal_batch_size, waveform=in_waveform)
        extra["nested"] = True
        if in_waveform:
            extra["domain"] = "waveform"
        return Plan(None, {}, x, run=lambda: (nested.map(int(o.steps)), None), extra=extra)
    if in_waveform:
        return Plan(None, {}, x, run=lambda: _ig_waveform(o, fwd, x, base, knots), extra={**extra, "domain": "waveform"})
    if knots is None:
        return Plan(ca.IntegratedGradients(fwd), {**kw, "baselines": base}, x, extra=extra)
    # the same straight path x(a) = b + a (x - b), walked at another speed a = phi(u): Captum
    # integrates over u in [0, 1] (input 1, baseline 0 in every bin), so each bin gets
    # (x_i - b_i) * integral of df/dx_i(x(phi(u))) phi'(u) du — the straight-path IG integral
    # after substituting a = phi(u); completeness intact.
    knots_u, knots_a = knots
    diff = x - base

    def along(u):  # u [shape=(B, F, T)]: one value per batch item (every bin at the same u)
        lead = u.detach().reshape(u.shape[0], -1)[:, 0].contiguous()
        j = torch.searchsorted(knots_u, lead, right=True).clamp(1, len(knots_u) - 1)
        j = j.reshape((-1,) + (1,) * (u.ndim - 1))
        u0, u1, a0, a1 = knots_u[j - 1], knots_u[j], knots_a[j - 1], knots_a[j]
        return fwd(base + (a0 + (u - u0) * (a1 - a0) / (u1 - u0)) * diff)

    return Plan(ca.IntegratedGradients(along), {**kw, "baselines": torch.zeros_like(x)}, torch.ones_like(x), extra=extra)


def _gradshap(o, fwd, x, base, state):
    import captum.attr as ca
    import torch

    g = torch.Generator().manual_seed(o.seed)
    gains = torch.exp(0.5 * torch.randn(o.n_baselines, generator=g)).to(base.device, base.dtype)
    return Plan(ca.GradientShap(fwd), {"baselines": base * gains[:, None, None], "stdevs": 0.0,
                                       "return_convergence_delta": True}, x)


def _deeplift(o, fwd, x, base, state):
    import captum.attr as ca

    bad = sorted({type(mod).__name__ for mod in fwd.model.modules()
                  if any(b in [c.__name__ for c in type(mod).__mro__] for b in _NO_DEEPLIFT)})
    if bad:
        raise AnalysisError(f"DeepLift has no rule for {', '.join(bad)} in {type(fwd.model).__name__} "
                            "(their nonlinearities are not separate modules); use method='ig' instead")
    return Plan(ca.DeepLift(fwd.as_module()), {"baselines": base, "return_convergence_delta": True}, x)


def _occlusion(o, fwd, x, base, state):
    import captum.attr as ca

    patch = tuple(int(v) for v in (o.patch or default_patch(fwd.spec, x.shape[-2])))
    stride = tuple(int(v) for v in (o.stride or (max(1, patch[0] // 2), max(1, patch[1] // 2))))
    kw = {"sliding_window_shapes": patch, "strides": stride, "baselines": base,
          "perturbations_per_eval": o.internal_batch_size}
    return Plan(ca.Occlusion(fwd), kw, x, needs_grad=False, extra={"patch": list(patch), "stride": list(stride)})


def _ablation(o, fwd, x, base, state):
    import captum.attr as ca
    import torch

    if o.feature_mask is not None:
        fm = torch.as_tensor(np.asarray(o.feature_mask), dtype=torch.long)
        if fm.shape != x.shape[-2:]:
            raise AnalysisError(f"feature_mask has shape {tuple(fm.shape)}, the magnitude is {tuple(x.shape[-2:])}")
    else:
        fm = torch.as_tensor(ablation_mask(fwd.spec, x.shape[-2], x.shape[-1], o.bands, o.segment_seconds))
    kw = {"baselines": base, "feature_mask": fm[None].to(x.device), "perturbations_per_eval": o.internal_batch_size}
    return Plan(ca.FeatureAblation(fwd), kw, x, needs_grad=False, extra={"n_features": int(fm.max()) + 1})


def _gradcam(o, fwd, x, base, state):
    import captum.attr as ca

    name, layer = find_layer(fwd.model, o.layer)
    extra = {"layer": name}

    def post(res):
        m, axes = cam_to_grid(res, fwd.spec, x.shape[-2], x.shape[-1], o.layer_axes)
        extra["layer_axes"] = axes
        return m

    return Plan(ca.LayerGradCam(fwd, layer), {"relu_attributions": True}, x, post=post, extra=extra)


#: method name → builder ``(options, forward, x, baseline, state) → Plan``
BUILDERS: dict[str, Callable] = {"saliency": _saliency, "ixg": _ixg, "ig": _ig, "gradshap": _gradshap,
                                 "deeplift": _deeplift, "occlusion": _occlusion, "ablation": _ablation,
                                 "gradcam": _gradcam}


# ---- running a plan ---------------------------------------------------------------------------------
def _check_differentiable(fwd, x, method: str) -> None:
    """Refuse a gradient method, with the fix, when the target has no gradient path back to the input.

    A forward that computes its front end under ``torch.no_grad()``, detaches, or leaves torch
    (numpy, librosa) still has parameters that need gradients, so its output looks
    differentiable; only a gradient with respect to the input tells. Captum would fail deep
    inside autograd ("appears to not have been used in the graph").
    """
    import torch

    with torch.enable_grad():
        xi = x[:1].detach().clone().requires_grad_(True)
        v = fwd(xi)
        g = None
        if v.requires_grad:
            (g,) = torch.autograd.grad(v.sum(), xi, allow_unused=True)
    if g is None:
        raise AnalysisError(f"method={method!r} needs gradients, but the model's output has no gradient path back to its "
                            "input (its forward runs part of the computation under torch.no_grad(), detaches, or "
                            "leaves torch, e.g. numpy/librosa features): use method='occlusion' or 'ablation' "
                            "(perturbation methods), or make the front end differentiable")


def run_method(o: MethodOptions, fwd, x, base, mag_range: float, state: dict | None = None):
    """Build and run one method; returns ``(map [shape=(F, T)], delta or None, extra info)``.

    ``state`` carries what repeated runs on one segment can share (IG's node spacing).
    """
    try:
        return _run_method(o, fwd, x, base, mag_range, state)
    except RuntimeError:
        # autograd's own words ("appears to not have been used in the graph", "does not require grad") name no
        # fix; when the input has no gradient path, say so (checked only on failure: no cost on the usual path)
        if o.method != "gradcam":  # GradCAM differentiates a layer, not the input
            _check_differentiable(fwd, x, o.method)
        raise


def _run_method(o: MethodOptions, fwd, x, base, mag_range: float, state: dict | None = None):
    import captum.attr as ca

    state = {} if state is None else state
    plan = BUILDERS[o.method](o, fwd, x, base, state)
    extra = dict(plan.extra)
    if plan.run is not None:
        attr, delta = plan.run()
        return attr.detach().float().cpu(), delta, extra
    m = o.method
    inp = plan.x.detach().requires_grad_(plan.needs_grad)
    kw = dict(plan.kwargs)
    if o.smooth:
        if m not in SMOOTHABLE:
            raise AnalysisError(f"NoiseTunnel smoothing applies to gradient methods ({', '.join(SMOOTHABLE)}), not {m!r}")
        if m == "gradshap":
            kw["n_samples"] = o.steps
        # IG batches its own steps (internal_batch_size); other methods take noisy copies in batches
        res = ca.NoiseTunnel(plan.algo).attribute(inp, nt_type=o.smooth, nt_samples=o.nt_samples,
                                                  stdevs=o.nt_stdev * mag_range,
                                                  nt_samples_batch_size=1 if m in ("ig", "gradshap") else o.internal_batch_size,
                                                  **kw)
        extra["smooth"] = {"type": o.smooth, "samples": o.nt_samples, "stdev": o.nt_stdev * mag_range}
    else:
        try:
            with warnings.catch_warnings():  # Captum announces the temporary DeepLift hooks it removes again
                warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
                if m == "gradshap":
                    res = _gradshap_batched(plan.algo, inp, kw, o.steps, o.internal_batch_size)
                else:
                    res = plan.algo.attribute(inp, **kw)
        except AssertionError as exc:
            if m == "deeplift":
                raise AnalysisError(f"DeepLift cannot run on this model ({exc}); a module used twice or a functional "
                                    "nonlinearity breaks its rules: use method='ig'") from None
            raise
    delta = None
    if isinstance(res, tuple):
        res, delta = res
    attr = plan.post(res) if plan.post is not None else res[0]
    extra.update(plan.extra)
    if delta is not None:  # IG/DeepLift: one signed delta; GradientShap: one per sample → mean |delta|
        delta = float(delta.reshape(-1)[0]) if delta.numel() == 1 else float(delta.detach().float().abs().mean())
    return attr.detach().float().cpu(), delta, extra


def _gradshap_batched(algo, x, kw, n_samples, batch):
    """GradientShap's expectation over ``n_samples`` draws, ``batch`` draws per call (bounded memory)."""
    import torch

    total, deltas, done = None, [], 0
    while done < n_samples:
        k = min(batch, n_samples - done)
        a, d = algo.attribute(x, n_samples=k, **kw)
        total = a * k if total is None else total + a * k
        deltas.append(d.reshape(-1))
        done += k
    return total / n_samples, torch.cat(deltas)


# ---- integrated gradients: waveform models ---------------------------------------------------------
def _ig_waveform(o, fwd, x, base, knots):
    """IG of a waveform model with the integral taken in the waveform domain.

    With the phase fixed, ``y(|X|) = istft(|X| e^{i phase})`` is linear, so the straight
    path ``b + a (x - b)`` in ``|X|`` is the straight path ``y_b + a (y_x - y_b)`` in ``y``,
    and ``d f/d|X| = J^T d f/dy`` with the same ``J`` at every point. Captum integrates
    ``d f/dy`` along the waveform path (``multiply_by_inputs=False``: the integrated
    gradient itself); one backward pass through the inverse STFT (:meth:`TFForward.magnitude_grad`)
    and the product with ``x - b`` give the same map as integrating in ``|X|``, without an
    inverse STFT and its backward at every step. Returns ``(map [shape=(F, T)], None)``:
    the convergence delta is computed from the map's sum by the caller.
    """
    import captum.attr as ca
    import torch

    y_x, y_b = fwd.path_ends(x, base)  # (1, n)
    dy = y_x - y_b
    kw = {"n_steps": int(o.steps), "method": o.quadrature, "internal_batch_size": o.internal_batch_size}
    if knots is None:
        ig = ca.IntegratedGradients(fwd.from_waveform, multiply_by_inputs=False)
        g = ig.attribute(y_x.detach().clone().requires_grad_(True), baselines=y_b, **kw)
    else:
        knots_u, knots_a = knots

        def along(u):  # every element of a batch item holds the same u; the gradient w.r.t. u is phi'(u) df/dy
            lead = u.detach()[:, :1]
            j = torch.searchsorted(knots_u, lead.reshape(-1).contiguous(), right=True).clamp(1, len(knots_u) - 1)[:, None]
            u0, u1, a0, a1 = knots_u[j - 1], knots_u[j], knots_a[j - 1], knots_a[j]
            slope = (a1 - a0) / (u1 - u0)
            a = a0 + (lead - u0) * slope
            return fwd.from_waveform(y_b + a * dy + slope * (u - u.detach()))

        ig = ca.IntegratedGradients(along, multiply_by_inputs=False)
        ones = torch.ones_like(y_b)
        g = ig.attribute(ones.requires_grad_(True), baselines=torch.zeros_like(ones), **kw)
    grad_mag = fwd.magnitude_grad(g[0].detach(), x[0])
    return (x[0] - base[0]) * grad_mag, None


# ---- integrated gradients: the nested trapezoid rule ------------------------------------------------
def nested_quadrature(o: MethodOptions) -> bool:
    """Whether IG runs :class:`NestedIG` (``quadrature="nested"`` on the straight path, no smoothing)."""
    return o.method == "ig" and o.quadrature == "nested" and o.path == "straight" and not o.smooth


class NestedIG:
    """IG by an open trapezoid rule in ``u`` on a grid that doubles, every gradient reused.

    The straight path ``b + phi(u) (x - b)`` (``phi`` from :func:`spacing_knots`, or
    ``phi(u) = u``) gives the map ``(x - b) * integral_0^1 phi'(u) grad f(b + phi(u) (x - b)) du``.
    With ``n`` intervals of width ``h = 1/n`` the rule takes the ``n - 1`` inner nodes
    ``k / n`` with weight ``h``, the two next to the ends with ``3h/2`` (the trapezoid rule
    with each end's value taken from its neighbour: second order, weights summing to 1).
    The ends themselves, the baseline and the clip, are never evaluated: a model that is
    singular on the baseline (``sqrt`` of digital silence) keeps a finite map wherever
    Gauss-Legendre would. The ``2n - 1`` nodes of the next level contain the ``n - 1``
    of this one, so the rule is the running sum of ``phi'(u_k) grad f`` over every node
    evaluated so far, plus half of the two current end neighbours, times ``h``: going
    31 → 63 → 127 nodes costs 127 gradient evaluations, not 221. A node count that is not
    on the doubling grid of the last one starts again from scratch.

    Parameters
    ----------
    fwd : TFForward
    x, base : torch.Tensor [shape=(1, F, T)]
    knots : (torch.Tensor, torch.Tensor) or None
        ``(u_j, a_j)`` of the piecewise-linear ``phi``; None for ``phi(u) = u``.
    batch : int
        Nodes per forward/backward pass.
    waveform : bool
        Integrate ``d f / d y`` along the waveform path (waveform models; the map is
        linear in ``|X|``) and apply the inverse STFT's chain rule once per :meth:`map`.

    Attributes
    ----------
    evaluations : int
        Gradient evaluations so far (one per node).
    """

    def __init__(self, fwd, x, base, knots, batch: int = 8, *, waveform: bool = False):
        self.fwd, self.x, self.base, self.knots = fwd, x, base, knots
        self.batch = max(1, int(batch))
        self.waveform = bool(waveform)
        if self.waveform:
            end, self.start = fwd.path_ends(x, base)  # (clip, baseline)
        else:
            self.start, end = base, x
        self.diff = end - self.start
        self.n = 0  # intervals of the current level
        self.total = None  # float64 sum of phi'(u_k) grad over every node evaluated
        self.ends = None  # the same for the two nodes next to u = 0 and u = 1 (one node when n = 2)
        self.evaluations = 0

    def _phi(self, u):
        """``(phi(u), phi'(u))`` for node positions ``u [shape=(B,)]`` (float64)."""
        import torch

        if self.knots is None:
            return u, torch.ones_like(u)
        ku, ka = (k.detach().double().cpu() for k in self.knots)
        j = torch.searchsorted(ku, u.contiguous(), right=True).clamp(1, len(ku) - 1)
        u0, u1, a0, a1 = ku[j - 1], ku[j], ka[j - 1], ka[j]
        slope = (a1 - a0) / (u1 - u0)
        return a0 + (u - u0) * slope, slope

    def _grads(self, u):
        """``phi'(u_k) grad f`` at the nodes ``u``: summed over all nodes, and ``(first, last)`` node alone."""
        import torch

        a, slope = self._phi(u)
        s, d = self.start, self.diff
        shape = (-1,) + (1,) * (s.ndim - 1)
        total, first, last = None, None, None
        for i in range(0, len(u), self.batch):
            ab = a[i:i + self.batch].to(s.device, s.dtype)
            with torch.enable_grad():
                pt = (s + ab.reshape(shape) * d).detach().requires_grad_(True)
                out = self.fwd.from_waveform(pt) if self.waveform else self.fwd(pt)
                (g,) = torch.autograd.grad(out.sum(), pt)
            part = slope[i:i + self.batch].to(g.device, torch.float64).reshape(shape) * g.double()
            if i == 0:
                first = part[0]
            if i + len(ab) == len(u):
                last = part[-1]
            part = part.sum(0)
            total = part if total is None else total + part
            self.evaluations += len(ab)
        return total, first, last

    def _refine(self, n: int):
        import torch

        def nodes(k, m):
            return torch.as_tensor(k, dtype=torch.float64) / m

        r = n // self.n if self.n and n % self.n == 0 else 0
        if self.n >= 2 and r >= 2 and r & (r - 1) == 0:
            while self.n < n:  # the new nodes of each doubling: the odd multiples of 1/(2n), two of them end neighbours
                m = 2 * self.n
                part, lo, hi = self._grads(nodes(list(range(1, m, 2)), m))
                self.total, self.ends, self.n = self.total + part, lo + hi, m
            return
        self.n = n
        if n == 2:  # one node, u = 1/2 (the midpoint rule): the end neighbours are that node twice
            self.total, lo, hi = self._grads(nodes([1], 2))
        else:
            self.total, lo, hi = self._grads(nodes(list(range(1, n)), n))
        self.ends = lo + hi

    def map(self, nodes: int):
        """The level with ``nodes`` nodes (``nodes + 1`` intervals): the IG map ``[shape=(F, T)]``."""
        n = max(2, int(nodes) + 1)
        if n != self.n:
            self._refine(n)
        grad = ((self.total + 0.5 * self.ends) / n).to(self.x.dtype)
        if self.waveform:
            return (self.x[0] - self.base[0]) * self.fwd.magnitude_grad(grad, self.x[0])
        return (self.x - self.base)[0] * grad


def spacing_knots(o: MethodOptions, fwd, x, base, n_scan: int | None = None, refine: int | None = None,
                  floor: float = 0.05):
    """Knots ``(u_j, a_j)`` of a monotone map ``a = phi(u)`` on [0, 1] for IG's quadrature.

    ``"db:D"``: ``a`` log-spaced from ``-D`` dB to 0 dB (``a = 0`` at ``u = 0``).
    ``"adaptive"``: score the clip at scales ``a`` (``n_scan`` log-spaced from -80 dB plus
    ``n_scan`` evenly spaced, then each of the ``refine`` intervals where the score moves
    most split in four; forward passes only), and make ``u`` the cumulative share of the
    score's change, plus a floor (``floor``, spread evenly over ``a``) so that flat
    stretches keep some nodes: the nodes land where ``f(b + a (x - b))`` moves.
    """
    import torch

    n_scan = SCAN_POINTS if n_scan is None else int(n_scan)
    refine = SCAN_REFINE if refine is None else int(refine)
    dev, dt = x.device, x.dtype
    kind, _, arg = o.spacing.partition(":")
    if kind == "db":
        D = float(arg or 60.0)
        u = torch.linspace(0, 1, 257, dtype=torch.float64)
        a = (10 ** (D * u / 20) - 1) / (10 ** (D / 20) - 1)
        return u.to(dev, dt), a.to(dev, dt)
    if fwd.waveform_model:  # the path is straight in the waveform too: no inverse STFT per scale
        y_x, y_b = fwd.path_ends(x, base)
        dy = y_x - y_b

        def at(ab):
            return fwd.from_waveform(y_b + ab[:, None] * dy)
    else:
        def at(ab):
            return fwd(base + ab[:, None, None] * (x - base))

    def score(alphas):
        vals = []
        with torch.no_grad():
            for i in range(0, len(alphas), max(1, o.internal_batch_size)):
                vals.append(at(alphas[i:i + o.internal_batch_size].to(dev, dt)).double().cpu())
        return torch.cat(vals)

    a = torch.unique(torch.cat([torch.zeros(1, dtype=torch.float64),
                                10 ** torch.linspace(-4, 0, n_scan, dtype=torch.float64),
                                torch.linspace(0, 1, n_scan, dtype=torch.float64)]))
    f = score(a)
    if refine:
        top = torch.argsort(torch.nan_to_num((f[1:] - f[:-1]).abs()), descending=True)[:refine]
        extra = torch.cat([a[j] + (a[j + 1] - a[j]) * torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64) for j in top])
        a, order = torch.sort(torch.cat([a, extra]))
        f = torch.cat([f, score(extra)])[order]
    change = torch.nan_to_num((f[1:] - f[:-1]).abs(), nan=0.0, posinf=0.0)
    total = float(change.sum()) or 1.0
    mass = change / total + floor * (a[1:] - a[:-1])  # (a spans [0, 1]: the floor totals `floor`)
    u = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(mass, 0)])
    u = u / u[-1]
    return u.to(dev, dt), a.to(dev, dt)


# ---- method helpers -------------------------------------------------------------------------------
def find_layer(model, layer):
    """``(name, module)`` of a layer given by name or module; default the last wide Conv1d/Conv2d."""
    import torch.nn as nn

    if isinstance(layer, nn.Module):
        for n, m in model.named_modules():
            if m is layer:
                return n, m
        raise AnalysisError("the given layer module is not part of the model")
    named = dict(model.named_modules())
    if layer is None:
        convs = [n for n, m in named.items() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
        # a 1×1 conv at the end is a classifier head, not a feature map worth a CAM
        wide = [n for n in convs if any(k > 1 for k in named[n].kernel_size)]
        convs = wide or convs
        if not convs:
            raise AnalysisError(f"GradCAM needs a conv layer and {type(model).__name__} has none; pass layer=NAME")
        return convs[-1], named[convs[-1]]
    if layer not in named:
        import difflib

        close = difflib.get_close_matches(str(layer), list(named), n=5, cutoff=0.3)
        raise AnalysisError(f"no layer {layer!r} in {type(model).__name__}; close: {close or list(named)[:10]}")
    return layer, named[layer]


def cam_to_grid(cam, spec, F, T, layer_axes):
    """LayerGradCam output ``(1, 1, *S)`` → ``(F, T)`` on the linear STFT grid."""
    import torch
    import torch.nn.functional as Fn

    s = cam[0, 0].detach().float()
    if s.ndim == 1:
        row = Fn.interpolate(s[None, None], size=T, mode="linear", align_corners=False)[0, 0]
        return row[None, :].expand(F, T).clone(), "t"
    if s.ndim != 2:
        raise AnalysisError(f"GradCAM needs a layer with 1 or 2 spatial axes, got a map of shape {tuple(cam.shape)}")
    axes = layer_axes
    if axes is None:
        if spec.input_kind == "waveform":
            raise AnalysisError("cannot tell time from frequency in a 2-D layer of a waveform model; pass layer_axes='ft' or 'tf'")
        lay = (spec.input_layout or "bft").replace("c", "").replace("b", "")
        axes = "ft" if lay.index("f") < lay.index("t") else "tf"
    if axes not in ("ft", "tf"):
        raise AnalysisError(f"layer_axes must be 'ft', 'tf' or 't', given {axes!r}")
    if axes == "tf":
        s = s.T
    rows = spec.grid.n_mels if spec.input_kind == "logmel" else F
    up = Fn.interpolate(s[None, None], size=(rows, T), mode="bilinear", align_corners=False)[0, 0]
    if spec.input_kind == "logmel":
        M = torch.as_tensor(spec.grid.mel_basis(), dtype=up.dtype, device=up.device)  # (n_mels, F)
        share = M / M.sum(0, keepdim=True).clamp_min(1e-12)
        up = share.T @ up  # each linear bin: weighted mean of the mel bands covering it
    return up, axes


def default_patch(spec, F):
    """Occlusion window: a 16th of the bins × 0.2 s."""
    return (max(1, F // 16), max(1, int(round(0.2 / spec.grid.seconds_per_frame))))


def ablation_mask(spec, F, T, bands, segment_seconds):
    """Feature ids ``band * n_segments + segment`` on mel-spaced bands × fixed-length segments."""
    import librosa

    nyq = spec.grid.nyquist
    edges = librosa.mel_frequencies(n_mels=bands + 1, fmin=0.0, fmax=nyq)
    band = np.clip(np.searchsorted(edges, spec.grid.bin_frequencies(), side="right") - 1, 0, bands - 1)
    seg_len = max(1, int(round(segment_seconds / spec.grid.seconds_per_frame)))
    seg = np.arange(T) // seg_len
    n_seg = int(seg.max()) + 1
    return band[:, None] * n_seg + seg[None, :]
