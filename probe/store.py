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

__all__ = ["save_run", "load_run", "capture_to_run", "package_versions", "validate_manifest"]

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
        by_view[key] = name  # later exact aliases of this view point here
        if key[0] in storages or not t.is_contiguous():
            t = t.contiguous().clone()  # shares memory with a stored tensor but is another view of it
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
        entry = _entry(rec, t)
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
        _write_manifest(tmp, layers, model_id=model_id, spec=cache.spec_dict, audio=audio or cache.audio or None,
                        extra=extra)
    return Path(run_dir)


def _entry(rec: Record, t) -> dict:
    entry = rec.describe()
    entry.update(module=rec.module, call=rec.call, dtype=str(t.dtype).replace("torch.", ""),
                 time_offset=float(getattr(rec, "time_offset", None) or 0.0))
    return entry


def _write_manifest(folder: Path, layers: dict, *, model_id, spec, audio, extra) -> dict:
    manifest = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "model_id": model_id, "spec": spec, "audio": audio, "layers": layers,
                "versions": package_versions(), "extra": extra or {}, "tensors_sha256": _sha256_file(folder / TENSORS)}
    # through JSON once so the checksum covers exactly what is written
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["manifest_sha256"] = _manifest_checksum(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


_ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
              "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def capture_to_run(spec, y, run_dir, layers="*", *, chunk_seconds: float, overlap_seconds: float = 0.0,
                   progress: bool = False, model_id: str | None = None, audio: dict | None = None,
                   extra: dict | None = None, overwrite: bool = False, **capture_kwargs) -> dict:
    """Capture long audio chunk by chunk straight into a run directory, with memory bounded by one chunk.

    Each chunk runs through :func:`probe.hooks.capture_audio` (records cut to the chunk's
    span), is written to a scratch file, and the chunks are then laid side by side along
    every record's time axis in one ``tensors.safetensors`` (written with positioned
    writes, never holding a whole record in memory). The result loads with
    :func:`load_run` exactly like an unchunked run; records without a time axis (an LSTM's
    final state) keep the first chunk's value, as in :func:`~probe.hooks.capture_audio`.

    Parameters
    ----------
    spec : ModelSpec
    y : np.ndarray [shape=(n,)]
        Audio at ``spec.sample_rate``.
    run_dir : path
    layers : selector
        See :func:`probe.hooks.select_layers`.
    chunk_seconds : float
        Length of each chunk.
    overlap_seconds : float
        Context computed on each side of a chunk and dropped.
    model_id, audio, extra, overwrite
        As for :func:`save_run`.

    Returns
    -------
    dict
        The manifest written (``manifest["extra"]["chunked"]`` says how).

    Examples
    --------
    >>> import tempfile, numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 16, stride=8), torch.nn.Dropout(0.1)).eval()
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> m = capture_to_run(spec, np.ones(48000, np.float32), tempfile.mkdtemp() + "/r", chunk_seconds=1.0)
    >>> m["layers"]["0"]["shape"], m["layers"]["1"]["same_as"], m["extra"]["chunked"]["chunks"]
    ([1, 2, 5997], '0', 3)
    """
    import os

    import numpy as np
    from safetensors.torch import load_file, save_file

    from .diagnostics import check_finite_output
    from .hooks import capture_audio
    from .outputs import output_dir

    if len(y) <= chunk_seconds * spec.sample_rate:  # one chunk: the ordinary in-memory capture
        cache = capture_audio(spec, y, layers, **capture_kwargs)
        for k, rec in cache.items():
            check_finite_output(rec.load(), what=f"output of layer {k!r}")
        save_run(cache, run_dir, model_id=model_id, audio=audio, extra=extra, overwrite=overwrite)
        return json.loads((Path(run_dir) / MANIFEST).read_text())
    with output_dir(run_dir, kind="run", overwrite=overwrite) as tmp:
        scratch = tmp / ".chunks"
        scratch.mkdir()
        st = {"n": 0, "meta": OrderedDict(), "same_as": {}, "steps": {}, "shapes": {}}

        def sink(records):
            i = st["n"]
            if i == 0:
                _, st["same_as"] = _dedupe(OrderedDict((k, t) for k, (_, t) in records.items()))
                for k, (rec, t) in records.items():
                    st["meta"][k] = (rec, t.dtype)
                    st["shapes"][k] = list(t.shape)
            write = {}
            for k, (rec, t) in records.items():
                check_finite_output(t, what=f"output of layer {k!r}")
                if k in st["same_as"] or k not in st["meta"]:
                    continue
                timed = rec.time_axis is not None and bool(rec.seconds_per_step)
                if not timed and i > 0:
                    continue
                write[k] = t.contiguous().clone()
                if timed:
                    st["steps"][k] = st["steps"].get(k, 0) + t.shape[rec.time_axis]
            save_file(write, str(scratch / f"{i:05d}.safetensors"))
            st["n"] += 1

        capture_audio(spec, y, layers, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                      progress=progress, on_chunk=sink, **capture_kwargs)
        if st["n"] == 0:
            from .errors import CaptureError

            raise CaptureError(f"no chunk of {chunk_seconds:g} s was long enough to capture")
        # lay the file out: header, then every stored record's bytes in manifest order
        header, layout, offset = {}, {}, 0
        layers_out = OrderedDict()
        for k, (rec, dtype) in st["meta"].items():
            shape = list(st["shapes"][k])
            timed = k in st["steps"]
            if timed:
                shape[rec.time_axis] = st["steps"][k]
            entry = _entry(rec, _Shaped(shape, dtype))
            entry["shape"] = shape
            layers_out[k] = entry
            if k in st["same_as"]:
                entry["same_as"] = st["same_as"][k]
                entry["shape"] = list(layers_out[entry["same_as"]]["shape"])
                continue
            item = torch_itemsize(dtype)
            nbytes = int(np.prod(shape, dtype=np.int64)) * item
            header[k] = {"dtype": _ST_DTYPES[str(dtype).replace("torch.", "")], "shape": shape,
                         "data_offsets": [offset, offset + nbytes]}
            tax = rec.time_axis if timed else None
            outer = int(np.prod(shape[:tax], dtype=np.int64)) if timed else 1
            inner = int(np.prod(shape[tax + 1:], dtype=np.int64)) if timed else 0
            layout[k] = (offset, tax, outer, inner, shape[tax] if timed else 0, item)
            offset += nbytes
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        final = tmp / TENSORS
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, len(head).to_bytes(8, "little") + head)
            base = 8 + len(head)
            os.ftruncate(fd, base + offset)
            t0 = {k: 0 for k in layout}
            for i in range(st["n"]):
                chunk = load_file(str(scratch / f"{i:05d}.safetensors"))
                for k, t in chunk.items():
                    start, tax, outer, inner, total, item = layout[k]
                    raw = t.contiguous().reshape(-1).view(torch_uint8()).numpy()
                    if tax is None:
                        os.pwrite(fd, raw.tobytes(), base + start)
                        continue
                    n = t.shape[tax]
                    rows = raw.reshape(outer, n * inner * item)
                    for o in range(outer):
                        os.pwrite(fd, rows[o].tobytes(), base + start + (o * total + t0[k]) * inner * item)
                    t0[k] += n
                del chunk
                (scratch / f"{i:05d}.safetensors").unlink()
        finally:
            os.close(fd)
        scratch.rmdir()
        info = {"chunk_seconds": float(chunk_seconds), "overlap_seconds": float(overlap_seconds), "chunks": st["n"],
                "note": "records without a time axis hold the first chunk's value"}
        manifest = _write_manifest(tmp, layers_out, model_id=model_id, spec=spec.to_dict(), audio=audio,
                                   extra={**(extra or {}), "chunked": info})
    return manifest


def _record_fields() -> set:
    from dataclasses import fields

    return {f.name for f in fields(Record)}


class _Shaped:
    """Stands in for a tensor in :func:`_entry` (only ``dtype`` is read)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


def torch_itemsize(dtype) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def torch_uint8():
    import torch

    return torch.uint8


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
        if "time_source" in _record_fields() and isinstance(e.get("time_source"), str):
            rec.time_source = e["time_source"]
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
