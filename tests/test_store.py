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
