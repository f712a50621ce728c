"""Uploaded audio: which files the app accepts, how long, and how they are decoded.

The header is read first (:func:`apps.policy.check_upload_header`): a file that is not audio,
or whose decoded size (channels × rate × seconds) exceeds the app's limit, is refused before
a single sample is decoded; a file longer than :data:`MAX_UPLOAD_SECONDS` raises
:class:`~apps.policy.UploadTooLong` so the app can offer to analyse its first seconds, and
only those are decoded then.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from probe.errors import AudioError

from .policy import AUDIO_TYPES, MAX_SECONDS, UploadTooLong, check_upload_header

__all__ = ["UPLOAD_TYPES", "MAX_UPLOAD_SECONDS", "UploadTooLong", "load_upload"]

#: file types the app accepts for upload (what soundfile decodes everywhere)
UPLOAD_TYPES = AUDIO_TYPES
#: longest upload the app analyses (seconds): the analyses are interactive, not batch jobs
MAX_UPLOAD_SECONDS = MAX_SECONDS


def load_upload(filename: str, data: bytes, sr: int, *, max_seconds: float = MAX_UPLOAD_SECONDS,
                crop: bool = False):
    """Validate and decode an uploaded file into an :class:`~probe.AudioExample` at ``sr``.

    Parameters
    ----------
    filename : str
        The user's file name (its extension must be one of :data:`UPLOAD_TYPES`).
    data : bytes
        File content.
    sr : int
        The model's sample rate (the audio is resampled to it).
    max_seconds : float
        Longest clip analysed.
    crop : bool
        Analyse the first ``max_seconds`` of a longer file instead of refusing it.

    Raises
    ------
    AudioError
        Wrong extension, empty, not audio, too large once decoded, truncated, non-finite;
        the message names the uploaded file as the user called it.
    UploadTooLong
        Longer than ``max_seconds`` and ``crop`` is false.

    Examples
    --------
    >>> import io, soundfile as sf
    >>> buf = io.BytesIO(); sf.write(buf, np.zeros(16000, np.float32) + 0.1, 16000, format="WAV")
    >>> ex = load_upload("a.wav", buf.getvalue(), 8000)
    >>> ex.sr, ex.y.shape
    (8000, (8000,))
    """
    import soundfile as sf

    from probe.audio import AudioExample, audio_hash, load_audio

    name = Path(str(filename or "upload")).name
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in UPLOAD_TYPES:
        raise AudioError(f"{name!r} is not a supported audio file: upload one of {', '.join('.' + t for t in UPLOAD_TYPES)}")
    if not data:
        raise AudioError(f"{name!r} is empty (0 bytes)")
    head = check_upload_header(name, data, max_seconds=max_seconds, crop=crop)
    frames = min(head["frames"], int(max_seconds * head["samplerate"]))
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            dtype = "float64" if f.subtype == "DOUBLE" else "float32"
            y = f.read(frames=frames, dtype=dtype, always_2d=True)
    except Exception as exc:
        raise AudioError(f"{name!r} cannot be decoded ({str(exc).strip() or type(exc).__name__}): truncated or "
                         "corrupt data") from None
    if y.shape[0] < frames:
        raise AudioError(f"{name!r}: its header promises {frames / head['samplerate']:.2f} s but only "
                         f"{y.shape[0] / head['samplerate']:.2f} s could be decoded; the file is truncated")
    facts: dict = {}
    y = y[:, 0] if y.shape[1] == 1 else y
    y, rate = load_audio(y, sr, source_sr=head["samplerate"], max_seconds=None, info=facts)
    info = {"source": f"upload:{name}", "hash": audio_hash(y, rate), "load": facts}
    if frames < head["frames"]:
        info["cropped"] = {"seconds": round(frames / head["samplerate"], 3), "of": round(head["seconds"], 3)}
    return AudioExample(y=np.asarray(y, np.float32), sr=rate, name=name, info=info)
