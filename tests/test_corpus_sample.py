"""The quantile sample of a corpus run: a fixed-size bottom-k sample, the same whatever the order or
batching of the frames, every frame while there are fewer than its capacity, and memory that does
not grow with the corpus."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from probe.corpus import RunOptions, open_run, run_corpus
from probe.corpus.run import FrameSample, finalize_run
from probe.corpus.synthetic import make_event_corpus, planted_spec

OPTS = RunOptions(layers=("units",), concepts=(), random_init=False, batch_size=4, frames_per_clip=16)


def _rows(n_clips, n_steps, n_units, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"clip{i:03d}", np.arange(n_steps), rng.standard_normal((n_steps, n_units)).astype(np.float32))
            for i in range(n_clips)]


def test_below_capacity_the_sample_is_every_frame():
    rows = _rows(7, 30, 3)
    s = FrameSample(3, capacity=500, chunk=16)
    for r in rows:
        s.add(*r)
    every = np.concatenate([a for *_, a in rows])
    assert s.seen == 210 and s.frames().shape == (210, 3)
    assert np.array_equal(np.sort(s.frames(), axis=0), np.sort(every, axis=0))


def test_above_capacity_the_sample_is_the_bottom_k_whatever_the_order_and_chunking():
    rows = _rows(120, 50, 4, seed=1)  # 6000 frames into 1000 places
    every = np.concatenate([a for *_, a in rows])
    keys = np.concatenate([FrameSample.keys(c, st) for c, st, _ in rows])
    assert len(np.unique(keys)) == len(keys)
    expected = np.sort(every[np.argsort(keys)[:1000]], axis=0)
    rng = np.random.default_rng(2)
    for chunk, order in ((64, range(120)), (7, range(119, -1, -1)), (1000, rng.permutation(120))):
        s = FrameSample(4, capacity=1000, chunk=chunk)
        for i in order:
            c, st, a = rows[i]
            half = len(st) // 2  # a clip's frames may arrive in pieces too
            s.add(c, st[:half], a[:half])
            s.add(c, st[half:], a[half:])
        got = s.frames()
        assert got.shape == (1000, 4) and s.seen == 6000
        assert np.array_equal(np.sort(got, axis=0), expected)
    # a uniform sample: its quantiles are close to the quantiles of every frame
    q = np.quantile(expected, [0.1, 0.5, 0.9], axis=0)
    assert np.abs(q - np.quantile(every, [0.1, 0.5, 0.9], axis=0)).max() < 0.15


def test_keys_depend_on_clip_and_step_only():
    a = FrameSample.keys("a.wav", [0, 1, 2])
    assert np.array_equal(a, FrameSample.keys("a.wav", np.array([0, 1, 2], dtype=np.int32)))
    assert not np.any(a == FrameSample.keys("b.wav", [0, 1, 2]))
    assert len(set(a.tolist())) == 3
    with pytest.raises(ValueError, match="step indices"):
        FrameSample(2, capacity=4).add("a.wav", [0, 1], np.zeros((3, 2), np.float32))


def _reshuffled_copy(src, dst):
    """The same run with its rows re-cut: one part file per clip, the files in reverse clip order."""
    import shutil

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("parts"))
    (dst / "parts").mkdir()
    t = pq.read_table(src / "parts")
    ids = sorted(set(t.column("clip_id").to_pylist()))
    for i, cid in enumerate(ids):
        pq.write_table(t.filter(pc.equal(t["clip_id"], cid)), dst / "parts" / f"part-{len(ids) - i:08d}.parquet")


def test_run_quantiles_match_every_frame_and_do_not_depend_on_parts(tmp_path):
    corpus = make_event_corpus(tmp_path / "clips", n_clips=6, seconds=1.0)
    run_corpus(planted_spec, corpus, tmp_path / "a", options=OPTS)
    ua = open_run(tmp_path / "a").unit_stats()
    frames = open_run(tmp_path / "a").frames("units").acts  # every sampled frame (6 clips × 16)
    assert frames.shape == (96, 12)
    q = np.quantile(frames, [0.01, 0.1, 0.5, 0.9, 0.99], axis=0)
    names = ("q01", "q10", "q50", "q90", "q99")
    for i, name in enumerate(names):
        assert np.allclose(ua.column(name).to_numpy(), q[i], rtol=1e-6, atol=1e-7)
    # re-cut into other files in another order; below and above capacity, the same quantiles
    _reshuffled_copy(tmp_path / "a", tmp_path / "b")
    for cap in (20000, 40):
        sa, sb = (finalize_run(tmp_path / x, quantile_frames=cap) for x in ("a", "b"))
        assert sa == sb
        ua, ub = open_run(tmp_path / "a").unit_stats(), open_run(tmp_path / "b").unit_stats()
        for name in names + ("top_values",):
            assert ua.column(name).to_pylist() == ub.column(name).to_pylist(), (cap, name)
    assert not np.allclose(ua.column("q50").to_numpy(), q[2])  # 40 of 96 frames: a sample, not all


def test_finalize_memory_does_not_grow_with_the_corpus(tmp_path):
    peaks = {}
    for n in (24, 96):
        corpus = make_event_corpus(tmp_path / f"clips{n}", n_clips=n, seconds=0.5)
        run_corpus(planted_spec, corpus, tmp_path / f"run{n}", options=OPTS)
        finalize_run(tmp_path / f"run{n}", quantile_frames=64)  # warm imports and caches
        tracemalloc.start()
        finalize_run(tmp_path / f"run{n}", quantile_frames=64)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # 384 vs 1536 sampled frames of 12 units (54 KiB more if they were all held): the fixed sample
    # holds 64 + one chunk either way; what grows is the list of part files (18 more names)
    assert peaks[96] - peaks[24] < 4 * 1024, peaks
