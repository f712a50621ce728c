"""Waveform-domain zoo models: nmf_ae, convtasnet_lite, partitioned_ae.

Ground truth is built here: random inputs of odd lengths, planted filter weights, exact
zero-masking, a save → load round trip, 2-step smoke trainings, and, for shipped
checkpoints, a re-evaluation of the card's numbers on the first 8 test items.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.filterbank import filters

NAMES = ("nmf_ae", "convtasnet_lite", "partitioned_ae")
ZOO = Path(__file__).resolve().parent.parent / "model_zoo"


def _mod(name):
    return importlib.import_module(f"model_zoo.{name}")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name", NAMES)
def test_module_contract(name):
    mod = _mod(name)
    assert mod.NAME == name
    assert mod.TASK == ("denoising" if name == "partitioned_ae" else "separation")
    for attr in ("DEFAULT_CONFIG", "build", "make_spec", "example", "separate"):
        assert hasattr(mod, attr), attr
    spec = mod.make_spec(mod.build())
    assert spec.input_kind == "waveform" and spec.output_kind == "sources" and spec.n_sources == 2
    assert (spec.grid.sample_rate, spec.grid.n_fft, spec.grid.hop_length) == (8000, 256, 64)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 7, 999, 4001])
def test_output_has_input_length(name, n):
    mod = _mod(name)
    model = mod.build().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, n) * 0.1)
    assert out.shape == (2, 2, n)
    assert torch.isfinite(out).all()
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1 if n > 1 else np.array([0.1, -0.1], np.float32)
    est = mod.separate(model, y)
    assert est.shape == (2, len(y)) and est.dtype == np.float32
    # canonical spec output is (batch, sources, samples)
    assert tuple(mod.make_spec(model).forward(y).shape) == (1, 2, len(y))


@pytest.mark.parametrize("name", NAMES)
def test_filters_finds_analysis_and_synthesis_banks(name):
    mod = _mod(name)
    model = mod.build()
    cfg = mod.DEFAULT_CONFIG
    # plant known kernels: cosines at known frequencies, so the bank's weights are checkable exactly
    K, L = cfg["n_filters"], cfg["kernel_size"]
    t = np.arange(L) / 8000
    planted = np.stack([np.cos(2 * np.pi * (100 + 3900 * k / K) * t) for k in range(K)]).astype(np.float32)
    with torch.no_grad():
        model.encoder.weight.copy_(torch.from_numpy(planted[:, None]))
        model.decoder.weight.copy_(torch.from_numpy(planted[:, None] * 0.5))
    banks = filters(mod.make_spec(model))
    assert list(banks) == ["encoder", "decoder"]
    enc, dec = banks["encoder"], banks["decoder"]
    assert (enc.role, enc.axis, enc.sample_rate, enc.stride) == ("analysis", "samples", 8000, cfg["stride"])
    assert (dec.role, dec.axis, dec.sample_rate, dec.stride) == ("synthesis", "samples", 8000, cfg["stride"])
    np.testing.assert_array_equal(enc.kernels, planted)
    np.testing.assert_array_equal(dec.kernels, planted * 0.5)
    assert type(model.encoder) is torch.nn.Conv1d and type(model.decoder) is torch.nn.ConvTranspose1d
    # the analysis bank is the first module to see the waveform, the synthesis bank the last to write it
    first = next(m for m in model.modules() if m is not model)
    assert first is model.encoder
    assert list(model.children())[-1] is model.decoder


def test_partitioned_ae_zero_masks_partitions_exactly():
    from model_zoo.partitioned_ae import build, denoise, separate

    model = build().eval()
    x = torch.randn(3, 1, 1601) * 0.05
    with torch.no_grad():
        both = model.analyse(x)
        no_sig = model.analyse(x, zero="signal")
        no_noise = model.analyse(x, zero="noise")
        gated = model.analyse(x, signal_gate=torch.tensor([1.0, 0.0, 1.0]))
    # noise-only mode: the signal partition is exactly zero, and so is the signal it decodes
    assert torch.count_nonzero(no_sig["z_signal"]) == 0
    assert torch.count_nonzero(no_sig["sources"][:, 0]) == 0
    assert torch.count_nonzero(no_noise["z_noise"]) == 0
    assert torch.count_nonzero(no_noise["sources"][:, 1]) == 0
    # the per-item gate masks only the gated item
    assert torch.count_nonzero(gated["sources"][1, 0]) == 0
    torch.testing.assert_close(gated["sources"][0], both["sources"][0])
    torch.testing.assert_close(gated["sources"][2], both["sources"][2])
    # the partition masks sum to one (up to eps), so signal + noise = the autoencoder's reconstruction
    rec = both["reconstruction"][:, 0]
    err = (both["sources"].sum(1) - rec).norm() / rec.norm()
    assert err < 1e-2
    # denoise mode returns the signal partition's decoding
    y = x[0, 0].numpy()
    np.testing.assert_array_equal(denoise(model, y), separate(model, y)[0])
    # an all-zero signal code gives masks that are exactly zero for the signal partition
    assert torch.count_nonzero(no_sig["masks"][:, 0]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path, monkeypatch):
    from model_zoo import registry
    from model_zoo.recipes._common import load_checkpoint, save_checkpoint

    mod = _mod(name)
    cfg = {**mod.DEFAULT_CONFIG, "n_filters": 32, "hidden": 16}
    model = mod.build(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", name=name, config=cfg)
    state, meta = load_checkpoint(path)
    assert meta["name"] == name and meta["config"]["n_filters"] == 32
    again = mod.build(meta["config"])
    again.load_state_dict(state, strict=True)
    again.eval()
    x = torch.randn(2, 1, 1234) * 0.1
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # and through the zoo registry
    monkeypatch.setattr(registry, "checkpoint_path", lambda n: path)
    spec = registry.load_model(name)
    with torch.no_grad():
        assert torch.equal(spec.forward(x[:, 0]), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_recipe_smoke_trains_two_steps(name, tmp_path):
    recipe = importlib.import_module(f"model_zoo.recipes.{name}")
    card = recipe.main(["--smoke", "--out-dir", str(tmp_path)])
    assert card["training"]["steps"] == 2
    ckpt = tmp_path / "checkpoints" / f"{name}.safetensors"
    assert ckpt.is_file() and ckpt.stat().st_size < 10 * 2**20
    written = json.loads((tmp_path / "cards" / f"{name}.json").read_text())
    assert written["params"] > 0 and "subset_metrics" in written and "test" in written["metrics"]
    assert (tmp_path / "cards" / f"{name}.md").read_text().startswith(f"# {name}")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_checkpoint_matches_its_card(name):
    ckpt, card_path = ZOO / "checkpoints" / f"{name}.safetensors", ZOO / "cards" / f"{name}.json"
    assert ckpt.is_file() and card_path.is_file(), f"{name} has no shipped checkpoint/card"
    assert ckpt.stat().st_size <= 10 * 2**20
    card = json.loads(card_path.read_text())
    assert card["checkpoint_bytes"] == ckpt.stat().st_size
    if "checkpoint_sha256" in card:  # cards written since issue 16 name the exact file
        import hashlib

        assert card["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    want = card["subset_metrics"]
    from model_zoo.registry import load_model

    spec = load_model(name)
    model = spec.model
    if name == "partitioned_ae":
        from model_zoo.data import noisy_set
        from model_zoo.recipes.partitioned_ae import subset_metrics

        got = subset_metrics(model, noisy_set("test", n=want["n_items"]))
        keys = ("snri", "si_sdri")
    else:
        from model_zoo.data import separation_set
        from model_zoo.recipes.convtasnet_lite import subset_metrics

        mod = _mod(name)
        items = separation_set(card["config"]["dataset"], "test", n=want["n_items"])
        got = subset_metrics(lambda y: mod.separate(model, y), items, spec.grid)
        keys = ("si_sdri", "sdri")
    for k in keys:
        assert abs(got[k] - want[k]) <= 0.3, (k, got[k], want[k])
