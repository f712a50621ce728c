"""Attribution on one time-frequency domain for every model, built on Captum.

The attributed variable is always the magnitude STFT ``|X|`` on the model's
:class:`~probe.grid.TFGrid`:

* spectrogram models (``stft``, ``logmag``, ``logmel``) get
  ``spec.to_model_layout(spec.representation_from_magnitude(|X|))``, so a log-mel model
  is explained on the *linear* STFT magnitude (in Hz; :meth:`Attribution.mel_view` folds
  the map onto mel bands);
* waveform models get ``grid.istft(|X| * exp(i * phase(X)))`` — the mixture's own phase,
  fixed — so their attribution is a T-F map too. The inverse is checked on the clip
  (relative error at most -60 dB) and the error is reported.

Captum does the attribution (Saliency, InputXGradient, IntegratedGradients,
GradientShap, DeepLift, NoiseTunnel, Occlusion, FeatureAblation, LayerGradCam); probe
adds the domain, audio baselines, targets, chunking for long audio and the guarantees
that the user's model leaves exactly as it came (parameters, train/eval and
``requires_grad`` flags restored; no hooks left).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AnalysisError, SpecError
from .baselines import make_baseline
from .targets import ClassTarget, Target, TargetContext, as_target, default_target

__all__ = ["Attribution", "attribute", "METHODS", "preserved_model", "TFForward", "analysis_stft"]

#: method name → what it is (aliases in :data:`_ALIASES`)
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
_ALIASES = {"input_x_gradient": "ixg", "inputxgradient": "ixg", "integrated_gradients": "ig",
            "integratedgradients": "ig", "gradient_shap": "gradshap", "gradientshap": "gradshap",
            "feature_ablation": "ablation", "featureablation": "ablation", "layer_gradcam": "gradcam",
            "grad_cam": "gradcam", "layergradcam": "gradcam"}
_COMPLETE = ("ig", "deeplift", "gradshap")  # methods with a completeness (summation-to-delta) axiom
_SMOOTHABLE = ("saliency", "ixg", "ig", "deeplift", "gradshap", "gradcam")
# modules whose nonlinearities live inside one op: DeepLift's rescale rule would silently treat them as linear
_NO_DEEPLIFT = ("RNNBase", "MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer")


def _method_name(method: str) -> str:
    m = str(method).strip().lower().replace("-", "_")
    m = _ALIASES.get(m, m)
    if m not in METHODS:
        raise AnalysisError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    return m


# ---- the result ------------------------------------------------------------------------------
@dataclass
class Attribution:
    """A relevance map on the model's T-F grid, with everything needed to check and hear it.

    Attributes
    ----------
    map : np.ndarray [shape=(F, T), dtype=float32]
        Relevance of each magnitude-STFT bin for the target (positive: raises it).
    times : np.ndarray [shape=(T,)]
        Frame centres in seconds.
    freqs : np.ndarray [shape=(F,)]
        Bin centres in Hz.
    grid : TFGrid
    method : str
    target : Target
        ``str(target)`` is its canonical string.
    convergence_delta : float or None
        Captum's ``sum(map) - (f(x) - f(baseline))`` (IG, DeepLift, GradientShap).
    completeness_error : float or None
        ``|convergence_delta| / |f(x) - f(baseline)|``; for chunked runs
        ``sum |delta_c| / sum |f_c(x) - f_c(baseline)|`` over chunks (each chunk's own
        error is in ``info["chunks"]``).
    input_magnitude : np.ndarray [shape=(F, T)]
        ``|X|`` of the clip.
    baseline : np.ndarray [shape=(F, T)] or None
        The baseline magnitude (deletion tests replace bins by it).
    baseline_name : str or None
    target_value, baseline_value : float or None
        ``f(x)`` and ``f(baseline)``.
    audio : np.ndarray [shape=(n,)]
        The clip (its STFT supplies the phase of listenable explanations).
    reconstruction_error_db : float or None
        Waveform models: relative error of ``istft(|X| e^{i phase})`` vs the clip.
    track : (np.ndarray, np.ndarray) or None
        The target's per-frame quantity ``(times, values)`` on the unperturbed clip.
    info : dict
        Settings, timing, chunks, warnings.
    """

    map: np.ndarray
    times: np.ndarray
    freqs: np.ndarray
    grid: Any
    method: str
    target: Any
    input_magnitude: np.ndarray
    convergence_delta: float | None = None
    completeness_error: float | None = None
    baseline: np.ndarray | None = None
    baseline_name: str | None = None
    target_value: float | None = None
    baseline_value: float | None = None
    audio: np.ndarray | None = None
    reconstruction_error_db: float | None = None
    track: tuple | None = None
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return self.map.shape

    @property
    def sample_rate(self) -> int:
        return int(self.grid.sample_rate)

    def box_mask(self, box) -> np.ndarray:
        """Boolean ``(F, T)`` mask of a ``{"onset", "offset", "fmin", "fmax"}`` box (s, Hz)."""
        t0, t1 = float(box.get("onset", 0.0)), float(box.get("offset", self.times[-1] + 1))
        f0 = float(box.get("fmin") if box.get("fmin") is not None else 0.0)
        f1 = float(box.get("fmax") if box.get("fmax") is not None else self.freqs[-1])
        half = 0.5 * self.grid.seconds_per_frame
        tm = (self.times >= t0 - half) & (self.times < t1 + half)
        fm = (self.freqs >= f0) & (self.freqs <= f1)
        return fm[:, None] & tm[None, :]

    def mel_view(self, n_mels: int | None = None):
        """Fold the map onto mel bands, conserving total relevance.

        Each linear bin's relevance is shared among the mel bands whose filters cover it,
        in proportion to the filter weights.

        Returns
        -------
        mel_map : np.ndarray [shape=(n_mels, T)]
        mel_freqs : np.ndarray [shape=(n_mels,)]
        """
        from ..grid import TFGrid

        g = self.grid if (n_mels is None and self.grid.n_mels) else TFGrid(**{**self.grid.to_dict(), "n_mels": n_mels or 64})
        M = g.mel_basis().astype(np.float64)  # (n_mels, F)
        share = M / np.maximum(M.sum(0, keepdims=True), 1e-12)
        return (share @ self.map.astype(np.float64)).astype(np.float32), g.mel_frequencies()

    def summary(self) -> dict:
        """JSON-able description (no arrays)."""
        def num(v):
            return None if v is None or not np.isfinite(v) else float(v)

        return {"method": self.method, "target": str(self.target), "grid": self.grid.to_dict(),
                "shape": list(self.map.shape), "baseline": self.baseline_name,
                "convergence_delta": num(self.convergence_delta), "completeness_error": num(self.completeness_error),
                "target_value": num(self.target_value), "baseline_value": num(self.baseline_value),
                "reconstruction_error_db": num(self.reconstruction_error_db),
                **{k: v for k, v in self.info.items() if k in ("seconds", "steps", "layer", "chunks_n", "warnings")}}

    def save(self, path) -> None:
        """Write map, magnitude and baseline to a safetensors file, the rest as JSON metadata."""
        from safetensors.numpy import save_file

        arrays = {"map": self.map, "input_magnitude": self.input_magnitude, "times": self.times, "freqs": self.freqs}
        if self.baseline is not None:
            arrays["baseline"] = self.baseline
        if self.audio is not None:
            arrays["audio"] = self.audio
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        save_file(arrays, str(path), metadata={"probe": json.dumps(self.summary())})

    @classmethod
    def load(cls, path) -> "Attribution":
        """Read a file written by :meth:`save` (the target comes back as its string)."""
        from safetensors import safe_open

        from ..grid import TFGrid

        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads(f.metadata()["probe"])
            arr = {k: f.get_tensor(k) for k in f.keys()}
        from .targets import parse_target

        try:
            target = parse_target(meta["target"])
        except AnalysisError:
            target = meta["target"]
        return cls(map=arr["map"], times=arr["times"].astype(float), freqs=arr["freqs"].astype(float),
                   grid=TFGrid.from_dict(meta["grid"]), method=meta["method"], target=target,
                   input_magnitude=arr["input_magnitude"], baseline=arr.get("baseline"),
                   baseline_name=meta.get("baseline"), convergence_delta=meta.get("convergence_delta"),
                   completeness_error=meta.get("completeness_error"), target_value=meta.get("target_value"),
                   baseline_value=meta.get("baseline_value"), audio=arr.get("audio"),
                   reconstruction_error_db=meta.get("reconstruction_error_db"))

    def listen(self, **kwargs):
        """Audio of the top bins and its complement; see :func:`probe.attribution.listen`."""
        from .listen import listen

        return listen(self, **kwargs)

    def __repr__(self) -> str:
        ce = "" if self.completeness_error is None else f", completeness_error={self.completeness_error:.2%}"
        return f"Attribution(method={self.method!r}, target={str(self.target)!r}, shape={self.map.shape}{ce})"


# ---- model guarantees ----------------------------------------------------------------------------
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")
_CAPTUM_ATTRS = ("input", "output", "input_ref")


@contextmanager
def preserved_model(model):
    """Eval mode and frozen parameters for the duration; everything restored afterwards.

    Restores each module's ``training`` flag, each parameter's ``requires_grad`` and
    ``.grad``, and removes any hook (and Captum's temporary ``input``/``output``
    attributes) added inside the block, even when the block raises.
    """
    modules = list(model.modules())
    flags = [m.training for m in modules]
    params = list(model.parameters())
    req = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    hooks = [{d: set(getattr(m, d, {}) or {}) for d in _HOOK_DICTS} for m in modules]
    attrs = [{a for a in _CAPTUM_ATTRS if a in m.__dict__} for m in modules]
    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for m, f in zip(modules, flags):
            m.training = f
        for p, r, g in zip(params, req, grads):
            p.requires_grad_(r)
            p.grad = g
        for m, before, had in zip(modules, hooks, attrs):
            for d, keys in before.items():
                dd = getattr(m, d, None)
                if dd:
                    for k in [k for k in dd if k not in keys]:
                        del dd[k]
            for a in _CAPTUM_ATTRS:
                if a in m.__dict__ and a not in had:
                    del m.__dict__[a]


@contextmanager
def _rnn_backward_ok(model, device):
    """cuDNN runs RNN backward only in training mode; in eval mode (dropout off) use the native kernels."""
    import torch

    if getattr(device, "type", "cpu") == "cuda" and any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield


# ---- the T-F domain ------------------------------------------------------------------------------
def analysis_stft(spec, y):
    """Magnitude and (waveform models) phase of the clip on the spec's grid.

    Returns
    -------
    mag : torch.Tensor [shape=(F, T)]
    phase : torch.Tensor [shape=(F, T)], complex, or None
        ``X / |X|`` (1 where ``|X| = 0``), for waveform models only.
    err_db : float or None
        ``20 log10(||istft(|X| phase) - y|| / ||y||)`` for waveform models.
    """
    import torch

    g = spec.grid
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
    S = g.stft(yt)
    mag = S.abs()
    if spec.input_kind != "waveform":
        return mag, None, None
    phase = torch.where(mag > 0, S / mag.clamp_min(1e-30), torch.ones_like(S))
    try:
        rec = g.istft(mag * phase, length=yt.shape[-1])
    except RuntimeError as exc:  # torch refuses windows that do not overlap-add (NOLA)
        raise SpecError(f"the grid does not invert this clip: {str(exc).splitlines()[0][-120:]} "
                        f"(n_fft={g.n_fft}, hop_length={g.hop_length}, window={g.window!r}); "
                        "use a window/hop with overlap-add (e.g. hop <= n_fft/4)") from None
    ny = float(torch.linalg.vector_norm(yt.double()))
    err_db = -math.inf if ny == 0 else 20 * math.log10(max(float(torch.linalg.vector_norm((rec - yt).double())) / ny, 1e-300))
    if err_db > -60:
        raise SpecError(f"the grid does not invert this clip: istft(|X| e^(i phase)) differs from the audio by "
                        f"{err_db:.1f} dB (need <= -60 dB); use a window/hop with overlap-add (e.g. hop <= n_fft/4)")
    return mag, phase, err_db


class TFForward:
    """``|X| [shape=(B, F, T)] → target [shape=(B,)]`` through the model (a callable for Captum).

    :meth:`as_module` gives an ``nn.Module`` version (DeepLift needs one).
    """

    def __init__(self, spec, target, ctx: TargetContext, phase=None):
        self.spec, self.target, self.ctx, self.phase = spec, target, ctx, phase
        # real and imaginary parts kept apart: two real products beat one complex product (about 2x, CPU)
        self._cos = phase.real.contiguous() if phase is not None else None
        self._sin = phase.imag.contiguous() if phase is not None else None

    def model_input(self, mag):
        import torch

        spec = self.spec
        if spec.input_kind == "waveform":
            c, s = self._cos.to(mag.device, mag.dtype), self._sin.to(mag.device, mag.dtype)
            y = spec.grid.istft(torch.complex(mag * c, mag * s), length=self.ctx.n_samples)
            return spec.to_model_layout(y)
        # magnitudes stay >= 0 under smoothing noise (a log input would be NaN otherwise)
        return spec.to_model_layout(spec.representation_from_magnitude(mag.clamp_min(0)))

    def output(self, mag):
        return self.spec.select_output(self.spec.model(self.model_input(mag)))

    def __call__(self, mag):
        self.ctx.magnitude = mag
        return self.target(self.output(mag), self.ctx)

    def as_module(self):
        import torch

        outer = self

        class _Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = outer.spec.model

            def forward(self, mag):
                return outer(mag)

        return _Wrapped()


# ---- methods -----------------------------------------------------------------------------------
@dataclass
class _Options:
    method: str
    steps: int
    internal_batch_size: int
    smooth: str | None
    nt_samples: int
    nt_stdev: float
    layer: Any
    layer_axes: str | None
    patch: tuple | None
    stride: tuple | None
    bands: int
    segment_seconds: float
    feature_mask: Any
    n_baselines: int
    abs: bool
    seed: int
    baseline: Any = "silence"
    path: str = "straight"
    quadrature: str = "gausslegendre"
    spacing: str = "linear"


def _find_layer(model, layer):
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


def _cam_to_grid(cam, spec, F, T, layer_axes):
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


def _default_patch(spec, F):
    return (max(1, F // 16), max(1, int(round(0.2 / spec.grid.seconds_per_frame))))


def _ablation_mask(spec, F, T, bands, segment_seconds):
    """Feature ids ``band * n_segments + segment`` on mel-spaced bands × fixed-length segments."""
    import librosa

    nyq = spec.grid.nyquist
    edges = librosa.mel_frequencies(n_mels=bands + 1, fmin=0.0, fmax=nyq)
    band = np.clip(np.searchsorted(edges, spec.grid.bin_frequencies(), side="right") - 1, 0, bands - 1)
    seg_len = max(1, int(round(segment_seconds / spec.grid.seconds_per_frame)))
    seg = np.arange(T) // seg_len
    n_seg = int(seg.max()) + 1
    return band[:, None] * n_seg + seg[None, :]


def _run_method(o: _Options, fwd: TFForward, x, base, mag_range: float):
    """Run the Captum method; returns ``(attr [shape=(F, T)], delta or None, extra info)``."""
    import captum.attr as ca
    import torch

    m = o.method
    extra: dict = {}
    kw: dict = {}
    needs_module = m == "deeplift"
    if m == "deeplift":
        bad = sorted({type(mod).__name__ for mod in fwd.spec.model.modules()
                      if any(b in [c.__name__ for c in type(mod).__mro__] for b in _NO_DEEPLIFT)})
        if bad:
            raise AnalysisError(f"DeepLift has no rule for {', '.join(bad)} in {type(fwd.spec.model).__name__} "
                                "(their nonlinearities are not separate modules); use method='ig' instead")
    f = fwd.as_module() if needs_module else fwd
    if m == "saliency":
        algo = ca.Saliency(f)
        kw = {"abs": o.abs}
    elif m == "ixg":
        algo = ca.InputXGradient(f)
    elif m == "ig":
        if o.path == "geometric":
            # the path b^(1-a) x^a: straight in log|X|, so log front ends see a smooth integrand
            if not bool((base > 0).all()):
                raise AnalysisError("path='geometric' needs a baseline above 0 in every bin (e.g. 'noise:-60'); "
                                    "silence is log(0) = -inf on that path")
            algo = ca.IntegratedGradients(lambda z: fwd(torch.exp(z)))
            x = torch.log(x.clamp_min(float(base.min()) * 1e-6))
            base = torch.log(base)
        elif o.spacing != "linear":
            # the same straight path x(a) = b + a (x - b), walked at another speed a = phi(u):
            # Captum integrates over u in [0, 1] (input 1, baseline 0 in every bin), so each
            # bin gets  (x_i - b_i) * integral of df/dx_i(x(phi(u))) phi'(u) du  — the
            # straight-path IG integral after substituting a = phi(u); completeness intact.
            # phi puts the quadrature nodes where the score changes (see _spacing_knots).
            knots_u, knots_a = _spacing_knots(o, fwd, x, base)
            diff, b0 = x - base, base

            def along(u):  # u [shape=(B, F, T)]: one value per batch item (every bin at the same u)
                lead = u.detach().reshape(u.shape[0], -1)[:, 0].contiguous()
                j = torch.searchsorted(knots_u, lead, right=True).clamp(1, len(knots_u) - 1)
                j = j.reshape((-1,) + (1,) * (u.ndim - 1))
                u0, u1, a0, a1 = knots_u[j - 1], knots_u[j], knots_a[j - 1], knots_a[j]
                return fwd(b0 + (a0 + (u - u0) * (a1 - a0) / (u1 - u0)) * diff)

            algo = ca.IntegratedGradients(along)
            x, base = torch.ones_like(x), torch.zeros_like(x)
            extra["spacing_knots"] = int(len(knots_u))
        else:
            algo = ca.IntegratedGradients(f)
        kw = {"baselines": base, "n_steps": o.steps, "method": o.quadrature,
              "internal_batch_size": o.internal_batch_size, "return_convergence_delta": True}
        extra.update(path=o.path, quadrature=o.quadrature, spacing=o.spacing)
    elif m == "gradshap":
        algo = ca.GradientShap(f)
        g = torch.Generator().manual_seed(o.seed)
        gains = torch.exp(0.5 * torch.randn(o.n_baselines, generator=g)).to(base.device, base.dtype)
        kw = {"baselines": base * gains[:, None, None], "stdevs": 0.0, "return_convergence_delta": True}
    elif m == "deeplift":
        algo = ca.DeepLift(f)
        kw = {"baselines": base, "return_convergence_delta": True}
    elif m == "occlusion":
        algo = ca.Occlusion(f)
        patch = tuple(int(v) for v in (o.patch or _default_patch(fwd.spec, x.shape[-2])))
        stride = tuple(int(v) for v in (o.stride or (max(1, patch[0] // 2), max(1, patch[1] // 2))))
        kw = {"sliding_window_shapes": patch, "strides": stride, "baselines": base,
              "perturbations_per_eval": o.internal_batch_size}
        extra.update(patch=list(patch), stride=list(stride))
    elif m == "ablation":
        algo = ca.FeatureAblation(f)
        if o.feature_mask is not None:
            fm = torch.as_tensor(np.asarray(o.feature_mask), dtype=torch.long)
            if fm.shape != x.shape[-2:]:
                raise AnalysisError(f"feature_mask has shape {tuple(fm.shape)}, the magnitude is {tuple(x.shape[-2:])}")
        else:
            fm = torch.as_tensor(_ablation_mask(fwd.spec, x.shape[-2], x.shape[-1], o.bands, o.segment_seconds))
        kw = {"baselines": base, "feature_mask": fm[None].to(x.device), "perturbations_per_eval": o.internal_batch_size}
        extra.update(n_features=int(fm.max()) + 1)
    elif m == "gradcam":
        name, layer = _find_layer(fwd.spec.model, o.layer)
        algo = ca.LayerGradCam(f, layer)
        kw = {"relu_attributions": True}
        extra["layer"] = name
    else:  # pragma: no cover - names are validated earlier
        raise AnalysisError(m)

    delta = None
    x = x.detach().requires_grad_(m not in ("occlusion", "ablation"))
    if o.smooth:
        if m not in _SMOOTHABLE:
            raise AnalysisError(f"NoiseTunnel smoothing applies to gradient methods ({', '.join(_SMOOTHABLE)}), not {m!r}")
        nt = ca.NoiseTunnel(algo)
        if m == "gradshap":
            kw["n_samples"] = o.steps
        # IG batches its own steps (internal_batch_size); other methods take noisy copies in batches
        res = nt.attribute(x, nt_type=o.smooth, nt_samples=o.nt_samples, stdevs=o.nt_stdev * mag_range,
                           nt_samples_batch_size=1 if m in ("ig", "gradshap") else o.internal_batch_size, **kw)
        extra["smooth"] = {"type": o.smooth, "samples": o.nt_samples, "stdev": o.nt_stdev * mag_range}
    else:
        try:
            with warnings.catch_warnings():  # Captum announces the temporary DeepLift hooks it removes again
                warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
                if m == "gradshap":
                    res = _gradshap_batched(algo, x, kw, o.steps, o.internal_batch_size)
                else:
                    res = algo.attribute(x, **kw)
        except AssertionError as exc:
            if m == "deeplift":
                raise AnalysisError(f"DeepLift cannot run on this model ({exc}); a module used twice or a functional "
                                    "nonlinearity breaks its rules: use method='ig'") from None
            raise
    if isinstance(res, tuple):
        res, delta = res
    attr = res
    if m == "gradcam":
        attr, axes = _cam_to_grid(res, fwd.spec, x.shape[-2], x.shape[-1], o.layer_axes)
        extra["layer_axes"] = axes
    else:
        attr = attr[0]
    if delta is not None:  # IG/DeepLift: one signed delta; GradientShap: one per sample → mean |delta|
        delta = float(delta.reshape(-1)[0]) if delta.numel() == 1 else float(delta.detach().float().abs().mean())
    return attr.detach().float().cpu(), delta, extra


def _spacing_knots(o: _Options, fwd, x, base, n_scan: int = 48, refine: int = 8, floor: float = 0.05):
    """Knots ``(u_j, a_j)`` of a monotone map ``a = phi(u)`` on [0, 1] for IG's quadrature.

    ``"db:D"``: ``a`` log-spaced from ``-D`` dB to 0 dB (``a = 0`` at ``u = 0``).
    ``"adaptive"``: score the clip at scales ``a`` (``n_scan`` log-spaced from -80 dB plus
    ``n_scan`` evenly spaced, then each of the ``refine`` intervals where the score moves
    most split in four; forward passes only), and make ``u`` the cumulative share of the
    score's change, plus a floor (``floor``, spread evenly over ``a``) so that flat
    stretches keep some nodes: the nodes land where ``f(b + a (x - b))`` moves.
    """
    import torch

    dev, dt = x.device, x.dtype
    kind, _, arg = o.spacing.partition(":")
    if kind == "db":
        D = float(arg or 60.0)
        u = torch.linspace(0, 1, 257, dtype=torch.float64)
        a = (10 ** (D * u / 20) - 1) / (10 ** (D / 20) - 1)
        return u.to(dev, dt), a.to(dev, dt)

    def score(alphas):
        vals = []
        with torch.no_grad():
            for i in range(0, len(alphas), max(1, o.internal_batch_size)):
                ab = alphas[i:i + o.internal_batch_size].to(dev, dt)[:, None, None]
                vals.append(fwd(base + ab * (x - base)).double().cpu())
        return torch.cat(vals)

    a = torch.unique(torch.cat([torch.zeros(1, dtype=torch.float64),
                                10 ** torch.linspace(-4, 0, n_scan, dtype=torch.float64),
                                torch.linspace(0, 1, n_scan, dtype=torch.float64)]))
    f = score(a)
    if refine:
        top = torch.argsort((f[1:] - f[:-1]).abs(), descending=True)[:refine]
        extra = torch.cat([a[j] + (a[j + 1] - a[j]) * torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64) for j in top])
        a, order = torch.sort(torch.cat([a, extra]))
        f = torch.cat([f, score(extra)])[order]
    change = (f[1:] - f[:-1]).abs()
    total = float(change.sum()) or 1.0
    mass = change / total + floor * (a[1:] - a[:-1])  # (a spans [0, 1]: the floor totals `floor`)
    u = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(mass, 0)])
    u = u / u[-1]
    return u.to(dev, dt), a.to(dev, dt)


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


# ---- chunks ----------------------------------------------------------------------------------------
def _plan_chunks(n: int, sr: int, hop: int, chunk_seconds: float, overlap_seconds: float, align: int):
    """Chunk ``[start, end)`` sample ranges: starts on multiples of ``align`` (a multiple of hop)."""
    L = max(align, int(round(chunk_seconds * sr / align)) * align)
    O = int(round(overlap_seconds * sr / align)) * align
    if O >= L:
        raise AnalysisError(f"overlap ({overlap_seconds:g} s) must be shorter than the chunk ({chunk_seconds:g} s)")
    step = L - O
    starts = list(range(0, max(n - O, 1), step))
    spans = []
    for s in starts:
        e = min(s + L, n)
        spans.append([s, e])
        if e >= n:
            break
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < O + align:  # a sliver: fold it into the previous chunk
        spans.pop()
        spans[-1][1] = n
    return [tuple(s) for s in spans]


def _fade_weights(spans, hop, n_frames_total):
    """Per chunk ``(first_frame, weights)``; weights are linear cross-fades that sum to 1."""
    firsts = [s // hop for s, _ in spans]
    lasts = [min(n_frames_total - 1, e // hop) for _, e in spans]
    out = []
    for i, (a, b) in enumerate(zip(firsts, lasts)):
        w = np.ones(b - a + 1, np.float32)
        if i > 0:
            ol = lasts[i - 1] - a + 1
            if ol > 0:
                w[:ol] *= (np.arange(ol) + 0.5) / ol
        if i + 1 < len(spans):
            ol = b - firsts[i + 1] + 1
            if ol > 0:
                w[-ol:] *= 1 - (np.arange(ol) + 0.5) / ol
        out.append((a, w))
    return out


# ---- entry point ------------------------------------------------------------------------------------
def _coerce_audio(spec, y, sr):
    from ..audio import AudioExample, load_audio, validate_audio

    example = None
    if isinstance(y, AudioExample):
        example, sr, y = y, y.sr, y.y
    if not isinstance(y, np.ndarray):
        try:
            import torch

            if isinstance(y, torch.Tensor):
                y = y.detach().cpu().numpy()
        except ImportError:  # pragma: no cover
            pass
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    sr = spec.sample_rate if sr is None else int(sr)
    if sr != spec.sample_rate:
        y, _ = load_audio(y, spec.sample_rate, source_sr=sr, max_seconds=None)
    return validate_audio(y, sr=spec.sample_rate, max_seconds=None), example


def _top_class(spec, y, chunk_samples):
    import torch

    scores = []
    with preserved_model(spec.model), torch.no_grad():
        for s in range(0, len(y), chunk_samples):
            out = spec.forward(y[s:s + chunk_samples])
            scores.append(out[0].mean(-1) if spec.output_kind == "frame_probs" else out[0])
    return int(torch.stack(scores).mean(0).argmax())


def attribute(spec, y, target=None, *, method: str = "ig", baseline="silence", steps: int = 50,
              internal_batch_size: int = 8, smooth: str | None = None, nt_samples: int = 8, nt_stdev: float = 0.05,
              layer=None, layer_axes: str | None = None, patch=None, stride=None, bands: int = 12,
              segment_seconds: float = 0.25, feature_mask=None, n_baselines: int = 8, abs: bool = True,
              chunk_seconds: float | None = None, overlap_seconds: float = 2.0, max_unchunked_seconds: float = 30.0,
              progress: bool = False, seed: int = 0, sr: int | None = None, path: str = "straight",
              quadrature: str = "gausslegendre", spacing: str = "linear") -> Attribution:
    """Explain one scalar of a model's output as a map over the clip's magnitude STFT.

    Parameters
    ----------
    spec : ModelSpec
        The model and the meaning of its input/output (any input kind).
    y : np.ndarray [shape=(n,)] or AudioExample
        The clip, at ``spec.sample_rate`` (or at ``sr``, then resampled). With an
        :class:`~probe.audio.AudioExample` and no target, the target is its first
        event (detection) or source 1 (separation).
    target : str, Target or callable, optional
        What to explain (see :mod:`probe.attribution.targets`): ``"class=bell,t=3:3.5"``,
        ``"source=1,f=200:1000"``, a :class:`Target`, or ``fn(out[, ctx]) -> (B,)``.
        Default: the example's first event, source 1, or the top-scoring class.
    method : str
        One of :data:`METHODS`: ``saliency``, ``ixg``, ``ig``, ``gradshap``, ``deeplift``,
        ``occlusion``, ``ablation``, ``gradcam``.
    baseline : str or array [shape=(F, T)]
        ``"silence"``, ``"noise[:DB]"``, ``"smooth[:SECONDS]"``, ``"bandstop:LO:HI"``
        (see :mod:`probe.attribution.baselines`). Used by IG, GradientShap, DeepLift,
        occlusion, ablation and the deletion test.
    path : {"straight", "geometric"}
        IG's path from the baseline to the clip: the straight line in ``|X|`` (the
        original method), or ``b^(1-a) * x^a``, straight in ``log|X|`` (needs a baseline
        above zero, e.g. ``"noise:-60"``). Both explain ``f(x) - f(b)`` over the same bins
        (completeness holds for any path); the geometric path keeps log / log-mel front
        ends from concentrating the whole integrand near ``a = 0``, so fewer steps reach a
        given completeness error (docs/findings_attribution.md).
    spacing : {"linear", "adaptive", "db[:D]"}
        How IG walks its straight path ``b + a (x - b)`` (the path and the integral stay the
        same, completeness included; only the quadrature nodes move). ``"linear"`` is
        Captum's own. ``"db:60"`` spaces ``a`` evenly in dB over 60 dB. ``"adaptive"``
        first scores the clip at 64 scales (forward passes only), then puts the nodes where
        the score changes: a detector that switches on within a few dB (the zoo CRNN rises
        from 0.01 to 0.45 between 0.6 % and 0.9 % of the clip's amplitude) otherwise gets
        one or two nodes on its whole transition and an erratic completeness error.
    quadrature : str
        Captum's rule for IG's integral: ``"gausslegendre"`` (default; best for smooth
        integrands) or ``"riemann_trapezoid"`` / ``"riemann_middle"`` / … (more even
        convergence when the path crosses many ReLU / max-pool kinks).
    steps : int
        IG quadrature points / GradientShap samples (50, Captum's default). The zoo
        detectors needed 16–512 steps (linear spacing) or 8–128 (``spacing="adaptive"``)
        for a completeness error of at most 1 % (docs/findings_attribution.md);
        :func:`probe.analyze.faithfulness.ig_steps_for_completeness` measures it per clip.
    internal_batch_size : int
        Inputs per forward pass inside Captum (bounds memory).
    smooth : {"smoothgrad", "smoothgrad_sq", "vargrad"}, optional
        Wrap the method in Captum's NoiseTunnel with ``nt_samples`` noisy copies of
        standard deviation ``nt_stdev * (max|X| - min|X|)``.
    layer, layer_axes
        GradCAM layer (module path or module; default the last Conv1d/Conv2d) and the
        order of its two spatial axes (``"ft"``/``"tf"``, read from the input layout).
    patch, stride : (int, int)
        Occlusion window and step in (bins, frames); default ``(F // 16, 0.2 s)``, half-window strides.
    bands, segment_seconds, feature_mask
        FeatureAblation regions: mel-spaced bands × fixed segments, or an explicit
        integer ``(F, T)`` mask.
    n_baselines : int
        GradientShap baseline distribution size (the baseline times log-normal gains).
    abs : bool
        Saliency: absolute gradients (Captum's default).
    chunk_seconds, overlap_seconds, max_unchunked_seconds
        Clips longer than ``max_unchunked_seconds`` (or than ``chunk_seconds`` when given)
        are attributed chunk by chunk (default 10 s chunks) with ``overlap_seconds`` of
        overlap, and the maps cross-faded; memory is bounded by one chunk. Exact away from
        chunk edges when the model's receptive field is shorter than half the overlap and
        the target is additive over frames (mean, energy). Models that see the whole clip
        (bidirectional RNNs) and ``reduce="max"`` / cluster targets are approximated
        chunk by chunk (each chunk explains its own share, max or clustering).
    progress : bool
        Show a tqdm bar over chunks.
    seed : int
        For GradientShap / NoiseTunnel draws.

    Returns
    -------
    Attribution
        ``.map [shape=(F, T)]`` on ``spec.grid`` with ``.times``, ``.freqs``, completeness, …

    Raises
    ------
    AnalysisError
        Unknown method/target/baseline, or a method the model does not allow (DeepLift on
        recurrent layers).
    SpecError
        A waveform model whose grid cannot invert the clip (reconstruction above -60 dB).

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> g = TFGrid(8000, n_fft=256, hop_length=64)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    >>> y = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    >>> _ = net(torch.zeros(1, 129, g.n_frames(4000)))
    >>> spec = ModelSpec(net, input_kind="stft", grid=g, output_kind="clip_scores", classes=["x"])
    >>> a = attribute(spec, y, "class=x", method="ig", steps=16)
    >>> a.map.shape, a.completeness_error < 0.01
    ((129, 63), True)
    """
    import torch

    from ..adapter import ModelSpec

    if not isinstance(spec, ModelSpec):
        raise SpecError(f"attribute needs a ModelSpec (the model plus its grid and output kind), given {type(spec).__name__}; "
                        "wrap it: ModelSpec(model, input_kind=..., grid=TFGrid(...), output_kind=...)")
    t_start = time.perf_counter()
    m = _method_name(method)
    if smooth is not None and smooth not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        raise AnalysisError(f"smooth must be smoothgrad, smoothgrad_sq or vargrad, given {smooth!r}")
    y, example = _coerce_audio(spec, y, sr)
    duration = len(y) / spec.sample_rate
    if chunk_seconds is None and duration > max_unchunked_seconds:
        chunk_seconds = 10.0
    if target is None:
        tgt = default_target(spec, example)
        if tgt is None:
            if spec.output_kind in ("frame_probs", "clip_scores"):
                c = _top_class(spec, y, int((chunk_seconds or duration) * spec.sample_rate))
                tgt = ClassTarget((spec.classes or [])[c] if spec.classes and c < len(spec.classes) else c)
            else:
                raise AnalysisError(f"a {spec.output_kind!r} model needs an explicit target (a callable or Target)")
    else:
        tgt = as_target(target, spec)
    opts = _Options(m, int(steps), int(internal_batch_size), smooth, int(nt_samples), float(nt_stdev), layer, layer_axes,
                    patch, stride, int(bands), float(segment_seconds), feature_mask, int(n_baselines), bool(abs), int(seed),
                    baseline, path, quadrature, _check_spacing(spacing, m, path))
    if quadrature not in ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right"):
        raise AnalysisError(f"unknown quadrature {quadrature!r}; Captum knows gausslegendre, riemann_trapezoid, "
                            "riemann_middle, riemann_left, riemann_right")
    if path not in ("straight", "geometric"):
        raise AnalysisError(f"path must be 'straight' or 'geometric', given {path!r}")
    if path == "geometric" and m != "ig":
        raise AnalysisError(f"path='geometric' applies to method='ig' only, given method={m!r}")
    if m == "gradcam" and not isinstance(layer, (str, type(None))):
        opts.layer = _find_layer(spec.model, layer)[0]
    with _seeded(seed):
        return _attribute(spec, y, tgt, opts, m, baseline, chunk_seconds, overlap_seconds, progress, smooth, t_start)


def _check_spacing(spacing, method, path) -> str:
    spacing = str(spacing or "linear").strip().lower()
    kind, _, arg = spacing.partition(":")
    ok = kind in ("linear", "adaptive") and not arg
    if kind == "db":
        try:
            ok = float(arg or 60.0) > 0
        except ValueError:
            ok = False
    if not ok:
        raise AnalysisError(f"spacing must be 'linear', 'adaptive' or 'db[:D]' (D > 0 dB), given {spacing!r}")
    if kind != "linear" and (method != "ig" or path != "straight"):
        raise AnalysisError(f"spacing={spacing!r} applies to method='ig' on the straight path; "
                            f"given method={method!r}, path={path!r}")
    return spacing


@contextmanager
def _seeded(seed: int):
    """Seed torch and numpy for Captum's draws (GradientShap uses numpy's global RNG), restoring both after."""
    import torch

    state = np.random.get_state()
    # torch.manual_seed also seeds CUDA: fork the CUDA generator too when it is in use
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _attribute(spec, y, tgt, opts, m, baseline, chunk_seconds, overlap_seconds, progress, smooth, t_start):
    import torch

    g = spec.grid
    n = len(y)
    duration = n / spec.sample_rate
    chunked = chunk_seconds is not None and duration > chunk_seconds
    if not chunked:
        res = _attribute_segment(spec, y, tgt, TargetContext(spec, n), opts)
        mag, base, bname = res["mag"], res["base"], res["baseline_name"]
        amap = res["map"]
        info = {"steps": opts.steps if m in ("ig", "gradshap") else None, **res["extra"]}
        delta, cerr = res["delta"], res["completeness_error"]
        fx, fb, err_db, track, bound = res["fx"], res["fb"], res["err_db"], res["track"], res["target"]
    else:
        spans = _plan_chunks(n, spec.sample_rate, g.hop_length, float(chunk_seconds), float(overlap_seconds),
                             align=g.hop_length * 32)
        T = g.n_frames(n)
        amap = torch.zeros(g.n_freqs, T)
        fades = _fade_weights(spans, g.hop_length, T)
        deltas, errs, cinfo, extra = [], [], [], {}
        span = getattr(tgt, "t", None)
        from tqdm.auto import tqdm

        for (s, e), (a, w) in tqdm(list(zip(spans, fades)), desc="attribution", unit="chunk", disable=not progress):
            t0, t1 = s / spec.sample_rate, e / spec.sample_rate
            if span is not None and (span[1] <= t0 or span[0] >= t1):
                cinfo.append({"start": t0, "end": t1, "skipped": True})
                continue
            ctx = TargetContext(spec, e - s, offset_seconds=t0, total_seconds=duration)
            r = _attribute_segment(spec, y[s:e], tgt, ctx, opts)
            k = min(r["map"].shape[-1], len(w))
            amap[:, a:a + k] += torch.as_tensor(w[:k])[None, :] * r["map"][:, :k]
            extra = r["extra"]
            if r["delta"] is not None:
                deltas.append(abs(r["delta"]))
                errs.append(abs(r["fx"] - r["fb"]))
            cinfo.append({"start": t0, "end": t1, "completeness_error": r["completeness_error"],
                          "reconstruction_error_db": r["err_db"]})
            del r
        mag = g.stft(torch.as_tensor(y)).abs()
        base, bname = make_baseline(baseline, mag, grid=g, y=y)
        # chunks explain different shares of the target: weigh each chunk's error by its share
        delta = float(np.sum(deltas)) if deltas else None
        cerr = float(np.sum(deltas) / max(np.sum(errs), 1e-12)) if deltas and m in _COMPLETE and not smooth else None
        fx = fb = None
        rec = [c["reconstruction_error_db"] for c in cinfo if c.get("reconstruction_error_db") is not None]
        err_db = float(np.max(rec)) if rec else None
        track = None
        bound = tgt
        info = {"steps": opts.steps if m in ("ig", "gradshap") else None, **extra, "chunks": cinfo,
                "chunks_n": len(spans), "chunk_seconds": float(chunk_seconds), "overlap_seconds": float(overlap_seconds)}
    warnings = []
    if m in _COMPLETE and cerr is not None and cerr > 0.05 and not smooth:
        warnings.append(f"completeness error {cerr:.1%}: " + (
            "raise steps, or use spacing='adaptive' (the score may switch on within a few dB along the path)"
            if m == "ig" else "the method's rules do not cover every nonlinearity of this model"))
    if warnings:
        info["warnings"] = warnings
    info["seconds"] = round(time.perf_counter() - t_start, 4)
    info["baseline"] = bname
    mag_np = mag.detach().cpu().numpy().astype(np.float32)
    return Attribution(map=amap.numpy().astype(np.float32), times=g.frame_times(amap.shape[-1]), freqs=g.bin_frequencies(),
                       grid=g, method=m, target=bound, input_magnitude=mag_np, convergence_delta=delta,
                       completeness_error=cerr, baseline=base.detach().cpu().numpy().astype(np.float32),
                       baseline_name=bname, target_value=fx, baseline_value=fb, audio=y, reconstruction_error_db=err_db,
                       track=track, info=info)


def _attribute_segment(spec, y, tgt: Target, ctx: TargetContext, o: _Options):
    """Attribution of one segment (the whole clip, or a chunk)."""
    import torch

    mag, phase, err_db = analysis_stft(spec, y)
    p = next(iter(spec.model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    mag = mag.to(device, dtype)
    if phase is not None:
        phase = phase.to(device)
    base, bname = make_baseline(o.baseline, mag, grid=spec.grid, y=y)
    x = mag[None]
    fwd = TFForward(spec, tgt, ctx, phase)
    with preserved_model(spec.model):
        with torch.no_grad():
            ctx.magnitude = x
            out0 = fwd.output(x)
            bound = tgt.bind(out0, ctx)
            fwd.target = bound
            fx = float(bound(out0, ctx)[0])
            track = bound.track(out0, ctx)
            fb = float(fwd(base[None])[0])
            del out0
        with _rnn_backward_ok(spec.model, device):
            attr, delta, extra = _run_method(o, fwd, x, base[None], float(mag.max() - mag.min()))
    cerr = None
    if o.method in _COMPLETE and delta is not None and not o.smooth:
        # Captum's delta is sum(attr) - (f(x) - f(b)); relative to the explained difference
        cerr = abs(delta) / max(abs(fx - fb), 1e-12)
    return {"map": attr, "mag": mag.detach().cpu(), "base": base.detach().cpu(), "baseline_name": bname, "delta": delta,
            "completeness_error": cerr, "fx": fx, "fb": fb, "err_db": err_db, "track": track, "target": bound,
            "extra": extra}

