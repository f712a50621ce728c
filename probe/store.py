"""Run store: a capture saved to a directory and loaded back identically, without pickle.

Layout of a run directory::

    manifest.json         model spec, layer names, shapes, axes, seconds per step, time
                          offsets, audio hash/duration, package versions, checksums
    tensors.safetensors   every record's tensor (and ``<name>::grad`` when captured)

Records whose tensors share memory (a Dropout or Identity in eval mode returns its input;
an in-place op rewrites it; an LSTM's outputs) are stored once: the later record's
manifest entry says ``"same_as": "<earlier name>"`` and loading gives it the same tensor.

Loading trusts nothing: the manifest is checked against a schema (types, axes vs shape,
seconds per step), the tensor file against its SHA-256 and the manifest against its
own checksum, so an edited audio hash or a flipped byte is reported, not analysed.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from .errors import StoreError
from .hooks import Cache, Record

__all__ = ["save_run", "load_run", "package_versions", "validate_manifest"]

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


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _view_key(t) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def _dedupe(tensors: "OrderedDict") -> tuple["OrderedDict", dict]:
    """Store each memory once: exact aliases become references, partial overlaps get copies."""
    kept: "OrderedDict" = OrderedDict()
    same_as: dict = {}
    by_view: dict = {}
    storages: set = set()
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.numel() == 0:
            kept[name] = t.contiguous().clone()
            continue
        key = _view_key(t)
        # a record may only point at an earlier record; a gradient at an earlier record or gradient
        if key in by_view and (name.endswith("::grad") or not by_view[key].endswith("::grad")):
            same_as[name] = by_view[key]
            continue
        if key[0] in storages or not t.is_contiguous():
            t = t.contiguous().clone()  # shares memory with a stored tensor but is another view of it
            key = _view_key(t)
        by_view[key] = name
        storages.add(key[0])
        kept[name] = t
    return kept, same_as


def save_run(cache: Cache, run_dir, *, model_id: str | None = None, audio: dict | None = None,
             extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``cache`` to ``run_dir`` and return the directory.

    The folder is written through :func:`probe.outputs.output_dir`: a non-empty folder that
    is not a probe output is refused unless ``overwrite=True``, and the files appear all at
    once at the end.

    Parameters
    ----------
    cache : Cache
    run_dir : path
    model_id : str, optional
        E.g. ``"zoo:dc_blstm"`` or the spec file path.
    audio : dict, optional
        ``{"hash", "duration", "sr", "source"}`` of the analysed audio.
    extra : dict, optional
        Anything JSON-serialisable to keep with the run (options, warnings).
    overwrite : bool
        Allow writing into a non-empty folder that is not a probe output.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, torch
    >>> from probe import capture, load_run
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1)).eval()
    >>> with capture(net, "*") as cache:
    ...     _ = net(torch.ones(1, 4))
    >>> run = save_run(cache, tempfile.mkdtemp() + "/run")
    >>> back, manifest = load_run(run)
    >>> manifest["layers"]["1"]["same_as"], torch.equal(back["1"].tensor, cache["0"].tensor)
    ('0', True)
    """
    from safetensors.torch import save_file

    from .outputs import output_dir

    tensors, layers = OrderedDict(), OrderedDict()
    for name, rec in cache.items():
        t = rec.load()
        tensors[name] = t
        entry = rec.describe()
        entry.update(module=rec.module, call=rec.call, dtype=str(t.dtype).replace("torch.", ""),
                     time_offset=float(getattr(rec, "time_offset", None) or 0.0))
        if rec.grad is not None:
            tensors[name + "::grad"] = rec.grad
            entry["grad"] = True
        layers[name] = entry
    kept, same_as = _dedupe(tensors)
    for name, ref in same_as.items():
        if name.endswith("::grad"):
            layers[name[:-6]]["grad_same_as"] = ref
        else:
            layers[name]["same_as"] = ref
    with output_dir(run_dir, kind="run", overwrite=overwrite) as tmp:
        save_file(dict(kept), str(tmp / TENSORS))
        manifest = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "model_id": model_id, "spec": cache.spec_dict, "audio": audio or cache.audio or None,
                    "layers": layers, "versions": package_versions(), "extra": extra or {},
                    "tensors_sha256": _sha256_file(tmp / TENSORS)}
        # through JSON once so the checksum covers exactly what is written
        manifest = json.loads(json.dumps(manifest, default=str))
        manifest["manifest_sha256"] = _manifest_checksum(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Path(run_dir)


# ---- validation ------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_manifest(manifest, *, where: str = "manifest") -> None:
    """Check a run manifest's structure and types; raise :class:`StoreError` naming the first problem.

    Checked: it is an object with ``format``; ``layers`` maps names to objects with a
    ``shape`` (list of non-negative ints), ``axes`` (``null`` or one string per axis),
    ``time_axis`` (``null`` or an axis index), ``seconds_per_step`` (``null`` or a positive
    number), ``time_offset`` (a number, default 0), ``same_as`` (an earlier layer of the same
    shape); ``audio`` is ``null`` or an object whose ``hash`` is a string.

    Examples
    --------
    >>> validate_manifest({"format": FORMAT, "layers": {"a": {"shape": [2, 3], "axes": ["batch"]}}})
    Traceback (most recent call last):
    ...
    probe.errors.StoreError: manifest: layer 'a' has 2 axes in its shape [2, 3] but axes lists 1: ['batch']
    """
    if not isinstance(manifest, dict):
        raise StoreError(f"{where} must be a JSON object, found a {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{where}: unknown run format {manifest.get('format')!r}, expected {FORMAT!r}")
    layers = manifest.get("layers")
    if not isinstance(layers, dict):
        raise StoreError(f"{where}: 'layers' must be an object mapping layer names to entries, found "
                         f"{'nothing' if layers is None else type(layers).__name__}")
    seen: dict = {}
    for name, e in layers.items():
        if not isinstance(e, dict):
            raise StoreError(f"{where}: layer {name!r} must be an object, found {json.dumps(e)}")
        shape = e.get("shape")
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
            raise StoreError(f"{where}: layer {name!r} needs 'shape' as a list of non-negative integers, found {shape!r}")
        axes = e.get("axes")
        if axes is not None:
            if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
                raise StoreError(f"{where}: layer {name!r} 'axes' must be a list of strings or null, found {axes!r}")
            if len(axes) != len(shape):
                raise StoreError(f"{where}: layer {name!r} has {len(shape)} axes in its shape {shape} but axes lists "
                                 f"{len(axes)}: {axes}")
        tax = e.get("time_axis")
        if tax is not None and not (_is_int(tax) and 0 <= tax < len(shape)):
            raise StoreError(f"{where}: layer {name!r} 'time_axis' must be null or an axis index below {len(shape)}, "
                             f"found {tax!r}")
        if tax is not None and axes is not None and axes[tax] != "time":
            raise StoreError(f"{where}: layer {name!r} says time_axis={tax} but axes[{tax}] is {axes[tax]!r}")
        sps = e.get("seconds_per_step")
        if sps is not None and not (_is_number(sps) and sps > 0):
            raise StoreError(f"{where}: layer {name!r} 'seconds_per_step' must be a positive number or null, found {sps!r}")
        off = e.get("time_offset", 0.0)
        if not _is_number(off):
            raise StoreError(f"{where}: layer {name!r} 'time_offset' must be a number, found {off!r}")
        for key in ("same_as", "grad_same_as"):
            ref = e.get(key)
            if ref is None:
                continue
            if not isinstance(ref, str) or (ref not in seen and not ref.endswith("::grad")):
                raise StoreError(f"{where}: layer {name!r} '{key}' must name an earlier layer, found {ref!r}")
            if key == "same_as" and seen[ref] != shape:
                raise StoreError(f"{where}: layer {name!r} is same_as {ref!r} but their shapes differ "
                                 f"({shape} vs {seen[ref]})")
        for key, kind in (("module", str), ("module_type", str), ("dtype", str)):
            if e.get(key) is not None and not isinstance(e[key], kind):
                raise StoreError(f"{where}: layer {name!r} '{key}' must be a string, found {e[key]!r}")
        if e.get("call") is not None and not (_is_int(e["call"]) and e["call"] >= 0):
            raise StoreError(f"{where}: layer {name!r} 'call' must be a non-negative integer, found {e['call']!r}")
        seen[name] = shape
    audio = manifest.get("audio")
    if audio is not None:
        if not isinstance(audio, dict):
            raise StoreError(f"{where}: 'audio' must be an object or null, found {type(audio).__name__}")
        h = audio.get("hash")
        if h is not None and not (isinstance(h, str) and h):
            raise StoreError(f"{where}: audio 'hash' must be a non-empty string, found {h!r}")
        for key in ("duration", "sr"):
            if audio.get(key) is not None and not (_is_number(audio[key]) and audio[key] > 0):
                raise StoreError(f"{where}: audio {key!r} must be a positive number, found {audio[key]!r}")
    for key in ("spec", "extra", "versions"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise StoreError(f"{where}: {key!r} must be an object or null, found {type(manifest[key]).__name__}")


def load_run(run_dir, *, verify: bool = True, audio=None) -> tuple[Cache, dict]:
    """Read a run directory back: ``(cache, manifest)``; tensors are bit-identical to what was saved.

    Parameters
    ----------
    run_dir : path
    verify : bool
        Check the tensor file's SHA-256 and the manifest's own checksum (default). Runs
        saved before checksums existed load without them.
    audio : (np.ndarray, int), optional
        ``(y, sr)`` of the audio you believe was analysed; raises if its hash differs from
        the manifest's.

    Raises
    ------
    StoreError
        Missing files, invalid manifest, checksum or shape mismatch, different audio.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    mpath, tpath = run_dir / MANIFEST, run_dir / TENSORS
    if not mpath.is_file() or not tpath.is_file():
        raise StoreError(f"{run_dir} is not a probe run: expected {MANIFEST} and {TENSORS}")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{mpath} is not valid JSON: {exc}") from None
    validate_manifest(manifest, where=str(mpath))
    if verify:
        want = manifest.get("manifest_sha256")
        if want is not None and want != _manifest_checksum(manifest):
            raise StoreError(f"{mpath} was edited after the run was saved (its checksum no longer matches); "
                             "capture again rather than trust it")
        want = manifest.get("tensors_sha256")
        if want is not None and _sha256_file(tpath) != want:
            raise StoreError(f"{tpath} is not the file this run saved (SHA-256 mismatch: changed or corrupted)")
    if audio is not None:
        from .audio import audio_hash

        have = (manifest.get("audio") or {}).get("hash")
        given = audio_hash(audio[0], audio[1])
        if have != given:
            raise StoreError(f"{run_dir} was captured from other audio (hash {have}, the given audio hashes to {given})")
    try:
        tensors = load_file(str(tpath))
    except Exception as exc:
        raise StoreError(f"cannot read {tpath}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    records = OrderedDict()
    for name, e in manifest["layers"].items():
        ref = e.get("same_as")
        t = records[ref].tensor if ref is not None else tensors.get(name)
        if t is None:
            raise StoreError(f"{run_dir}: manifest lists {name!r} but the tensor file lacks it")
        if list(t.shape) != e["shape"]:
            raise StoreError(f"{run_dir}: {name!r} has shape {list(t.shape)}, manifest says {e['shape']}")
        rec = Record(name=name, module=e.get("module", name), module_type=e.get("module_type") or "",
                     call=e.get("call") or 0, tensor=t, axes=e.get("axes"), time_axis=e.get("time_axis"),
                     seconds_per_step=e.get("seconds_per_step"), reduced=e.get("reduced"))
        rec.time_offset = float(e.get("time_offset", 0.0))
        if e.get("grad"):
            gref = e.get("grad_same_as")
            if gref is not None:
                base = gref[:-6] if gref.endswith("::grad") else gref
                rec.grad = records[base].grad if gref.endswith("::grad") and base in records else (
                    records[base].tensor if base in records else None)
            else:
                rec.grad = tensors.get(name + "::grad")
            if rec.grad is None:
                raise StoreError(f"{run_dir}: manifest says {name!r} has a gradient but the tensor file lacks it")
        records[name] = rec
    cache = Cache(records, manifest.get("spec"))
    cache.audio = manifest.get("audio") or {}
    return cache, manifest
