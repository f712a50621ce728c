"""The Ray Data engine runs the same per-batch function as the in-process engine: identical tables."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from probe.corpus import RunOptions, run_corpus
from probe.corpus.synthetic import make_event_corpus, planted_spec

pytestmark = pytest.mark.slow  # a corpus run (and Ray start-up) per module


def _require_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        pytest.fail("Ray Data is not installed: run .ci/setup (pip install -c constraints-cpu.txt 'ray[data]')")


def _sorted_table(path):
    import pyarrow.dataset as pads

    t = pads.dataset(str(path / "parts"), format="parquet").to_table()
    return t.sort_by([("clip_id", "ascending"), ("layer", "ascending"), ("variant", "ascending")])


def _same(a, b) -> bool:
    """Equal column by column, NaN equal to NaN (pyarrow's equals says NaN != NaN)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        for u, v in zip(x, y):
            if isinstance(u, list) and u and isinstance(u[0], str):
                if u != v:
                    return False
            elif isinstance(u, list):
                if not np.array_equal(np.asarray(u, dtype=float), np.asarray(v, dtype=float), equal_nan=True):
                    return False
            elif u != v and not (isinstance(u, float) and np.isnan(u) and np.isnan(v)):
                return False
    return True


@pytest.mark.parametrize(("writer", "pool"), [("workers", "tasks"), ("driver", "tasks"), ("workers", "actors")])
def test_ray_engine_writes_identical_tables(tmp_path, monkeypatch, writer, pool):
    """On one machine the Ray workers write their own part files; joined to a cluster (``--ray-address``) the
    driver writes them (``writer="driver"`` forces that path here). Ray Data tasks on Ray's pooled processes
    (the default) or a fresh actor pool per run (``pool="actors"``). Either way: the in-process files."""
    _require_ray()
    import ray

    import probe.corpus.run as run_mod

    if writer == "driver":
        monkeypatch.setattr(run_mod, "_ray_is_local", lambda ray: False)
    monkeypatch.setattr(run_mod, "_RAY_REUSE_WORKERS", pool == "tasks")

    corpus = make_event_corpus(tmp_path / "clips", n_clips=5, seconds=1.0, manifest=True)
    with open(corpus, "a") as fh:
        fh.write('{"path": "missing.wav"}\n')
    opts = RunOptions(layers=("units", "code"), batch_size=2, frames_per_clip=16)
    spec = planted_spec()  # one object: its model class is made per call, and a new class is a new model
    a = run_corpus(spec, corpus, tmp_path / "inproc", options=opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ropts = dataclasses.replace(opts, engine="ray", workers=2)
    try:
        b = run_corpus(spec, corpus, tmp_path / "ray", options=ropts)
        # resumable: lose one batch (a crash mid-run), run again: only its clips run, the tables stay the same
        lost = sorted((tmp_path / "ray" / "parts").glob("part-00000002-*.parquet"))
        assert len(lost) == 1
        lost[0].unlink()
        again = run_corpus(spec, corpus, tmp_path / "ray", options=ropts)
    finally:
        ray.shutdown()
    assert again["clips_this_pass"] == 2 and again["resumed"] == 4 and again["clips"] == b["clips"]
    # each worker process reports its start-up with its first batch of a run; a resume with one batch uses one
    starts = b["timing"]["start_ups"]
    assert len(starts) == 2 and len(again["timing"]["start_ups"]) == 1
    for st in starts:
        assert 0 <= st["born_s"] <= st["first_part_s"] and st["init_cpu_s"] >= 0 and st["first_call_cpu_s"] > 0
    if pool == "actors":  # a fresh actor per run builds its worker again
        assert not any(st["reused"] for st in starts + again["timing"]["start_ups"])
    else:  # the resume ran on a process of the first pass (Ray keeps 2 for its 2 CPUs), which kept its worker
        assert {st["reused"] for st in again["timing"]["start_ups"]} == {True}
    assert a["clips"] == b["clips"] and b["clips"]["bad"] == 1 and b["engine"] == "ray"
    ta, tb = _sorted_table(tmp_path / "inproc"), _sorted_table(tmp_path / "ray")
    assert ta.num_rows == 5 * 2 * 2 + 1
    assert _same(ta, tb)
    # the same part files (one per batch, named by corpus position), so a resumed run sees the same batches
    names = [sorted(f.name.rsplit("-", 1)[0] for f in (tmp_path / x / "parts").glob("*.parquet")) for x in ("inproc", "ray")]
    assert names[0] == names[1] and len(names[0]) == 3
    import pyarrow.parquet as pq

    assert _same(pq.read_table(tmp_path / "inproc" / "unit_stats.parquet"),
                 pq.read_table(tmp_path / "ray" / "unit_stats.parquet"))


@pytest.mark.parametrize(("per_task", "shares"), [(None, [7]), (3, [3, 2, 2])])
def test_ray_tasks_of_several_batches_land_one_part_per_batch(tmp_path, monkeypatch, per_task, shares):
    """On one machine a Ray task takes a worker's whole share of the batches (``_RAY_BATCHES_PER_TASK=None``,
    the default) or up to that many. Each batch still lands as its own part file (the in-process files, so a
    resume sees the same batches), its record reaches the driver as the file lands, not when the task ends
    (progress bar, a crash loses only the batch in flight), and the run's timing counts every batch once, in
    the order the workers finished them."""
    _require_ray()
    import ray

    import probe.corpus.run as run_mod

    monkeypatch.setattr(run_mod, "_RAY_REUSE_WORKERS", True)
    monkeypatch.setattr(run_mod, "_RAY_BATCHES_PER_TASK", per_task)
    blocks = []
    real = run_mod._ray_blocks
    monkeypatch.setattr(run_mod, "_ray_blocks", lambda *a, **k: blocks.append([t.num_rows for t in real(*a, **k)])
                        or real(*a, **k))
    seen = []  # part files on disk each time the driver's progress bar moves

    class Bar:
        def __init__(self, out):
            self.out = out

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            seen.append(len(list((self.out / "parts").glob("*.parquet"))))

    corpus = make_event_corpus(tmp_path / "clips", n_clips=7, seconds=3.0)
    # the harmonic-ratio concept (HPSS) makes each one-clip batch take a good fraction of a second
    opts = RunOptions(layers=("units",), concepts=("loudness", "harmonic"), random_init=False, batch_size=1,
                      frames_per_clip=8)
    spec = planted_spec()
    a = run_corpus(spec, corpus, tmp_path / "inproc", options=opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        monkeypatch.setattr(run_mod, "_bar", lambda progress, total: Bar(tmp_path / "ray"))
        b = run_corpus(spec, corpus, tmp_path / "ray", options=dataclasses.replace(opts, engine="ray", workers=1))
    finally:
        ray.shutdown()
    assert blocks == [shares]  # 7 batches of one clip: the share of one worker, or at most 3 per task
    assert len(seen) == 7 and seen[0] < 7, seen  # records streamed: the first came before the last part was written
    names = [sorted(f.name.rsplit("-", 1)[0] for f in (tmp_path / x / "parts").glob("*.parquet")) for x in ("inproc", "ray")]
    assert names[0] == names[1] and len(names[0]) == 7
    assert _same(_sorted_table(tmp_path / "inproc"), _sorted_table(tmp_path / "ray"))
    assert a["clips"] == b["clips"] and b["clips_this_pass"] == 7
    tm = b["timing"]
    assert tm["workers_seen"] == 1 and len(tm["start_ups"]) == 1
    # one worker, one batch at a time: the first part lands before the run is over, and 6 batches come after it
    assert 0 < tm["first_part_s"] == tm["warm_s"] < b["seconds"]
    assert tm["steady_cpu_s_per_clip"] > 0 and tm["steady_clips_per_second"] > 0
    # the engine set its Ray Data options on its own dataset, not on the process's current context
    import ray.data

    assert ray.data.DataContext.get_current().target_max_block_size > 1


def test_ray_worker_dying_mid_task_is_retried_and_each_batch_counted_once(tmp_path, monkeypatch):
    """A worker process dies in the middle of its task (one task holds its whole share of the batches): Ray runs
    the task again on a new process, its batches' part files are written again (the same files) and the run
    counts every batch once: the in-process tables, 7 clips."""
    _require_ray()
    import os

    import ray
    import torch

    import probe.corpus.run as run_mod

    monkeypatch.setattr(run_mod, "_RAY_REUSE_WORKERS", True)
    monkeypatch.setattr(run_mod, "_RAY_BATCHES_PER_TASK", None)
    spec = planted_spec()
    marker, driver = str(tmp_path / "died"), os.getpid()

    class DiesOnceInAWorker(torch.nn.Module):  # a local class: Ray ships it by value
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            if os.getpid() != driver:
                self.calls += 1
                if self.calls == 4 and not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)  # the process dies, as on an out-of-memory kill
            return self.inner(x)

    dying = dataclasses.replace(spec, model=DiesOnceInAWorker(spec.model))
    corpus = make_event_corpus(tmp_path / "clips", n_clips=7, seconds=0.5)
    opts = RunOptions(layers=("inner.units",), concepts=("loudness",), random_init=False, batch_size=1,
                      frames_per_clip=8)
    a = run_corpus(dying, corpus, tmp_path / "inproc", options=opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        b = run_corpus(dying, corpus, tmp_path / "ray", options=dataclasses.replace(opts, engine="ray", workers=1))
    finally:
        ray.shutdown()
    assert os.path.exists(marker)  # it did die once
    assert b["clips_this_pass"] == 7 and a["clips"] == b["clips"]
    assert len(b["timing"]["start_ups"]) >= 1
    names = [sorted(f.name.rsplit("-", 1)[0] for f in (tmp_path / x / "parts").glob("*.parquet")) for x in ("inproc", "ray")]
    assert names[0] == names[1] and len(names[0]) == 7
    assert _same(_sorted_table(tmp_path / "inproc"), _sorted_table(tmp_path / "ray"))


def test_ray_run_interrupted_stops_its_workers_and_resumes_to_the_same_tables(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a Ray run (one task holds the worker's whole share): the call ends, the worker
    writes no more part files afterwards (Ray Data cancels the task), and running again finishes only the
    rest, to the in-process tables."""
    _require_ray()
    import time

    import ray

    import probe.corpus.run as run_mod

    monkeypatch.setattr(run_mod, "_RAY_REUSE_WORKERS", True)
    monkeypatch.setattr(run_mod, "_RAY_BATCHES_PER_TASK", None)

    class InterruptedBar:  # the user presses Ctrl-C when the second batch is reported
        seen = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            InterruptedBar.seen += 1
            if InterruptedBar.seen == 2:
                raise KeyboardInterrupt

    corpus = make_event_corpus(tmp_path / "clips", n_clips=12, seconds=3.0)
    # the harmonic-ratio concept (HPSS) makes each one-clip batch take a good fraction of a second
    opts = RunOptions(layers=("units",), concepts=("loudness", "harmonic"), random_init=False, batch_size=1,
                      frames_per_clip=8)
    spec = planted_spec()
    a = run_corpus(spec, corpus, tmp_path / "inproc", options=opts)
    ropts = dataclasses.replace(opts, engine="ray", workers=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with monkeypatch.context() as m:
            m.setattr(run_mod, "_bar", lambda progress, total: InterruptedBar())
            with pytest.raises(KeyboardInterrupt):
                run_corpus(spec, corpus, tmp_path / "ray", options=ropts)
        parts = tmp_path / "ray" / "parts"
        at_stop = sorted(f.name for f in parts.glob("*.parquet"))
        time.sleep(3.0)  # several batches' time: a worker still running would have written more
        assert sorted(f.name for f in parts.glob("*.parquet")) == at_stop
        assert 2 <= len(at_stop) < 12
        b = run_corpus(spec, corpus, tmp_path / "ray", options=ropts)
    finally:
        ray.shutdown()
    assert b["resumed"] == len(at_stop) and b["clips_this_pass"] == 12 - len(at_stop)
    assert a["clips"] == b["clips"]
    assert _same(_sorted_table(tmp_path / "inproc"), _sorted_table(tmp_path / "ray"))


def test_ray_engine_missing_is_an_error_not_a_crash(tmp_path, monkeypatch):
    import builtins

    from probe.corpus import CorpusError

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    corpus = make_event_corpus(tmp_path / "clips", n_clips=1, seconds=0.5)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(CorpusError, match=r"probe-audio\[ray\]"):
        run_corpus(planted_spec, corpus, tmp_path / "run",
                   options=RunOptions(layers=("units",), concepts=(), engine="ray"))


def test_actors_get_the_drivers_checked_spec(monkeypatch):
    """Each actor gets the spec the driver checked the layers with, caches included (the model's time-axis probe,
    the mel filterbank): unpickled, it probes nothing again and computes no filterbank (what made an actor's first
    batch cost ~1.7 s of CPU); a spec that cannot be pickled is sent as the reference given, as before."""
    _require_ray()
    import threading

    import librosa
    from ray import cloudpickle

    import probe._shapes as shapes
    from probe import TFGrid
    from probe.corpus.run import _ship, _Shipped
    from probe.corpus.worker import CorpusWorker

    spec = dataclasses.replace(planted_spec(), grid=TFGrid(16000, n_fft=512, hop_length=160, n_mels=40))
    opts = RunOptions(layers=("units", "code"), concepts=(), random_init=False)
    driver = CorpusWorker(spec, opts)
    geometry = driver.describe_layers()
    mel = spec.grid.mel_basis()
    shipped = _ship(driver.spec, planted_spec)
    assert isinstance(shipped, _Shipped) and shipped.checked and "planted" in repr(shipped)
    actor_spec = cloudpickle.loads(cloudpickle.dumps(shipped)).load()
    fresh = planted_spec()  # (building the planted model itself uses librosa's filterbank)
    locked = planted_spec()
    locked.model.lock = threading.Lock()  # not picklable

    calls = {"probe": 0, "mel": 0}

    def counted(key, fn):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(shapes.TimeProbe, "run", counted("probe", shapes.TimeProbe.run))
    monkeypatch.setattr(librosa.filters, "mel", counted("mel", librosa.filters.mel))
    assert CorpusWorker(actor_spec, opts).describe_layers() == geometry
    assert np.array_equal(actor_spec.grid.mel_basis(), mel)
    assert calls == {"probe": 0, "mel": 0}
    # a fresh spec probes its model (the count above can fail), and a fresh grid computes its filterbank
    CorpusWorker(fresh, opts).describe_layers()
    TFGrid(16000, n_fft=512, hop_length=160, n_mels=40).mel_basis()
    assert calls["probe"] >= 1 and calls["mel"] == 1
    assert _ship(locked, planted_spec).load() is planted_spec and not _ship(locked, planted_spec).checked
    assert _ship(locked, "zoo:some_model").load() == "zoo:some_model"


def test_ray_workers_keep_their_worker_per_spec(tmp_path, monkeypatch):
    """A Ray worker process builds its worker on its first batch and keeps it, keyed by the contents the
    driver shipped: a copy of the same model (other tensor storages, so other pickle bytes) reuses it, other
    weights or layers build anew, the cache stays bounded, and a reused worker gives the in-process rows."""
    _require_ray()
    import copy
    import json

    import pyarrow as pa

    import probe.corpus.run as run_mod
    from probe.corpus import read_corpus
    from probe.corpus.worker import CorpusWorker, clips_table

    monkeypatch.setattr(run_mod, "_built", run_mod.OrderedDict())
    monkeypatch.setattr(run_mod, "_reported", run_mod.OrderedDict())
    builds = []
    real = run_mod._build
    monkeypatch.setattr(run_mod, "_build", lambda *a, **k: builds.append(1) or real(*a, **k))

    clips = read_corpus(make_event_corpus(tmp_path / "clips", n_clips=2, seconds=0.5))
    batch = clips_table(clips).append_column("_pos", pa.array([0, 1]))
    opts = RunOptions(layers=("units",), concepts=("loudness",), random_init=False)

    def checked(spec, o=opts):
        CorpusWorker(spec, dataclasses.replace(o, concepts=())).describe_layers()  # as the driver does
        return run_mod._ship(spec, planted_spec)

    def task(shipped, run, o=opts):
        t = run_mod._ray_task(batch, model=shipped, options=o.to_dict(), threads=1, run=run)
        start = t.column("_start")[0].as_py()
        return t.drop_columns(["_first", "_worker", "_start", "_done", "_cpu"]), start and json.loads(start)

    base = planted_spec()  # (its model class is defined in a function: a new class per call, a new digest)
    one, two = checked(base), checked(copy.deepcopy(base))
    assert one.data != two.data and one.digest == two.digest
    ta, sa = task(one, "run-a")
    tb, sb = task(two, "run-b")
    assert (sa["reused"], sb["reused"], len(builds)) == (False, True, 1)
    assert task(two, "run-b")[1] is None  # a process reports its start-up once per run
    expected = CorpusWorker(planted_spec(), opts)(clips_table(clips))
    assert ta.equals(expected) and tb.equals(expected)
    # the same model at another batch size and worker count: the same worker
    assert task(two, "run-c", dataclasses.replace(opts, batch_size=3, workers=2, engine="ray"))[1]["reused"]
    # other weights, other layers: built anew; at most _CACHE_SIZE kept, the oldest dropped
    spec = copy.deepcopy(base)
    with __import__("torch").no_grad():
        next(spec.model.parameters()).add_(1.0)
    other = checked(spec)
    assert other.digest != one.digest and task(other, "run-d")[1]["reused"] is False
    code = dataclasses.replace(opts, layers=("code",))
    assert task(checked(copy.deepcopy(base), code), "run-e", code)[1]["reused"] is False
    assert len(builds) == 3 and len(run_mod._built) == run_mod._CACHE_SIZE == 2
    assert task(one, "run-f")[1]["reused"] is False and len(builds) == 4
