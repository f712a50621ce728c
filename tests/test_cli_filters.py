"""``probe filters`` / ``probe nmf`` end to end on a user spec-file model with known band-pass filters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROBE = Path(sys.executable).parent / "probe"
SR = 16000
CENTRES = np.linspace(500.0, 6500.0, 12)
WIDTH = 400.0

MODULE = '''
import numpy as np
import torch
import torch.nn as nn
from scipy.signal import firwin

CENTRES = np.linspace(500.0, 6500.0, 12)


def build(n_taps=257, width=400.0):
    k = np.stack([firwin(n_taps, [c - width / 2, c + width / 2], fs=16000, pass_zero=False, window="blackman")
                  for c in CENTRES]).astype(np.float32)
    net = nn.Sequential(nn.Conv1d(1, len(k), n_taps, stride=128, padding=n_taps // 2, bias=False), nn.ReLU(),
                        nn.Conv1d(len(k), 3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(k[:, None]))
    return net
'''

SPEC = '''
[model]
factory = "bandpass_net:build"
name = "bandpass"
[input]
kind = "waveform"
sample_rate = 16000
layout = "bcn"
n_fft = 512
hop_length = 128
'''


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("usermodel")
    (d / "bandpass_net.py").write_text(MODULE)
    (d / "spec.toml").write_text(SPEC)
    return d / "spec.toml"


def _probe(*args):
    return subprocess.run([str(PROBE), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_filters_json_recovers_the_planted_bank(spec_file, tmp_path):
    out = tmp_path / "figs"
    r = _probe("filters", spec_file, "--json", "--out", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["model"] == "bandpass" and len(res["layers"]) == 1
    layer = res["layers"][0]
    assert layer["name"] == "0" and layer["n_filters"] == 12 and layer["sample_rate"] == SR
    # default FFT: ≥ 8× the 257 taps → 4096 points, 3.9 Hz bins
    np.testing.assert_allclose(layer["centre_hz"], CENTRES, atol=SR / 4096)
    bw = np.array(layer["bandwidth_hz"])
    assert np.all(np.abs(bw - bw.mean()) < 1) and 0.6 * WIDTH < bw.mean() < WIDTH  # −3 dB inside the −6 dB edges
    assert set(layer["scale_fit"]) == {"linear", "mel", "erb", "log"}
    assert layer["best_scale"] == "linear" and layer["scale_fit"]["linear"] > 0.9999
    assert {"mel", "gammatone"} <= set(layer["reference_match"])
    assert all(0 <= v <= 1 for v in layer["reference_match"].values())
    html = sorted(p.name for p in out.glob("*.html"))
    assert "filters_0_centres.html" in html and "filters_0_responses.html" in html and "filters_0_match_mel.html" in html
    assert (out / "plotly.min.js").is_file()  # figures open offline
    assert set(res["figures"]) == {str(out / h) for h in html}


def test_filters_unknown_layer_is_a_one_line_error(spec_file):
    r = _probe("filters", spec_file, "--layer", "encoder", "--json")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == "probe filters: error: no filter layer named 'encoder'; filter layers: 0"


def test_filters_and_nmf_in_process(spec_file, tmp_path, capsys):
    import soundfile as sf

    from probe.cli import main

    assert main(["filters", str(tmp_path / "missing.toml"), "--json"]) == 2
    assert "no such spec file" in capsys.readouterr().err
    # a clip of two band-limited noises at centres 2 and 8 of the planted bank, gated in turn
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    y = sum(np.sin(2 * np.pi * CENTRES[i] * t + rng.uniform(0, 6)) * (np.sin(2 * np.pi * r * t) > 0)
            for i, r in ((2, 1.5), (8, 2.5)))
    wav = tmp_path / "two.wav"
    sf.write(wav, (0.3 * y).astype(np.float32), SR)
    assert main(["nmf", str(spec_file), str(wav), "--components", "2", "--json", "--out", str(tmp_path / "nmf")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bases_layer"] == "0" and res["n_bases"] == 12 and res["activations_layer"] == "1"  # the ReLU after the bank
    bases = res["nmf"]["bases"]
    assert len(bases["permutation"]) == 12 and sum(p >= 0 for p in bases["permutation"]) == 2
    # the two NMF components are the two tones: they match the planted filters 2 and 8
    assert {i for i, p in enumerate(bases["permutation"]) if p >= 0} == {2, 8}
    assert bases["mean_matched_cosine"] > 0.5
    acts = res["nmf"]["activations"]
    # the rectified outputs of filters 2 and 8 follow the two gates; a raw ReLU'd band-pass output sampled every
    # 8 ms is a noisy envelope (random phase of the carrier), hence the modest bound
    assert acts["permutation"] == bases["permutation"]
    assert acts["mean_matched_corr"] > 0.3 and acts["mean_corr_along_basis_matching"] > 0.3
    like = res["nmf_likeness"]
    assert 0 <= like["nonneg_share"] <= 1 and 0 <= like["rel_error"] <= 1.01
    assert any(p.endswith("nmf_bandpass_bases.html") for p in res["figures"])
    assert main(["nmf", str(spec_file), str(wav), "--layer", "nope", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no layer named 'nope'" in err[0]
