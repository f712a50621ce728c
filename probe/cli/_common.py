"""Helpers shared by CLI subcommands: resolving models and audio, writing outputs."""

from __future__ import annotations

from ..audio import AudioExample
from ..resolve import load as _load
from ..resolve import resolve_audio as _resolve_audio

__all__ = ["resolve_model", "resolve_audio", "add_model_arg", "add_audio_arg"]


def resolve_model(ref: str):
    """``zoo:NAME`` or a spec-file path → ModelSpec (eval mode, weights loaded)."""
    return _load(ref)


def resolve_audio(ref: str, sr: int | None = None, *, max_seconds: float | None = 3600.0) -> AudioExample:
    """A file path or ``example:NAME[:i]`` → AudioExample at ``sr``."""
    return _resolve_audio(ref, sr, max_seconds=max_seconds)


def add_model_arg(p):
    p.add_argument("model", metavar="MODEL", help="zoo:NAME or a path to a model spec .toml")


def add_audio_arg(p):
    p.add_argument("audio", metavar="AUDIO", help="audio file or example:NAME[:i]")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="refuse longer audio (default 3600)")
