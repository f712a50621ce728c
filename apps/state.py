"""The app's shared models and what can be picked: zoo models, examples, cache keys.

* :class:`SharedModel` — one loaded :class:`~probe.ModelSpec` shared by every app session
  (Streamlit's ``st.cache_resource`` hands the *same* object to all of them), guarded by a
  lock that the pipelines hold around every forward pass, capture and attribution
  (``lock=model.lock``). Attribution toggles ``requires_grad`` and restores it, which is why
  it must not overlap another session's forward.
* loaders that turn what a user picks (``zoo:NAME``, a spec file, ``example:NAME:i``) into a
  model or an :class:`~probe.AudioExample`, raising probe's own errors with messages fit to
  show as they are.

The zoo is reached only through :mod:`probe.resolve`'s entry points. Nothing here imports
streamlit, so scripts and tests can use it directly.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from pathlib import Path

from probe.errors import ProbeError, SpecError

__all__ = ["SharedModel", "Unavailable", "load_shared_model", "model_ref_key", "model_content_key", "zoo_models", "default_model_ref",
           "example_refs", "load_example_ref"]


class Unavailable(ProbeError):
    """A part the app wants (a zoo model's code, a trained checkpoint) is not there yet."""


class SharedModel:
    """A :class:`~probe.ModelSpec` shared between threads, with a lock around every use.

    Parameters
    ----------
    spec : ModelSpec
        Loaded in eval mode. Treat it as read-only: run it only under :attr:`lock`
        (pass ``lock=model.lock`` to the pipelines).
    ref : str
        What it was loaded from (``zoo:NAME`` or a spec-file path).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> spec = ModelSpec(torch.nn.Conv1d(1, 2, 4), input_kind="waveform", grid=TFGrid(8000), input_layout="bcn")
    >>> m = SharedModel(spec, "demo")
    >>> with m.locked() as s:
    ...     s.forward(np.zeros(100, np.float32)).shape
    torch.Size([1, 2, 97])
    """

    def __init__(self, spec, ref: str):
        self.spec = spec
        self.ref = str(ref)
        self.lock = threading.RLock()

    @contextmanager
    def locked(self):
        """Hold the lock and yield the spec (re-entrant: nested helpers may lock again)."""
        with self.lock:
            yield self.spec

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def sample_rate(self) -> int:
        return int(self.spec.sample_rate)

    def __repr__(self) -> str:
        return f"SharedModel({self.ref!r}, {self.spec.input_kind} → {self.spec.output_kind})"


#: (time, entries) of the last catalogue read: every page asks for it several times per run
_CATALOGUE: list = [0.0, []]
#: seconds a catalogue read is reused (a newly trained model shows up after at most this long)
CATALOGUE_TTL = 10.0


def _catalogue() -> list:
    import time

    from probe.resolve import zoo_entry

    now = time.monotonic()
    if now - _CATALOGUE[0] < CATALOGUE_TTL:
        return list(_CATALOGUE[1])
    try:
        entries = list(zoo_entry("catalogue")())
    except (SpecError, ImportError):
        entries = []
    _CATALOGUE[:] = [now, entries]
    return list(entries)


def model_ref_key(ref: str) -> str:
    """Cache key of a model reference: it changes when the checkpoint or the spec file (or its folder) changes."""
    ref = str(ref)
    from .policy import check_model_ref

    try:  # never stat a file a web user may not reach
        ref = check_model_ref(ref)
    except SpecError:
        return ref
    if ref.startswith("zoo:"):
        entry = next((e for e in _catalogue() if e.get("name") == ref[4:]), None)
        p = Path(entry["checkpoint"]) if entry and entry.get("checkpoint") else None
        return f"{ref}@{p.stat().st_mtime_ns if p is not None and p.is_file() else 0}"
    p = Path(ref)
    if p.is_file():
        stamps = [p.stat().st_mtime_ns] + [q.stat().st_mtime_ns for q in p.parent.glob("*") if q.is_file()]
        return f"{p.resolve()}@{max(stamps)}"
    return ref


def model_content_key(ref: str) -> str:
    """Key of a model's *content* for the on-disk cache: a zoo model's checkpoint and code, or the spec folder's files.

    A zoo model is keyed by the SHA-256 of its checkpoint and of the zoo's model code (the ``.py``
    files at the top of the zoo package: networks, grids, heads — not its recipes or data
    builders), so a changed network or grid never serves a stale result. Unlike
    :func:`model_ref_key` (modification times, for the in-memory caches), this stays the same when
    a file is copied or touched and changes whenever a byte of the weights or the code changes.
    """
    from .diskcache import file_digest
    from .policy import check_model_ref

    ref = check_model_ref(str(ref))
    if ref.startswith("zoo:"):
        entry = next((e for e in _catalogue() if e.get("name") == ref[4:]), None)
        p = Path(entry["checkpoint"]) if entry and entry.get("checkpoint") else None
        if p is None or not p.is_file():
            return f"{ref}#untrained"
        code = sorted(p.parent.parent.glob("*.py"))  # the zoo package: checkpoints/NAME.safetensors → *.py
        stamp = hashlib.sha256("".join(f"{q.name}:{file_digest(q)}" for q in code).encode()).hexdigest()
        return f"{ref}#{file_digest(p)}#code:{stamp[:16]}"
    p = Path(ref)
    files = sorted(q for q in p.parent.glob("*") if q.is_file())
    return f"{p.name}#" + ",".join(f"{q.name}:{file_digest(q)[:16]}" for q in files)


def load_shared_model(ref: str) -> SharedModel:
    """Load ``zoo:NAME`` or a spec-file path into a :class:`SharedModel`.

    Only what :func:`apps.policy.check_model_ref` allows is loaded: installed zoo names and
    spec files in the folders the server's owner allowed (``probe app --allow-models DIR``).

    Raises
    ------
    SpecError, CheckpointError
        Not allowed, unknown name, bad spec file, or a zoo model whose checkpoint is not trained yet.
    Unavailable
        A zoo model listed in the catalogue whose code is not installed yet.
    """
    from probe.resolve import load

    from .policy import check_model_ref

    ref = str(ref).strip()
    if not ref:
        raise SpecError("no model given: pick a zoo model or a spec file")
    ref = check_model_ref(ref)  # a web user never makes the server import code it was not allowed to run
    try:
        spec = load(ref)
    except ImportError as exc:  # a zoo entry whose module is still being written
        raise Unavailable(f"{ref} is not available yet ({exc})") from None
    spec.model.eval()
    return SharedModel(spec, ref)


def zoo_models() -> list:
    """The zoo catalogue (``[]`` when no zoo is installed), each entry with a ``ref`` and a ``label``."""
    out = []
    for e in _catalogue():
        task = e.get("task") or ""
        state = "trained" if e.get("trained") else "not trained yet"
        out.append({**e, "ref": f"zoo:{e['name']}", "label": f"{e['name']}" + (f" · {task}" if task else "") + f" ({state})"})
    return out


def default_model_ref() -> str | None:
    """The first trained zoo model, or ``None`` when none is trained (or no zoo is installed)."""
    for e in zoo_models():
        if e.get("trained"):
            return e["ref"]
    return None


def example_refs(model_ref: str, n: int = 8) -> list:
    """``example:NAME:i`` for the first ``n`` test items of a zoo model (``[]`` for spec files)."""
    ref = str(model_ref)
    if not ref.startswith("zoo:"):
        return []
    return [f"example:{ref[4:]}:{i}" for i in range(int(n))]


def load_example_ref(ref: str, sr: int | None = None):
    """``example:NAME:i`` (or an audio file in an allowed folder) → :class:`~probe.AudioExample` at ``sr``.

    Anything else — a path outside ``probe app --allow-audio DIR``, ``..``, a symbolic link out
    of the folder — is refused by :func:`apps.policy.check_audio_ref` with one message,
    whether the path exists or not.
    """
    from probe.resolve import resolve_audio

    from .policy import MAX_SECONDS, check_audio_ref

    ref = check_audio_ref(ref)
    return resolve_audio(ref, sr, max_seconds=MAX_SECONDS if not ref.startswith("example:") else 3600.0)
