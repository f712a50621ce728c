"""Listenable explanations: keep the most relevant T-F bins of the mixture, invert, listen.

The mask keeps the top ``p`` % of bins by relevance (only positively attributed ones)
or the bins above a threshold; the mixture's complex STFT is masked and inverted on
the same grid, so the explanation is the part of the clip the model relied on, and
the complement is everything else. ``explanation + complement == clip`` up to the
inverse STFT's round-off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AnalysisError

__all__ = ["explanation_mask", "listen", "write_explanation", "snr_db"]


def explanation_mask(attr, *, top_percent: float = 10.0, threshold: float | None = None) -> np.ndarray:
    """Boolean ``(F, T)`` mask of the bins that explain the target.

    Parameters
    ----------
    attr : Attribution
    top_percent : float
        Keep this percentage of all bins, highest relevance first, positive ones only.
    threshold : float, optional
        Keep bins with relevance above this value instead (in map units).
    """
    a = np.asarray(attr.map, np.float64)
    if threshold is not None:
        return a > float(threshold)
    if not 0 < top_percent <= 100:
        raise AnalysisError(f"top_percent must lie in (0, 100], given {top_percent}")
    k = int(np.ceil(top_percent / 100.0 * a.size))
    flat = a.ravel()
    keep = np.zeros(a.size, bool)
    keep[np.argsort(-flat, kind="stable")[:k]] = True
    return (keep & (flat > 0)).reshape(a.shape)


def listen(attr, *, top_percent: float = 10.0, threshold: float | None = None, mask=None):
    """Audio of the explaining bins and of their complement.

    Returns
    -------
    explanation : np.ndarray [shape=(n,), dtype=float32]
    complement : np.ndarray [shape=(n,), dtype=float32]
    """
    import torch

    if attr.audio is None:
        raise AnalysisError("this attribution carries no audio (loaded without it); re-run attribute()")
    m = explanation_mask(attr, top_percent=top_percent, threshold=threshold) if mask is None else np.asarray(mask, bool)
    g = attr.grid
    y = torch.as_tensor(np.asarray(attr.audio, np.float32))
    X = g.stft(y)
    if X.shape != m.shape:
        raise AnalysisError(f"mask shape {m.shape} does not match the clip's STFT {tuple(X.shape)}")
    M = torch.as_tensor(m, dtype=X.real.dtype)
    pair = g.istft(torch.stack([X * M, X * (1 - M)]), length=y.shape[-1]).numpy().astype(np.float32)
    return pair[0], pair[1]


def snr_db(estimate, reference) -> float:
    """``10 log10(||ref||^2 / ||ref - est||^2)`` in dB (same length; the shorter wins)."""
    e, r = np.asarray(estimate, np.float64), np.asarray(reference, np.float64)
    n = min(e.size, r.size)
    e, r = e[:n], r[:n]
    return float(10 * np.log10(max(np.sum(r ** 2), 1e-300) / max(np.sum((r - e) ** 2), 1e-300)))


def write_explanation(attr, directory, *, top_percent: float = 10.0, threshold: float | None = None,
                      stem: str = "explanation") -> dict:
    """Write ``{stem}.wav`` (the explaining bins) and ``{stem}_complement.wav``.

    Returns
    -------
    dict
        Paths, the kept fraction of bins and of the clip's energy.
    """
    import soundfile as sf

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    m = explanation_mask(attr, top_percent=top_percent, threshold=threshold)
    expl, comp = listen(attr, mask=m)
    p1, p2 = d / f"{stem}.wav", d / f"{stem}_complement.wav"
    sr = attr.sample_rate
    peak = max(1.0, float(np.abs(expl).max(initial=0)), float(np.abs(comp).max(initial=0)))
    sf.write(str(p1), expl / peak, sr, subtype="FLOAT")
    sf.write(str(p2), comp / peak, sr, subtype="FLOAT")
    energy = attr.input_magnitude.astype(np.float64) ** 2
    return {"explanation": str(p1), "complement": str(p2), "kept_bins": float(m.mean()),
            "kept_energy": float(energy[m].sum() / max(energy.sum(), 1e-300)),
            "top_percent": None if threshold is not None else float(top_percent), "threshold": threshold}
