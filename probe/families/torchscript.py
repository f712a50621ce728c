"""TorchScript modules: one error, raised when the model is loaded, so every command says the same thing.

Compiled graphs do not call Python forward hooks (capture, filters' activations, GradCAM),
their ``forward`` signature is fixed at compile time, and probe cannot rebuild layer names
and kernels it can trust from them. Rather than let each command fail in its own way, the
model loader (:func:`probe.resolve.load`) checks once.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import SpecError

__all__ = ["TorchScriptError", "check_eager", "is_torchscript_file", "TORCHSCRIPT_HINT"]

TORCHSCRIPT_HINT = ("probe needs the eager nn.Module: build the model from its Python code and load its weights "
                    "(torch.jit.load(path).state_dict() saved with safetensors), then point a spec's factory at it")


class TorchScriptError(SpecError):
    """The model is (or contains) a TorchScript module."""


def _is_script(m) -> bool:
    import torch

    return isinstance(m, (torch.jit.ScriptModule, torch.jit.RecursiveScriptModule)) or \
        type(m).__name__ in ("RecursiveScriptModule", "ScriptModule", "TopLevelTracedModule", "TracedModule")


def check_eager(model, *, name: str | None = None) -> None:
    """Raise :class:`TorchScriptError` when ``model`` is or contains a TorchScript module.

    Examples
    --------
    >>> import torch
    >>> check_eager(torch.nn.Conv1d(1, 2, 3))
    >>> check_eager(torch.jit.script(torch.nn.Conv1d(1, 2, 3)))
    Traceback (most recent call last):
    ...
    probe.families.torchscript.TorchScriptError: model Conv1d is a TorchScript module; ...
    """
    if model is None:
        return
    label = name or getattr(model, "original_name", None) or type(model).__name__
    if _is_script(model):
        raise TorchScriptError(f"model {label} is a TorchScript module; {TORCHSCRIPT_HINT}")
    for sub_name, m in model.named_modules():
        if sub_name and _is_script(m):
            raise TorchScriptError(f"model {label} contains a TorchScript module at {sub_name!r}; {TORCHSCRIPT_HINT}")


def is_torchscript_file(path) -> bool:
    """True for a ``torch.jit.save`` archive (a zip holding compiled ``code/``)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.startswith("code/") for n in names) and any(n.endswith("constants.pkl") for n in names)
