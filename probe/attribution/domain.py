"""The time-frequency domain every attribution is computed in.

The attributed variable is always the magnitude STFT ``|X|`` on the model's
:class:`~probe.grid.TFGrid`:

* spectrogram models (``stft``, ``logmag``, ``logmel``) get
  ``spec.to_model_layout(spec.representation_from_magnitude(|X|))``, so a log-mel model
  is explained on the *linear* STFT magnitude (in Hz);
* waveform models get ``grid.istft(|X| * exp(i * phase(X)))`` — the mixture's own phase,
  fixed — so their attribution is a T-F map too. The inverse is checked on the clip
  (relative error at most -60 dB) and the error is reported.

For a waveform model the map ``|X| → y`` is *linear* (the phase is fixed), so IG's
straight path in ``|X|`` is a straight path in ``y`` and the chain rule through the
inverse STFT can be applied once to the integrated gradient instead of at every step
(:meth:`TFForward.waveform` and :meth:`TFForward.magnitude_grad`).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SpecError
from .targets import TargetContext

__all__ = ["analysis_stft", "analysis", "TFForward"]


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
    return analysis(spec, y)[:3]


def analysis(spec, y):
    """:func:`analysis_stft` plus the reconstruction ``istft(|X| phase) [shape=(n,)]`` (waveform models; else None)."""
    import torch

    g = spec.grid
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
    S = g.stft(yt)
    mag = S.abs()
    if spec.input_kind != "waveform":
        return mag, None, None, None
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
    return mag, phase, err_db, rec


def _to_model_layout(spec, t):
    """``spec.to_model_layout`` with canonical strides when the result is contiguous.

    Adding a singleton channel axis by ``unsqueeze`` + ``permute`` leaves strides such as
    ``(n, 1, 1)`` on a contiguous ``(B, 1, n)`` tensor; CPU convolutions then take a slower
    path (about 30 % slower IG on a small waveform CNN). Same memory, canonical strides.
    """
    t = spec.to_model_layout(t)
    if t.is_contiguous():
        strides, acc = [], 1
        for d in reversed(t.shape):
            strides.append(acc)
            acc *= max(int(d), 1)
        strides = tuple(reversed(strides))
        if t.stride() != strides:
            t = t.as_strided(t.shape, strides)
    return t


class TFForward:
    """``|X| [shape=(B, F, T)] → target [shape=(B,)]`` through the model (a callable for Captum).

    Parameters
    ----------
    spec : ModelSpec
    target : Target
    ctx : TargetContext
    phase : torch.Tensor [shape=(F, T)], complex, optional
        The clip's phase (waveform models).
    model : torch.nn.Module, optional
        The module to run (default ``spec.model``); attribution passes the shadow of
        :func:`~probe.attribution.isolation.preserved_model`.

    :meth:`as_module` gives an ``nn.Module`` version (DeepLift needs one).
    """

    def __init__(self, spec, target, ctx: TargetContext, phase=None, model=None, y=None):
        self.spec, self.target, self.ctx, self.phase = spec, target, ctx, phase
        self.model = spec.model if model is None else model
        self._y = y  # waveform models: istft(|X| phase) of the clip, when the caller has it already
        self._ends = None
        # real and imaginary parts kept apart: two real products beat one complex product (about 2x, CPU)
        self._cos = phase.real.contiguous() if phase is not None else None
        self._sin = phase.imag.contiguous() if phase is not None else None

    @property
    def waveform_model(self) -> bool:
        return self.spec.input_kind == "waveform"

    def waveform(self, mag):
        """Waveform model: ``|X| [shape=(B, F, T)] → y [shape=(B, n)]`` (linear in ``|X|``)."""
        import torch

        c, s = self._cos.to(mag.device, mag.dtype), self._sin.to(mag.device, mag.dtype)
        return self.spec.grid.istft(torch.complex(mag * c, mag * s), length=self.ctx.n_samples)

    def model_input(self, mag):
        spec = self.spec
        if spec.input_kind == "waveform":
            return _to_model_layout(spec, self.waveform(mag))
        # magnitudes stay >= 0 under smoothing noise (a log input would be NaN otherwise)
        return _to_model_layout(spec, spec.representation_from_magnitude(mag.clamp_min(0)))

    def output(self, mag):
        return self.spec.select_output(self.model(self.model_input(mag)))

    def __call__(self, mag):
        self.ctx.magnitude = mag
        return self.target(self.output(mag), self.ctx)

    def path_ends(self, x, base):
        """Waveform model: ``(y_x, y_b) [shape=(1, n)]``, the waveforms of the clip and the baseline (computed once)."""
        import torch

        if self._ends is None:
            with torch.no_grad():
                y_x = self._y.reshape(1, -1).to(x.device, x.dtype) if self._y is not None else self.waveform(x)
                y_b = torch.zeros_like(y_x) if not bool(base.any()) else self.waveform(base)
            self._ends = (y_x, y_b)
        return self._ends

    def from_waveform(self, y):
        """Waveform model: target of a waveform batch ``y [shape=(B, n)]`` (no inverse STFT)."""
        return self.target(self.spec.select_output(self.model(_to_model_layout(self.spec, y))), self.ctx)

    def magnitude_grad(self, grad_y, like):
        """Chain rule through the (linear) inverse STFT: ``d/d|X|`` from ``d/dy [shape=(n,)]``.

        One backward pass through :meth:`waveform`, whatever the number of IG steps.
        """
        import torch

        with torch.enable_grad():
            m = torch.zeros_like(like).requires_grad_(True)  # linear map: the Jacobian is the same at every point
            y = self.waveform(m[None])[0]
            (g,) = torch.autograd.grad(y, m, grad_outputs=grad_y.to(y.dtype).reshape(y.shape))
        return g

    def as_module(self):
        import torch

        outer = self

        class _Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = outer.model

            def forward(self, mag):
                return outer(mag)

        return _Wrapped()
