"""Examples that ship inside the package, for machines that cannot build the zoo's data.

``example:NAME:i`` is normally built from the Debian/PyPI packages (exact float32 audio).
Where that is impossible — a plain ``pip install`` without ``tinysoundfont``, or without
the Debian data packages — :func:`model_zoo.registry.load_example` falls back to a copy
stored here: each stored part (the sources of a mixture, or the background and event stems
of a scene) as 16-bit FLAC, the mixture re-made as the float32 sum of the stored parts (so
``y == sources.sum(0)`` still holds exactly), and the ground truth (notes, event boxes,
provenance) as JSON, exactly as the build made it. ``info["shipped"]`` says that a copy was
used; a test checks every copy against a fresh build (max difference one 16-bit step per part).

Only examples made from permissively licensed sources ship (:data:`SHIPPABLE_LICENCES`):
the instrument mixtures rendered from FluidR3 (MIT). The scene and noisy-clip examples hold
GPL-2+ and CC-BY-SA recordings (Wesnoth, Asterisk) and are built from the Debian packages only.

Regenerate with ``python -m model_zoo.data ship``.

Examples
--------
>>> from model_zoo.data import shipped
>>> "dc_blstm:0" in shipped.available()
True
>>> ex = shipped.load("dc_blstm", 0)
>>> ex.sr, ex.sources.shape, bool((ex.y == ex.sources.sum(0)).all()), ex.info["shipped"]["format"]
(8000, (2, 32000), True, 'FLAC PCM_16')
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["FOLDER", "SHIPPED", "SHIPPABLE_LICENCES", "available", "load", "ship"]

FOLDER = Path(__file__).resolve().parent / "shipped"
#: which examples ship: the app's default model (dc_blstm) and every model sharing its test mixtures
SHIPPED = (("dc_blstm", 0), ("chimera", 0), ("nmf_ae", 0), ("convtasnet_lite", 0), ("unfolded_nmf", 0))
#: a clip ships only when every source recording it uses carries one of these licences
SHIPPABLE_LICENCES = ("MIT",)
_STEP = 1.0 / 32768.0  # one 16-bit step


def _index() -> dict:
    p = FOLDER / "index.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def available() -> list[str]:
    """``["NAME:i", ...]`` of the examples stored in the package."""
    return sorted(_index())


def _parts(ex) -> tuple[dict, str]:
    """The arrays to store for an example and how the mixture is re-made from them."""
    f32 = np.float32
    if ex.sources is not None and np.array_equal(ex.y, ex.sources.sum(0, dtype=f32)):
        return {"sources": ex.sources}, "sources.sum(0)"
    if ex.event_stems is not None:
        bg = (ex.y.astype(np.float64) - ex.event_stems.astype(np.float64).sum(0)).astype(f32)
        return {"background": bg[None], "event_stems": ex.event_stems}, "background[0] + event_stems.sum(0)"
    parts = {"y": ex.y[None]}
    if ex.sources is not None:
        parts["sources"] = ex.sources
    return parts, "y[0]"


def _remake(parts: dict, rule: str) -> np.ndarray:
    if rule == "sources.sum(0)":
        return parts["sources"].sum(0, dtype=np.float32)
    if rule == "background[0] + event_stems.sum(0)":
        return (parts["background"][0] + parts["event_stems"].sum(0, dtype=np.float32)).astype(np.float32)
    return parts["y"][0].astype(np.float32)


def _licences_of(ex) -> set:
    info = ex.info or {}
    if "licence" in info:
        return {str(info["licence"])}
    if "licences" in info:
        return {str(v).split(" ")[0] for v in dict(info["licences"]).values()}
    return {"unknown"}


def load(name: str, index: int = 0):
    """The stored copy of ``example:NAME:index`` as a :class:`probe.AudioExample`.

    Raises
    ------
    KeyError
        When that example does not ship.
    """
    import soundfile as sf

    from probe.audio import AudioExample

    key = f"{name}:{int(index)}"
    entry = _index().get(key)
    if entry is None:
        raise KeyError(key)
    meta = json.loads((FOLDER / f"{entry}.json").read_text())
    parts = {}
    for part in meta["parts"]:
        a, sr = sf.read(str(FOLDER / f"{entry}.{part}.flac"), dtype="float32", always_2d=True)
        if sr != meta["sr"]:  # pragma: no cover - written by ship()
            raise ValueError(f"{entry}.{part}.flac is at {sr} Hz, its metadata says {meta['sr']} Hz")
        parts[part] = np.ascontiguousarray(a.T)
    y = _remake(parts, meta["rule"])
    info = dict(meta["info"], shipped={"clip": entry, "format": "FLAC PCM_16", "rule": meta["rule"],
                                       "why": "built from the package's stored copy: the data sources are missing "
                                              "(see `probe doctor`)"})
    return AudioExample(y, int(meta["sr"]), name=f"example:{key}", sources=parts.get("sources"),
                        source_names=meta["source_names"], events=meta["events"],
                        event_stems=parts.get("event_stems"), info=info)


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def ship(examples=SHIPPED) -> dict:
    """Build ``examples`` from the packages and store them (identical clips once); returns the index.

    Refuses an example whose recordings are not under :data:`SHIPPABLE_LICENCES`.
    """
    import io

    import soundfile as sf

    from model_zoo import registry

    FOLDER.mkdir(exist_ok=True)
    index = {}
    for name, i in examples:
        ex = registry._module(name).example(int(i))
        bad = _licences_of(ex) - set(SHIPPABLE_LICENCES)
        if bad:
            raise ValueError(f"example:{name}:{i} uses recordings licensed {sorted(bad)}; only "
                             f"{SHIPPABLE_LICENCES} ship (build it from the Debian packages instead)")
        parts, rule = _parts(ex)
        digest = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in parts.values())).hexdigest()[:12]
        clip = f"clip-{digest}"
        index[f"{name}:{int(i)}"] = clip
        if (FOLDER / f"{clip}.json").is_file():
            continue
        for part, a in parts.items():
            if np.max(np.abs(a)) >= 1.0 - _STEP:
                raise ValueError(f"example:{name}:{i} {part} would clip in 16 bits")
            buf = io.BytesIO()
            sf.write(buf, np.ascontiguousarray(a.T), ex.sr, format="FLAC", subtype="PCM_16")
            _write(FOLDER / f"{clip}.{part}.flac", buf.getvalue())
        meta = {"sr": int(ex.sr), "parts": list(parts), "rule": rule, "source_names": ex.source_names,
                "events": ex.events, "info": ex.info}
        _write(FOLDER / f"{clip}.json", json.dumps(meta, indent=1, default=str).encode())
    _write(FOLDER / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())
    keep = set(index.values())
    for f in FOLDER.glob("clip-*"):  # clips no example refers to any more
        if f.name.split(".")[0] not in keep:
            f.unlink()
    return index
