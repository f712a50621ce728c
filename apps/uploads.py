"""Uploaded audio: which files the app accepts, how long, and how they are decoded."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from probe.errors import AudioError

__all__ = ["UPLOAD_TYPES", "MAX_UPLOAD_SECONDS", "load_upload"]

#: file types the app accepts for upload (what soundfile decodes everywhere)
UPLOAD_TYPES = ("wav", "flac", "ogg")
#: longest upload the app analyses (seconds): the analyses are interactive, not batch jobs
MAX_UPLOAD_SECONDS = 120.0


def load_upload(filename: str, data: bytes, sr: int, *, max_seconds: float | None = MAX_UPLOAD_SECONDS):
    """Validate and decode an uploaded file into an :class:`~probe.AudioExample` at ``sr``.

    Parameters
    ----------
    filename : str
        The user's file name (its extension must be one of :data:`UPLOAD_TYPES`).
    data : bytes
        File content.
    sr : int
        The model's sample rate (the audio is resampled to it).

    Raises
    ------
    AudioError
        Wrong extension, empty, undecodable, non-finite, too long; the message names the
        uploaded file (never the temporary copy).
    """
    from probe.audio import AudioExample, audio_hash, load_audio

    name = Path(str(filename or "upload")).name
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in UPLOAD_TYPES:
        raise AudioError(f"{name!r} is not a supported audio file: upload one of {', '.join('.' + t for t in UPLOAD_TYPES)}")
    if not data:
        raise AudioError(f"{name!r} is empty (0 bytes)")
    fd, tmp = tempfile.mkstemp(suffix="." + ext, prefix="probe-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            y, rate = load_audio(tmp, sr, max_seconds=max_seconds)
        except AudioError as exc:
            raise AudioError(str(exc).replace(tmp, name)) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return AudioExample(y=y, sr=rate, name=name, info={"source": f"upload:{name}", "hash": audio_hash(y, rate)})
