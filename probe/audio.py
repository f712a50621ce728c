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
               max_seconds: float | None = DEFAULT_MAX_SECONDS, res_type: str = "soxr_hq",
               info: dict | None = None) -> tuple[np.ndarray, int]:
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
    info : dict, optional
        Filled with facts about the source that the samples alone no longer show:
        ``channels``, ``source_sr`` and, after a mix-down, ``mixdown_db`` (energy of the
        mix relative to the mean channel energy: 0 dB for identical channels, about -3 dB
        for independent ones, very negative when the channels cancel).
        :func:`probe.diagnostics.audio_warnings` turns them into warnings.

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
    facts = {"channels": int(y.shape[1]) if y.ndim == 2 else 1, "source_sr": native}
    if y.ndim == 2:
        if channel is not None:
            if not -y.shape[1] <= channel < y.shape[1]:
                raise AudioError(f"channel={channel} out of range for audio with {y.shape[1]} channels")
            y = y[:, channel]
        elif y.shape[1] == 1:
            y = y[:, 0]
        else:
            chan_energy = float(np.mean(np.square(y, dtype=np.float64)))
            y = y.mean(axis=1)
            if chan_energy > 0 and np.isfinite(chan_energy):
                mix_energy = float(np.mean(np.square(y, dtype=np.float64)))
                facts["mixdown_db"] = float(10 * np.log10(max(mix_energy / chan_energy, 1e-30)))
    elif y.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D (samples, channels), given shape {y.shape}")
    if y.dtype.kind == "f" and y.dtype.itemsize > 4 and y.size and np.isfinite(y).all():
        peak = float(np.abs(y).max())
        if peak > float(np.finfo(np.float32).max):
            raise AudioError(f"sample magnitude {peak:.3g} exceeds the float32 range; rescale the audio")
    with np.errstate(over="ignore"):  # values beyond float32 become Inf and are reported as non-finite below
        y = np.asarray(y, dtype=np.float32)
    y = validate_audio(y, sr=native, max_seconds=max_seconds)
    if info is not None:
        info.update(facts)
    if sr is not None and int(sr) != native:
        import librosa

        y = librosa.resample(y, orig_sr=native, target_sr=int(sr), res_type=res_type).astype(np.float32)
        native = int(sr)
    return y, native


def _wav_claimed_frames(path: Path) -> int | None:
    """Frames the RIFF/WAVE header's ``data`` chunk claims (``None``: not a WAV or length left open)."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            endian = "<" if head[:4] == b"RIFF" else ">"
            block_align = None
            for _ in range(64):  # a handful of chunks precede the data
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack(endian + "I", hdr[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) >= 14:
                        block_align = struct.unpack(endian + "H", fmt[12:14])[0]
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None  # streamed WAVs leave the length open
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None
    return None


def _read_file(path: Path, *, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    raw = str(path)
    if raw == "-":
        raise AudioError("reading audio from standard input ('-') is not supported; save it to a file and pass its path")
    if os.path.islink(raw) and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            raise AudioError(f"{path} is a symbolic link that loops back on itself") from None
        except OSError as exc:
            if getattr(exc, "errno", None) == 40:  # ELOOP
                raise AudioError(f"{path} is a symbolic link that loops back on itself") from None
            raise AudioError(f"{path} is a symbolic link to {os.readlink(raw)}, which does not exist") from None
        raise AudioError(f"{path} is a symbolic link to {os.readlink(raw)}, which does not exist")
    if not path.exists():
        raise AudioError(f"no such audio file: {path}")
    if path.is_dir():
        raise AudioError(f"expected an audio file, given a directory: {path}")
    if not path.is_file():
        raise AudioError(f"expected a regular audio file, given a device, pipe or socket: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError for bad headers
        raise AudioError(f"cannot decode {path}: {str(exc).strip() or type(exc).__name__} (corrupt or unsupported format)") from None
    if not (_MIN_RATE <= info.samplerate <= _MAX_RATE):
        raise AudioError(f"{path}: its header gives a sample rate of {info.samplerate} Hz, outside the "
                         f"{_MIN_RATE}..{_MAX_RATE} Hz probe accepts (a corrupt header, or not audio)")
    if info.frames < 2:
        raise AudioError(f"audio file holds {info.frames} sample(s): {path}")
    claimed = _wav_claimed_frames(path)
    if claimed is not None and claimed > info.frames:
        raise AudioError(f"{path}: its header says {claimed / info.samplerate:.3f} s ({claimed} frames) but the file holds "
                         f"only {info.frames / info.samplerate:.3f} s ({info.frames} frames); it is truncated or its "
                         "header is wrong, so re-save it (e.g. sox in.wav out.wav) to analyse what it holds")
    if max_seconds is not None and info.frames / info.samplerate > max_seconds:
        raise AudioError(f"{path} lasts {info.frames / info.samplerate:.1f} s, above max_seconds={max_seconds:g}")
    # 64-bit float files are read as such so that values beyond float32 are reported as what they are
    dtype = "float64" if info.subtype == "DOUBLE" else "float32"
    try:
        y, native = sf.read(str(path), dtype=dtype, always_2d=True)
    except Exception as exc:
        raise AudioError(f"cannot decode {path}: {str(exc).strip() or type(exc).__name__} (truncated or corrupt data)") from None
    if y.shape[0] < info.frames:
        raise AudioError(f"{path}: its header says {info.frames / info.samplerate:.3f} s ({info.frames} frames) but only "
                         f"{y.shape[0] / info.samplerate:.3f} s ({y.shape[0]} frames) could be decoded; the file is truncated")
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
