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


@pytest.mark.parametrize("writer", ["actors", "driver"])
def test_ray_engine_writes_identical_tables(tmp_path, monkeypatch, writer):
    """On one machine the actors write their own part files; joined to a cluster (``--ray-address``) the
    driver writes them (``writer="driver"`` forces that path here). Either way: the in-process files."""
    _require_ray()
    import ray

    import probe.corpus.run as run_mod

    if writer == "driver":
        monkeypatch.setattr(run_mod, "_ray_is_local", lambda ray: False)

    corpus = make_event_corpus(tmp_path / "clips", n_clips=5, seconds=1.0, manifest=True)
    with open(corpus, "a") as fh:
        fh.write('{"path": "missing.wav"}\n')
    opts = RunOptions(layers=("units", "code"), batch_size=2, frames_per_clip=16)
    a = run_corpus(planted_spec, corpus, tmp_path / "inproc", options=opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ropts = dataclasses.replace(opts, engine="ray", workers=2)
    try:
        b = run_corpus(planted_spec, corpus, tmp_path / "ray", options=ropts)
        # resumable: lose one batch (a crash mid-run), run again: only its clips run, the tables stay the same
        lost = sorted((tmp_path / "ray" / "parts").glob("part-00000002-*.parquet"))
        assert len(lost) == 1
        lost[0].unlink()
        again = run_corpus(planted_spec, corpus, tmp_path / "ray", options=ropts)
    finally:
        ray.shutdown()
    assert again["clips_this_pass"] == 2 and again["resumed"] == 4 and again["clips"] == b["clips"]
    # each actor reports its start-up with its first batch; a resume with one batch starts one actor, not two
    starts = b["timing"]["actors"]
    assert len(starts) == 2 and len(again["timing"]["actors"]) == 1
    for st in starts:
        assert 0 <= st["born_s"] <= st["first_part_s"] and st["init_cpu_s"] >= 0 and st["first_call_cpu_s"] > 0
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
    from probe.corpus.run import _actor_model, _Shipped
    from probe.corpus.worker import CorpusWorker

    spec = dataclasses.replace(planted_spec(), grid=TFGrid(16000, n_fft=512, hop_length=160, n_mels=40))
    opts = RunOptions(layers=("units", "code"), concepts=(), random_init=False)
    driver = CorpusWorker(spec, opts)
    geometry = driver.describe_layers()
    mel = spec.grid.mel_basis()
    shipped = _actor_model(driver.spec, planted_spec)
    assert isinstance(shipped, _Shipped) and "planted" in repr(shipped)
    actor_spec = cloudpickle.loads(cloudpickle.dumps(shipped)).spec
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
    assert _actor_model(locked, planted_spec) is planted_spec
    assert _actor_model(locked, "zoo:some_model") == "zoo:some_model"
