"""``probe attribute`` as a user meets it: a subprocess on a spec-file model, JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import textwrap

import numpy as np
import pytest
import soundfile as sf

from tests.test_attribution import SR, scene

MODULE = textwrap.dedent('''
    import torch

    class BoxDetector(torch.nn.Module):
        """Frame probability of a beep: sigmoid of the 800-1200 Hz band energy (8 kHz, n_fft 256)."""

        def __init__(self, gain=0.2, bias=4.0):
            super().__init__()
            f = torch.linspace(0, 4000, 129)
            self.register_buffer("band", ((f >= 800) & (f <= 1200)).float())
            self.gain, self.bias = gain, bias

        def forward(self, x):  # (B, F, T) magnitude
            e = (x * self.band[:, None]).sum(1, keepdim=True)
            return torch.sigmoid(self.gain * e - self.bias)

    def build():
        return BoxDetector()
''')

TOML = textwrap.dedent('''
    [model]
    factory = "beepnet:build"
    name = "beepnet"
    [input]
    kind = "stft"
    sample_rate = 8000
    n_fft = 256
    hop_length = 64
    [output]
    kind = "frame_probs"
    classes = ["beep"]
''')


def _setup(tmp_path):
    (tmp_path / "beepnet.py").write_text(MODULE)
    (tmp_path / "beep.toml").write_text(TOML)
    y, _ = scene()
    sf.write(tmp_path / "scene.wav", y, SR, subtype="FLOAT")
    return str(tmp_path / "beep.toml"), str(tmp_path / "scene.wav")


def _run(exe, *args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


def test_attribute_json_and_outputs(tmp_path, probe_exe):
    spec, wav = _setup(tmp_path)
    out_dir = tmp_path / "out"
    r = _run(probe_exe, "attribute", spec, wav, "--target", "class=beep,t=0.5:1.0", "--method", "ig",
             "--random-orders", "2", "--out", str(out_dir), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["method"] == "ig" and res["target"] == "class=beep,t=0.5:1"
    assert res["grid"]["sample_rate"] == SR and res["grid"]["n_fft"] == 256 and res["grid"]["hop_length"] == 64
    # the default steps="auto" raises IG's steps until completeness holds to 1 %
    assert res["completeness_error"] <= 0.01 and res["steps_used"] >= 8
    d = res["deletion"]
    assert set(d) >= {"auc", "auc_random", "drop_at_10", "drop_at_10_random"}
    assert d["drop_at_10"] >= 3 * d["drop_at_10_random"]
    assert "localisation" not in res  # a plain file has no boxes
    assert not any("no better than random" in w for w in res.get("warnings", [])), res.get("warnings")
    assert res["seconds"] > 0
    files = res["outputs"]
    for key in ("map", "explanation", "complement", "attribution_html", "deletion_html", "target_track_html"):
        assert (tmp_path / "out" / files[key].split("/")[-1]).is_file(), key
    from probe.attribution import Attribution

    a = Attribution.load(files["map"])
    assert a.map.shape == (129, 251) and str(a.target) == "class=beep,t=0.5:1"
    e, sr = sf.read(files["explanation"])
    assert sr == SR and len(e) == 2 * SR


def test_attribute_warns_when_deletion_is_no_better_than_random(tmp_path, probe_exe):
    """A map that ranks bins no better than chance is flagged in the CLI's JSON, as the app and report flag it.

    The model's score FALLS with the beep band's energy, so every relevance is negative and the
    deletion order (most relevant first) removes the bins that matter last: the normalised target
    stays near 1 longer than under random orders. The pipeline's warnings carry the deletion
    test's verdict (they used to stay inside ``deletion`` where only the app looked).
    """
    spec, wav = _setup(tmp_path)
    (tmp_path / "inhibit.py").write_text(MODULE + textwrap.dedent('''

        def build_inhibitor():
            return BoxDetector(gain=-0.2, bias=-2.0)
    '''))
    (tmp_path / "inhibit.toml").write_text(TOML.replace("beepnet:build", "inhibit:build_inhibitor")
                                           .replace('name = "beepnet"', 'name = "inhibitor"'))
    r = _run(probe_exe, "attribute", str(tmp_path / "inhibit.toml"), wav, "--target", "class=beep",
             "--random-orders", "2", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    d = res["deletion"]
    assert d["auc"] >= d["auc_random"], d  # the planted failure: deletion is worse than random here
    assert any(w.startswith("deletion no better than random") for w in res["warnings"]), res.get("warnings")


def test_attribute_other_methods_and_default_target(tmp_path, capsys):
    from probe.cli import main  # the same dispatcher the console script runs, in-process to save a start-up

    spec, wav = _setup(tmp_path)
    assert main(["attribute", spec, wav, "--method", "occlusion", "--no-deletion", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["target"] == "class=beep" and res["completeness_error"] is None and "deletion" not in res


def test_attribute_user_errors_are_one_line(tmp_path, probe_exe, capsys):
    from probe.cli import main

    spec, wav = _setup(tmp_path)
    r = _run(probe_exe, "attribute", spec, wav, "--no-deletion", "--target", "class=bell")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == "probe attribute: error: unknown class 'bell'; the model's classes are ['beep']"
    # more messages through the same dispatcher, in-process
    cases = [(["--target", "source=1"], "a source target needs a masks or sources model"),
             (["--method", "lrp"], "unknown attribution method 'lrp'"),
             (["--baseline", "pink"], "unknown baseline 'pink'")]
    for extra, msg in cases:
        assert main(["attribute", spec, wav, "--no-deletion", *extra]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (extra, err)


@pytest.mark.slow
def test_attribute_zoo_example_defaults_to_first_event(probe_exe):
    """With example:NAME:i and no --target: the first event's class over its span, scored against its box."""
    from model_zoo.registry import load_example

    ev = load_example("crnn_sed", 0).events[0]
    r = _run(probe_exe, "attribute", "zoo:crnn_sed", "example:crnn_sed:0", "--steps", "8", "--no-deletion", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["target"].startswith(f"class={ev['label']},t=")
    loc = res["localisation"]
    assert loc["box"]["label"] == ev["label"] and 0 <= loc["relevance_mass"] <= 1
    assert loc["relevance_mass"] > 5 * loc["box_fraction"]  # far above chance
    assert "snr_db_vs_true_stem" in res["explanation"]


ENCODER = textwrap.dedent('''
    import torch

    class BandEncoder(torch.nn.Module):
        """An encoder's features (B, T, 2): per frame, the |STFT| energy of 800-1200 Hz and of 2800-3200 Hz."""

        def forward(self, x):  # (B, F, T) magnitude at 8 kHz, n_fft 256
            f = torch.linspace(0, 4000, x.shape[1])
            bands = torch.stack([((f >= 800) & (f <= 1200)).float(), ((f >= 2800) & (f <= 3200)).float()])
            return torch.einsum("kf,bft->btk", bands, x)

    def build():
        return BandEncoder()
''')


@pytest.mark.parametrize("layout", ["btc", None])
def test_attribute_an_encoders_features(tmp_path, probe_exe, layout):
    """A ``features`` model (an encoder without a head) is explained through ``feature=K`` / ``feature=norm``.

    Planted truth: unit 0 is the 1 kHz band's energy, so its relevance over 0.5-1.0 s lies in the
    1 kHz tone's box (the 3 kHz tone, present all along, belongs to unit 1). Without ``[output]
    layout`` the time axis comes from the shape probe.
    """
    from probe.attribution import Attribution

    _, wav = _setup(tmp_path)
    (tmp_path / "bandenc.py").write_text(ENCODER)
    toml = TOML.replace("beepnet:build", "bandenc:build").replace('name = "beepnet"', 'name = "bandenc"')
    toml = toml.replace('kind = "frame_probs"\nclasses = ["beep"]\n',
                        'kind = "features"\n' + (f'layout = "{layout}"\n' if layout else ""))
    assert 'kind = "features"' in toml
    (tmp_path / "bandenc.toml").write_text(toml)
    spec = str(tmp_path / "bandenc.toml")
    r = _run(probe_exe, "attribute", spec, wav, "--target", "feature=0,t=0.5:1.0", "--random-orders", "2",
             "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["target"] == "feature=0,t=0.5:1" and res["completeness_error"] <= 0.01
    assert 0.5 <= res["relevance_time"]["centroid_s"] <= 1.0, res["relevance_time"]
    d = res["deletion"]
    assert d["auc"] < d["auc_random"] - 0.2 and not res.get("warnings"), (d, res.get("warnings"))
    a = Attribution.load(res["outputs"]["map"])
    rows = (a.freqs >= 750) & (a.freqs <= 1250)
    assert np.abs(a.map[rows]).sum() / np.abs(a.map).sum() > 0.95
    # unit 1 is the 3 kHz band: its relevance sits there
    r = _run(probe_exe, "attribute", spec, wav, "--target", "feature=1", "--no-deletion", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == "feature=1"
    # no --target: the unit that varies most over the clip (unit 0: the 1 kHz tone comes and goes; the 3 kHz tone
    # of unit 1 is there all along), as a detector's default is its top class
    r = _run(probe_exe, "attribute", spec, wav, "--no-deletion", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["target"] == "feature=0" and res["completeness_error"] <= 0.01
    # the norm of the feature vectors is a target too
    r = _run(probe_exe, "attribute", spec, wav, "--target", "feature=norm", "--no-deletion", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["target"] == "feature=norm", r.stderr
    # a unit the encoder does not have: one line, exit 2
    r = _run(probe_exe, "attribute", spec, wav, "--target", "feature=7", "--no-deletion")
    assert r.returncode == 2 and "feature unit 7 out of range: the model emits 2 feature channels" in r.stderr, r.stderr
