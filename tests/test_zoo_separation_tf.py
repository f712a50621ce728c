"""Spectrogram-domain separation models of the zoo (deep clustering, Chimera, Deep NMF), their
training helpers and the separation metrics.

Ground truth is built in the tests: random embeddings for the loss identity, scaled copies and
orthogonal noise of known power for the metrics, two disjoint tones for the oracle masks.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from model_zoo import chimera, dc_blstm, unfolded_nmf
from model_zoo.metrics import evaluate_separator, oracle_masks, sdr, separation_scores, si_sdr
from model_zoo.recipes._common import (CARD_DIR, CHECKPOINT_DIR, TrainState, load_checkpoint, render_card_md,
                                       save_checkpoint, synthetic_separation_set, write_card)
from probe.adapter import ModelSpec
from probe.errors import AnalysisError, CheckpointError
from probe.grid import TFGrid

MODULES = {"dc_blstm": dc_blstm, "chimera": chimera, "unfolded_nmf": unfolded_nmf}
TINY = {"dc_blstm": {"hidden": 8, "layers": 1, "emb_dim": 4}, "chimera": {"hidden": 8, "layers": 1, "emb_dim": 4},
        "unfolded_nmf": {"atoms_per_source": 3, "n_layers": 2}}


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # OpenBLAS/OpenMP threads on shared cores make small solves crawl
        yield
    torch.set_num_threads(n)


# ---- deep-clustering loss ------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_low_rank_dc_loss_equals_naive_affinity_loss(weighted):
    g = torch.Generator().manual_seed(0)
    B, D, S, F, T = 2, 3, 2, 5, 4
    V = torch.nn.functional.normalize(torch.randn(B, D, F, T, generator=g, dtype=torch.float64), dim=1)
    Y = torch.nn.functional.one_hot(torch.randint(0, S, (B, F, T), generator=g), S).permute(0, 3, 1, 2).double()
    w = (torch.rand(B, F, T, generator=g, dtype=torch.float64) > 0.3).double() if weighted else None
    for normalise in (False, True):
        fast = dc_blstm.dc_loss(V, Y, w, normalise=normalise)
        # the definition, spelled out: sum over bin pairs of w_i w_j (v_i.v_j - y_i.y_j)^2
        v = V.reshape(B, D, -1).transpose(1, 2)
        y = Y.reshape(B, S, -1).transpose(1, 2)
        ww = torch.ones(B, F * T, dtype=torch.float64) if w is None else w.reshape(B, -1)
        ref = []
        for b in range(B):
            tot = sum(ww[b, i] * ww[b, j] * (v[b, i] @ v[b, j] - y[b, i] @ y[b, j]) ** 2
                      for i in range(F * T) for j in range(F * T))
            ref.append(tot / (ww[b].sum() ** 2 if normalise else 1.0))
        assert torch.allclose(fast, torch.stack(ref).mean(), rtol=1e-10)
        assert torch.allclose(fast, dc_blstm.dc_loss_naive(V, Y, w, normalise=normalise), rtol=1e-10)


def test_dc_loss_is_zero_for_ideal_embeddings():
    Y = torch.nn.functional.one_hot(torch.randint(0, 2, (1, 6, 5)), 2).permute(0, 3, 1, 2).float()
    V = torch.cat([Y, torch.zeros(1, 2, 6, 5)], 1)  # D = 4, first two dims = one-hot
    assert float(dc_blstm.dc_loss(V, Y)) == pytest.approx(0.0, abs=1e-6)
    assert float(dc_blstm.dc_loss(V, Y.flip(1))) == pytest.approx(0.0, abs=1e-6)  # labels are permutation-free


# ---- metrics -------------------------------------------------------------------------------
def test_si_sdr_of_scaled_copy_is_huge_and_of_known_noise_is_known():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 8000))
    assert (si_sdr(0.37 * ref, ref) > 90).all()
    # noise orthogonal to the reference at exactly 10 dB below it
    noise = rng.standard_normal((2, 8000))
    noise -= noise.mean(1, keepdims=True)
    r0 = ref - ref.mean(1, keepdims=True)
    noise -= (noise * r0).sum(1, keepdims=True) / (r0 * r0).sum(1, keepdims=True) * r0
    noise *= np.linalg.norm(r0, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True) / np.sqrt(10)
    np.testing.assert_allclose(si_sdr(ref + noise, ref), [10.0, 10.0], atol=1e-6)
    np.testing.assert_allclose(si_sdr(3 * (ref + noise), ref), [10.0, 10.0], atol=1e-6)  # scale-invariant
    # SDR lets a 512-tap filter explain part of white noise: a bit above 10 dB, not far
    d = sdr(ref + noise, ref)
    assert ((d > 9.9) & (d < 11.5)).all()


def test_metrics_match_outputs_to_references_by_permutation():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 8000))
    est = np.stack([ref[1] + 0.5 * rng.standard_normal(8000), ref[0] + 0.01 * rng.standard_normal(8000)])
    vals, perm = si_sdr(est, ref, return_perm=True)
    assert list(perm) == [1, 0]
    assert vals[0] > 35 and 3 < vals[1] < 9  # values in reference order
    np.testing.assert_allclose(si_sdr(est[::-1], ref), vals)


def test_mixture_as_estimate_has_zero_improvement():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((2, 8000)).astype(np.float32)
    mix = ref.sum(0)
    sc = separation_scores(np.stack([mix, mix]), ref, mix)
    assert sc["si_sdri"] == pytest.approx(0.0, abs=1e-9) and sc["sdri"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(AnalysisError, match="est has 3 sources, ref has 2"):
        separation_scores(np.stack([mix] * 3), ref, mix)


def test_oracle_ibm_separates_two_disjoint_tones():
    grid = TFGrid(8000, n_fft=256, hop_length=64)
    t = np.arange(16000) / 8000
    src = np.stack([np.sin(2 * np.pi * 312.5 * t), 0.5 * np.sin(2 * np.pi * 2000 * t)]).astype(np.float32)
    mix = src.sum(0)
    masks, est = oracle_masks(mix, src, grid, "ibm")
    assert masks.shape == (2, 129, 251) and set(np.unique(masks)) <= {0.0, 1.0}
    assert masks[0, 10].mean() == 1.0 and masks[1, 64].mean() == 1.0  # 312.5 Hz = bin 10, 2 kHz = bin 64
    sc = separation_scores(est, src, mix)
    assert sc["si_sdri"] > 30
    res = evaluate_separator(lambda y: np.stack([y, y]) / 2, [{"mixture": mix, "sources": src}], grid)
    assert res["oracle_irm"]["si_sdri"] > 25 and abs(res["model"]["si_sdri"]) < 1e-6


# ---- models: contract, checkpoints ---------------------------------------------------------
@pytest.mark.parametrize("name", list(MODULES))
def test_model_contract_and_canonical_output(name):
    mod = MODULES[name]
    assert mod.NAME == name and mod.TASK == "separation" and isinstance(mod.DEFAULT_CONFIG, dict)
    model = mod.build(TINY[name]).eval()
    spec = mod.make_spec(model)
    assert isinstance(spec, ModelSpec) and spec.grid.sample_rate == 8000 and spec.grid.n_fft == 256
    y = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    with torch.no_grad():
        out = spec.forward(y)
    T = spec.grid.n_frames(4000)
    if spec.output_kind == "tf_embeddings":
        assert out.shape == (1, 4, 129, T)
        assert torch.allclose(out.norm(dim=1), torch.ones(1, 129, T), atol=1e-5)
    else:
        assert out.shape == (1, 2, 129, T)
        assert torch.allclose(out.sum(1), torch.ones(1, 129, T), atol=1e-4)
    est = mod.separate(model, y)
    assert est.shape == (2, 4000) and est.dtype == np.float32
    if name == "chimera":
        with torch.no_grad():
            assert spec.forward(y, kind="tf_embeddings").shape == (1, 4, 129, T)


@pytest.mark.parametrize("name", list(MODULES))
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    mod = MODULES[name]
    torch.manual_seed(3)
    model = mod.build(TINY[name]).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the init, so a missed tensor would show
            p.add_(0.01 * torch.rand_like(p))
        for b in model.buffers():
            b.add_(0.1)
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", name=name, config=model.config)
    state, meta = load_checkpoint(path)
    assert meta["name"] == name and meta["config"] == model.config
    again = mod.build(meta["config"]).eval()
    again.load_state_dict(state, strict=True)
    y = np.random.default_rng(4).standard_normal(3000).astype(np.float32) * 0.1
    x = mod.make_spec(model).features(y)
    with torch.no_grad():
        a, b = model(x), again(x)
    for k in (a if isinstance(a, dict) else {"out": None}):
        ta, tb = (a[k], b[k]) if isinstance(a, dict) else (a, b)
        assert torch.equal(ta, tb)
    np.testing.assert_array_equal(mod.separate(model, y), mod.separate(again, y))


def test_checkpoints_refuse_pickles(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="must be safetensors"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_train_state_restores_model_optimizer_and_scalars(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    rng = np.random.default_rng(7)
    TrainState("m", model, opt, root=tmp_path).save(step=3, best=1.5, rng=rng.bit_generator.state)
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    scal = TrainState("m", model2, opt2, root=tmp_path).restore()
    assert scal["step"] == 3 and scal["best"] == 1.5
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = scal["rng"]
    assert rng2.random() == rng.random()
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (model2, opt2)):  # one more identical step from the restored state
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight) and torch.equal(model.bias, model2.bias)
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))


def test_train_loop_weight_average_is_the_ema_it_scores_and_returns(tmp_path):
    """With ``average_decay`` the loop scores and returns the exponential moving average of the
    weights (checked against an EMA computed by hand over the same steps), and the training state
    carries the average across a resume."""
    import argparse

    from model_zoo.recipes._common import train_loop

    class Sampler:  # fixed batches: each step's update is reproducible
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def batch(self, b):
            return self.rng.standard_normal((b, 3)).astype(np.float32), np.zeros((b, 1, 3), np.float32)

    def step_fn(m, mix, src):
        return (m(mix) - 1.0).pow(2).mean()

    decay, steps = 0.9, 6
    args = argparse.Namespace(minutes=None, steps=steps, lr=0.05, batch_size=4, resume=False, smoke=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    seen = []
    info = train_loop(name="ema", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                      step_fn=step_fn, sampler=Sampler(), args=args, eval_every_s=1e9, clip=None,
                      val_fn=lambda m: seen.append(m.weight.detach().clone()) or 0.0, average_decay=decay,
                      train_root=tmp_path, log=lambda *a: None)
    # the same steps by hand; the lr follows the loop's schedule (cosine_lr)
    from model_zoo.recipes._common import cosine_lr

    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    smp, ema = Sampler(), ref.weight.detach().clone()  # the average starts at the initial weights
    for k in range(steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(0.05, k / steps)
        mix, _ = smp.batch(4)
        opt.zero_grad()
        step_fn(ref, torch.from_numpy(mix), None).backward()
        opt.step()
        w = ref.weight.detach().clone()
        ema = decay * ema + (1 - decay) * w
    assert info["steps"] == steps and len(seen) == 1
    torch.testing.assert_close(seen[0], ema)  # validation saw the average, not the raw weights
    torch.testing.assert_close(model.weight.detach(), ema)  # and the model returns holding it
    assert not torch.allclose(ema, ref.weight.detach(), atol=1e-4)  # the average really differs from the raw

    from model_zoo.recipes._common import WeightAverage

    avg = WeightAverage(ref, decay)
    with torch.no_grad():
        ref.weight.add_(1.0)
    avg.update(ref)
    TrainState("s", ref, opt, root=tmp_path, average=avg).save(step=1)
    ref2 = torch.nn.Linear(3, 1)
    avg2 = WeightAverage(ref2, decay)
    TrainState("s", ref2, None, root=tmp_path, average=avg2).restore()
    torch.testing.assert_close(avg2.state["weight"], avg.state["weight"])
    torch.testing.assert_close(ref2.weight, ref.weight)  # the live weights come back as the live weights
    assert not torch.allclose(avg2.state["weight"], ref2.weight)


def test_write_card_renders_metrics_table(tmp_path):
    card = {"task": "separation", "params": 12345,
            "metrics": {"test": {"model": {"si_sdri": 10.0, "sdri": 11.0}, "oracle_ibm": {"si_sdri": 17.0, "sdri": 18.0},
                                 "n_items": 50}},
            "data": {"licences": ["fluid-soundfont-gm (MIT)"]}, "notes": ["honest note"]}
    jp, mp = write_card("toy", card, out_dir=tmp_path)
    assert json.loads(jp.read_text())["metrics"]["test"]["n_items"] == 50
    md = mp.read_text()
    assert "| model | 10.00 | 11.00 |" in md and "| oracle_ibm | 17.00 | 18.00 |" in md
    assert "fluid-soundfont-gm (MIT)" in md and "honest note" in md
    assert render_card_md(json.loads(jp.read_text())) == md


def test_unfolded_nmf_at_init_is_the_nmf_it_unfolds():
    from model_zoo.baselines import SupervisedNMF, mu_activations

    items = synthetic_separation_set("train", 3, seconds=1.0)
    nmf = SupervisedNMF(n_components=4, max_iter=5).fit(items)
    model = unfolded_nmf.init_from_baseline(unfolded_nmf.build({"atoms_per_source": 4, "n_layers": 5}),
                                            nmf.components_)
    y = items[0]["mixture"]
    masks_nmf, X = nmf.masks(y)
    with torch.no_grad():
        masks_net = model(X.abs()[None])[0].numpy()
    np.testing.assert_allclose(masks_net, masks_nmf, atol=2e-4)
    V = X.abs().numpy() / X.abs().numpy().mean()
    H = mu_activations(V, nmf.components_, n_iter=5)
    assert H.shape == (8, X.shape[1]) and (H >= 0).all()


# ---- recipes -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODULES))
def test_recipe_smoke_trains_two_steps_and_writes_card(name, tmp_path):
    recipe = importlib.import_module(f"model_zoo.recipes.{name}")
    shipped = CHECKPOINT_DIR / f"{name}.safetensors"
    before = shipped.stat().st_mtime_ns if shipped.is_file() else None
    card = recipe.main(["--smoke", "--out-dir", str(tmp_path)])
    assert (tmp_path / "checkpoints" / f"{name}.safetensors").is_file()
    saved = json.loads((tmp_path / "cards" / f"{name}.json").read_text())
    assert saved["training"]["steps"] == 2 and saved["data"]["synthetic"] is True
    rows = saved["metrics"]["test"]
    assert {"oracle_ibm", "oracle_irm"} <= set(rows) and rows["oracle_ibm"]["si_sdri"] > 5
    assert set(saved["subset_metrics"]["systems"]) >= set(MODULES[name].SYSTEMS)
    assert (tmp_path / "cards" / f"{name}.md").read_text().startswith(f"# {name}")
    assert card["params"] == saved["params"]
    # a smoke run never touches the shipped checkpoint
    assert (shipped.stat().st_mtime_ns if shipped.is_file() else None) == before
    if name == "dc_blstm":  # --card-only re-evaluates the saved checkpoint and keeps the training facts
        again = recipe.main(["--smoke", "--out-dir", str(tmp_path), "--card-only"])
        assert again["training"]["steps"] == 2 and "card_rewritten" in again["training"]
        for k, row in saved["metrics"]["test"].items():
            if isinstance(row, dict) and "si_sdri" in row:
                assert again["metrics"]["test"][k]["si_sdri"] == pytest.approx(row["si_sdri"], abs=1e-3)


# ---- shipped checkpoints are honest ---------------------------------------------------------
@pytest.mark.parametrize("name", list(MODULES))
def test_shipped_checkpoint_matches_its_card_on_the_fixed_subset(name):
    ckpt, card_path = CHECKPOINT_DIR / f"{name}.safetensors", CARD_DIR / f"{name}.json"
    assert ckpt.is_file() and card_path.is_file(), f"no shipped checkpoint/card for {name}"
    card = json.loads(card_path.read_text())
    assert ckpt.stat().st_size <= 10 * 2**20
    state, meta = load_checkpoint(ckpt)
    mod = MODULES[name]
    model = mod.build(meta["config"]).eval()
    model.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in model.parameters()) == card["params"]
    sub = card["subset_metrics"]
    items = mod.load_items(sub["split"], n=sub["n_items"])  # missing data: MissingSourceError names the fix
    res = evaluate_separator({k: (lambda y, f=f: f(model, y)) for k, f in mod.SYSTEMS.items()}, items, mod.GRID,
                             oracles=())
    for k in mod.SYSTEMS:
        for m in ("si_sdri", "sdri"):
            assert res[k][m] == pytest.approx(sub["systems"][k][m], abs=0.3), (k, m)
