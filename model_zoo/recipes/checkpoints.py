"""Zoo checkpoints: a model's weights as safetensors with its name and config as metadata (no pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from probe.errors import CheckpointError

__all__ = ["save_checkpoint", "load_checkpoint"]


# ---- checkpoints -----------------------------------------------------------------------
def _contiguous_state(model_or_state) -> dict:
    import torch

    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else dict(model_or_state)
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"state entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v.detach().cpu().contiguous().clone()
    return out


def save_checkpoint(model, path, *, name: str, config: dict | None = None, extra: dict | None = None) -> Path:
    """Write a model's weights as safetensors with ``{"name", "config"}`` metadata.

    Parameters
    ----------
    model : torch.nn.Module or dict of tensors
    path : str or Path
        Destination ``*.safetensors`` file (folders are created).
    name : str
        Zoo name of the model.
    config : dict, optional
        Architecture config (JSON-able); ``build(config)`` must rebuild the module.
    extra : dict, optional
        More JSON-able metadata, stored under its own keys (values JSON-encoded).

    Returns
    -------
    Path
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoints are written as safetensors, given {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"name": str(name), "config": json.dumps(config or {}, sort_keys=True), "format": "probe-zoo/1"}
    for k, v in (extra or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    tmp = path.with_suffix(".tmp.safetensors")
    save_file(_contiguous_state(model), str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors writes 0600; shipped checkpoints must be readable by every user
    os.replace(tmp, path)
    return path


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a safetensors checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    state_dict : dict of str → torch.Tensor
    metadata : dict
        ``{"name": str, "config": dict, ...}``; ``config`` is decoded from JSON.

    Raises
    ------
    CheckpointError
        Missing file, not safetensors, or unreadable.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"zoo checkpoints must be safetensors (no pickles), given {path.name!r}")
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:
        raise CheckpointError(f"cannot read safetensors checkpoint {path}: {exc}") from None
    if "config" in meta:
        try:
            meta["config"] = json.loads(meta["config"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"checkpoint {path} has a config that is not JSON: {exc}") from None
    return state, meta
