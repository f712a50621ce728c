"""The model's side of an NMF comparison: which bank gives spectral bases, and its activations as a matrix.

:func:`pick_bases_bank` chooses the filter bank whose filters play NMF's W (a decoder's
synthesis filters, a frequency-axis synthesis bank, else the first spectral analysis bank);
:func:`capture_activations` records what plays H (the latent that feeds the decoder, the
rectified output of an analysis bank, or any named layer) as ``(units, frames)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError, LayerNotFoundError

__all__ = ["pick_bases_bank", "activation_matrix", "top_variance", "capture_activations", "nonlinearity_after"]


def pick_bases_bank(banks: dict, name: str | None):
    """The bank whose filters serve as spectral bases: ``name``, else the last synthesis bank, else the first spectral one."""
    from .bank_report import select_banks

    if name:
        return select_banks(banks, [name])[name]
    spectral = {k: b for k, b in banks.items() if b.axis in ("samples", "frequency")}
    synth = [b for b in spectral.values() if b.role == "synthesis"]
    if synth:
        return synth[-1]
    return next(iter(spectral.values()), None)


def activation_matrix(x, *, time_axis: int | None = None, batch_axis: int | None = 0, sum_batch: bool = False) -> np.ndarray:
    """A captured tensor → ``(units, frames)``: time moved last, batch squeezed (or summed), the rest flattened.

    Parameters
    ----------
    x : tensor or array
    time_axis : int, optional
        Default: the last axis (the convolutional convention ``(batch, channel, time)``).
    batch_axis : int or None
        Axis of the batch; a batch of 1 is squeezed, a larger one is summed when ``sum_batch``
        (e.g. per-source latents of a masking separator add up to the mixture's latent).
    """
    a = np.asarray(x.detach().cpu().float().numpy() if hasattr(x, "detach") else x, dtype=float)
    if a.ndim < 2:
        raise AnalysisError(f"activations need a time axis and at least one unit, given shape {a.shape}")
    t = (a.ndim - 1) if time_axis is None else int(time_axis) % a.ndim
    a = np.moveaxis(a, t, -1)
    if batch_axis is not None and a.ndim >= 3:
        b = int(batch_axis) % a.ndim
        b = b - 1 if b > t else b  # axes after the time axis moved one step left
        if a.shape[b] == 1:
            a = a.squeeze(b)
        elif sum_batch:
            a = a.sum(b)
    return a.reshape(-1, a.shape[-1])


def top_variance(A: np.ndarray, k: int):
    """The ``k`` rows of ``A`` with the highest variance (in their order) and their indices; ``(A, None)`` when ≤ k rows."""
    if A.shape[0] <= k:
        return A, None
    keep = np.sort(np.argsort(-A.var(axis=1))[:k])
    return A[keep], keep


def capture_activations(spec, y, *, layer: str | None, bank):
    """Activations ``(units, frames)``, seconds per frame, seconds of frame 0's centre and the name of what was captured.

    Frame ``k`` of the activations is at ``offset + k * seconds_per_frame`` (the record's
    :meth:`~probe.hooks.Record.times`); the offset is 0 where it cannot be known (a
    waveform synthesis bank's input).

    From ``layer``'s output when given; else from the bank's latent: a synthesis bank's input
    (the sources' latents summed), or the rectifier after an analysis bank.
    """
    import torch

    from ..hooks import capture, select_layers

    if layer is not None:
        select_layers(spec.model, layer)  # raises LayerNotFoundError with suggestions
        name, want_input = layer, False
    elif bank is not None:
        name, want_input = bank.name, bank.role == "synthesis"
        if not want_input:
            name = nonlinearity_after(spec.model, bank.name) or name
    else:
        raise AnalysisError("the model has no spectral filter bank to take bases from; name an activation layer")
    with torch.no_grad(), capture(spec, layers=[name], inputs=want_input) as cache:
        spec.model(spec.features(y))
    if name not in cache:
        raise LayerNotFoundError(f"layer {name!r} did not run during the forward pass")
    rec = cache[name]
    if want_input:
        if not rec.inputs:
            raise AnalysisError(f"layer {name!r} recorded no tensor input")
        x = rec.inputs[0]
        # a synthesis bank's input: ConvTranspose1d (batch·sources, K, T), Linear (batch, T, K);
        # the sources' latents add up to the mixture's
        if bank.axis == "samples":
            A = activation_matrix(x, time_axis=-1, batch_axis=0, sum_batch=True)
            sps, offset = bank.stride / bank.sample_rate, 0.0
        else:
            A = activation_matrix(x, time_axis=-2 if x.ndim >= 3 else 0, batch_axis=0 if x.ndim >= 3 else None,
                                  sum_batch=True)
            sps, offset = spec.grid.seconds_per_frame, float(spec.grid.frame_times(1)[0])
        return A, sps, offset, f"{name} (input)"
    x = rec.tensor
    tax = rec.time_axis if rec.time_axis is not None else x.ndim - 1
    bax = rec.axes.index("batch") if rec.axes and "batch" in rec.axes else 0
    if bax == tax:
        bax = None
    return (activation_matrix(x, time_axis=tax, batch_axis=bax, sum_batch=True), rec.seconds_per_step,
            float(rec.time_offset or 0.0), name)


def nonlinearity_after(model, name: str) -> str | None:
    """The elementwise activation module registered right after ``name`` (ReLU, Softplus, …), if any.

    An analysis bank's raw output oscillates at the filter's centre frequency; the envelope
    NMF's H describes is what comes out of the rectifier that follows it.
    """
    import torch.nn as nn

    names = [n for n, _ in model.named_modules() if n]
    mods = dict(model.named_modules())
    if name not in names or names.index(name) + 1 >= len(names):
        return None
    nxt = names[names.index(name) + 1]
    acts = (nn.ReLU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softmax,
            nn.Hardtanh, nn.ReLU6)
    return nxt if isinstance(mods[nxt], acts) else None
