"""What every pipeline result shares: a ``warnings`` list, ``to_json()``, and read access by key.

Results are dataclasses. Faces that drew the older dict results (figure builders, the app's
pages) read them by key as well (``res["coords"]``, ``"values" in res``), so a result is also
a read-only mapping over its fields; a field that is ``None`` counts as absent.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import numpy as np

__all__ = ["Result", "jsonable", "rounded", "locked"]


def jsonable(x):
    """``x`` with numpy scalars/arrays turned into Python numbers/lists and non-finite floats into ``None``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    return x


def rounded(v, nd: int = 6):
    """``round(float(v), nd)``; ``None`` for ``None`` and non-finite values."""
    if v is None:
        return None
    v = float(v)
    return round(v, nd) if math.isfinite(v) else None


def locked(lock):
    """``lock`` itself, or a no-op context when there is none (a model nobody shares)."""
    return nullcontext() if lock is None else lock


@dataclass
class Result:
    """Base of pipeline results: ``warnings`` plus mapping-style read access to the fields."""

    warnings: list = field(default_factory=list, kw_only=True)

    def to_json(self) -> dict:  # pragma: no cover - every result overrides it
        raise NotImplementedError

    def _names(self):
        return [f.name for f in fields(self)]

    def __getitem__(self, key):
        if key in self._names():
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        return key in self._names() and getattr(self, key) is not None

    def get(self, key, default=None):
        return getattr(self, key) if key in self else default

    def keys(self):
        return [k for k in self._names() if k in self]
