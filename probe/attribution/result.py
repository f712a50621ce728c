"""The result of an attribution: :class:`Attribution`, a relevance map on the model's T-F grid."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AnalysisError

__all__ = ["Attribution"]


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
    warnings : list of str
        What makes a figure of this result unreliable, each with what to try: a
        non-finite map or target (and the first module whose gradient goes
        non-finite), a completeness error above the tolerance, a target that barely
        differs from the baseline, a near-empty map.
    steps_used : int or None
        IG quadrature points actually used (``steps="auto"`` raises them until the
        completeness error is at most 1 %), GradientShap samples; None otherwise.
    chunk_seconds : float or None
        Chunk length when the clip was attributed chunk by chunk (long audio), else None.
    nonfinite : dict or None
        Where non-finite values came from (``{"stage", "module", "module_type", ...}``)
        when the map, the target or a gradient is NaN/Inf; figures derived from such a
        result are None.
    info : dict
        Settings, timing, chunks.
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
    warnings: list = field(default_factory=list)
    steps_used: int | None = None
    chunk_seconds: float | None = None
    nonfinite: dict | None = None
    info: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """False when the map or the target is non-finite (then no figure is computed from it)."""
        return self.nonfinite is None

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
                "reconstruction_error_db": num(self.reconstruction_error_db), "steps_used": self.steps_used,
                "chunk_seconds": self.chunk_seconds, "warnings": list(self.warnings), "nonfinite": self.nonfinite,
                **{k: v for k, v in self.info.items() if k in ("seconds", "steps", "layer", "chunks_n", "spacing")}}

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
                   reconstruction_error_db=meta.get("reconstruction_error_db"), warnings=list(meta.get("warnings") or []),
                   steps_used=meta.get("steps_used"), chunk_seconds=meta.get("chunk_seconds"),
                   nonfinite=meta.get("nonfinite"))

    def listen(self, **kwargs):
        """Audio of the top bins and its complement; see :func:`probe.attribution.listen`."""
        from .audible import listen

        return listen(self, **kwargs)

    def __repr__(self) -> str:
        ce = "" if self.completeness_error is None else f", completeness_error={self.completeness_error:.2%}"
        w = f", warnings={len(self.warnings)}" if self.warnings else ""
        return f"Attribution(method={self.method!r}, target={str(self.target)!r}, shape={self.map.shape}{ce}{w})"
