"""The clip as the model hears it: its spectrogram on the model's grid, and the model's output on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import Result, locked

__all__ = ["SpectrogramOptions", "Spectrogram", "spectrogram", "ModelOutputs", "model_outputs"]


@dataclass(frozen=True)
class SpectrogramOptions:
    """How a clip's spectrogram is prepared for display.

    Attributes
    ----------
    max_frames : int
        Frames kept (evenly decimated) so a long clip stays a light figure.
    top_db : float
        Floor below the peak (dB).
    """

    max_frames: int = 1500
    top_db: float = 80.0


@dataclass
class Spectrogram(Result):
    """``times [shape=(T,)]`` s, ``freqs [shape=(F,)]`` Hz, ``db [shape=(F, T)]`` dB re peak, ``duration`` s, ``sr``."""

    times: np.ndarray
    freqs: np.ndarray
    db: np.ndarray
    duration: float
    sr: int

    def to_json(self) -> dict:
        return {"duration_s": round(float(self.duration), 4), "sr": int(self.sr), "shape": list(self.db.shape),
                "warnings": list(self.warnings)}


def spectrogram(y, grid, options: SpectrogramOptions = SpectrogramOptions()) -> Spectrogram:
    """Log-magnitude STFT of a clip on ``grid`` for display.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    grid : TFGrid
    options : SpectrogramOptions

    Returns
    -------
    Spectrogram

    Examples
    --------
    >>> import numpy as np
    >>> from probe import TFGrid
    >>> s = spectrogram(np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000), TFGrid(8000, 256, 64))
    >>> float(s.freqs[s.db.mean(1).argmax()])
    1000.0
    """
    import torch

    y = np.asarray(y, np.float32)
    mag = grid.magnitude(torch.as_tensor(y)).numpy()
    db = 20 * np.log10(np.maximum(mag, 1e-10))
    db = np.maximum(db - db.max(), -float(options.top_db)).astype(np.float32)
    times = grid.frame_times(db.shape[1])
    if db.shape[1] > options.max_frames:
        keep = np.linspace(0, db.shape[1] - 1, options.max_frames).round().astype(int)
        db, times = db[:, keep], times[keep]
    return Spectrogram(times=times, freqs=grid.bin_frequencies(), db=db, duration=len(y) / grid.sample_rate,
                       sr=int(grid.sample_rate))


@dataclass
class ModelOutputs(Result):
    """The model's canonical output on one clip, ready to plot.

    ``kind`` and ``shape`` always; ``values`` (``frame_probs``: ``(C, T)`` with ``times``;
    ``clip_scores``: ``(C,)``; ``sources``: ``(S, n)`` audio with ``sr`` and one
    :class:`Spectrogram` each in ``spectrograms``; ``masks``: ``(S, F, T)`` with ``times`` and
    ``freqs``), ``labels`` (class / source names) when the kind is one of those.
    """

    kind: str
    shape: list | None = None
    values: np.ndarray | None = None
    labels: list | None = None
    times: np.ndarray | None = None
    freqs: np.ndarray | None = None
    sr: int | None = None
    spectrograms: list | None = None

    def to_json(self) -> dict:
        out = {"kind": self.kind, "shape": self.shape, "labels": self.labels, "warnings": list(self.warnings)}
        if self.values is not None and self.kind in ("frame_probs", "clip_scores"):
            v = np.asarray(self.values, float)
            out["max_per_label"] = [round(float(x), 6) for x in (v.max(-1) if v.ndim > 1 else v)]
        return out


def _freq_hz(spec, n: int):
    from ..analyze.embedding_points import record_freqs

    try:
        return np.asarray(record_freqs(spec, n), float)
    except Exception:
        return None


#: how far outside [0, 1] a frame_probs output may stray (float rounding) before it is taken for logits
PROB_TOLERANCE = 1e-3


def model_outputs(spec, y, *, lock=None) -> ModelOutputs:
    """Run the model once on ``y`` and return its canonical output for plotting.

    Parameters
    ----------
    spec : ModelSpec
    y : np.ndarray [shape=(n,)]
        At ``spec.sample_rate``.
    lock : context manager, optional
        Held around the forward pass (a model shared between threads).

    Returns
    -------
    ModelOutputs
    """
    import torch

    from ..attribution.targets import output_frame_times

    y = np.asarray(y, np.float32)
    with locked(lock), torch.no_grad():
        out = spec.forward(y)
    x = out.detach().float().cpu().numpy()[0] if hasattr(out, "detach") else None
    kind = spec.output_kind
    res = ModelOutputs(kind=kind, shape=list(out.shape) if hasattr(out, "shape") else None)
    if x is None:
        return res
    if kind == "frame_probs":
        times, _ = output_frame_times(x.shape[-1], len(y), spec)
        res.values, res.times = x, np.asarray(times)
        res.labels = list(spec.classes or [f"class {i}" for i in range(x.shape[0])])
        lo, hi = (float(np.nanmin(x)), float(np.nanmax(x))) if np.isfinite(x).any() else (0.0, 1.0)
        if lo < -PROB_TOLERANCE or hi > 1 + PROB_TOLERANCE:
            res.warnings.append(
                f"the model's frame_probs lie outside [0, 1] (from {lo:.3g} to {hi:.3g}): they look like logits, not "
                "probabilities. probe plots and explains them as they are; a probability threshold and score=logit do "
                "not apply. Put the sigmoid in the model (a wrapper module) to read them as probabilities")
    elif kind == "clip_scores":
        res.values, res.labels = x, list(spec.classes or [f"class {i}" for i in range(x.shape[0])])
    elif kind == "sources":
        res.values = x.astype(np.float32)
        res.labels = list(spec.info.get("source_names") or [f"source {i + 1}" for i in range(x.shape[0])])
        res.sr = spec.sample_rate
        res.spectrograms = [spectrogram(s, spec.grid, SpectrogramOptions(max_frames=600)) for s in x]
    elif kind == "masks":
        F, T = x.shape[-2:]
        res.values, res.labels = x, [f"source {i + 1}" for i in range(x.shape[0])]
        res.times, res.freqs = spec.grid.frame_times(T), _freq_hz(spec, F)
    return res
