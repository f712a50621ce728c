"""The clip as the model hears it: its spectrogram on the model's grid, and the model's output on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import Result, locked

__all__ = ["SpectrogramOptions", "Spectrogram", "spectrogram", "ModelOutputs", "model_outputs", "match_sources"]


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


def match_sources(estimates, references, names=None, *, mixture=None) -> list[dict] | None:
    """Which ground-truth source each separated source is, by the permutation with the best SI-SDR.

    A separator's outputs come in no particular order ("source 1", "source 2"); an example with
    oracle stems says what they are ("low", "high"). Every estimate is paired with one reference
    (:func:`fast_bss_eval.si_sdr` with ``return_perm``: the permutation that maximises the mean
    SI-SDR, zero-mean), so the app and the report can name the outputs and say how well each matches.

    Parameters
    ----------
    estimates, references : array [shape=(S, n)]
        Separated and ground-truth sources at one sample rate; trimmed to the shorter length.
    names : list of str, optional
        The references' names (default ``source 1`` …).
    mixture : array [shape=(n,)], optional
        The mixture: each match also gets ``si_sdr_mixture_db`` and ``si_sdri_db`` (improvement).

    Returns
    -------
    list of dict or None
        One dict per estimate, in the estimates' order: ``reference`` (index), ``name``,
        ``si_sdr_db`` (and the mixture's figures when given). ``None`` when the counts differ, a
        source is silent or a value is not finite (nothing to match).

    Examples
    --------
    >>> t = np.arange(8000) / 8000
    >>> low, high = np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 2000 * t)
    >>> m = match_sources(np.stack([high + 0.01 * low, low + 0.1 * high]), np.stack([low, high]), ["low", "high"])
    >>> [(d["name"], round(d["si_sdr_db"])) for d in m]
    [('high', 40), ('low', 20)]
    """
    import fast_bss_eval

    est, ref = np.asarray(estimates, np.float64), np.asarray(references, np.float64)
    if est.ndim != 2 or ref.ndim != 2 or est.shape[0] != ref.shape[0] or est.shape[0] < 1:
        return None
    n = min(est.shape[1], ref.shape[1])
    est, ref = est[:, :n], ref[:, :n]
    if not (np.isfinite(est).all() and np.isfinite(ref).all()) or (np.abs(ref).max(axis=1) == 0).any() \
            or (np.abs(est).max(axis=1) == 0).any():
        return None
    names = list(names) if names is not None else [f"source {i + 1}" for i in range(ref.shape[0])]
    sdr, perm = fast_bss_eval.si_sdr(ref, est, zero_mean=True, clamp_db=300.0, return_perm=True)
    # perm[i]: the estimate matched to reference i
    out: list = [None] * est.shape[0]
    base = None
    if mixture is not None:
        mix = np.broadcast_to(np.asarray(mixture, np.float64)[:n], ref.shape)
        base = fast_bss_eval.si_sdr(ref, np.ascontiguousarray(mix), zero_mean=True, clamp_db=300.0)
    for i, j in enumerate(np.asarray(perm, int)):
        d = {"reference": int(i), "name": str(names[i]), "si_sdr_db": round(float(sdr[i]), 2)}
        if base is not None:
            d["si_sdr_mixture_db"] = round(float(np.asarray(base)[i]), 2)
            d["si_sdri_db"] = round(float(sdr[i] - np.asarray(base)[i]), 2)
        out[int(j)] = d
    return out
