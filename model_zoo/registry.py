"""The zoo's registry: names → model modules, shipped checkpoints and cards.

probe finds this through the ``probe.zoo`` entry points (``models``, ``examples``,
``catalogue``), so ``probe.load("zoo:NAME")`` and ``example:NAME[:i]`` work without the
core library importing the zoo.

Every model module ``model_zoo/<NAME>.py`` provides ``NAME``, ``TASK``, ``DEFAULT_CONFIG``,
``build(config) -> nn.Module``, ``make_spec(model) -> probe.ModelSpec`` and
``example(i, split="test") -> probe.AudioExample``. A checkpoint
``checkpoints/<NAME>.safetensors`` stores the weights and, in its metadata, the
architecture config it was built with; ``cards/<NAME>.json`` is its model card.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from probe.errors import CheckpointError, SpecError

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE / "checkpoints"
CARDS = HERE / "cards"

#: every model the zoo knows, in the order of the README table
MODELS = ("dc_blstm", "dc_speech", "chimera", "nmf_ae", "convtasnet_lite", "unfolded_nmf", "crnn_sed", "rawcnn_sed", "partitioned_ae")


def _module(name: str):
    if name not in MODELS:
        import difflib

        close = difflib.get_close_matches(name, MODELS, n=3)
        raise SpecError(f"unknown zoo model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                        + f" Known: {', '.join(MODELS)}")
    return importlib.import_module(f"model_zoo.{name}")


def checkpoint_path(name: str) -> Path:
    return CHECKPOINTS / f"{name}.safetensors"


def read_card(name: str) -> dict | None:
    p = CARDS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def load_model(name: str, *, checkpoint: bool = True):
    """Build zoo model ``name``, load its shipped weights, and return its ModelSpec in eval mode."""
    from safetensors import safe_open

    from probe.adapter import _apply_state_dict, load_state_dict

    mod = _module(name)
    config = None
    path = checkpoint_path(name)
    if checkpoint:
        if not path.is_file():
            raise CheckpointError(f"zoo model {name!r} has no shipped checkpoint at {path}; "
                                  f"train it with `python -m model_zoo.train {name}`")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = json.loads(meta["config"]) if "config" in meta else None
    model = mod.build(config)
    if checkpoint:
        _apply_state_dict(model, load_state_dict(path), path)
    model.eval()
    spec = mod.make_spec(model)
    spec.name = name
    spec.info.update({"zoo": name, "task": getattr(mod, "TASK", None), "card": read_card(name),
                      "checkpoint": str(path) if checkpoint else None})
    return spec


def load_example(name: str, index: int = 0):
    """The ``index``-th item of zoo model ``name``'s test split, with its ground truth.

    Built from the data packages (exact); where they are missing (``probe doctor`` says which),
    the copy that ships with the package is used if there is one (``model_zoo/data/shipped.py``;
    ``info["shipped"]`` says so), else the error names the command that installs them.
    """
    from model_zoo.data import MissingSourceError
    from model_zoo.data import shipped

    mod = _module(name)
    try:
        ex = mod.example(int(index))
    except MissingSourceError as exc:
        try:
            return shipped.load(name, int(index))
        except KeyError:
            pass
        have = [k for k in shipped.available() if k.startswith(f"{name}:")]
        hint = (f" (example:{have[0]} ships with probe and works without them)" if have else "")
        raise MissingSourceError(f"example:{name}:{int(index)} is built from data packages that are missing here{hint}: "
                                 f"{exc}") from exc
    ex.name = f"example:{name}:{int(index)}"
    return ex


def shipped_examples() -> list[str]:
    """``["NAME:i", ...]``: examples stored in the package, usable without the data packages."""
    from model_zoo.data import shipped

    return shipped.available()


def catalogue() -> list[dict]:
    """One entry per zoo model: name, task, input, params, metrics (from the cards)."""
    out = []
    for name in MODELS:
        card = read_card(name) or {}
        out.append({"name": name, "task": card.get("task"), "input": card.get("input"), "params": card.get("params"),
                    "metrics": card.get("metrics", {}), "oracle": card.get("oracle", {}),
                    "trained": checkpoint_path(name).is_file(), "checkpoint": str(checkpoint_path(name))})
    return out
