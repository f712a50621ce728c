"""``probe inspect`` and the time overrides on the command line, on gallery spec folders (subprocess)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.gallery import write_spec_folder


def _run(exe, *args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=900)


def test_inspect_json_shows_exact_seconds_offsets_and_banks(probe_exe, tmp_path):
    toml = write_spec_folder("window_embedder", tmp_path)
    p = _run(probe_exe, "inspect", str(toml), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["input"]["kind"] == "waveform" and out["input"]["min_seconds"] == 1.6
    layers = {e["name"]: e for e in out["layers"]}
    conv = layers["conv"]
    assert conv["axes"] == ["time", "channel", "dim1"] and conv["batch_folded"]
    assert conv["seconds_per_step_exact"] == "1/10" and conv["time_source"] == "inferred"
    assert conv["time_offset"] == pytest.approx(0.8, abs=0.5001 / 16000)  # the window centre, within half a sample
    assert conv["filter_bank"] is True and "frames" in conv["filter_bank_why"]
    assert layers["embed"]["filter_bank"] is False
    assert out["banks"]["conv"]["effective"] is True


def test_inspect_overrides_are_marked_given(probe_exe, tmp_path):
    toml = write_spec_folder("mel_lstm", tmp_path)
    p = _run(probe_exe, "inspect", str(toml), "--json", "--no-banks", "--seconds-per-step", "0.02",
             "--time-offset", "0.5")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    head = {e["name"]: e for e in out["layers"]}["head"]
    assert (head["seconds_per_step"], head["time_offset"], head["time_source"]) == (0.02, 0.5, "given")
    assert out["time_overrides"] == {"seconds_per_step": 0.02, "offset": 0.5, "source": "given"}
    # the h_n state has no time axis and keeps no override; nor is it a mel axis
    hn = {e["name"]: e for e in out["layers"]}["lstm/1/0"]
    assert hn["time_source"] is None and "mel" not in hn["axes"]


def test_inspect_human_table_and_bad_override(probe_exe, tmp_path):
    toml = write_spec_folder("fbank_transformer", tmp_path)
    p = _run(probe_exe, "inspect", str(toml))
    assert p.returncode == 0, p.stderr
    assert "proj: yes" in p.stdout and "block.mlp.0: no" in p.stdout
    bad = _run(probe_exe, "inspect", str(toml), "--seconds-per-step", "-1")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "seconds_per_step must be positive" in bad.stderr
