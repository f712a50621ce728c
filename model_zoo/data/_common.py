"""Shared plumbing for the zoo's data builders: source paths, seeding, levels, resampling, the cache.

Every builder here makes one item from ``(kind, split, index)`` alone: the item's random
generator is seeded with ``(SEED, kind, split, index)``, so item ``i`` is the same whether
one item or the whole split is built, and ``n=k`` gives exactly the first ``k`` items of the
full split.

Built items are cached under ``model_zoo/data/_build/`` (gitignored; override with the
environment variable ``PROBE_DATA_BUILD``) as ``.npz`` files without pickled objects: audio
arrays plus one JSON string per item for the metadata. A cache file holds the first ``M``
items of a split; asking for more extends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import _sources
from ._sources import MissingSourceError

__all__ = [
    "MissingSourceError",
    "SEED",
    "SPLITS",
    "require_source",
    "source_path",
    "require_file",
    "item_rng",
    "stable_hash",
    "rms_db",
    "resample",
    "build_dir",
    "cached_items",
]

#: Root seed of every builder; bump ``VERSION`` in a builder (not this) when its output changes.
SEED = 20240611
SPLITS = ("train", "val", "test")

# Where the recordings are is decided in one place, model_zoo/data/_sources.py, from what each
# Debian package really installs: require_source("asterisk") -> Path (or MissingSourceError naming
# the package and the command that installs it); source_path(key) -> Path or None, never raises.
require_source = _sources.require
source_path = _sources.path


def require_file(path, package: str, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise :class:`MissingSourceError` naming ``package``."""
    p = Path(path)
    if not p.is_file():
        raise MissingSourceError(f"{what} not found: {p}. It is shipped by the Debian package {package!r}; "
                                 f"install it with: apt-get install -y {package} (see `probe doctor`)")
    return p


def stable_hash(*parts) -> int:
    """A 63-bit hash of ``parts`` that does not change between runs (unlike ``hash``)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def item_rng(kind: str, split: str, index: int, *extra) -> np.random.Generator:
    """Generator for one item; independent of how many other items are built."""
    return np.random.default_rng([SEED, stable_hash(kind, split, *extra) & 0xFFFFFFFF, int(index)])


def rms_db(x: np.ndarray) -> float:
    """Root-mean-square level in dBFS (``-inf`` for silence)."""
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return float(20.0 * np.log10(r)) if r > 0 else float("-inf")


def resample(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) to float32; identity when rates match."""
    y = np.asarray(y, dtype=np.float32)
    if int(orig_sr) == int(sr):
        return y
    import librosa

    return librosa.resample(y, orig_sr=int(orig_sr), target_sr=int(sr), res_type="soxr_hq").astype(np.float32)


def build_dir() -> Path:
    """Folder of the cache (created on demand)."""
    d = Path(os.environ.get("PROBE_DATA_BUILD", Path(__file__).resolve().parent / "_build"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cache_path(kind: str, split: str, sr: int, seconds: float, version: int) -> Path:
    return build_dir() / f"{kind}_{split}_sr{int(sr)}_s{float(seconds):g}_v{int(version)}.npz"


def _load(path: Path, keys):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in keys}
            metas = [json.loads(s) for s in z["meta_json"].tolist()]
    except Exception:  # a torn or stale file is rebuilt, never trusted
        return None
    return arrays, metas


def _save(path: Path, arrays: dict, metas: list) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, meta_json=np.array([json.dumps(m) for m in metas]), **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic: concurrent builders never see half a file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cached_items(kind: str, split: str, n: int, *, sr: int, seconds: float, version: int, keys, make_item, cache: bool = True):
    """First ``n`` items of a split, from the cache where possible.

    Parameters
    ----------
    keys : sequence of str
        Names of the per-item arrays ``make_item`` returns (each a fixed shape).
    make_item : callable ``(index) -> (dict of arrays, meta dict)``
    cache : bool
        ``False`` builds without reading or writing the cache.

    Returns
    -------
    arrays : dict of np.ndarray [shape=(n, ...)]
    metas : list of dict, length n
    """
    path = _cache_path(kind, split, sr, seconds, version)
    have = _load(path, keys) if cache else None
    if have is not None and len(have[1]) >= n:
        arrays, metas = have
        return {k: v[:n] for k, v in arrays.items()}, metas[:n]
    start = 0 if have is None else len(have[1])
    new = [make_item(i) for i in range(start, n)]
    new_arrays = {k: np.stack([a[k] for a, _ in new]) for k in keys} if new else None
    if have is None:
        arrays, metas = new_arrays, [m for _, m in new]
    else:
        arrays = {k: np.concatenate([have[0][k], new_arrays[k]]) for k in keys}
        metas = have[1] + [m for _, m in new]
    if cache:
        _save(path, arrays, metas)
    return arrays, metas
