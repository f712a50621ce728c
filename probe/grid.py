"""The time-frequency grid every part of probe agrees on.

A :class:`TFGrid` fixes sample rate, FFT size, hop, window and centring, and from them
converts frames to seconds, bins to Hz (linear or mel) and computes a differentiable
STFT / inverse STFT in torch that matches ``librosa.stft`` (centred, zero padded).
Analyzers, attributions, figures and the app all read their axes from one grid, so a
bin at 1 kHz in a plot is the bin at 1 kHz in the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from .errors import SpecError

__all__ = ["TFGrid"]

_WINDOWS = ("hann", "hamming", "blackman", "rectangular")


@dataclass(frozen=True)
class TFGrid:
    """Sample rate and STFT geometry, with conversions between steps and physical units.

    Parameters
    ----------
    sample_rate : int
        Samples per second of the waveform the grid describes.
    n_fft : int
        FFT size; the grid has ``1 + n_fft // 2`` linear-frequency bins.
    hop_length : int
        Samples between frames.
    win_length : int, optional
        Window length (defaults to ``n_fft``).
    window : str
        One of ``"hann"``, ``"hamming"``, ``"blackman"``, ``"rectangular"``.
    center : bool
        Pad ``n_fft // 2`` zeros on both sides so frame ``t`` is centred on sample
        ``t * hop_length`` (librosa's convention, and the one that makes frames map to
        seconds without an offset).
    n_mels : int, optional
        Number of mel bands, for models that take a log-mel input.
    fmin, fmax : float
        Mel band edges in Hz (``fmax`` defaults to Nyquist).

    Examples
    --------
    >>> g = TFGrid(sample_rate=8000, n_fft=256, hop_length=64)
    >>> g.n_freqs, float(g.frames_to_seconds(125))
    (129, 1.0)
    >>> float(g.bin_frequencies()[-1])
    4000.0
    """

    sample_rate: int
    n_fft: int = 512
    hop_length: int = 128
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    n_mels: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        if int(self.sample_rate) <= 0:
            raise SpecError(f"sample_rate must be a positive integer, given sample_rate={self.sample_rate!r}")
        if int(self.n_fft) < 2 or int(self.hop_length) < 1:
            raise SpecError(f"need n_fft >= 2 and hop_length >= 1, given n_fft={self.n_fft}, hop_length={self.hop_length}")
        if self.win_length is not None and not 1 <= self.win_length <= self.n_fft:
            raise SpecError(f"win_length must lie in [1, n_fft={self.n_fft}], given {self.win_length}")
        if self.window not in _WINDOWS:
            raise SpecError(f"unknown window {self.window!r}; known: {', '.join(_WINDOWS)}")
        if self.n_mels is not None and self.n_mels < 1:
            raise SpecError(f"n_mels must be positive, given {self.n_mels}")

    # ---- geometry -------------------------------------------------------------------
    @property
    def n_freqs(self) -> int:
        """Number of linear-frequency bins, ``1 + n_fft // 2``."""
        return 1 + self.n_fft // 2

    @property
    def seconds_per_frame(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def nyquist(self) -> float:
        return self.sample_rate / 2.0

    def n_frames(self, n_samples: int) -> int:
        """Frames an STFT of ``n_samples`` samples has on this grid."""
        if self.center:
            return 1 + int(n_samples) // self.hop_length
        return max(0, 1 + (int(n_samples) - self.n_fft) // self.hop_length)

    def frames_to_seconds(self, frames):
        """Frame index (scalar or array) → time in seconds of the frame's centre."""
        t = np.asarray(frames, dtype=float) * self.seconds_per_frame
        return t if self.center else t + self.n_fft / 2 / self.sample_rate

    def seconds_to_frames(self, seconds):
        """Time in seconds → nearest frame index (int array or int)."""
        s = np.asarray(seconds, dtype=float)
        if not self.center:
            s = s - self.n_fft / 2 / self.sample_rate
        out = np.rint(s / self.seconds_per_frame).astype(int)
        return out.item() if out.ndim == 0 else out

    def frame_times(self, n_frames: int) -> np.ndarray:
        return self.frames_to_seconds(np.arange(n_frames))

    def bin_frequencies(self) -> np.ndarray:
        """Centre frequency in Hz of every linear STFT bin, shape ``(n_freqs,)``."""
        return np.linspace(0.0, self.nyquist, self.n_freqs)

    def hz_to_bin(self, hz):
        """Frequency in Hz → nearest linear bin index."""
        out = np.clip(np.rint(np.asarray(hz, float) * self.n_fft / self.sample_rate), 0, self.n_freqs - 1).astype(int)
        return out.item() if out.ndim == 0 else out

    def mel_frequencies(self) -> np.ndarray:
        """Centre frequency in Hz of every mel band, shape ``(n_mels,)``."""
        import librosa

        n = self._need_mels()
        # librosa's mel bands: n + 2 edges, band k centred on edge k + 1
        edges = librosa.mel_frequencies(n_mels=n + 2, fmin=self.fmin, fmax=self.fmax or self.nyquist)
        return edges[1:-1]

    def _need_mels(self) -> int:
        if not self.n_mels:
            raise SpecError("this grid has no mel bands: set n_mels")
        return int(self.n_mels)

    def mel_basis(self) -> np.ndarray:
        """Mel filterbank from librosa, shape ``(n_mels, n_freqs)`` (Slaney norm)."""
        if "mel" not in self._cache:
            import librosa

            self._cache["mel"] = librosa.filters.mel(
                sr=self.sample_rate, n_fft=self.n_fft, n_mels=self._need_mels(), fmin=self.fmin,
                fmax=self.fmax or self.nyquist,
            ).astype(np.float32)
        return self._cache["mel"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_cache", None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TFGrid":
        known = {k: d[k] for k in ("sample_rate", "n_fft", "hop_length", "win_length", "window", "center", "n_mels", "fmin", "fmax") if k in d}
        if "hop" in d and "hop_length" not in known:
            known["hop_length"] = d["hop"]
        if "sample_rate" not in known:
            raise SpecError(f"a grid needs sample_rate; found keys {sorted(d)}")
        return cls(**known)

    # ---- transforms (torch) ----------------------------------------------------------
    def window_tensor(self, device=None, dtype=None):
        import torch

        wl = self.win_length or self.n_fft
        if self.window == "rectangular":
            w = torch.ones(wl)
        else:
            w = getattr(torch, f"{self.window}_window")(wl, periodic=True)
        if wl < self.n_fft:  # centre the short window inside n_fft, as librosa does
            left = (self.n_fft - wl) // 2
            w = torch.nn.functional.pad(w, (left, self.n_fft - wl - left))
        return w.to(device=device, dtype=dtype or torch.float32)

    def stft(self, y):
        """Complex STFT, ``y [shape=(..., n)]`` → ``S [shape=(..., n_freqs, n_frames)]``.

        Differentiable; equal to ``librosa.stft(y, n_fft, hop_length, center=center)``
        up to float error (zero padding at the edges).
        """
        import torch

        y = torch.as_tensor(y)
        lead = y.shape[:-1]
        flat = y.reshape(-1, y.shape[-1])
        if self.center:  # zero pad (librosa's default) instead of torch's reflect
            flat = torch.nn.functional.pad(flat, (self.n_fft // 2, self.n_fft // 2))
        S = torch.stft(flat, n_fft=self.n_fft, hop_length=self.hop_length, window=self.window_tensor(flat.device, flat.dtype),
                       center=False, return_complex=True)
        return S.reshape(*lead, S.shape[-2], S.shape[-1])

    def istft(self, S, length: int | None = None):
        """Inverse STFT, ``S [shape=(..., n_freqs, n_frames)]`` → ``y [shape=(..., length)]``."""
        import torch

        S = torch.as_tensor(S)
        lead = S.shape[:-2]
        flat = S.reshape(-1, S.shape[-2], S.shape[-1])
        win = self.window_tensor(flat.device, flat.real.dtype)
        n_frames = flat.shape[-1]
        full = self.n_fft + self.hop_length * (n_frames - 1)
        if not self.center:
            # uncentred frames: the window is ~0 at the clip's first and last samples, which torch.istft refuses
            # (its NOLA check); overlap-add by hand and leave samples no window covers at 0
            fold = torch.nn.functional.fold
            frames = torch.fft.irfft(flat, n=self.n_fft, dim=-2) * win[:, None]  # (B, n_fft, T)
            kw = dict(output_size=(1, full), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
            y = fold(frames, **kw)[:, 0, 0]
            env = fold((win ** 2)[None, :, None].expand(1, self.n_fft, n_frames).contiguous(), **kw)[0, 0, 0]
            covered = env > 1e-11 * float(env.max())
            y = torch.where(covered, y / torch.where(covered, env, torch.ones_like(env)), torch.zeros_like(y))
            n = full if length is None else int(length)
            y = y[..., :n] if n <= full else torch.nn.functional.pad(y, (0, n - full))
            return y.reshape(*lead, y.shape[-1])
        # torch.istft(center=True) assumes reflect-free centring, which is what zero padding is
        y = torch.istft(flat, n_fft=self.n_fft, hop_length=self.hop_length, window=win, center=self.center,
                        length=length if length is not None else (full - 2 * (self.n_fft // 2) if self.center else full))
        return y.reshape(*lead, y.shape[-1])

    def magnitude(self, y):
        return self.stft(y).abs()

    def logmag(self, y, eps: float = 1e-6):
        """``log(|STFT| + eps)``, the deep-clustering input."""
        import torch

        return torch.log(self.magnitude(y) + eps)

    def mel(self, S_mag_or_power):
        """Project a linear-frequency magnitude/power ``(..., n_freqs, T)`` onto mel bands ``(..., n_mels, T)``."""
        import torch

        M = torch.as_tensor(self.mel_basis(), device=S_mag_or_power.device, dtype=S_mag_or_power.dtype)
        return torch.matmul(M, S_mag_or_power)

    def logmel(self, y, eps: float = 1e-6):
        """``log(mel @ |STFT|^2 + eps)``, ``(..., n)`` → ``(..., n_mels, T)``."""
        import torch

        return torch.log(self.mel(self.magnitude(y) ** 2) + eps)
