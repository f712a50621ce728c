"""Shared helpers of the findings scripts: checkpoint hashes, result files, untrained twins, PNG export.

Not part of the ``probe`` package: these scripts sit beside the docs they regenerate and use probe's public API
and the zoo's registry (``model_zoo.registry``), as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")  # kaleido's PNG export uses Debian's chromium

CHECKPOINTS = ROOT / "model_zoo" / "checkpoints"
#: a folder of candidate checkpoints not shipped yet (a retraining's output): measured ahead of time, in place of
#: the shipped file of the same name; the results carry the candidate's sha256, so the hash test tells whether the
#: file that finally ships is the one measured
CANDIDATES = Path(os.environ["FINDINGS_CANDIDATES"]) if os.environ.get("FINDINGS_CANDIDATES") else None
#: where the numbers go (``FINDINGS_RESULTS`` keeps a candidate's numbers apart from the shipped ones)
RESULTS = Path(os.environ.get("FINDINGS_RESULTS") or Path(__file__).resolve().parent / "results")
IMG = ROOT / "docs" / "img"


def checkpoint_file(name: str) -> Path:
    if CANDIDATES is not None and (CANDIDATES / f"{name}.safetensors").is_file():
        return CANDIDATES / f"{name}.safetensors"
    return CHECKPOINTS / f"{name}.safetensors"


def _use_candidates():
    if CANDIDATES is None:
        return
    import model_zoo.registry as registry

    registry.checkpoint_path = checkpoint_file
    print(f"[findings] candidates from {CANDIDATES}: "
          f"{sorted(p.stem for p in CANDIDATES.glob('*.safetensors'))}", file=sys.stderr)


_use_candidates()


def sha256(name: str) -> str:
    """Full sha256 of the checkpoint measured: ``model_zoo/checkpoints/<name>.safetensors`` (or a candidate)."""
    h = hashlib.sha256()
    with open(checkpoint_file(name), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_line(name: str) -> str:  # noqa: D103
    """The machine-readable line a findings doc carries for each zoo model (tests/test_findings_hashes.py)."""
    return f"Checkpoint: {name} sha256 {sha256(name)[:12]}"


def load_results(doc: str) -> dict:
    path = RESULTS / f"{doc}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_results(doc: str, results: dict) -> Path:
    """Write ``results/<doc>.json`` through a temporary file (never half a file)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{doc}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True, default=float))
    tmp.replace(path)
    return path


def update_results(doc: str, name: str, fields: dict) -> dict:
    """Merge ``fields`` into model ``name``'s entry of ``results/<doc>.json`` under a file lock.

    Several processes may rerun different parts of one doc at once. An entry stamped with other weights is
    replaced, never mixed with the new numbers.
    """
    import fcntl
    import tempfile

    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / f"probe-findings-{doc}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = load_results(doc)
        entry = res.get(name, {})
        if entry.get("checkpoint_sha256") != fields.get("checkpoint_sha256", entry.get("checkpoint_sha256")):
            entry = {}
        entry.update(fields)
        res[name] = entry
        save_results(doc, res)
        return entry


def stamp(name: str) -> dict:
    """What a result entry records about the weights it was measured on."""
    return {"checkpoint_sha256": sha256(name), "measured_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def untrained_spec(name: str, seed: int = 0):
    """The zoo model ``name`` built with its checkpoint's config and PyTorch's fresh initialisation (seeded)."""
    import torch
    from safetensors import safe_open

    from model_zoo.registry import _module

    with safe_open(str(checkpoint_file(name)), framework="pt") as f:
        meta = f.metadata() or {}
    config = json.loads(meta["config"]) if "config" in meta else None
    mod = _module(name)
    torch.manual_seed(seed)
    model = mod.build(config)
    model.eval()
    spec = mod.make_spec(model)
    spec.name = f"{name} (untrained)"
    return spec


def write_png(fig, path: Path, *, scale: float = 1) -> Path:
    """Render a plotly figure to PNG through a temporary file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    for attempt in range(4):  # kaleido's headless browser sometimes is not ready on a loaded machine
        try:
            fig.write_image(str(tmp), scale=scale)
            break
        except Exception as exc:  # noqa: BLE001 - kaleido raises its own JavaScript errors
            if attempt == 3:
                raise
            print(f"[findings] PNG export failed ({type(exc).__name__}); retrying", file=sys.stderr)
            time.sleep(5)
    tmp.replace(path)
    return path


def one_thread():
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
