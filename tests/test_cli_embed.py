"""``probe embed`` as a user meets it: a spec-file model of their own, a wav, JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 8000
ROOT = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent('''
    import torch

    class BandPower(torch.nn.Module):
        """(B, T, F) log-magnitude -> (B, T, n_bands) log power in equal frequency bands."""

        def __init__(self, n_freqs=129, n_bands=4):
            super().__init__()
            w = torch.zeros(n_bands, n_freqs)
            for b, chunk in enumerate(torch.arange(n_freqs).chunk(n_bands)):
                w[b, chunk] = 1.0 / len(chunk)
            self.register_buffer("weight", w)

        def forward(self, x):
            return torch.log(torch.exp(2 * x) @ self.weight.T + 1e-8)

    class BandDetector(torch.nn.Module):
        """Per-frame band powers (the embedding layer ``bands``) -> 2 class probabilities."""

        def __init__(self, n_freqs=129, n_bands=4):
            super().__init__()
            self.bands = BandPower(n_freqs, n_bands)
            self.head = torch.nn.Linear(n_bands, 2)

        def forward(self, x):
            return torch.sigmoid(self.head(self.bands(x)))  # (B, T, 2)

    def build():
        torch.manual_seed(0)
        return BandDetector()
''')

TOML = textwrap.dedent('''
    [model]
    factory = "bandmodel:build"
    name = "band-detector"
    [input]
    kind = "logmag"
    sample_rate = 8000
    n_fft = 256
    hop_length = 64
    layout = "btf"
    [output]
    kind = "frame_probs"
    classes = ["low", "high"]
    layout = "btc"
''')


def _run(exe, *args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def user_model(tmp_path):
    (tmp_path / "bandmodel.py").write_text(MODULE)
    spec = tmp_path / "spec.toml"
    spec.write_text(TOML)
    # 0.25 s segments alternating a 300 Hz and a 2500 Hz tone: frame embeddings form two clusters
    t = np.arange(2 * SR) / SR
    low = (np.floor(t / 0.25) % 2) == 0
    # smooth 30 ms cross-fades: a hard switch would click, and broadband clicks form a cluster of their own
    fade = np.clip(np.convolve(low.astype(float), np.hanning(241) / np.hanning(241).sum(), mode="same"), 0, 1)
    y = (np.sqrt(fade) * np.sin(2 * np.pi * 300 * t) + np.sqrt(1 - fade) * np.sin(2 * np.pi * 2500 * t)) * 0.3
    y += 1e-3 * np.random.default_rng(0).standard_normal(len(t))
    wav = tmp_path / "tones.wav"
    sf.write(wav, y.astype(np.float32), SR)
    return spec, wav, y.astype(np.float32), low


def test_embed_frame_layer_of_user_model(tmp_path, probe_exe, user_model):
    spec, wav, y, low = user_model
    r = _run(probe_exe, "embed", str(spec), str(wav), "--layer", "bands", "--projection", "pca", "--clusters", "2",
             "--budget", "200", "--audio-out", str(tmp_path / "wav"), "--out", str(tmp_path / "fig"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    n_frames = 1 + len(y) // 64
    assert out["kind"] == "frame" and out["dim"] == 4 and out["grid"] == [1, n_frames]
    assert out["n_points"] == 200 and out["projection"] == "pca" and out["clusters"] == 2
    assert out["layer"] == "bands" and out["model"] == "band-detector"
    assert 0.8 < out["trustworthiness"] <= 1.0
    assert out["seconds"] >= 0 and "oracle" not in out  # a plain wav has no ground truth
    cl = out["clusterability"]
    assert cl["silhouette"] > 0.6 and cl["kmeans_ratio"] < 0.35 and cl["bic_gain"] > 0  # edge frames blur a little
    assert sum(out["cluster_sizes"]) == 200 and min(out["cluster_sizes"]) > 50
    # one wav per cluster; each holds one tone's segments (its energy sits in one band)
    assert len(out["audio_files"]) == 2
    spectra = []
    for path in out["audio_files"]:
        a, sr = sf.read(path, dtype="float32")
        assert sr == SR and len(a) == len(y)
        spec_a = np.abs(np.fft.rfft(a))
        hz = np.fft.rfftfreq(len(a), 1 / SR)
        spectra.append((spec_a[hz < 1000] ** 2).sum() / (spec_a ** 2).sum())  # share of energy below 1 kHz
    assert min(spectra) < 0.05 and max(spectra) > 0.95
    # the two clusters add back up to the input
    total = sum(sf.read(p, dtype="float32")[0] for p in out["audio_files"])
    assert np.allclose(total, y, atol=1e-3)
    names = {p.split("/")[-1] for p in out["figures"]}
    assert {"map_cluster.html", "mask_cluster1.html", "mask_cluster2.html", "points.csv"} <= names  # from 1
    assert [p.split("/")[-1] for p in out["audio_files"]] == ["cluster_1.wav", "cluster_2.wav"]
    table = np.loadtxt(tmp_path / "fig" / "points.csv", delimiter=",", skiprows=1)
    assert table.shape == (200, 8)
    assert set(np.unique(table[:, 6]).astype(int)) == {1, 2}  # the cluster column is numbered as everywhere else
    # clusters follow the segments: frames of the 300 Hz tone share one cluster
    seg_low = (np.floor(table[:, 1] / 0.25) % 2) == 0
    inner = np.abs(table[:, 1] / 0.25 - np.round(table[:, 1] / 0.25)) > 0.2  # away from segment edges
    agree = np.mean((table[inner, 6] == table[inner][seg_low[inner]][0, 6]) == seg_low[inner])
    assert agree > 0.95


def test_embed_errors_are_one_line(user_model, capsys):
    from probe.cli import main

    spec, wav, _, _ = user_model
    cases = [
        (["embed", str(spec), str(wav), "--layer", "bandz"], "no layer named 'bandz'"),
        (["embed", str(spec), str(wav), "--budget", "0"], "--budget must be positive"),
        (["embed", str(spec), str(wav), "--layer", "bands", "--clusters", "0"], "--clusters must be positive"),
    ]
    for args, msg in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_embed_umap_in_a_fresh_process(tmp_path, probe_exe, user_model):
    spec, wav, _, _ = user_model
    r = _run(probe_exe, "embed", str(spec), str(wav), "--layer", "bands", "--projection", "umap", "--budget", "150",
             "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["projection"] == "umap" and out["n_points"] == 150 and out["trustworthiness"] > 0.8


@pytest.mark.slow
def test_embed_zoo_deep_clustering_reports_oracle_agreement(tmp_path, probe_exe):
    r = _run(probe_exe, "embed", "zoo:dc_blstm", "example:dc_blstm:0", "--projection", "pca", "--budget", "2000",
             "--audio-out", str(tmp_path / "wav"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kind"] == "tf" and out["dim"] == 20 and out["grid"] == [129, 501] and out["metric"] == "cosine"
    assert out["oracle"]["mask_accuracy"] > 0.9 and out["oracle"]["ari"] > 0.5
    assert out["clusterability"]["silhouette"] > 0.5
    assert len(out["audio_files"]) == 2


def test_embed_without_layer_starts_where_the_app_and_report_start(user_model, capsys):
    """No --layer on a detector: the last time-resolved layer before the head (``bands`` here), not the 2-class output.

    It used to be the output for the CLI and that layer for the app and the report: three faces, two defaults.
    """
    from probe import report as R
    from probe.audio import AudioExample
    from probe.cli import main
    from probe.pipelines import default_layer
    from probe.resolve import load

    spec, wav, y, _ = user_model
    assert main(["embed", str(spec), str(wav), "--budget", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first = default_layer(load(str(spec)), y, purpose="embeddings")
    assert out["layer"] == first == "bands" and out["dim"] == 4
    rep = R.build_report(load(str(spec)), AudioExample(y=y, sr=SR, name="tones"), sections=("embeddings",))
    assert rep.sections[0].status == "ok" and rep.sections[0].data["layer"] == "bands"
    # the output is still one flag away
    assert main(["embed", str(spec), str(wav), "--layer", "output", "--budget", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layer"] == "output" and out["dim"] == 2
