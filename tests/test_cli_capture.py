"""The CLI as a user meets it: a subprocess, JSON on stdout, one-line errors."""

import json
import subprocess

import numpy as np
import soundfile as sf
import torch

from probe import load_run
from tests._models import write_user_spec


def _run(exe, *args, cwd=None):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_capture_user_spec_model_with_lstm(tmp_path, probe_exe, rng):
    spec = write_user_spec(tmp_path)
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    r = _run(probe_exe, "capture", str(spec), str(wav), "--layers", "conv,rnn", "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["run_dir"] == str(tmp_path / "run")
    rnn = out["layers"]["rnn"]
    assert rnn["shape"] == [1, 151, 16] and rnn["axes"] == ["batch", "time", "channel"]
    assert abs(rnn["seconds_per_step"] - 0.01) < 1e-9
    assert out["layers"]["conv"]["axes"] == ["batch", "channel", "mel", "time"]
    cache, manifest = load_run(out["run_dir"])
    assert torch.equal(cache["rnn"].tensor.float(), cache["rnn"].tensor) and manifest["audio"]["duration"] == 1.5


def test_capture_resamples_file_to_model_rate(tmp_path, probe_exe, rng):
    spec = write_user_spec(tmp_path)
    wav = tmp_path / "a8k.wav"
    sf.write(wav, (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
    r = _run(probe_exe, "capture", str(spec), str(wav), "--layers", "out", "--out", str(tmp_path / "r2"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"]["out"]["shape"] == [1, 101, 3]


def test_errors_are_one_line_without_traceback(tmp_path, probe_exe, rng):
    spec = write_user_spec(tmp_path)
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    cases = [
        (["capture", str(spec), str(wav), "--layers", "rnx"], "no layer named 'rnx'"),
        (["capture", str(spec), str(tmp_path / "missing.wav")], "no such audio file"),
        (["capture", str(tmp_path / "nope.toml"), str(wav)], "no such spec file"),
        (["capture", "zoo:not_a_model", str(wav)], "unknown zoo model 'not_a_model'"),
    ]
    for args, msg in cases:
        r = _run(probe_exe, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = _run(probe_exe, "capture", str(spec), str(wav), "--layers", "rnx", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(probe_exe):
    """`probe … --json | head`: the reader closes the pipe before probe writes; probe exits 0 without a traceback."""
    import subprocess

    p = subprocess.Popen([probe_exe, "zoo", "list", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first write
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=120) == 0 and "Traceback" not in err, err
