"""Audio baselines: what "absent" means for a magnitude spectrogram.

Integrated gradients, DeepLift, occlusion, feature ablation and the deletion test all
replace the input (or parts of it) by a *baseline*. For audio, zero is one choice among
several, and each asks a different question:

``"silence"``
    ``|X| = 0`` — "compared with nothing at all". For log inputs this is ``log(eps)``,
    far outside anything the model saw in training.
``"noise"`` / ``"noise:-40"``
    A flat noise floor ``DB`` below the clip's RMS (default -60 dB): the expected STFT
    magnitude of white noise at that level, the same in every bin. "Compared with a quiet
    room."
``"smooth"`` / ``"smooth:0.5"``
    The spectrogram averaged over a moving window of that many seconds (default 1 s):
    keeps the long-term spectrum, removes onsets and modulation. "Which transients matter?"
``"bandstop:200:1000"``
    The input with the band 200–1000 Hz removed: attribution is confined to the band,
    because outside it input and baseline agree.
An array ``(F, T)`` is used as given.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError

__all__ = ["make_baseline", "BASELINES"]

BASELINES = ("silence", "noise", "smooth", "bandstop")


def _num(text, what, spec_text):
    try:
        return float(text)
    except ValueError:
        raise AnalysisError(f"baseline {spec_text!r}: {what} must be a number, given {text!r}") from None


def make_baseline(baseline, mag, *, grid, y=None):
    """Baseline magnitude for ``mag`` on ``grid``.

    Parameters
    ----------
    baseline : str or array-like [shape=(F, T)]
        See the module docstring.
    mag : torch.Tensor [shape=(F, T)]
        The clip's magnitude STFT.
    grid : TFGrid
    y : np.ndarray [shape=(n,)], optional
        The clip (for the noise level; otherwise derived from ``mag``).

    Returns
    -------
    base : torch.Tensor [shape=(F, T)], same dtype as ``mag``
    name : str
        Canonical description (stored on the attribution).
    """
    import torch

    if not isinstance(baseline, str):
        b = torch.as_tensor(np.asarray(baseline) if not isinstance(baseline, torch.Tensor) else baseline,
                            dtype=mag.dtype, device=mag.device)
        if b.ndim == 0:
            return torch.full_like(mag, float(b)), f"constant:{float(b):g}"
        if b.shape != mag.shape:
            raise AnalysisError(f"baseline array has shape {tuple(b.shape)}, the magnitude is (F, T) = {tuple(mag.shape)}")
        return b, "array"
    name, *args = baseline.strip().lower().split(":")
    if name == "silence":
        return torch.zeros_like(mag), "silence"
    if name == "noise":
        db = _num(args[0], "the level in dB", baseline) if args else -60.0
        if y is not None:
            rms = float(np.sqrt(np.mean(np.square(np.asarray(y, np.float64)))))
        else:  # Parseval on the STFT: mean |X|^2 = rms^2 * sum(w^2)
            w2 = float((grid.window_tensor() ** 2).sum())
            rms = float(torch.sqrt((mag.double() ** 2).mean() / w2))
        sigma = rms * 10 ** (db / 20)
        level = sigma * float(torch.sqrt((grid.window_tensor(dtype=torch.float64) ** 2).sum()))
        return torch.full_like(mag, level), f"noise:{db:g}"
    if name == "smooth":
        from scipy.ndimage import uniform_filter1d

        sec = _num(args[0], "the window in seconds", baseline) if args else 1.0
        width = max(1, int(round(sec / grid.seconds_per_frame)))
        sm = uniform_filter1d(mag.detach().cpu().numpy(), size=width, axis=-1, mode="nearest")
        return torch.as_tensor(sm, dtype=mag.dtype, device=mag.device), f"smooth:{sec:g}"
    if name == "bandstop":
        if len(args) != 2:
            raise AnalysisError(f"bandstop needs two edges in Hz, e.g. 'bandstop:200:1000', given {baseline!r}")
        f0, f1 = (_num(a, "a band edge", baseline) for a in args)
        if f1 <= f0:
            raise AnalysisError(f"bandstop needs f_high > f_low, given {baseline!r}")
        freqs = torch.as_tensor(grid.bin_frequencies(), device=mag.device)
        if mag.shape[-2] != freqs.shape[0]:
            raise AnalysisError(f"bandstop needs a linear-frequency magnitude with {freqs.shape[0]} bins, given {mag.shape[-2]}")
        keep = ~((freqs >= f0) & (freqs <= f1))
        return mag * keep[:, None].to(mag.dtype), f"bandstop:{f0:g}:{f1:g}"
    raise AnalysisError(f"unknown baseline {baseline!r}; known: silence, noise[:DB], smooth[:SECONDS], "
                        "bandstop:F_LOW:F_HIGH, or an (F, T) array")
