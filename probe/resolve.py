"""Resolve user-facing names at the edge: ``zoo:NAME`` models and ``example:NAME[:i]`` audio.

The core library never imports the model zoo; zoo packages register themselves through
the ``probe.zoo`` entry-point group (``models``, ``examples``, ``catalogue``), so a third
party can ship its own zoo the same way.
"""

from __future__ import annotations

from pathlib import Path

from .audio import AudioExample, audio_hash, load_audio
from .errors import AudioError, SpecError

__all__ = ["load", "load_example", "resolve_audio", "zoo_entry"]


def zoo_entry(which: str):
    """The callable registered under ``probe.zoo`` → ``which`` (models, examples, catalogue)."""
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="probe.zoo") if ep.name == which]
    if not eps:
        raise SpecError(f"no model zoo is installed (entry point probe.zoo:{which} missing); "
                        "install probe with its model_zoo package (pip install -e .)")
    return eps[0].load()


def load(name):
    """Load a model spec: ``"zoo:NAME"`` from the installed zoo, or a TOML spec-file path.

    Examples
    --------
    >>> spec = load("zoo:crnn_sed")          # doctest: +SKIP
    >>> spec = load("my_model/spec.toml")    # doctest: +SKIP
    """
    from .adapter import load_spec

    name = str(name)
    if name.startswith("zoo:"):
        return zoo_entry("models")(name[4:])
    if Path(name).suffix == ".toml" or Path(name).is_file():
        return load_spec(name)
    raise SpecError(f"unknown model {name!r}: use zoo:NAME (see `probe zoo list`) or a path to a .toml spec file")


def load_example(name: str, index: int = 0) -> AudioExample:
    """A deterministic test-split item with its ground truth, from the installed zoo."""
    return zoo_entry("examples")(name, int(index))


def resolve_audio(ref, sr: int | None = None, *, max_seconds: float | None = 3600.0) -> AudioExample:
    """``example:NAME[:i]`` or a file path → :class:`AudioExample` at rate ``sr``."""
    ref = str(ref)
    if ref.startswith("example:"):
        parts = ref.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise AudioError(f"examples are written example:NAME[:i], given {ref!r}")
        try:
            idx = int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            raise AudioError(f"example index must be an integer, given {parts[2]!r}") from None
        ex = load_example(parts[1], idx)
        if sr is not None and ex.sr != sr:
            raise AudioError(f"{ref} is at {ex.sr} Hz but the model expects {sr} Hz; use an example made for this model")
        return ex
    y, rate = load_audio(ref, sr, max_seconds=max_seconds)
    return AudioExample(y=y, sr=rate, name=Path(ref).name, info={"source": ref, "hash": audio_hash(y, rate)})
