"""probe: see what audio neural networks have learned.

Hooks with seconds and Hz attached, analyzers that relate learned filters and embeddings
to filterbanks, NMF and clusters, and time-frequency attributions you can listen to.

Heavy submodules load on first use, so ``import probe`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_audio": "probe.audio",
    "validate_audio": "probe.audio",
    "AudioExample": "probe.audio",
    "TFGrid": "probe.grid",
    "ModelSpec": "probe.adapter",
    "load_spec": "probe.adapter",
    "load_state_dict": "probe.adapter",
    "capture": "probe.hooks",
    "Cache": "probe.hooks",
    "Record": "probe.hooks",
    "filters": "probe.filterbank",
    "FilterBank": "probe.filterbank",
    "save_run": "probe.store",
    "load_run": "probe.store",
    "load": "probe.resolve",
    "load_example": "probe.resolve",
    "attribute": "probe.attribution",
    "Attribution": "probe.attribution",
}

__all__ = sorted(_LAZY) + ["errors", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in ("errors", "analyze", "figures"):
        return importlib.import_module(f"probe.{name}")
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
