"""Learned filter banks: find the layers whose kernels span waveform samples or frequency bins.

:func:`filters` walks a model and returns, for every Conv1d / ConvTranspose1d / Conv2d /
Linear layer whose kernel lies on a physical axis, a :class:`FilterBank` holding the
kernels with their sample rate, stride and axis meaning. The response analysis lives in
:mod:`probe.analyze.filters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._shapes import probe_shapes
from .errors import SpecError

__all__ = ["FilterBank", "filters"]

#: axis meaning of a bank's kernels
AXES = ("samples", "frequency", "spectrotemporal")


@dataclass
class FilterBank:
    """Kernels of one layer, with their physical axis.

    Attributes
    ----------
    name : str
        Module path of the layer (``"encoder"``, ``"front.0"``).
    weights : np.ndarray
        ``axis="samples"``: ``(n_filters, n_taps)`` impulse responses at ``sample_rate``
        (multi-channel input kernels are kept as ``(n_filters, in_channels, n_taps)``).
        ``axis="frequency"``: ``(n_filters, n_bins)`` profiles over ``freqs_hz``
        (or ``(n_filters, n_bins, n_taps)`` when the kernel also spans frames).
        ``axis="spectrotemporal"``: ``(n_filters, in_channels, k_f, k_t)``.
    axis : {"samples", "frequency", "spectrotemporal"}
    sample_rate : int
        Rate of the waveform the layer sees (or of the audio behind the spectrogram).
    stride : int
        Hop of the layer along its time axis, in its own steps.
    role : {"analysis", "synthesis"}
        ``synthesis`` for decoders (ConvTranspose1d to samples, Linear to bins).
    freqs_hz : np.ndarray, optional
        Hz of each bin for frequency kernels.
    module_type : str
    """

    name: str
    weights: np.ndarray = field(repr=False)
    axis: str
    sample_rate: int
    stride: int = 1
    role: str = "analysis"
    freqs_hz: np.ndarray | None = field(default=None, repr=False)
    module_type: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.axis not in AXES:
            raise SpecError(f"unknown filter axis {self.axis!r}; known: {', '.join(AXES)}")
        self.weights = np.asarray(self.weights, dtype=np.float32)

    @property
    def n_filters(self) -> int:
        return int(self.weights.shape[0])

    @property
    def kernels(self) -> np.ndarray:
        """Kernels as ``(n_filters, n_taps_or_bins)``: a single input channel is squeezed, several are summed
        only for display (the analyzers use :attr:`weights`)."""
        w = self.weights
        if self.axis == "samples" and w.ndim == 3:
            return w[:, 0] if w.shape[1] == 1 else w.sum(1)
        if self.axis == "frequency" and w.ndim == 3:
            return w.sum(-1)
        return w

    def to_dict(self) -> dict:
        return {"name": self.name, "axis": self.axis, "n_filters": self.n_filters, "shape": list(self.weights.shape),
                "sample_rate": self.sample_rate, "stride": self.stride, "role": self.role, "module_type": self.module_type}


def filters(spec, *, n_probe_seconds: float = 0.5) -> dict:
    """Filter banks of a model, keyed by module path, in module order.

    Parameters
    ----------
    spec : ModelSpec
        The model and its input meaning; a short probe forward tells which layers see
        waveform samples or frequency bins.

    Returns
    -------
    dict of str → FilterBank

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 32, stride=16), torch.nn.ReLU(), torch.nn.Conv1d(8, 4, 3))
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> {k: (v.axis, v.weights.shape) for k, v in filters(spec).items()}
    {'0': ('samples', (8, 1, 32))}
    """
    import torch.nn as nn

    model = spec.model
    n = max(int(n_probe_seconds * spec.sample_rate), 4 * spec.grid.n_fft)
    shapes = probe_shapes(spec, n)
    steps = spec.input_steps(n)
    sr = spec.sample_rate
    if spec.input_kind == "logmel":
        n_bins, freqs = int(spec.grid.n_mels), spec.grid.mel_frequencies()
    else:
        n_bins, freqs = spec.grid.n_freqs, spec.grid.bin_frequencies()
    waveform = spec.input_kind == "waveform"
    banks: dict = {}
    for name, mod in model.named_modules():
        if name not in shapes:
            continue
        ins, outs = shapes[name][0]
        in_shape = ins[0] if ins else ()
        out_shape = outs[0] if outs else ()
        w = getattr(mod, "weight", None)
        if w is None:
            continue
        W = w.detach().cpu().float().numpy()
        kind = type(mod).__name__
        if isinstance(mod, nn.ConvTranspose1d) and waveform and out_shape and abs(out_shape[-1] - n) <= mod.kernel_size[0]:
            # weight (in, out, k): one synthesis filter per latent channel
            banks[name] = FilterBank(name, W.transpose(1, 0, 2)[0] if W.shape[1] == 1 else W.transpose(0, 1, 2), "samples", sr,
                                     int(mod.stride[0]), "synthesis", module_type=kind)
        elif isinstance(mod, nn.Conv1d) and waveform and in_shape and in_shape[-1] == n:
            banks[name] = FilterBank(name, W, "samples", sr, int(mod.stride[0]), "analysis", module_type=kind)
        elif isinstance(mod, nn.Conv1d) and not waveform and in_shape and len(in_shape) >= 2 and in_shape[-2] == n_bins \
                and mod.in_channels == n_bins and in_shape[-1] == steps:
            banks[name] = FilterBank(name, W, "frequency", sr, int(mod.stride[0]), "analysis", freqs, module_type=kind)
        elif isinstance(mod, nn.Linear) and not waveform and mod.in_features == n_bins and in_shape and in_shape[-1] == n_bins:
            banks[name] = FilterBank(name, W, "frequency", sr, 1, "analysis", freqs, module_type=kind)
        elif isinstance(mod, nn.Linear) and not waveform and mod.out_features == n_bins:
            banks[name] = FilterBank(name, W.T.copy(), "frequency", sr, 1, "synthesis", freqs, module_type=kind)
        elif isinstance(mod, nn.Conv2d) and not waveform and in_shape and n_bins in in_shape[-2:] and steps in in_shape[-2:]:
            fa = -2 if in_shape[-2] == n_bins else -1
            banks[name] = FilterBank(name, W if fa == -2 else W.transpose(0, 1, 3, 2), "spectrotemporal", sr,
                                     int(mod.stride[-1 if fa == -2 else 0]), "analysis", freqs, module_type=kind)
    return banks
