import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from probe import ModelSpec, TFGrid, load_spec, load_state_dict
from probe.errors import CheckpointError, SpecError
from tests._models import TinyBLSTM, write_user_spec


def test_spec_file_builds_user_model_and_canonical_output(tmp_path, rng):
    spec = load_spec(write_user_spec(tmp_path))
    assert spec.input_kind == "logmel" and spec.grid.n_mels == 32 and spec.classes == ["speech", "music", "noise"]
    assert not spec.model.training
    y = rng.standard_normal(16000).astype(np.float32) * 0.1
    x = spec.features(y)
    assert x.shape == (1, 1, 32, 101)  # bcft
    out = spec.forward(y)
    assert out.shape == (1, 3, 101)  # canonical bct from the model's btc


def test_relative_checkpoint_loaded_from_safetensors(tmp_path):
    spec0 = load_spec(write_user_spec(tmp_path))
    sd = {k: torch.full_like(v, 0.123) for k, v in spec0.model.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    spec = load_spec(write_user_spec(tmp_path, checkpoint="w.safetensors"))
    assert torch.equal(spec.model.conv.weight, torch.full_like(spec.model.conv.weight, 0.123))


def test_weights_only_torch_checkpoint_accepted(tmp_path):
    spec0 = load_spec(write_user_spec(tmp_path))
    torch.save({"state_dict": spec0.model.state_dict()}, tmp_path / "w.pt")
    spec = load_spec(write_user_spec(tmp_path, checkpoint="w.pt"))
    assert torch.equal(spec.model.out.weight, spec0.model.out.weight)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/probe_pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    import os

    if os.path.exists("/tmp/probe_pwned"):
        os.remove("/tmp/probe_pwned")
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_state_dict(p)
    assert not os.path.exists("/tmp/probe_pwned")


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_state_dict(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        load_state_dict(bad)
    save_file({"nope": torch.zeros(2)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit the model: missing"):
        load_spec(write_user_spec(tmp_path, checkpoint="wrong.safetensors"))


@pytest.mark.parametrize("toml,msg", [
    ("[input]\nkind='waveform'\nsample_rate=8000\n", r"needs a \[model\] section"),
    ("[model]\nfactory='usermodel:build'\n[input]\nkind='wave'\nsample_rate=8000\n", "unknown input kind 'wave'"),
    ("[model]\nfactory='usermodel:nothere'\n[input]\nkind='waveform'\nsample_rate=8000\n", "has no attribute 'nothere'"),
    ("[model]\nfactory='nomodule_xyz:build'\n[input]\nkind='waveform'\nsample_rate=8000\n", "cannot import factory module"),
    ("[model]\nfactory='usermodel'\n[input]\nkind='waveform'\nsample_rate=8000\n", "module:callable"),
    ("[model]\nfactory='usermodel:build'\n[input]\nkind='logmel'\nsample_rate=16000\n", "needs n_mels"),
    ("not toml [", "not valid TOML"),
])
def test_bad_spec_files(tmp_path, toml, msg):
    write_user_spec(tmp_path)
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(SpecError, match=msg):
        load_spec(p)


def test_layouts_and_kinds(rng):
    spec = ModelSpec(TinyBLSTM(), input_kind="logmag", grid=TFGrid(8000, 128, 32), input_layout="btf",
                     output_kind="tf_embeddings")
    y = rng.standard_normal(4000).astype(np.float32)
    assert spec.features(y).shape == (1, 126, 65)
    v = spec.forward(y)
    assert v.shape == (1, 4, 65, 126)
    np.testing.assert_allclose(v.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)
    with pytest.raises(SpecError, match="does not fit input kind"):
        ModelSpec(TinyBLSTM(), input_kind="waveform", grid=TFGrid(8000), input_layout="btf")
    with pytest.raises(SpecError, match="unknown output kind"):
        ModelSpec(TinyBLSTM(), input_kind="logmag", grid=TFGrid(8000), output_kind="probs")
    with pytest.raises(SpecError, match="must be a torch.nn.Module"):
        ModelSpec(object(), input_kind="waveform", grid=TFGrid(8000))


def test_representation_from_magnitude_matches_features(rng):
    g = TFGrid(16000, 512, 160, n_mels=32)
    spec = ModelSpec(torch.nn.Identity(), input_kind="logmel", grid=g)
    y = torch.from_numpy(rng.standard_normal(8000).astype(np.float32))
    np.testing.assert_allclose(spec.representation_from_magnitude(g.magnitude(y)).numpy(), spec.representation(y).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_a_double_precision_model_gets_its_input_in_float64():
    """``model.double()`` (scientific code does this): probe's float32 input is cast at the model's door, every
    analysis runs, gradients flow back to the float32 spectrogram, and the model's weights are untouched."""
    import numpy as np
    import torch

    from probe import attribute
    from probe.hooks import capture_audio

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(129, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv1d(4, 2, 1),
                              torch.nn.Sigmoid()).double().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spec = ModelSpec(net, input_kind="logmag", grid=TFGrid(8000, n_fft=256, hop_length=64), output_kind="frame_probs",
                     classes=["a", "b"])
    y = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.float32)
    out = spec.forward(y)
    assert out.dtype == torch.float64 and out.shape == (1, 2, 126)
    cache = capture_audio(spec, y, layers="0")
    assert cache["0"].shape[-1] == 126
    a = attribute(spec, y, "class=a", method="ig")
    assert np.isfinite(a.map).all() and a.completeness_error <= 0.01
    assert all(torch.equal(before[k], v) and v.dtype == torch.float64 for k, v in net.state_dict().items())
