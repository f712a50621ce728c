"""Run store: a capture saved to a directory and loaded back identically, without pickle.

Layout of a run directory::

    manifest.json         model spec, layer names, shapes, axes, seconds per step,
                          audio hash/duration, package versions
    tensors.safetensors   every record's tensor (and ``<name>::grad`` when captured)
"""

from __future__ import annotations

import json
import platform
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from .hooks import Cache, Record
from .errors import RunStoreError

__all__ = ["save_run", "load_run", "package_versions"]

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
FORMAT = "probe-run/1"


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("probe-audio", "torch", "numpy", "librosa", "captum", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def save_run(cache: Cache, run_dir, *, model_id: str | None = None, audio: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``cache`` to ``run_dir`` (created) and return the directory.

    Parameters
    ----------
    cache : Cache
    run_dir : path
    model_id : str, optional
        E.g. ``"zoo:dc_blstm"`` or the spec file path.
    audio : dict, optional
        ``{"hash", "duration", "sr", "source"}`` of the analysed audio.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors, layers = {}, OrderedDict()
    for name, rec in cache.items():
        t = rec.load()
        tensors[name] = t.detach().cpu().contiguous()
        entry = rec.describe()
        entry.update(module=rec.module, call=rec.call, dtype=str(t.dtype).replace("torch.", ""))
        if rec.grad is not None:
            tensors[name + "::grad"] = rec.grad.detach().cpu().contiguous()
            entry["grad"] = True
        layers[name] = entry
    save_file(tensors, str(run_dir / TENSORS))
    manifest = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "model_id": model_id, "spec": cache.spec_dict, "audio": audio or cache.audio or None,
                "layers": layers, "versions": package_versions(), "extra": extra or {}}
    (run_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return run_dir


def load_run(run_dir) -> tuple[Cache, dict]:
    """Read a run directory back: ``(cache, manifest)``; tensors are bit-identical to what was saved."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    mpath, tpath = run_dir / MANIFEST, run_dir / TENSORS
    if not mpath.is_file() or not tpath.is_file():
        raise RunStoreError(f"{run_dir} is not a probe run: expected {MANIFEST} and {TENSORS}")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise RunStoreError(f"{mpath} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise RunStoreError(f"{run_dir}: unknown run format {manifest.get('format')!r}, expected {FORMAT!r}")
    try:
        tensors = load_file(str(tpath))
    except Exception as exc:
        raise RunStoreError(f"cannot read {tpath}: {exc}") from None
    records = OrderedDict()
    for name, e in manifest["layers"].items():
        if name not in tensors:
            raise RunStoreError(f"{run_dir}: manifest lists {name!r} but the tensor file lacks it")
        if list(tensors[name].shape) != e["shape"]:
            raise RunStoreError(f"{run_dir}: {name!r} has shape {list(tensors[name].shape)}, manifest says {e['shape']}")
        rec = Record(name=name, module=e.get("module", name), module_type=e.get("module_type", ""), call=e.get("call", 0),
                     tensor=tensors[name], axes=e.get("axes"), time_axis=e.get("time_axis"),
                     seconds_per_step=e.get("seconds_per_step"), reduced=e.get("reduced"))
        rec.grad = tensors.get(name + "::grad")
        records[name] = rec
    cache = Cache(records, manifest.get("spec"))
    cache.audio = manifest.get("audio") or {}
    return cache, manifest
