"""Resolve user-facing names at the edge: ``zoo:NAME``, ``hf:PATH``, ``onnx:PATH`` or spec-file models and
``example:NAME[:i]`` audio.

Every model, whatever its family, passes one check here: a TorchScript module is refused
with the same one-line error for every command (:mod:`probe.families.torchscript`).

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


#: file endings that name audio, never a model (a swapped MODEL AUDIO pair gets a message that says so)
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".opus", ".au", ".w64")


def load(name):
    """Load a model spec from a user-facing name.

    ``"zoo:NAME"`` (the installed zoo), ``"hf:PATH"`` (a local Hugging Face folder, see
    :func:`probe.families.hf.load_hf`), ``"onnx:PATH"`` (converted with onnx2torch, see
    :func:`probe.families.onnx.load_onnx`) or a TOML spec-file path. TorchScript models
    (a spec whose factory returns one, or a ``torch.jit.save`` file given directly) raise
    :class:`~probe.families.torchscript.TorchScriptError`.

    Examples
    --------
    >>> spec = load("zoo:crnn_sed")          # doctest: +SKIP
    >>> spec = load("hf:models/wav2vec2")    # doctest: +SKIP
    >>> spec = load("my_model/spec.toml")    # doctest: +SKIP
    """
    from .families.torchscript import TORCHSCRIPT_HINT, TorchScriptError, check_eager, is_torchscript_file

    name = str(name)
    if name.startswith("zoo:"):
        spec = zoo_entry("models")(name[4:])
    elif name.startswith("hf:"):
        from .families.hf import load_hf

        spec = load_hf(name[3:])
    elif name.startswith("onnx:"):
        from .families.onnx import load_onnx

        spec = load_onnx(name[5:])
    elif Path(name).suffix.lower() in _AUDIO_SUFFIXES:
        raise SpecError(f"{name} is an audio file, not a model: MODEL comes first (probe COMMAND MODEL AUDIO), "
                        "as zoo:NAME, hf:FOLDER, onnx:FILE or a .toml spec file")
    elif Path(name).suffix == ".toml" or Path(name).is_file():
        if Path(name).suffix != ".toml" and is_torchscript_file(name):
            raise TorchScriptError(f"{name} is a TorchScript archive (torch.jit.save); {TORCHSCRIPT_HINT}")
        from .adapter import load_spec

        spec = load_spec(name)
    else:
        raise SpecError(f"unknown model {name!r}: use zoo:NAME (see `probe zoo list`), hf:FOLDER, onnx:FILE "
                        "or a path to a .toml spec file")
    check_eager(spec.model, name=spec.name)
    return spec


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
        if idx < 0:
            raise AudioError(f"example index must be 0 or more, given {idx} in {ref!r}")
        ex = load_example(parts[1], idx)
        if sr is not None and ex.sr != sr:
            raise AudioError(f"{ref} is at {ex.sr} Hz but the model expects {sr} Hz; use an example made for this model")
        return ex
    facts: dict = {}  # channels, source rate, mix-down energy: read by probe.diagnostics.audio_warnings
    y, rate = load_audio(ref, sr, max_seconds=max_seconds, info=facts)
    return AudioExample(y=y, sr=rate, name=Path(ref).name, info={"source": ref, "hash": audio_hash(y, rate), "load": facts})
