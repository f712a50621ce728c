"""One pass of a model over a corpus, in-process or on Ray Data, into a resumable Parquet run.

Layout of a run folder::

    RUN/corpus.json          manifest: model, options, engine, counts, layers, concepts, timings
    RUN/clips.parquet        the corpus as read (id, path, label, events, split, group)
    RUN/parts/*.parquet      worker rows (see probe.corpus.worker.output_schema), one file per batch
    RUN/unit_stats.parquet   per layer × variant × unit: mean, var, quantiles, top-k excerpts

Every file is written to a temporary name and renamed, so a crash or Ctrl-C loses at most
the batches in flight; running the same command again skips every clip already in
``parts/`` (bad clips included: their reason is recorded, not retried).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .inputs import Clip, CorpusError, read_corpus
from .worker import CorpusWorker, RunOptions, clips_table, concept_names, resolve_spec

__all__ = ["run_corpus", "open_run", "CorpusRun", "ENGINES", "MANIFEST"]

log = logging.getLogger("probe.corpus")
ENGINES = ("inprocess", "ray")
MANIFEST = "corpus.json"
_KIND = "probe.corpus.run"
#: options that change how a run executes, not what it computes (a run may resume under others)
_EXECUTION = ("batch_size", "engine", "workers", "ray_address")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=1, default=_jsonable).encode())


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _write_table(table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    # dictionary-encode only the text columns (ids, layer names): on float lists it costs several
    # times the rest of the write and makes the files larger, not smaller
    text = [f.name for f in table.schema if pa.types.is_string(f.type)]
    pq.write_table(table, tmp, use_dictionary=text)
    os.replace(tmp, path)


def _done_clips(parts: Path) -> set:
    import pyarrow.parquet as pq

    done: set = set()
    for f in sorted(parts.glob("*.parquet")):
        done.update(pq.read_table(f, columns=["clip_id"]).column("clip_id").to_pylist())
    return done


def _prepare_out(out: Path, fingerprint: dict) -> dict | None:
    """Check ``out`` is new, empty, or a run with the same fingerprint; return its manifest if resuming."""
    man = out / MANIFEST
    if man.is_file():
        try:
            old = json.loads(man.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CorpusError(f"{man} is not a readable corpus manifest: {exc}") from None
        if old.get("kind") != _KIND:
            raise CorpusError(f"{out} holds another kind of run ({old.get('kind')!r}); choose a new --out")
        if old.get("fingerprint") != fingerprint:
            diff = sorted(k for k in set(fingerprint) | set(old.get("fingerprint") or {})
                          if fingerprint.get(k) != (old.get("fingerprint") or {}).get(k))
            raise CorpusError(f"{out} is a run with different settings ({', '.join(diff)}); "
                              "resume with the same model, corpus and options, or choose a new --out")
        return old
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"refusing to write into {out}: it exists and is not a corpus run; choose a new --out")
    return None


def run_corpus(model, corpus, out, *, options: RunOptions | None = None, progress: bool = False) -> dict:
    """Run ``model`` over ``corpus`` and write (or resume) a run folder.

    Parameters
    ----------
    model : str, ModelSpec or callable
        ``zoo:NAME`` or a spec ``.toml`` (what Ray workers on a cluster load), a
        :class:`~probe.ModelSpec`, or a zero-argument factory returning one.
    corpus : str, Path or list of Clip
        A folder or a CSV/JSONL manifest (see :func:`~probe.corpus.read_corpus`).
    out : str or Path
        The run folder: created, or resumed when it holds a run with the same settings.
    options : RunOptions
        Layers, frame budget, concepts, controls, and the engine: ``"inprocess"`` or
        ``"ray"`` (the same :class:`~probe.corpus.worker.CorpusWorker` in Ray Data ``map_batches``
        tasks, at most ``workers`` at a time, on Ray's pooled worker processes, which keep the worker
        they built for later runs of the session; ``ray_address`` joins a cluster).
    progress : bool
        Show a tqdm bar with clips/s on stderr.

    Returns
    -------
    dict
        The manifest (also in ``RUN/corpus.json``).

    Examples
    --------
    >>> import tempfile
    >>> from probe.corpus.synthetic import make_event_corpus, planted_spec
    >>> d = Path(tempfile.mkdtemp())
    >>> corpus = make_event_corpus(d / "clips", n_clips=2, seconds=1.0)
    >>> man = run_corpus(planted_spec, corpus, d / "run",
    ...                  options=RunOptions(layers=("units",), concepts=("loudness",), random_init=False))
    >>> man["clips"]["ok"], man["layer_info"]["units"]["n_units"]
    (2, 12)
    """
    t_start = time.perf_counter()
    options = options or RunOptions()
    engine, workers, ray_address = options.engine, int(options.workers), options.ray_address
    if engine not in ENGINES:
        raise CorpusError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if workers < 1:
        raise CorpusError(f"workers must be positive, given {workers}")
    if options.frames_per_clip is not None and int(options.frames_per_clip) < 1:
        raise CorpusError(f"frames_per_clip must be positive or None, given {options.frames_per_clip}")
    if int(options.batch_size) < 1:
        raise CorpusError(f"batch_size must be positive, given {options.batch_size}")
    clips = list(corpus) if isinstance(corpus, (list, tuple)) else read_corpus(corpus)
    ids = [c.clip_id for c in clips]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise CorpusError(f"clip ids must be unique; repeated: {dup}")
    out = Path(out)
    ray_start = None
    if engine == "ray":  # connect first: a missing Ray fails before the model loads
        t_ray = time.perf_counter()
        _start_ray(workers=workers, ray_address=ray_address)
        ray_start = time.perf_counter() - t_ray
    spec = resolve_spec(model)
    # the driver validates the layers and learns each one's geometry before any work starts
    # in-process, this worker then does the run; for Ray it only checks, and each Ray worker builds its own
    probe_worker = CorpusWorker(spec, options if engine == "inprocess" else
                                dataclasses.replace(options, random_init=False, concepts=()))
    probe_worker.describe_layers()
    fingerprint = {"model": spec.name, "params": spec.to_dict()["params"], "layers": list(probe_worker.layers),
                   "options": {k: v for k, v in options.to_dict().items() if k not in _EXECUTION},
                   "corpus": sorted(ids)}
    old = _prepare_out(out, fingerprint)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    if not (out / "clips.parquet").is_file():
        _write_table(clips_table(clips), out / "clips.parquet")
    manifest = old or {"kind": _KIND, "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "fingerprint": fingerprint}
    manifest.update({"status": "running", "model": {"ref": model if isinstance(model, str) else spec.name,
                                                    "spec": spec.to_dict()},
                     "options": options.to_dict(), "layers": list(probe_worker.layers),
                     "concepts": concept_names(options.concepts, spec.sample_rate), "engine": engine,
                     "workers": int(workers) if engine == "ray" else 1})
    _write_json(out / MANIFEST, manifest)
    done = _done_clips(parts)
    pending = [c for c in clips if c.clip_id not in done]
    t0 = time.perf_counter()
    n_new = 0
    written: list = []  # (seconds since t0, clips, worker CPU seconds, worker) of every part as it lands
    starts: list = []  # Ray: each worker process's start-up, as its first batch in this run reports it
    if pending:
        index = {c.clip_id: i for i, c in enumerate(clips)}
        if engine == "inprocess":
            n_new = _run_inprocess(probe_worker, pending, parts, options, progress=progress, index=index,
                                   written=written, t0=t0)
        else:
            n_new = _run_ray(_ship(spec, model, digest=_RAY_REUSE_WORKERS), pending, parts, options, workers=workers,
                             ray_address=ray_address, progress=progress, index=index, written=written,
                             starts=starts, t0=t0)
    elapsed = time.perf_counter() - t0
    t_fin = time.perf_counter()
    summary = finalize_run(out, top_k=options.top_k)
    manifest.update(summary)
    manifest.update({"status": "done", "seconds": round(elapsed, 3), "clips_this_pass": n_new, "resumed": len(done),
                     "clips_per_second": round(n_new / elapsed, 3) if elapsed > 0 and n_new else None,
                     "timing": _timing(written, setup=t0 - t_start, finalize=time.perf_counter() - t_fin,
                                       actors=starts, ray_start=ray_start)})
    _write_json(out / MANIFEST, manifest)
    return manifest


def _timing(written: list, *, setup: float, finalize: float, actors: list = (), ray_start: float | None = None) -> dict:
    """Where a pass spent its time: set-up before the first batch was handed out (model, layers, manifest;
    on Ray also connecting to Ray, ``ray_start_s`` of it: ``ray.init`` when the run starts a local Ray),
    the wait for the first part and until every worker has delivered its first (engine start-up + one
    batch each), the steady rate after that, the worker CPU seconds per clip of the batches that were not
    a worker's first (compute + its part file; on Ray, measured in the Ray worker), and finalize.
    On Ray, ``start_ups`` lists each worker process's start-up in this run, as its first batch reported
    it: when the process was created and when its first batch began (seconds after the engine started),
    the CPU the process spent before that (Python, Ray worker), the worker build's wall and CPU seconds
    (imports, unpickling the spec, the model), its first batch's wall and CPU seconds, and ``reused``:
    True when the process had built this worker in an earlier run of the session (no build)."""
    out = {"setup_s": round(setup, 3), "finalize_s": round(finalize, 3)}
    if ray_start is not None:
        out["ray_start_s"] = round(ray_start, 3)
    if written:
        first: dict = {}
        for i, (_, _, _, who) in enumerate(written):
            first.setdefault(who, i)
        warm = written[max(first.values())][0]
        out["first_part_s"] = round(written[0][0], 3)
        out["warm_s"] = round(warm, 3)
        out["workers_seen"] = len(first)
        clips = sum(k for t, k, _, _ in written if t > warm)
        span = written[-1][0] - warm
        out["steady_clips_per_second"] = round(clips / span, 3) if clips and span > 0 else None
        later = [(k, c) for i, (_, k, c, _) in enumerate(written) if i not in set(first.values())]
        n = sum(k for k, _ in later)
        out["steady_cpu_s_per_clip"] = round(sum(c for _, c in later) / n, 5) if n else None
    if actors:
        out["start_ups"] = [{k: v if v is None or isinstance(v, bool) else round(v, 3) for k, v in a.items()}
                            for a in sorted(actors, key=lambda a: a["born_s"])]
    return out


def _part_name(first_index: int, clip_ids) -> str:
    """A batch's part file: its first corpus position, and a digest of its clip ids. The same batch always
    gets the same name, so a batch run twice (a Ray task run again after its process died) replaces its
    own file rather than adding a second copy of its rows.

    Examples
    --------
    >>> _part_name(16, ["c17", "c16"]) == _part_name(16, ["c16", "c17", "c16"])
    True
    >>> _part_name(16, ["c16"])[:14]
    'part-00000016-'
    """
    import hashlib

    digest = hashlib.sha1("\n".join(sorted({str(c) for c in clip_ids})).encode()).hexdigest()[:8]
    return f"part-{first_index:08d}-{digest}.parquet"


def _first_index(table, index: dict) -> int:
    ids = table.column("clip_id").to_pylist()
    return min((index.get(i, 0) for i in ids), default=0)


def _bar(progress: bool, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not progress, desc="corpus", unit="clip", smoothing=0.1)


def _run_inprocess(worker, pending, parts, options, *, progress, index, written, t0) -> int:
    bs = int(options.batch_size)
    with _bar(progress, len(pending)) as bar:
        for i in range(0, len(pending), bs):
            batch = pending[i:i + bs]
            c0 = time.process_time()
            table = worker(clips_table(batch))
            _write_table(table, parts / _part_name(_first_index(table, index), table.column("clip_id").to_pylist()))
            written.append((time.perf_counter() - t0, len(batch), time.process_time() - c0, 0))
            bar.update(len(batch))
    return len(pending)


#: Ray Data knobs (module level so a benchmark can compare): hand blocks out as workers free up
#: (the part files are named by corpus position, so arrival order does not matter), and on one
#: machine let each worker write its own part file instead of shipping rows to the driver
_RAY_PRESERVE_ORDER = False
_RAY_WRITE_IN_ACTORS = True
_RAY_SHIP_SPEC = True  # hand workers the driver's checked spec (see _ship); False: the reference
#: True (default): Ray Data tasks on Ray's pooled worker processes, which outlive a run, each keeping the
#: worker it built for the next run of the same Ray session (see _ray_task): a run starts in ~0.4 s once
#: the processes have built their worker. False: a fresh Ray Data actor pool per run (RayBatch), every run
#: paying its processes' imports and model load (~3-4 s).
_RAY_REUSE_WORKERS = True
#: batches per Ray task in the task mode on one machine; None (default): one task per worker, its share of
#: the batches. Each task still streams one record per batch back as its part file lands (progress, timing).
#: Measured with 2 workers on 2 CPUs: between two tasks Ray left a worker idle for up to 0.18-0.46 s, so in
#: a 200-clip run 4 batches per task idled the workers 0.72-0.93 s in all, one batch per task 1.7-2.0 s, and
#: one task per worker 0.04-0.12 s (docs/findings_corpus.md, "Fourth pass")
_RAY_BATCHES_PER_TASK: int | None = None
_RAY_STREAM_RECORDS = True  # False: a task's records reach the driver together when it ends (for comparison)
_RAY_THROTTLE = False  # True: Ray Data's own reservation and backpressure (for comparison)
#: per Ray worker process: the CorpusWorkers built for recent runs (by the shipped spec's digest,
#: the options and the thread count), newest last, and the runs this process has reported to
_CACHE_SIZE = 2
_built: OrderedDict = OrderedDict()
_reported: OrderedDict = OrderedDict()


def _process_start() -> dict:
    """When this process was created and began this call (epoch seconds), and its CPU seconds so far."""
    try:
        import psutil  # a Ray dependency

        spawned = psutil.Process().create_time()
    except Exception:
        spawned = None
    return {"born": time.time(), "spawned": spawned, "pre_cpu_s": time.process_time()}


def _build(model, options, threads) -> tuple:
    """A :class:`~probe.corpus.worker.CorpusWorker` from what the driver shipped, and this process's
    start-up record: when it was created, when the build began, the CPU it had spent before (Python,
    Ray worker), and the build's own wall and CPU seconds (imports, unpickling the spec, the model)."""
    st = _process_start()
    w0 = time.perf_counter()
    worker = CorpusWorker(model.load() if isinstance(model, _Shipped) else model, options, threads=threads)
    st.update(init_s=time.perf_counter() - w0, init_cpu_s=time.process_time() - st["pre_cpu_s"], reused=False)
    return worker, st


def _run_batch(worker, batch, parts, start):
    """One batch through ``worker`` on a Ray worker: its part file written there (``parts``, a Ray on this
    machine) or its rows returned, plus the bookkeeping columns the driver reads (the batch's first
    corpus position, who ran it, the CPU seconds it took, and ``start``: a start-up record or None)."""
    import socket

    import pyarrow as pa

    c0, w0 = time.process_time(), time.perf_counter()
    first = min(batch.column("_pos").to_pylist())
    batch = batch.drop_columns(["_pos"])
    table = worker(batch)
    if parts is None:
        n = table.num_rows
    else:  # one record per batch: its clip count (a row per clip would only be counted)
        _write_table(table, Path(parts) / _part_name(first, batch.column("clip_id").to_pylist()))
        table, n = pa.table({"_clips": pa.array([batch.num_rows], pa.int64())}), 1
    table = table.append_column("_first", pa.array([first] * n, pa.int64()))
    table = table.append_column("_worker", pa.array([f"{socket.gethostname()}:{os.getpid()}"] * n, pa.string()))
    start = json.dumps({**start, "call_s": time.perf_counter() - w0}) if start else None
    table = table.append_column("_start", pa.array([start] * n, pa.string()))
    table = table.append_column("_done", pa.array([time.time()] * n, pa.float64()))  # its part is written
    return table.append_column("_cpu", pa.array([time.process_time() - c0] * n, pa.float64()))


def _ray_task(batch, *, model, options, threads=None, parts=None, run=""):
    """The body of a Ray Data task: one batch through this process's worker for the shipped spec,
    built on its first batch and kept (up to ``_CACHE_SIZE`` specs and options, the oldest dropped),
    so a later run in the same Ray session loads nothing; Ray reuses its worker processes for tasks.

    The cache key is the digest of what the driver shipped (see :func:`_content_digest`), so a
    changed model, layer list or option builds a new worker; nothing but the driver's own pickle is
    ever unpickled (the engine, worker count and batch size are not part of the key: they do not change
    the worker). The first batch a process runs for a run (``run``: a token per run) carries its
    start-up record: the build's, or ``reused=True`` with no build.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from probe.corpus.synthetic import make_event_corpus, planted_spec
    >>> import tempfile
    >>> clips = make_event_corpus(Path(tempfile.mkdtemp()), n_clips=2, seconds=0.5)
    >>> batch = clips_table(read_corpus(clips)).append_column("_pos", pa.array([0, 1]))
    >>> opts = RunOptions(layers=("units",), concepts=(), random_init=False).to_dict()
    >>> shipped = _ship(planted_spec(), planted_spec)
    >>> a = _ray_task(batch, model=shipped, options=opts, run="one")
    >>> b = _ray_task(batch, model=shipped, options=opts, run="two")
    >>> [json.loads(t.column("_start")[0].as_py())["reused"] for t in (a, b)]
    [False, True]
    >>> a.drop_columns(["_start", "_done", "_cpu"]).equals(b.drop_columns(["_start", "_done", "_cpu"]))
    True
    """
    what = {k: v for k, v in options.items() if k not in _EXECUTION}  # not the engine, workers or batch size
    key = f"{model.digest if isinstance(model, _Shipped) else repr(model)}|{json.dumps(what, sort_keys=True)}|{threads}"
    worker = _built.get(key)
    if worker is None:
        worker, start = _build(model, options, threads)
        _built[key] = worker
        while len(_built) > _CACHE_SIZE:
            _built.popitem(last=False)
    else:
        _built.move_to_end(key)
        start = {**_process_start(), "pre_cpu_s": None, "init_s": 0.0, "init_cpu_s": 0.0, "reused": True}
        if threads is not None:  # another cached worker may have set another count
            import torch

            torch.set_num_threads(int(threads))
    if run in _reported:
        start = None
    else:
        _reported[run] = True
        while len(_reported) > 64:
            _reported.popitem(last=False)
    return _run_batch(worker, batch, parts, start)


class RayBatch:
    """The body of a Ray Data actor (``_RAY_REUSE_WORKERS = False``): one
    :class:`~probe.corpus.worker.CorpusWorker`, built once from the driver's shipped spec (see
    :func:`_ship`); each batch as :func:`_ray_task` runs it. The actor lives for one run only."""

    def __init__(self, model, options, threads: int | None = None, parts: str | None = None):
        self.worker, self.start_up = _build(model, options, threads)
        self.parts = parts

    def __call__(self, batch):
        start, self.start_up = self.start_up, None
        return _run_batch(self.worker, batch, self.parts, start)


def _ship(spec, model, *, digest: bool = True) -> "_Shipped":
    """What each Ray worker builds its worker from, pickled once here: the driver's spec itself, as the
    driver's layer check left it (weights, plus the caches that check filled: the mel filterbank and
    the model's time-axis probe, both fixed by the spec), so no worker recomputes them or imports what
    they need (``librosa.filters`` pulls in ``scipy.signal``); the reference or factory given when the
    spec cannot be pickled (each worker then resolves it). ``digest``: also compute the content digest
    the task mode's worker cache is keyed by (a second pass over every tensor; the actor pool needs none)."""
    from ray import cloudpickle

    try:
        if not _RAY_SHIP_SPEC:
            raise TypeError("shipping the spec is switched off")
        return _Shipped(cloudpickle.dumps(spec), _content_digest(spec) if digest else None, spec.name, checked=True)
    except Exception:  # an unpicklable model: each worker resolves the reference itself
        ref = spec if hasattr(model, "model") else model
        try:
            data = cloudpickle.dumps(ref)
        except Exception as exc:
            raise CorpusError(f"the model cannot be sent to Ray workers ({type(exc).__name__}: {exc}); "
                              "pass a zoo name or spec .toml instead") from None
        return _Shipped(data, _content_digest(ref) if digest else None, getattr(ref, "name", None) or repr(ref),
                        checked=False)


class _Shipped:
    """A pickled spec (or reference) handed to the Ray workers as bytes, with the digest of its contents
    (the workers' cache key, see :func:`_content_digest`). Bytes, so that Ray Data, which describes every
    operator's arguments for its dashboard, neither deep-copies a model on the driver nor unpickles one
    per task on a worker."""

    __slots__ = ("data", "digest", "name", "checked")

    def __init__(self, data: bytes, digest: str | None, name: str, *, checked: bool):
        self.data, self.digest, self.name, self.checked = data, digest, name, checked

    def load(self):
        from ray import cloudpickle

        return cloudpickle.loads(self.data)

    def __repr__(self) -> str:
        what = "the driver's ModelSpec" if self.checked else "the reference"
        return f"<{what} {self.name!r}, {len(self.data)} bytes>"


def _content_digest(obj) -> str:
    """A digest of what ``obj`` pickles to that is equal for equal contents: a fresh load of the same model
    gives the same digest, so a Ray worker that built it in an earlier run reuses it.

    Two pickles of equal models differ in their bytes: torch pickles each tensor's storage with a key of
    its own, and a module may share a name string that another load repeats. So every tensor stands in
    this pickle as its type, dtype, shape and a sha256 of its values (a persistent id; its ``requires_grad``
    too), and :func:`_pickle_digest` reads the stream blind to string identity. Anything else that varies
    between equal objects only makes their digests differ: a rebuild, never a wrong reuse.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> _content_digest(a) == _content_digest(b)
    True
    >>> with torch.no_grad():
    ...     _ = b.weight.add_(1e-6)
    >>> _content_digest(a) == _content_digest(b)
    False
    """
    import hashlib
    import io
    import sys

    from ray import cloudpickle

    torch = sys.modules.get("torch")

    class _Pickler(cloudpickle.CloudPickler):
        def persistent_id(self, o):
            if torch is None or not isinstance(o, torch.Tensor) or o.layout != torch.strided:
                return None
            t = o.detach().cpu().contiguous().reshape(-1)
            values = hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
            return ("tensor", type(o).__qualname__, str(o.dtype), tuple(o.shape), bool(o.requires_grad), values)

    buf = io.BytesIO()
    _Pickler(buf).dump(obj)
    return _pickle_digest(buf.getvalue())


_ATOMS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING",
          "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}


def _pickle_digest(data: bytes) -> str:
    """sha256 of a pickle's contents, blind to which equal strings were one object.

    Two pickles of equal specs can differ in their bytes where one model shares a name string that the
    other repeats (a memo reference against a second copy), so the raw bytes would make every fresh load of
    the same model look new. Here every string or bytes value counts by its value, whether written or
    fetched from the memo; every other opcode and argument counts as written, in order (frame sizes
    aside). Equal digests therefore mean equal pickled contents; unequal ones only cost a rebuild.

    Examples
    --------
    >>> import pickle
    >>> a, b = "weight_" + str(0), "weight_" + str(0)  # equal strings, two objects
    >>> one, two, other = pickle.dumps([a, a]), pickle.dumps([a, b]), pickle.dumps([a, "x"])
    >>> one == two, _pickle_digest(one) == _pickle_digest(two), _pickle_digest(one) == _pickle_digest(other)
    (False, True, False)
    """
    import hashlib
    import pickletools

    h = hashlib.sha256()
    memo: dict = {}
    objects = 0  # ordinal of each memoised non-string object
    last = None  # the value the previous opcode pushed, when a string or bytes

    def atom(v) -> None:
        b = v.encode("utf-8", "surrogatepass") if isinstance(v, str) else bytes(v)
        h.update(b"s" if isinstance(v, str) else b"b")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "FRAME":
            continue
        if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            if last is None:
                memo[len(memo) if name == "MEMOIZE" else arg] = objects
                objects += 1
            else:
                memo[len(memo) if name == "MEMOIZE" else arg] = last
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            ref = memo[arg]
            if isinstance(ref, int):
                h.update(b"o" + ref.to_bytes(8, "little"))
            else:
                atom(ref)
            last = None
            continue
        if name in _ATOMS:
            atom(arg)
            last = arg
            continue
        last = None
        h.update(name.encode())
        if isinstance(arg, (bytes, bytearray)):
            h.update(len(arg).to_bytes(8, "little"))
            h.update(arg)
        elif arg is not None:
            h.update(repr(arg).encode())
    return h.hexdigest()


def _ray_is_local(ray) -> bool:
    """True when the Ray this process is connected to is one node: this machine."""
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return len(nodes) == 1 and nodes[0].get("NodeManagerAddress") == ray.util.get_node_ip_address()
    except Exception:  # an unknown Ray: ship rows to the driver, which always works
        return False


def _start_ray(*, workers: int, ray_address: str | None) -> None:
    """Connect to Ray: the running one, the cluster at ``ray_address``, or a local Ray started here with
    ``workers`` CPUs. (A warm-up task importing torch in each pooled worker process right after
    ``ray.init`` was measured and dropped: the first batch came seconds sooner, but the imports took as
    much CPU from the driver's model load on a busy two-core machine, and whole runs were no faster.)"""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CorpusError("engine 'ray' needs Ray Data: pip install 'probe-audio[ray]' (ray[data])") from None
    if ray.is_initialized():
        return
    kwargs = {"address": ray_address} if ray_address else {"num_cpus": max(int(workers), 1)}
    # Ray's own start-up notices at INFO stay quiet (the run has its own progress bar); its warnings show
    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             **kwargs)


class _QuietRayData:
    """While a run executes: Ray Data's INFO lines (each dataset's "execution finished") stay quiet and its
    notice that its own progress bars are off is dropped (the run shows its own); its other warnings and
    errors still show. The loggers are restored afterwards.

    Examples
    --------
    >>> import logging
    >>> log = logging.getLogger("ray.data")
    >>> before = log.level
    >>> with _QuietRayData():
    ...     log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.WARNING)
    (False, True)
    >>> log.level == before
    True
    """

    class _DropProgressNotice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Progress bars disabled" not in record.getMessage()

    def __enter__(self):
        self.log = logging.getLogger("ray.data")
        self.progress = logging.getLogger("ray.data._internal.progress")
        self.level, self.drop = self.log.level, self._DropProgressNotice()
        if self.log.getEffectiveLevel() < logging.WARNING:
            self.log.setLevel(logging.WARNING)
        self.progress.addFilter(self.drop)
        return self

    def __exit__(self, *exc) -> bool:
        self.log.setLevel(self.level)
        self.progress.removeFilter(self.drop)
        return False


def _ray_blocks(pending, index, *, batch_size: int, workers: int, per_task: int | None) -> list:
    """The Ray engine's input: pyarrow tables of whole batches (the in-process engine's batches, so the
    same part files), one Ray Data block and task each. ``per_task`` batches at most per block (``None``:
    one block per worker); the number of blocks is a multiple of ``workers`` where there are enough
    batches, and batch ``i`` goes to block ``i mod n``, so the workers get even shares of work from all
    over the corpus (a corpus sorted by length does not load one worker with the long clips). Only the
    corpus's last batch can be short, and it ends its block, so Ray Data's batching within a block cuts
    exactly these batches. Each batch lands as its own part file when it is done, so a crash loses only
    the batches in flight.

    Examples
    --------
    >>> from probe.corpus.inputs import Clip
    >>> clips = [Clip(clip_id=f"c{i}", path=f"c{i}.wav") for i in range(25 * 8)]
    >>> index = {c.clip_id: i for i, c in enumerate(clips)}
    >>> [t.num_rows // 8 for t in _ray_blocks(clips, index, batch_size=8, workers=2, per_task=4)]
    [4, 3, 3, 3, 3, 3, 3, 3]
    >>> blocks = _ray_blocks(clips, index, batch_size=8, workers=2, per_task=None)
    >>> [t.num_rows // 8 for t in blocks], blocks[1].column("_pos").to_pylist()[:10]
    ([13, 12], [8, 9, 10, 11, 12, 13, 14, 15, 24, 25])
    >>> [t.num_rows for t in _ray_blocks(clips[:20], index, batch_size=8, workers=2, per_task=1)]
    [8, 8, 4]
    """
    import pyarrow as pa

    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    workers = max(1, workers)
    if per_task is None:
        n = max(1, min(len(batches), workers))
    else:
        n = max(1, min(len(batches), workers * -(-len(batches) // (workers * max(1, per_task)))))
    out = []
    for j in range(n):
        clips = [c for batch in batches[j::n] for c in batch]
        out.append(clips_table(clips).append_column("_pos", pa.array([index[c.clip_id] for c in clips], pa.int64())))
    return out


def _run_ray(model, pending, parts, options, *, workers, ray_address, progress, index, written, starts, t0) -> int:
    import pyarrow.compute as pc
    import ray
    import ray.data

    _start_ray(workers=workers, ray_address=ray_address)
    bs = int(options.batch_size)
    in_actors = _RAY_WRITE_IN_ACTORS and _ray_is_local(ray)
    per_task = _RAY_BATCHES_PER_TASK if _RAY_REUSE_WORKERS and in_actors else 1
    ds = ray.data.from_arrow(_ray_blocks(pending, index, batch_size=bs, workers=int(workers), per_task=per_task))
    # the dataset's own copy of the Ray Data context (the process's current one is left as it was)
    ctx = ds.context
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = _RAY_PRESERVE_ORDER
    # One map operator feeding the driver, whose outputs are a few bytes per batch (the part files are
    # written by the workers). Two of Ray Data's throttles only idle workers here (measured with 2 workers
    # on 2 CPUs): the per-operator resource reservation held the second worker's
    # first task back ~1 s, and the downstream-capacity backpressure left one of the two workers idle for
    # most of the run. The worker count itself (the concurrency cap) still holds.
    if not _RAY_THROTTLE:
        ctx.op_resource_reservation_enabled = False
        ctx.downstream_capacity_backpressure_ratio = None
    if in_actors and _RAY_STREAM_RECORDS:
        # each batch's one-row record is its own output block, streamed to the driver as its part file
        # lands (Ray Data would otherwise gather a task's outputs into one block, sent when the task ends)
        ctx.target_max_block_size = 1
    blocks = ds.num_blocks()
    # one CPU and one torch thread per worker: n workers use n cores, like n in-process runs would
    kwargs = {"model": model, "options": options.to_dict(), "threads": 1,
              "parts": str(parts.resolve()) if in_actors else None}
    # no more workers than batches (a short resume): each would start, load and idle
    size = min(int(workers), blocks)
    if _RAY_REUSE_WORKERS:
        ds = ds.map_batches(_ray_task, fn_kwargs={**kwargs, "run": uuid.uuid4().hex}, batch_size=bs,
                            batch_format="pyarrow", compute=ray.data.TaskPoolStrategy(size=size), num_cpus=1,
                            zero_copy_batch=True)
    else:
        ds = ds.map_batches(RayBatch, fn_constructor_kwargs=kwargs, batch_size=bs, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=1, zero_copy_batch=True)
    n, counted = 0, set()
    epoch0 = time.time() - (time.perf_counter() - t0)  # t0 on the wall clock the workers report in
    with _bar(progress, len(pending)) as bar, _QuietRayData():
        # a record per batch as its part file lands (written by its worker, or here from its rows), so
        # a crash loses only the batches in flight
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            if table.num_rows == 0:
                continue
            firsts = table.column("_first").to_pylist()
            cpu = dict(zip(firsts, table.column("_cpu").to_pylist()))  # one value per batch
            who = dict(zip(firsts, table.column("_worker").to_pylist()))
            start = dict(zip(firsts, table.column("_start").to_pylist()))
            done = dict(zip(firsts, table.column("_done").to_pylist()))
            if in_actors:  # one record per batch, its clip count
                count = dict(zip(firsts, table.column("_clips").to_pylist()))
            else:  # the batch's rows (a row per clip, layer and variant)
                ids = table.column("clip_id").to_pylist()
                count = {f: len({c for c, g in zip(ids, firsts) if g == f}) for f in cpu}
            now = time.perf_counter() - t0
            for first in cpu:  # one batch at a time, however Ray grouped them into blocks
                if first in counted:  # should a retried task send a batch again (Ray did not, in the tests): once
                    continue
                counted.add(first)
                if not in_actors:
                    one = table.filter(pc.equal(table.column("_first"), first))
                    _write_table(one.drop_columns(["_first", "_worker", "_start", "_done", "_cpu"]),
                                 parts / _part_name(first, one.column("clip_id").to_pylist()))
                k = count[first]
                # when its part file landed: written by its worker (the worker's clock: exact on one
                # machine) or just now, here
                written.append((done[first] - epoch0 if in_actors else now, k, cpu[first], who[first]))
                if start[first]:
                    st = json.loads(start[first])
                    # seconds after the engine started (the worker's wall clock: exact on one machine)
                    starts.append({"spawned_s": None if st["spawned"] is None else st["spawned"] - epoch0,
                                   "born_s": st["born"] - epoch0, "pre_cpu_s": st["pre_cpu_s"],
                                   "init_s": st["init_s"], "init_cpu_s": st["init_cpu_s"], "first_call_s": st["call_s"],
                                   "first_call_cpu_s": cpu[first], "first_part_s": written[-1][0],
                                   "reused": st["reused"]})
                n += k
                bar.update(k)
    written.sort(key=lambda w: w[0])
    return n


# ---- reading a run ----------------------------------------------------------------------
@dataclass
class Frames:
    """Sampled frames of one layer and variant across the corpus.

    Attributes
    ----------
    acts : np.ndarray [shape=(n_frames, n_units)]
    clip : np.ndarray [shape=(n_frames,)]
        Index into :attr:`CorpusRun.clips`.
    time : np.ndarray [shape=(n_frames,)]
        Step centre, seconds.
    concepts : dict of str → np.ndarray [shape=(n_frames,)]
    """

    acts: np.ndarray
    clip: np.ndarray
    time: np.ndarray
    concepts: dict

    def __len__(self) -> int:
        return len(self.clip)


class CorpusRun:
    """A finished (or partial) corpus run opened for analysis; see :func:`open_run`."""

    def __init__(self, path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        man = self.path / MANIFEST
        if not man.is_file():
            raise CorpusError(f"{self.path} is not a corpus run (no {MANIFEST}); make one with `probe corpus run`")
        try:
            self.manifest = json.loads(man.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CorpusError(f"{man} is not readable JSON: {exc}") from None
        if self.manifest.get("kind") != _KIND:
            raise CorpusError(f"{man} is not a corpus run manifest (kind {self.manifest.get('kind')!r})")
        if not (self.path / "clips.parquet").is_file():
            raise CorpusError(f"{self.path} lacks clips.parquet; the run is incomplete")
        self.clips = [Clip.from_row(r) for r in pq.read_table(self.path / "clips.parquet").to_pylist()]
        self.clip_index = {c.clip_id: i for i, c in enumerate(self.clips)}
        self.layers = list(self.manifest.get("layers", []))
        self.concepts = list(self.manifest.get("concepts", []))
        self._cache: dict = {}

    def __repr__(self) -> str:
        return f"CorpusRun({str(self.path)!r}, clips={len(self.clips)}, layers={self.layers})"

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["model"]["spec"]["input"]["sample_rate"])

    @property
    def variants(self) -> list:
        return ["trained", "random"] if self.manifest.get("options", {}).get("random_init") else ["trained"]

    def check_layer(self, layer: str) -> str:
        if layer not in self.layers:
            raise CorpusError(f"layer {layer!r} is not in this run; layers: {', '.join(self.layers)}")
        return layer

    def rows(self, layer: str, variant: str = "trained", columns=None):
        """Worker rows of one layer and variant, ordered by clip (a pyarrow Table)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        self.check_layer(layer)
        if variant not in ("trained", "random"):
            raise CorpusError(f"variant must be 'trained' or 'random', given {variant!r}")
        files = sorted(str(f) for f in (self.path / "parts").glob("*.parquet"))
        if not files:
            raise CorpusError(f"{self.path} holds no finished batches yet")
        ds = pads.dataset(files, format="parquet")
        flt = (pc.field("layer") == layer) & (pc.field("variant") == variant) & (pc.field("status") == "ok")
        cols = None if columns is None else sorted(set(columns) | {"clip_id"})
        t = ds.to_table(columns=cols, filter=flt)
        if t.num_rows == 0:
            raise CorpusError(f"no rows for layer {layer!r}, variant {variant!r} (random_init off?)")
        order = np.argsort([self.clip_index.get(c, 1 << 30) for c in t.column("clip_id").to_pylist()], kind="stable")
        return t.take(order)

    def frames(self, layer: str, variant: str = "trained") -> Frames:
        """The sampled frames of a layer (with concept tracks and manifest events), across all clips."""
        from .concepts import event_tracks

        key = ("frames", layer, variant)
        if key in self._cache:
            return self._cache[key]
        t = self.rows(layer, variant, ["acts", "n_units", "step_time"] + [f"c:{c}" for c in self.concepts])
        n_units = t.column("n_units").to_numpy()
        acts = [np.asarray(a, dtype=np.float32).reshape(-1, int(u)) for a, u in
                zip(t.column("acts").to_numpy(zero_copy_only=False), n_units)]
        times = [np.asarray(x, dtype=np.float64) for x in t.column("step_time").to_numpy(zero_copy_only=False)]
        clip = np.concatenate([np.full(len(x), self.clip_index[c]) for x, c in zip(times, t.column("clip_id").to_pylist())])
        concepts = {c: np.concatenate([np.asarray(v, dtype=np.float64) for v in t.column(f"c:{c}").to_numpy(zero_copy_only=False)])
                    for c in self.concepts}
        labels = sorted({e["label"] for c in self.clips for e in c.events})
        if labels:
            ev = [event_tracks(self.clips[self.clip_index[cid]].events, x, labels=labels)
                  for x, cid in zip(times, t.column("clip_id").to_pylist())]
            for name in ev[0]:
                concepts[name] = np.concatenate([e[name] for e in ev]).astype(np.float64)
        fr = Frames(acts=np.concatenate(acts), clip=clip, time=np.concatenate(times), concepts=concepts)
        self._cache[key] = fr
        return fr

    def pooled(self, layer: str, variant: str = "trained", how: str = "mean"):
        """``(X [n_clips, n_units], clip_indices)``: each clip's features pooled over time."""
        if how not in ("mean", "max"):
            raise CorpusError(f"pooling must be 'mean' or 'max', given {how!r}")
        t = self.rows(layer, variant, [f"pooled_{how}"])
        X = np.stack([np.asarray(v, dtype=np.float32) for v in t.column(f"pooled_{how}").to_numpy(zero_copy_only=False)])
        idx = np.array([self.clip_index[c] for c in t.column("clip_id").to_pylist()])
        return X, idx

    def unit_stats(self):
        """The per-unit statistics table (pyarrow) written when the run finished."""
        import pyarrow.parquet as pq

        p = self.path / "unit_stats.parquet"
        if not p.is_file():
            raise CorpusError(f"{self.path} has no unit_stats.parquet; finish the run (run it again to resume)")
        return pq.read_table(p)


def open_run(path) -> CorpusRun:
    """Open a run folder written by :func:`run_corpus`."""
    return CorpusRun(path)


# ---- statistics over the finished parts (streamed: memory bounded by one part) ------------------
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic): a well-spread hash."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


class FrameSample:
    """A fixed-size sample of frames that does not depend on the order the frames arrive in.

    Every frame gets a key hashed from its clip id and step index; the sample is the
    ``capacity`` frames with the smallest keys (a bottom-k sample: uniform over frames, the
    same whatever the batch size, engine or file order). The buffer is allocated once, at
    ``capacity + chunk`` frames, so memory does not grow with the corpus; while fewer than
    ``capacity`` frames have been seen, the sample is all of them.

    Examples
    --------
    >>> s = FrameSample(2, capacity=3, chunk=2)
    >>> for step in range(5):
    ...     s.add("clip", [step], np.full((1, 2), step, dtype=np.float32))
    >>> s.frames().shape, s.seen
    ((3, 2), 5)
    >>> t = FrameSample(2, capacity=3, chunk=4)  # another arrival order and chunking: the same frames
    >>> t.add("clip", [4, 3, 2, 1, 0], np.arange(4, -1, -1, dtype=np.float32)[:, None].repeat(2, 1))
    >>> sorted(s.frames()[:, 0]) == sorted(t.frames()[:, 0])
    True
    """

    def __init__(self, n_units: int, capacity: int = 20000, chunk: int = 4096):
        if capacity < 1 or chunk < 1:
            raise ValueError("capacity and chunk must be positive")
        self.capacity, self.chunk = int(capacity), int(chunk)
        self._keys = np.empty(self.capacity + self.chunk, dtype=np.uint64)
        self._vals = np.empty((self.capacity + self.chunk, int(n_units)), dtype=np.float32)
        self._n = 0
        self.seen = 0

    @staticmethod
    def keys(clip_id: str, steps) -> np.ndarray:
        """The sampling keys of ``steps`` of clip ``clip_id`` (uint64)."""
        import hashlib

        h = np.uint64(int.from_bytes(hashlib.blake2b(str(clip_id).encode(), digest_size=8).digest(), "little"))
        return _mix64(h ^ _mix64(np.asarray(steps, dtype=np.int64).astype(np.uint64)))

    def add(self, clip_id: str, steps, acts: np.ndarray) -> None:
        """Offer the frames ``acts`` (``[n, n_units]``) at step indices ``steps`` of one clip."""
        keys = self.keys(clip_id, steps)
        if len(keys) != len(acts):
            raise ValueError(f"{len(keys)} step indices for {len(acts)} frames")
        self.seen += len(keys)
        for s in range(0, len(keys), self.chunk):
            k = keys[s:s + self.chunk]
            if self._n + len(k) > len(self._keys):
                self._compact()
            self._keys[self._n:self._n + len(k)] = k
            self._vals[self._n:self._n + len(k)] = acts[s:s + self.chunk]
            self._n += len(k)

    def _compact(self) -> None:
        if self._n <= self.capacity:
            return
        keep = np.argpartition(self._keys[:self._n], self.capacity - 1)[:self.capacity]
        keep.sort()
        self._keys[:self.capacity] = self._keys[keep]
        self._vals[:self.capacity] = self._vals[keep]
        self._n = self.capacity

    def frames(self) -> np.ndarray:
        """The sampled frames, ``[min(seen, capacity), n_units]`` (a view into the buffer)."""
        self._compact()
        return self._vals[:self._n]


class TopK:
    """Per unit, the ``k`` clips with the highest maximum activation (with its time): fixed size.

    Ranked by (value, clip id, time), highest first, so ties are broken the same way whatever
    the order the clips arrive in.

    Examples
    --------
    >>> t = TopK(2, k=2)
    >>> t.add("a", np.array([1.0, 5.0]), np.array([0.1, 0.2]))
    >>> t.add("b", np.array([3.0, 0.0]), np.array([0.3, 0.4]))
    >>> t.add("c", np.array([2.0, 0.0]), np.array([0.5, 0.6]))
    >>> [[c for _, c, _ in b] for b in t.best]
    [['b', 'c'], ['a', 'c']]
    """

    def __init__(self, n_units: int, k: int):
        self.k = int(k)
        self.best: list = [[] for _ in range(int(n_units))]  # per unit: (value, clip, time), best first
        self._floor = np.full(int(n_units), -np.inf)  # the k-th best value once k are held

    def add(self, clip_id: str, values, times) -> None:
        v = np.asarray(values, dtype=np.float32)
        tm = np.asarray(times, dtype=np.float32)
        for u in np.nonzero(v >= self._floor)[0].tolist():  # only units this clip may enter
            b = self.best[u]
            b.append((float(v[u]), clip_id, float(tm[u])))
            b.sort(reverse=True)
            del b[self.k:]
            if len(b) == self.k:
                self._floor[u] = b[-1][0]


_BAD_REASONS = 100  # bad clips whose reason the manifest lists (the first by id)


def finalize_run(out, *, top_k: int = 5, quantile_frames: int = 20000) -> dict:
    """Merge the parts into ``unit_stats.parquet`` and count clips; returns the manifest summary.

    Parts are streamed one at a time; the quantiles come from a fixed-size sample of at most
    ``quantile_frames`` frames per layer and variant (:class:`FrameSample`: every frame while the
    corpus has fewer), so memory does not grow with the corpus."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    acc: dict = {}
    bad: dict = {}  # the reasons of the first (by id) bad clips only; counts below
    n_ok = n_bad = 0
    layers_info: dict = {}
    cols = ["clip_id", "status", "reason", "layer", "variant", "n_units", "n_steps", "seconds_per_step",
            "time_offset", "step_index", "acts", "unit_sum", "unit_sumsq", "unit_max", "unit_argmax_time"]
    for f in sorted((out / "parts").glob("*.parquet")):
        t = pq.read_table(f, columns=cols)
        # columns as numpy once (list columns as values + offsets); rows are then folded in one by
        # one, in file order, so the sums and the quantile sample do not depend on the batch size
        ids, status, reason = (t.column(c).to_pylist() for c in ("clip_id", "status", "reason"))
        layer, variant = t.column("layer").to_pylist(), t.column("variant").to_pylist()
        n_units, n_steps = (t.column(c).to_numpy(zero_copy_only=False) for c in ("n_units", "n_steps"))
        sps, offset = t.column("seconds_per_step").to_pylist(), t.column("time_offset").to_pylist()
        lists = {c: _list_values(t.column(c)) for c in ("step_index", "acts", "unit_sum", "unit_sumsq", "unit_max",
                                                        "unit_argmax_time")}
        # a clip's rows all live in one part (one batch), so clips are counted part by part
        n_ok += len({c for c, st in zip(ids, status) if st == "ok"})
        n_bad += sum(st != "ok" for st in status)
        for i in range(t.num_rows):
            if status[i] != "ok":
                bad[ids[i]] = reason[i]
                if len(bad) > 2 * _BAD_REASONS:
                    bad = dict(sorted(bad.items())[:_BAD_REASONS])
                continue
            key = (layer[i], variant[i])
            u = int(n_units[i])
            a = acc.get(key)
            if a is None:
                a = acc[key] = {"n": 0, "sum": np.zeros(u), "sumsq": np.zeros(u), "top": TopK(u, top_k),
                                "sample": FrameSample(u, quantile_frames)}
                layers_info.setdefault(layer[i], {"n_units": u, "seconds_per_step": sps[i], "time_offset": offset[i]})
            row = {c: v[o[i]:o[i + 1]] for c, (v, o) in lists.items()}
            a["n"] += int(n_steps[i])
            a["sum"] += row["unit_sum"]
            a["sumsq"] += row["unit_sumsq"]
            a["top"].add(ids[i], row["unit_max"], row["unit_argmax_time"])
            a["sample"].add(ids[i], row["step_index"], row["acts"].reshape(-1, u))
    rows = []
    qs = (0.01, 0.1, 0.5, 0.9, 0.99)
    for (layer, variant), a in sorted(acc.items()):
        mean = a["sum"] / a["n"]
        var = np.maximum(a["sumsq"] / a["n"] - mean ** 2, 0.0)
        frames = a["sample"].frames()
        # a few units at a time: np.quantile copies its input (a block of the fixed-size sample)
        step = 32
        quant = np.concatenate([np.quantile(frames[:, j:j + step], qs, axis=0)
                                for j in range(0, frames.shape[1], step)], axis=1)
        for u in range(len(mean)):
            best = a["top"].best[u]
            rows.append({"layer": layer, "variant": variant, "unit": u, "count": a["n"], "mean": float(mean[u]),
                         "var": float(var[u]), **{f"q{int(q * 100):02d}": float(quant[i, u]) for i, q in enumerate(qs)},
                         "top_clips": [b[1] for b in best], "top_times": [b[2] for b in best],
                         "top_values": [b[0] for b in best]})
    if rows:
        _write_table(pa.Table.from_pylist(rows), out / "unit_stats.parquet")
    return {"clips": {"ok": n_ok, "bad": n_bad, "bad_reasons": dict(sorted(bad.items())[:_BAD_REASONS])},
            "layer_info": layers_info}


def _list_values(col):
    """A list column → ``(values, offsets)`` numpy arrays (null rows have zero length)."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    return values, offsets
