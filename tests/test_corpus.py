"""Corpus input, concept tracks, the per-batch worker, resumable runs and the CLI, on synthetic clips."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from probe.corpus import Clip, CorpusError, RunOptions, open_run, read_corpus, run_corpus
from probe.corpus.concepts import align_tracks, concept_tracks, event_tracks, octave_bands
from probe.corpus.synthetic import SR, make_event_corpus, planted_spec
from probe.errors import AudioError

pa = pytest.importorskip  # noqa: F841 - pyarrow is a core dependency; import errors below must fail, not skip
import pyarrow.parquet as pq  # noqa: E402

FAST = RunOptions(layers=("units", "code"), concepts=("loudness", "onset", "bands"), batch_size=3, frames_per_clip=32)


def _tone(f, seconds=1.0, amp=0.3, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


# ---- input ----------------------------------------------------------------------------------
def test_folder_labels_from_subfolders(tmp_path):
    (tmp_path / "dog").mkdir()
    (tmp_path / "cat").mkdir()
    sf.write(tmp_path / "dog" / "a.wav", _tone(440), SR)
    sf.write(tmp_path / "cat" / "b.flac", _tone(880), SR)
    sf.write(tmp_path / "top.wav", _tone(220), SR)
    (tmp_path / "notes.txt").write_text("not audio")
    clips = read_corpus(tmp_path)
    assert [(c.clip_id, c.label) for c in clips] == [("cat/b.flac", "cat"), ("dog/a.wav", "dog"), ("top.wav", None)]
    assert all(Path(c.path).is_absolute() for c in clips)


def test_csv_manifest_merges_event_rows(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(440), SR)
    (tmp_path / "m.csv").write_text("path,label,start,end,event,group\n"
                                    "a.wav,street,,,,g1\n"
                                    "a.wav,,0.1,0.4,dog,g1\n"
                                    "a.wav,,0.5,0.9,car,g1\n")
    (c,) = read_corpus(tmp_path / "m.csv")
    assert c.label == "street" and c.group == "g1"
    assert c.events == [{"start": 0.1, "end": 0.4, "label": "dog"}, {"start": 0.5, "end": 0.9, "label": "car"}]


def test_jsonl_manifest_with_event_lists(tmp_path):
    path = make_event_corpus(tmp_path, n_clips=2, seconds=1.0, manifest=True)
    clips = read_corpus(path)
    assert len(clips) == 2 and all(c.events and c.group for c in clips)
    assert all(e["label"] in ("tone", "noise", "click") for c in clips for e in c.events)


@pytest.mark.parametrize("text, match", [
    ("label\nx\n", "has no 'path'"),
    ("path,start,end,label\na.wav,0.5,0.2,dog\n", "0 <= start < end"),
    ("path,start,end,label\na.wav,zero,1,dog\n", "must be numbers"),
    ("path,label\na.wav,x\na.wav,y\n", "two labels"),
])
def test_manifest_errors_name_the_row(tmp_path, text, match):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(CorpusError, match=match):
        read_corpus(tmp_path / "m.csv")


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(CorpusError, match="no such corpus"):
        read_corpus(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no audio clips"):
        read_corpus(tmp_path)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(CorpusError, match="folder, a .csv or a .jsonl"):
        read_corpus(tmp_path / "m.txt")


# ---- concepts -----------------------------------------------------------------------------
def test_band_concept_peaks_in_the_tone_band_and_flatness_separates_noise():
    rng = np.random.default_rng(0)
    y = np.concatenate([_tone(1500, 1.0), (0.1 * rng.standard_normal(SR)).astype(np.float32)])
    ct = concept_tracks(y, SR, concepts=("bands", "flatness", "loudness"))
    tone, noise = ct.times < 0.9, ct.times > 1.1
    bands = [f"band_{lo}_{hi}" for lo, hi in octave_bands(SR)]
    assert bands[int(np.argmax([ct.tracks[b][tone].mean() for b in bands]))] == "band_1000_2000"
    assert ct.tracks["flatness"][noise].mean() > 0.3 > 100 * ct.tracks["flatness"][tone].mean()


def test_onset_concept_peaks_at_the_onset():
    y = np.zeros(SR, dtype=np.float32) + 1e-4 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    y[int(0.6 * SR):] += _tone(700, 0.4)
    ct = concept_tracks(y, SR, concepts=("onset",))
    # centred 64 ms frames start to see the tone up to 32 ms before it begins
    assert abs(ct.times[int(np.argmax(ct.tracks["onset"]))] - 0.6) <= 0.035


def test_pyin_concepts_voiced_register():
    y = np.concatenate([_tone(220, 1.0), np.zeros(SR, dtype=np.float32)])
    ct = concept_tracks(y, SR, concepts=("f0",))
    mid = (ct.times > 0.2) & (ct.times < 0.8)
    assert ct.tracks["voiced"][mid].mean() > 0.9 and ct.tracks["voiced"][ct.times > 1.2].mean() < 0.1
    assert np.nanmedian(ct.tracks["register"][mid]) == pytest.approx(np.log2(220), abs=0.05)
    assert np.isnan(ct.tracks["register"][ct.times > 1.2]).all()


def test_coarse_pitch_grid_keeps_pyins_decisions_on_tones_and_noise():
    """The quarter-semitone pYIN grid (the speed-up) against librosa's tenth-semitone default, frame by frame."""
    import librosa

    rng = np.random.default_rng(3)
    t = np.arange(2 * SR) / SR
    clicks = np.zeros(len(t))
    clicks[:: SR // 10] = 1.0
    signals = {f: sum((0.3 / h) * np.sin(2 * np.pi * h * f * t) for h in range(1, 5)) for f in (110, 440, 880)}
    signals.update({"noise": 0.1 * rng.standard_normal(len(t)), "clicks": clicks})
    for name, y in signals.items():
        ct = concept_tracks(y, SR, concepts=("f0",))
        f0, _, prob = librosa.pyin(y, fmin=65.0, fmax=1047.0, sr=SR, frame_length=1024, hop_length=int(0.04 * SR),
                                   center=True)  # the slow reference: default resolution
        ref_t = np.arange(len(f0)) * 0.04
        idx = np.clip(np.searchsorted(ref_t, ct.times), 0, len(f0) - 1)
        at_ref = np.isclose(ref_t[idx], ct.times)  # base frames that sit on a pYIN frame
        ref_voiced = (prob >= 0.5)[idx][at_ref]
        assert np.array_equal(ct.tracks["voiced"][at_ref] > 0, ref_voiced), name
        if isinstance(name, int):  # by construction: voiced at its f0; noise and clicks are not
            inner = (ct.times > 0.2) & (ct.times < 1.8)
            assert ct.tracks["voiced"][inner].mean() > 0.95
            assert np.nanmax(np.abs(ct.tracks["register"][inner] - np.log2(name))) < 0.02
            both = at_ref & (ct.tracks["voiced"] > 0)
            assert np.nanmax(np.abs(ct.tracks["register"][both] - np.log2(f0[idx][both]))) <= 0.0126
        else:
            assert ct.tracks["voiced"].mean() < 0.05

def test_align_tracks_averages_over_each_step():
    from probe.corpus.concepts import ConceptTracks

    ct = ConceptTracks(times=np.arange(100) * 0.01, tracks={"x": np.arange(100, dtype=float), "voiced": (np.arange(100) >= 50).astype(float)})
    out = align_tracks(ct, np.array([0.1, 0.5]), 0.04)
    # steps of 40 ms centred at 0.1 s and 0.5 s average base frames 8..12 and 48..52
    assert out["x"].tolist() == [10.0, 50.0]
    assert out["voiced"].tolist() == [0.0, 1.0]


def test_event_tracks():
    tr = event_tracks([{"start": 0.1, "end": 0.3, "label": "dog"}], np.array([0.0, 0.2, 0.4]), labels=["cat"])
    assert tr["event:dog"].tolist() == [0, 1, 0] and tr["event:cat"].tolist() == [0, 0, 0]


# ---- runs -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    corpus = make_event_corpus(root / "clips", n_clips=5, seconds=1.0, manifest=True)
    (root / "clips" / "bad.wav").write_bytes(b"RIFF....not a wav")
    sf.write(root / "clips" / "short.wav", np.zeros(100, dtype=np.float32), SR)
    sf.write(root / "clips" / "nan.wav", np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    with open(corpus, "a") as fh:
        for name in ("bad.wav", "short.wav", "nan.wav"):
            fh.write(json.dumps({"path": name}) + "\n")
    man = run_corpus(planted_spec, corpus, root / "run", options=FAST)
    return root, corpus, man


def test_run_writes_parquet_manifest_and_counts_bad_clips(small_run):
    root, corpus, man = small_run
    assert man["clips"]["ok"] == 5 and man["clips"]["bad"] == 3
    reasons = man["clips"]["bad_reasons"]
    assert "cannot decode" in reasons["bad.wav"] and "shorter than min_seconds" in reasons["short.wav"]
    assert "non-finite" in reasons["nan.wav"]
    on_disk = json.loads((root / "run" / "corpus.json").read_text())
    assert on_disk["status"] == "done" and on_disk["layers"] == ["units", "code"]
    assert on_disk["layer_info"]["units"] == {"n_units": 12, "seconds_per_step": 0.01, "time_offset": 0.0}
    t = pq.read_table(root / "run" / "parts")
    ok = t.filter(__import__("pyarrow.compute", fromlist=["x"]).equal(t["status"], "ok"))
    assert ok.num_rows == 5 * 2 * 2  # clips × layers × (trained, random)
    assert {"c:loudness", "c:onset", "c:band_1000_2000"} <= set(t.column_names)


def test_unit_stats_match_a_direct_computation(small_run):
    import torch

    import probe

    root, corpus, _ = small_run
    run = open_run(root / "run")
    stats = {(r["layer"], r["variant"], r["unit"]): r for r in run.unit_stats().to_pylist()}
    spec = planted_spec()
    acts = []
    for c in run.clips:
        if c.clip_id.startswith("clip"):
            y, _ = sf.read(c.path, dtype="float32")
            with torch.no_grad(), probe.capture(spec, layers="units") as cache:
                spec.model(spec.features(y))
            acts.append(cache["units"].numpy()[0].T)
    A = np.concatenate(acts).astype(np.float64)
    for u in (3, 7, 9):
        s = stats[("units", "trained", u)]
        assert s["count"] == len(A)
        assert s["mean"] == pytest.approx(A[:, u].mean(), rel=1e-5, abs=1e-6)
        assert s["var"] == pytest.approx(A[:, u].var(), rel=1e-4, abs=1e-6)
        assert s["top_values"][0] == pytest.approx(A[:, u].max(), rel=1e-6)
        assert s["top_values"] == sorted(s["top_values"], reverse=True) and len(s["top_clips"]) == 5


def test_frames_carry_concepts_and_events(small_run):
    root, _, _ = small_run
    run = open_run(root / "run")
    fr = run.frames("units")
    assert fr.acts.shape == (5 * 32, 12)
    assert set(fr.concepts) >= {"loudness", "onset", "event:tone", "event:noise", "event:click"} or \
        set(fr.concepts) >= {"loudness", "onset"}
    assert np.all(np.diff(fr.time[fr.clip == fr.clip[0]]) > 0)  # sampled steps keep their order
    # the planted band unit is the band concept (same definition, another STFT size)
    r = np.corrcoef(fr.acts[:, 7], fr.concepts["band_1000_2000"])[0, 1]
    assert r > 0.9


def test_resume_skips_done_clips_and_refuses_other_settings(small_run, tmp_path):
    root, corpus, _ = small_run
    again = run_corpus(planted_spec, corpus, root / "run", options=FAST)
    assert again["clips_this_pass"] == 0 and again["resumed"] == 8
    with pytest.raises(CorpusError, match="different settings"):
        run_corpus(planted_spec, corpus, root / "run", options=RunOptions(layers=("units",)))
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(CorpusError, match="refusing to write"):
        run_corpus(planted_spec, corpus, tmp_path, options=FAST)


def test_crash_loses_at_most_the_batch_in_flight(tmp_path, monkeypatch):
    from probe.corpus import worker as worker_mod

    corpus = make_event_corpus(tmp_path / "clips", n_clips=7, seconds=0.5)
    opts = RunOptions(layers=("units",), concepts=("loudness",), batch_size=2, random_init=False)
    calls = {"n": 0}
    real = worker_mod.CorpusWorker.__call__

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(worker_mod.CorpusWorker, "__call__", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_corpus(planted_spec, corpus, tmp_path / "run", options=opts)
    monkeypatch.setattr(worker_mod.CorpusWorker, "__call__", real)
    parts = list((tmp_path / "run" / "parts").glob("*.parquet"))
    assert len(parts) == 2 and not list((tmp_path / "run" / "parts").glob(".*"))  # two whole batches, no partial file
    man = run_corpus(planted_spec, corpus, tmp_path / "run", options=opts)
    assert man["resumed"] == 4 and man["clips_this_pass"] == 3 and man["clips"]["ok"] == 7


def test_layers_without_time_are_refused_before_the_run(tmp_path):
    import torch

    from probe import ModelSpec, TFGrid
    from probe.errors import AnalysisError

    class Pool(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 3, 8, stride=4)
            self.pool = torch.nn.AdaptiveAvgPool1d(1)

        def forward(self, x):
            return self.pool(self.conv(x))

    spec = ModelSpec(Pool(), input_kind="waveform", grid=TFGrid(SR), input_layout="bcn")
    corpus = make_event_corpus(tmp_path / "clips", n_clips=1, seconds=0.5)
    with pytest.raises(AnalysisError, match="no time axis"):
        run_corpus(spec, corpus, tmp_path / "run", options=RunOptions(layers=("pool",), concepts=()))
    assert not (tmp_path / "run").exists()
    man = run_corpus(spec, corpus, tmp_path / "run2", options=RunOptions(layers=("conv",), concepts=("loudness",)))
    # step 0 of an 8-tap, stride-4 conv is centred on sample 3.5 (time_offset from the capture axes)
    assert man["layer_info"]["conv"] == {"n_units": 3, "seconds_per_step": 4 / SR, "time_offset": pytest.approx(3.5 / SR)}


def test_load_clip_reasons(tmp_path):
    from probe.corpus import load_clip

    with pytest.raises(AudioError, match="no such audio file"):
        load_clip(Clip("x", str(tmp_path / "x.wav")), SR)


# ---- CLI ---------------------------------------------------------------------------------------
def _cli(probe_exe, *args):
    return subprocess.run([probe_exe, "corpus", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_run_dissect_probe_map_json(probe_exe, tmp_path):
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "spec.toml").write_text('[model]\nfactory = "probe.corpus.synthetic:_build_model"\nname = "planted"\n'
                                        '[input]\nkind = "stft"\nsample_rate = 16000\nn_fft = 512\nhop_length = 160\n')
    corpus = make_event_corpus(tmp_path / "clips", n_clips=4, seconds=1.0, manifest=True)
    out = tmp_path / "run"
    p = _cli(probe_exe, "run", str(spec_dir / "spec.toml"), str(corpus), "--layers", "units", "--out", str(out),
             "--concepts", "loudness,onset", "--no-progress", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["clips"]["ok"] == 4 and res["layers"] == ["units"] and res["engine"] == "inprocess"
    p = _cli(probe_exe, "dissect", str(out), "--permutations", "50", "--excerpts", "1", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["units"] == 12 and all(Path(f).is_file() for f in d["excerpts"])
    assert (out / "dissect" / "pairs.parquet").is_file()
    p = _cli(probe_exe, "dissect", str(out), "--json")
    assert p.returncode == 2 and "exists" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli(probe_exe, "probe", str(out), "--label", "loudness", "--folds", "2", "--json")
    assert p.returncode == 0, p.stderr
    pr = json.loads(p.stdout)
    from probe.corpus import ProbeOptions, probe_layers

    direct = probe_layers(out, options=ProbeOptions(label="loudness", folds=2))["layers"][0]
    assert pr["layers"][0]["metric"] == "r2"  # the CLI adds nothing to the pipeline's numbers
    assert pr["layers"][0]["score"] == pytest.approx(direct["score"], abs=1e-4)
    assert pr["layers"][0]["random_init"] == pytest.approx(direct["random_init"], abs=1e-4)
    p = _cli(probe_exe, "map", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["n_clips"] == 4


@pytest.mark.parametrize("args, match", [
    (["run", "zoo:nope", "x", "--layers", "a", "--out", "o"], "error"),
    (["dissect", "/nonexistent/run"], "not a corpus run"),
    (["probe", "/nonexistent/run", "--label", "x"], "not a corpus run"),
    (["map", "/nonexistent/run"], "not a corpus run"),
])
def test_cli_errors_are_one_line_exit_2(probe_exe, args, match):
    p = _cli(probe_exe, *args, "--json")
    assert p.returncode == 2
    assert match in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert p.stdout == ""


def test_cli_bad_corpus_and_concepts(probe_exe, tmp_path):
    sf.write(tmp_path / "a.wav", _tone(440), SR)
    spec = tmp_path / "spec.toml"
    spec.write_text('[model]\nfactory = "probe.corpus.synthetic:_build_model"\n'
                    '[input]\nkind = "stft"\nsample_rate = 16000\nn_fft = 512\nhop_length = 160\n')
    p = _cli(probe_exe, "run", str(spec), str(tmp_path / "missing"), "--layers", "units", "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "no such corpus" in p.stderr
    p = _cli(probe_exe, "run", str(spec), str(tmp_path), "--layers", "units", "--out", str(tmp_path / "r"),
             "--concepts", "loudness,timbre")
    assert p.returncode == 2 and "unknown concepts" in p.stderr
    p = _cli(probe_exe, "run", str(spec), str(tmp_path), "--layers", "nolayer", "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "no layer named 'nolayer'" in p.stderr


@pytest.mark.parametrize("name", ["framed_conv2d", "window_embedder"])
def test_gallery_models_without_a_batch_axis_or_with_a_long_window_run_clip_by_clip(tmp_path, name):
    """framed_conv2d folds its frames into the batch (the conv's record has no batch axis), so clips
    batched together would mix; window_embedder needs 1.6 s of input, more than the 1 s layer check.
    A batch of three clips gives each clip the rows it gets alone, and the clips differ."""
    from tests import gallery as G

    sr = G.ENTRIES[name].sample_rate
    t = np.arange(2 * sr) / sr
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        y = (0.1 + 0.25 * i) * np.sin(2 * np.pi * (300 + 500 * i) * t) + (0.05 * i) * np.sign(np.sin(2 * np.pi * 3 * t))
        sf.write(folder / f"c{i}.wav", y.astype(np.float32), sr)
    layers = tuple(G.ENTRIES[name].layers)[:2]
    pooled = {}
    for bs in (1, 3):
        run_corpus(G.spec_of(name), folder, tmp_path / f"b{bs}",
                   options=RunOptions(layers=layers, concepts=(), random_init=False, batch_size=bs))
        r = open_run(tmp_path / f"b{bs}")
        pooled[bs] = {layer: np.stack([np.asarray(v) for v in r.rows(layer, columns=["pooled_max"])
                                       .column("pooled_max").to_pylist()]) for layer in layers}
    for layer in layers:
        np.testing.assert_allclose(pooled[3][layer], pooled[1][layer], atol=1e-5)
        assert np.abs(pooled[1][layer][0] - pooled[1][layer][2]).max() > 1e-3  # three different clips
