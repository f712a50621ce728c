import json

import numpy as np
import pytest
import torch

from probe import ModelSpec, TFGrid, capture, load_run, save_run
from probe.errors import RunStoreError
from tests._models import TinyBLSTM


def test_save_load_identical(tmp_path, rng):
    torch.manual_seed(0)
    spec = ModelSpec(TinyBLSTM(), input_kind="logmag", grid=TFGrid(8000, 128, 32), input_layout="btf",
                     output_kind="tf_embeddings", name="tiny")
    x = spec.features(rng.standard_normal(3000).astype(np.float32))
    with capture(spec, "*", grads=True) as cache:
        spec.model(x).pow(2).sum().backward()
    run = save_run(cache, tmp_path / "run", model_id="tiny", audio={"hash": "abc", "duration": 0.375, "sr": 8000})
    back, manifest = load_run(run)
    assert list(back) == list(cache)
    for k in cache:
        assert torch.equal(back[k].tensor, cache[k].tensor)
        assert back[k].axes == cache[k].axes and back[k].seconds_per_step == cache[k].seconds_per_step
    assert torch.equal(back["embed"].grad, cache["embed"].grad)
    assert manifest["spec"]["name"] == "tiny" and manifest["audio"]["hash"] == "abc"
    assert manifest["versions"]["torch"] and manifest["layers"]["blstm"]["seconds_per_step"] == pytest.approx(0.004)
    # no pickle anywhere in a run directory
    for f in run.iterdir():
        assert f.suffix in (".json", ".safetensors")


def test_broken_runs_are_reported(tmp_path):
    with pytest.raises(RunStoreError, match="not a probe run"):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "tensors.safetensors").write_bytes(b"xx")
    with pytest.raises(RunStoreError, match="unknown run format"):
        load_run(tmp_path)


# ---- aliases, checksums and streamed long captures (issue 11) --------------------------------
def test_aliases_are_stored_once_and_checked(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Identity()).eval()
    with torch.no_grad(), capture(net, "*") as cache:
        net(torch.ones(2, 4))
    run = save_run(cache, tmp_path / "run")
    back, manifest = load_run(run)
    assert manifest["layers"]["1"]["same_as"] == manifest["layers"]["2"]["same_as"] == "0"
    assert back["2"].tensor is back["0"].tensor
    assert len(manifest["tensors_sha256"]) == 64 and len(manifest["manifest_sha256"]) == 64


def test_save_run_refuses_a_users_folder(tmp_path):
    from probe.errors import OutputError

    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with torch.no_grad(), capture(net, "*") as cache:
        net(torch.ones(1, 2))
    (tmp_path / "thesis.tex").write_text("x")
    with pytest.raises(OutputError, match="is not a probe output"):
        save_run(cache, tmp_path)
    save_run(cache, tmp_path, overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "x"
    assert torch.equal(load_run(tmp_path)[0]["0"].tensor, cache["0"].tensor)


@pytest.mark.parametrize("seconds", [0.5, 3.0])
def test_capture_to_run_matches_capture_audio(tmp_path, rng, seconds):
    """Streamed to disk chunk by chunk, or in one piece when the clip fits in one chunk: same tensors."""
    from probe.hooks import capture_audio
    from probe.store import capture_to_run

    torch.manual_seed(0)
    spec = ModelSpec(TinyBLSTM(), input_kind="logmag", grid=TFGrid(8000, 128, 32), input_layout="btf",
                     output_kind="tf_embeddings", name="tiny")
    y = (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32)
    want = capture_audio(spec, y, chunk_seconds=1.0)
    manifest = capture_to_run(spec, y, tmp_path / "r", chunk_seconds=1.0)
    back, _ = load_run(tmp_path / "r")
    assert list(back) == list(want)
    for k in want:
        assert torch.equal(back[k].tensor, want[k].tensor), k
    assert ("chunked" in manifest["extra"]) == (seconds > 1.0)
