"""Loading and validating audio: strict at the door, so nothing downstream sees bad samples.

Everything probe analyses enters through :func:`load_audio` (a path or an array) and
:func:`validate_audio`. Both raise :class:`~probe.errors.AudioError` with a message that
names the offending value.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .errors import AudioError

__all__ = ["load_audio", "validate_audio", "audio_hash", "AudioExample", "DEFAULT_MAX_SECONDS"]

#: Longest audio accepted by default (seconds). Long enough for an album side, short
#: enough that a mistaken 10-hour file fails fast instead of filling memory.
DEFAULT_MAX_SECONDS = 3600.0
_MIN_RATE, _MAX_RATE = 1000, 384000


def validate_audio(y, *, sr: int | None = None, max_seconds: float | None = DEFAULT_MAX_SECONDS, name: str = "y") -> np.ndarray:
    """Check a mono waveform and return it as contiguous float32.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Floating-point mono samples, nominally in [-1, 1].
    sr : int, optional
        Sample rate, used for the duration check and the message.
    max_seconds : float or None
        Longest accepted duration; ``None`` disables the check.

    Raises
    ------
    AudioError
        Not an array of floats, not 1-D, fewer than 2 samples, NaN/Inf, or too long.

    Examples
    --------
    >>> validate_audio(np.zeros(16000, dtype=np.float32), sr=16000).shape
    (16000,)
    """
    if not isinstance(y, np.ndarray):
        try:
            import torch

            if isinstance(y, torch.Tensor):
                y = y.detach().cpu().numpy()
        except ImportError:  # pragma: no cover
            pass
    if not isinstance(y, np.ndarray):
        raise AudioError(f"audio must be a numpy array, given {type(y).__name__}")
    if not np.issubdtype(y.dtype, np.floating):
        raise AudioError(f"audio must be floating point (scale integer PCM first, or use load_audio), given {name}.dtype={y.dtype}")
    if y.ndim != 1:
        raise AudioError(f"audio must be mono with shape (n,), given {name}.shape={y.shape}; mix down or pick a channel "
                         "(load_audio(..., channel=None|int))")
    if y.size < 2:
        raise AudioError(f"audio is empty or a single sample, given {name}.shape={y.shape}")
    bad = ~np.isfinite(y)
    if bad.any():
        first = int(np.argmax(bad))
        raise AudioError(f"audio holds {int(bad.sum())} non-finite samples (NaN/Inf), first at index {first}")
    if sr is not None and max_seconds is not None and y.size / sr > max_seconds:
        raise AudioError(f"audio lasts {y.size / sr:.1f} s, above max_seconds={max_seconds:g}; "
                         "raise max_seconds or analyse it in chunks")
    return np.ascontiguousarray(y, dtype=np.float32)


def _int_to_float(y: np.ndarray) -> np.ndarray:
    if np.issubdtype(y.dtype, np.integer):
        info = np.iinfo(y.dtype)
        if info.min == 0:  # unsigned PCM (8-bit WAV) is offset binary
            return (y.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        return y.astype(np.float64) / float(-info.min)
    return y


def load_audio(source, sr: int | None = None, *, source_sr: int | None = None, channel: int | None = None,
               max_seconds: float | None = DEFAULT_MAX_SECONDS, res_type: str = "soxr_hq") -> tuple[np.ndarray, int]:
    """Load a file or take an array, and return mono float32 at the requested rate.

    Parameters
    ----------
    source : str, Path or np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
        A path soundfile can decode (wav, flac, ogg, …) or samples. Integer PCM arrays are
        scaled to [-1, 1) (int16 by 32768, int32 by 2**31, uint8 offset by 128).
    sr : int, optional
        Target rate; resampled with librosa (soxr) when it differs. ``None`` keeps the native rate.
    source_sr : int
        Rate of ``source`` when it is an array (required then).
    channel : int, optional
        Pick one channel of a multichannel signal; ``None`` mixes down by averaging.
    max_seconds : float or None
        Reject audio longer than this (checked before resampling, from the file header).

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
    sr : int

    Examples
    --------
    >>> y, sr = load_audio(np.sin(np.linspace(0, 100, 8000)), 16000, source_sr=8000)
    >>> y.shape, sr
    ((16000,), 16000)
    """
    if sr is not None and not (_MIN_RATE <= int(sr) <= _MAX_RATE):
        raise AudioError(f"unsupported sample rate sr={sr}; probe accepts {_MIN_RATE}..{_MAX_RATE} Hz")
    if isinstance(source, (str, os.PathLike)):
        y, native = _read_file(Path(source), max_seconds=max_seconds)
    else:
        if source_sr is None:
            raise AudioError("an array needs its rate: pass source_sr=")
        native = int(source_sr)
        y = np.asarray(source)
        if y.ndim == 2 and y.shape[0] < y.shape[1] and y.shape[0] <= 16:
            y = y.T  # (channels, n) → (n, channels)
        y = _int_to_float(y)
    if not (_MIN_RATE <= native <= _MAX_RATE):
        raise AudioError(f"unsupported source sample rate {native} Hz; probe accepts {_MIN_RATE}..{_MAX_RATE} Hz")
    if y.ndim == 2:
        if channel is not None:
            if not -y.shape[1] <= channel < y.shape[1]:
                raise AudioError(f"channel={channel} out of range for audio with {y.shape[1]} channels")
            y = y[:, channel]
        else:
            y = y.mean(axis=1)
    elif y.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D (samples, channels), given shape {y.shape}")
    if y.dtype.kind == "f" and y.dtype.itemsize > 4 and y.size and np.isfinite(y).all():
        peak = float(np.abs(y).max())
        if peak > np.finfo(np.float32).max:
            raise AudioError(f"sample magnitude {peak:.3g} exceeds the float32 range; rescale the audio")
    y = validate_audio(np.asarray(y, dtype=np.float32), sr=native, max_seconds=max_seconds)
    if sr is not None and int(sr) != native:
        import librosa

        y = librosa.resample(y, orig_sr=native, target_sr=int(sr), res_type=res_type).astype(np.float32)
        native = int(sr)
    return y, native


def _read_file(path: Path, *, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.exists():
        raise AudioError(f"no such audio file: {path}")
    if path.is_dir():
        raise AudioError(f"expected an audio file, given a directory: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError for bad headers
        raise AudioError(f"cannot decode {path}: {str(exc).strip() or type(exc).__name__} (corrupt or unsupported format)") from None
    if info.frames < 2:
        raise AudioError(f"audio file holds {info.frames} sample(s): {path}")
    if max_seconds is not None and info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
        raise AudioError(f"{path} lasts {info.frames / info.samplerate:.1f} s, above max_seconds={max_seconds:g}")
    try:
        y, native = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"cannot decode {path}: {str(exc).strip() or type(exc).__name__} (truncated or corrupt data)") from None
    return (y[:, 0] if y.shape[1] == 1 else y), int(native)


def audio_hash(y: np.ndarray, sr: int) -> str:
    """Short content hash of samples and rate, used to key caches and run manifests."""
    h = hashlib.sha256()
    h.update(str(int(sr)).encode())
    h.update(np.ascontiguousarray(y, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


from dataclasses import dataclass, field  # noqa: E402


@dataclass
class AudioExample:
    """A clip with whatever ground truth is known about it.

    ``example:NAME[:i]`` arguments resolve to one of these (the model zoo supplies them),
    so every analysis can compare against oracle sources, labels and event boxes.

    Attributes
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        The mixture / scene.
    sr : int
    name : str
    sources : np.ndarray [shape=(n_sources, n)], optional
        Exact source stems of a separation mixture (they sum to ``y``).
    source_names : list of str, optional
    events : list of dict, optional
        Sound events, each ``{"label", "onset", "offset", "fmin", "fmax"}`` in seconds/Hz:
        the event's time-frequency box.
    event_stems : np.ndarray [shape=(n_events, n)], optional
        Each event's own signal inside the scene.
    info : dict
        Provenance (source files, licences, split, seed).
    """

    y: np.ndarray
    sr: int
    name: str = "example"
    sources: np.ndarray | None = None
    source_names: list | None = None
    events: list | None = None
    event_stems: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.y) / self.sr
