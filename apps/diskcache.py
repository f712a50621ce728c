"""A persistent on-disk cache of the app's deterministic results, reused across server restarts.

Each result of a pipeline call (model outputs, the default layer, embeddings, attribution,
NMF, a captured layer) is stored under a key made of

* the model's content: the SHA-256 of a zoo checkpoint and of the zoo's model code, or of every
  file beside a spec file (:func:`apps.state.model_content_key`);
* the clip's content hash (:func:`probe.audio.audio_hash`);
* the options (the ``repr`` of a frozen options dataclass);
* a stamp of the code that computed it: the SHA-256 of every ``.py`` file of ``probe`` (except
  the CLI, corpus, report and run-store code, which compute no app result) and of
  ``apps/cache.py`` — a changed default or fix makes new keys, never a stale answer.

A value is written as ONE safetensors file: the arrays as tensors and the rest of the object
graph as JSON in the file's metadata. Objects are rebuilt only for classes defined in
``probe`` (and scikit-learn estimators, the fitted k-means of a clustering); nothing is
unpickled and no constructor of another class is ever called, so a file in the cache cannot run
code. Files are written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file; a file that does not decode is treated as missing.

The folder is ``$PROBE_APP_CACHE_DIR`` (``probe app --cache-dir``), else
``$XDG_CACHE_HOME/probe/app`` or ``~/.cache/probe/app`` — never the working folder.
``PROBE_APP_CACHE_DIR=off`` turns the cache off. The oldest files (by last use) are removed
when the folder grows beyond :data:`MAX_BYTES`.

Nothing here imports streamlit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["ENV", "MAX_BYTES", "MISS", "Unsupported", "cache_dir", "code_stamp", "file_digest", "make_key",
           "encode", "decode", "load", "store", "cached", "stats"]

ENV = "PROBE_APP_CACHE_DIR"
#: format version of the files (part of every key)
FORMAT = 1
#: the folder is pruned (least recently used first) above this size
MAX_BYTES = 2 * 1024 ** 3
#: returned by :func:`load` for a key that is not stored (``None`` is a value)
MISS = object()

_ROOT = Path(__file__).resolve().parents[1]
#: parts of ``probe`` that never compute a cached app result (their changes keep the cache)
_NOT_APP_CODE = ("cli", "corpus", "benchmarks", "figures", "bench.py", "report", "report.py", "doctor.py", "outputs.py", "store.py")
_lock = threading.Lock()
_digests: dict = {}
_stamp: list = []
#: hits / misses / stores / skipped (values that cannot be encoded) in this process
STATS = {"hit": 0, "miss": 0, "store": 0, "skip": 0}


class Unsupported(TypeError):
    """A value holds an object the cache does not store (it is then computed again next time)."""


# ---- where and under which key ------------------------------------------------------------------

def cache_dir() -> Path | None:
    """The cache folder (created on first store), or ``None`` when ``PROBE_APP_CACHE_DIR=off``.

    Examples
    --------
    >>> import os
    >>> os.environ[ENV] = "off"; cache_dir() is None
    True
    >>> os.environ[ENV] = "/tmp/probe-cache-doc"; str(cache_dir())
    '/tmp/probe-cache-doc'
    >>> del os.environ[ENV]
    """
    v = os.environ.get(ENV, "").strip()
    if v.lower() in ("off", "0", "no", "false", "none"):
        return None
    if v:
        return Path(v).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "probe" / "app"


def code_stamp() -> str:
    """SHA-256 (16 hex) of the code that computes the cached values: ``probe/**/*.py`` and ``apps/cache.py``."""
    if not _stamp:
        h = hashlib.sha256()
        import probe

        pkg = Path(probe.__file__).resolve().parent
        files = sorted(p for p in pkg.rglob("*.py") if p.relative_to(pkg).parts[0] not in _NOT_APP_CODE)
        files.append(Path(__file__).resolve().parent / "cache.py")
        for p in files:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            rel = p.relative_to(pkg.parent) if p.is_relative_to(pkg.parent) else Path("apps") / p.name
            h.update(str(rel).encode())
            h.update(hashlib.sha256(data).digest())
        _stamp.append(h.hexdigest()[:16])
    return _stamp[0]


def file_digest(path) -> str:
    """SHA-256 of a file's content, remembered per (path, size, mtime) in this process."""
    p = Path(path)
    st = p.stat()
    k = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    d = _digests.get(k)
    if d is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        d = _digests[k] = h.hexdigest()
    return d


def make_key(kind: str, *parts) -> str:
    """The file name (SHA-256 hex) of one result: its kind, its inputs' keys/options and the code stamp.

    Examples
    --------
    >>> make_key("outputs", "m1", "a1") == make_key("outputs", "m1", "a1") != make_key("outputs", "m1", "a2")
    True
    """
    text = json.dumps([FORMAT, code_stamp(), kind, [repr(p) for p in parts]])
    return hashlib.sha256(text.encode()).hexdigest()


# ---- encoding: JSON tree + arrays ---------------------------------------------------------------

def _allowed_class(cls) -> bool:
    mod = getattr(cls, "__module__", "") or ""
    if mod == "probe" or mod.startswith("probe."):
        return True
    if mod.startswith("sklearn."):
        from sklearn.base import BaseEstimator

        return isinstance(cls, type) and issubclass(cls, BaseEstimator)
    return False


def encode(obj, arrays: dict):
    """``obj`` → a JSON-able tree; arrays go into ``arrays`` (name → ndarray). Raises :class:`Unsupported`."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and type(obj) is int:
        return obj
    if isinstance(obj, float) and type(obj) is float:
        return obj if np.isfinite(obj) else {"$f": repr(obj)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            name = f"a{len(arrays)}"
            arrays[name] = np.ascontiguousarray(obj)
            return {"$a": name}
        if obj.dtype.kind == "c":
            return {"$c": [encode(obj.real.copy(), arrays), encode(obj.imag.copy(), arrays)]}
        if obj.dtype.kind == "U":
            return {"$u": obj.tolist(), "shape": list(obj.shape)}
        if obj.dtype.kind == "O":
            return {"$o": [encode(x, arrays) for x in obj.ravel().tolist()], "shape": list(obj.shape)}
        raise Unsupported(f"array of dtype {obj.dtype}")
    if isinstance(obj, np.generic):
        return {"$s": obj.dtype.str, "v": encode(obj.item(), arrays)}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [encode(x, arrays) for x in obj]
        if type(obj) is list:
            return items
        return {"$" + ("t" if isinstance(obj, tuple) else "set"): items}
    if isinstance(obj, dict):
        return {"$d": [[encode(k, arrays), encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, Fraction):
        return {"$q": [obj.numerator, obj.denominator]}
    if isinstance(obj, complex):
        return {"$z": [obj.real, obj.imag]}
    if isinstance(obj, int):  # int subclasses (IntEnum aside)
        return int(obj)
    if isinstance(obj, float):
        return encode(float(obj), arrays)
    mod = type(obj).__module__ or ""
    if mod.startswith("torch"):
        import torch

        if isinstance(obj, torch.Tensor):
            return {"$pt": encode(obj.detach().cpu().numpy(), arrays)}
        if isinstance(obj, torch.dtype):
            return {"$pdt": str(obj)}
        raise Unsupported(f"{mod}.{type(obj).__qualname__}")
    from probe.grid import TFGrid

    if isinstance(obj, TFGrid):
        return {"$grid": obj.to_dict()}
    cls = type(obj)
    if not _allowed_class(cls) or not hasattr(obj, "__dict__") or getattr(cls, "__slots__", None):
        raise Unsupported(f"{cls.__module__}.{cls.__qualname__}")
    import enum

    if isinstance(obj, enum.Enum):
        return {"$enum": f"{cls.__module__}:{cls.__qualname__}", "v": encode(obj.value, arrays)}
    state = {k: encode(v, arrays) for k, v in vars(obj).items()}
    return {"$obj": f"{cls.__module__}:{cls.__qualname__}", "state": state}


def _class(path: str):
    import importlib

    mod, _, qual = path.partition(":")
    if not (mod == "probe" or mod.startswith(("probe.", "sklearn."))):
        raise ValueError(f"class {path} is not one the cache rebuilds")
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not _allowed_class(obj):
        raise ValueError(f"class {path} is not one the cache rebuilds")
    return obj


def decode(tree, arrays: dict):
    """Inverse of :func:`encode`.

    Examples
    --------
    >>> from fractions import Fraction
    >>> arrays = {}
    >>> value = {"x": np.arange(3.0), (1, 2): [Fraction(1, 3), np.float32(2.5), None, float("nan")]}
    >>> back = decode(json.loads(json.dumps(encode(value, arrays))), arrays)
    >>> back["x"].tolist(), back[(1, 2)][:3], type(back[(1, 2)][1]).__name__, bool(np.isnan(back[(1, 2)][3]))
    ([0.0, 1.0, 2.0], [Fraction(1, 3), np.float32(2.5), None], 'float32', True)
    """
    if isinstance(tree, list):
        return [decode(x, arrays) for x in tree]
    if not isinstance(tree, dict):
        return tree
    if "$a" in tree:
        return arrays[tree["$a"]]
    if "$f" in tree:
        return float(tree["$f"])
    if "$c" in tree:
        re_, im = (decode(x, arrays) for x in tree["$c"])
        return re_ + 1j * im
    if "$u" in tree:
        return np.array(tree["$u"], dtype=str).reshape(tree["shape"])
    if "$o" in tree:
        out = np.empty(len(tree["$o"]), dtype=object)
        out[:] = [decode(x, arrays) for x in tree["$o"]]
        return out.reshape(tree["shape"])
    if "$s" in tree:
        return np.dtype(tree["$s"]).type(decode(tree["v"], arrays))
    if "$t" in tree:
        return tuple(decode(x, arrays) for x in tree["$t"])
    if "$set" in tree:
        return set(decode(x, arrays) for x in tree["$set"])
    if "$d" in tree:
        return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in tree["$d"]}
    if "$q" in tree:
        return Fraction(*tree["$q"])
    if "$z" in tree:
        return complex(*tree["$z"])
    if "$pt" in tree:
        import torch

        return torch.from_numpy(np.array(decode(tree["$pt"], arrays)))
    if "$pdt" in tree:
        import torch

        return getattr(torch, tree["$pdt"].split(".")[-1])
    if "$grid" in tree:
        from probe.grid import TFGrid

        return TFGrid.from_dict(tree["$grid"])
    if "$enum" in tree:
        return _class(tree["$enum"])(decode(tree["v"], arrays))
    if "$obj" in tree:
        cls = _class(tree["$obj"])
        obj = cls.__new__(cls)  # no constructor runs: the state is set as it was
        obj.__dict__.update({k: decode(v, arrays) for k, v in tree["state"].items()})
        return obj
    raise ValueError(f"unknown node {sorted(tree)[:3]}")


def _hashable(k):
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k


# ---- files --------------------------------------------------------------------------------------

def _path(key: str) -> Path | None:
    root = cache_dir()
    return None if root is None else root / key[:2] / f"{key}.safetensors"


def load(key: str):
    """The value stored under ``key``, or :data:`MISS` (also for a file that does not decode)."""
    path = _path(key)
    if path is None or not path.is_file():
        STATS["miss"] += 1
        return MISS
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys() if k != "_empty"}
        if meta.get("format") != str(FORMAT):
            raise ValueError("other format")
        value = decode(json.loads(meta["tree"]), arrays)
    except Exception:  # a broken or foreign file is a miss; the next store replaces it
        STATS["miss"] += 1
        return MISS
    try:
        os.utime(path)  # last use, for pruning
    except OSError:
        pass
    STATS["hit"] += 1
    return value


def store(key: str, value) -> bool:
    """Write ``value`` under ``key`` (temporary file, then rename); ``False`` when it cannot be encoded."""
    path = _path(key)
    if path is None:
        return False
    arrays: dict = {}
    try:
        tree = json.dumps(encode(value, arrays))
    except (Unsupported, RecursionError, ValueError, TypeError):
        STATS["skip"] += 1
        return False
    from safetensors.numpy import save_file

    if not arrays:
        arrays["_empty"] = np.zeros(1, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata={"format": str(FORMAT), "tree": tree})
        os.replace(tmp, path)
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        STATS["skip"] += 1
        return False
    STATS["store"] += 1
    _prune(path.parent.parent)
    return True


def _prune(root: Path) -> None:
    with _lock:
        try:
            files = [(p.stat().st_mtime, p.stat().st_size, p) for p in root.glob("*/*.safetensors")]
        except OSError:
            return
        total = sum(s for _, s, _ in files)
        for _, size, p in sorted(files, key=lambda x: x[0]):
            if total <= MAX_BYTES:
                break
            try:
                p.unlink()
                total -= size
            except OSError:
                pass


def cached(kind: str, parts: tuple, compute):
    """``compute()`` through the disk cache: the stored value for (kind, parts), else computed and stored.

    Examples
    --------
    >>> import os, tempfile
    >>> os.environ[ENV] = tempfile.mkdtemp()
    >>> calls = []
    >>> f = lambda: calls.append(1) or {"y": np.ones(2)}
    >>> a = cached("demo", ("m", "clip"), f); b = cached("demo", ("m", "clip"), f)
    >>> len(calls), b["y"].tolist()
    (1, [1.0, 1.0])
    >>> del os.environ[ENV]
    """
    if cache_dir() is None:
        return compute()
    key = make_key(kind, *parts)
    value = load(key)
    if value is not MISS:
        return value
    value = compute()
    store(key, value)
    return value


def stats() -> dict:
    """This process's hits, misses, stores and values not stored, and the folder in use."""
    root = cache_dir()
    return {**STATS, "dir": None if root is None else str(root)}
