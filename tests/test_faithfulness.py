"""Explanation-quality checks on models whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from probe.adapter import ModelSpec
from probe.analyze.faithfulness import (completeness, deletion_curve, deletion_test, ig_steps_for_completeness,
                                        localisation, randomisation_test, spearman, ssim)
from probe.attribution import attribute
from probe.errors import AnalysisError
from tests.test_attribution import BOX, GRID, SR, LinearTF, box_spec, scene

torch.set_num_threads(1)


# ---- SSIM / Spearman ---------------------------------------------------------------------------
def _ssim_slow(a, b, win=7, L=1.0):
    """Direct per-window SSIM (sample statistics), for checking the filter version."""
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    p = win // 2
    vals = []
    for i in range(p, a.shape[0] - p):
        for j in range(p, a.shape[1] - p):
            x, y = a[i - p:i + p + 1, j - p:j + p + 1].ravel(), b[i - p:i + p + 1, j - p:j + p + 1].ravel()
            mx, my = x.mean(), y.mean()
            vx, vy = x.var(ddof=1), y.var(ddof=1)
            cxy = np.cov(x, y, ddof=1)[0, 1]
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_definition_and_bounds():
    rng = np.random.default_rng(0)
    a = rng.random((20, 24))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    assert ssim(a, a, data_range=1.0) == pytest.approx(1.0)
    assert ssim(a, b, data_range=1.0) == pytest.approx(_ssim_slow(a, b), rel=1e-9)
    assert abs(ssim(a, rng.random(a.shape), data_range=1.0)) < 0.15  # independent maps
    with pytest.raises(AnalysisError, match="two 2-D maps of one shape"):
        ssim(a, a[:-1])


def test_spearman():
    rng = np.random.default_rng(1)
    a = rng.random((30, 40))
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert abs(spearman(a, rng.random(a.shape))) < 0.1
    assert np.isnan(spearman(a, np.zeros_like(a)))


# ---- deletion / insertion ----------------------------------------------------------------------
def test_deletion_top10_drops_3x_more_than_random():
    spec = box_spec()
    y, _ = scene()
    a = attribute(spec, y, "class=beep,t=0.5:1.0", method="ig", steps=16)
    d = deletion_test(spec, a, n_random=2)
    assert d["drop_at_10"] >= 3 * d["drop_at_10_random"], d
    assert d["drop_at_10"] > 0.8  # the box is gone: the detector falls to its silence level
    assert d["auc"] < d["auc_random"] and d["insertion_auc"] > d["insertion_auc_random"]
    c = d["curves"]["deletion"]
    assert c["fractions"][0] == 0 and c["normalized"][0] == pytest.approx(1.0)
    # fully deleted = the baseline's score
    assert c["values"][-1] == pytest.approx(a.baseline_value, abs=1e-6)
    with pytest.raises(AnalysisError, match="mode must be"):
        deletion_curve(spec, a, mode="erase")


# ---- randomisation sanity check ------------------------------------------------------------------
class Elementwise(nn.Module):
    def __init__(self, W):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(W, dtype=torch.float32))

    def forward(self, x):
        return x * self.weight

    def reset_parameters(self):
        nn.init.normal_(self.weight)


class TwoLayer(nn.Module):
    """Smooth elementwise T-F weights (a 'trained' band preference) then a time-weighted head."""

    def __init__(self, F, T):
        super().__init__()
        f = np.linspace(0, 1, F)[:, None]
        t = np.linspace(0, 1, T)[None, :]
        self.tf = Elementwise(np.exp(-((f - 0.3) ** 2) / 0.01) * (1 + t))
        self.head = nn.Linear(T, 1)
        with torch.no_grad():
            self.head.weight.fill_(1.0 / T)
            self.head.bias.zero_()

    def forward(self, x):  # (B, F, T)
        return self.head(self.tf(x).sum(1))  # (B, 1)


def test_randomisation_decorrelates_saliency_and_leaves_user_model_alone():
    y, _ = scene(1.0)
    F, T = GRID.n_freqs, GRID.n_frames(len(y))
    model = TwoLayer(F, T).eval()
    spec = ModelSpec(model, input_kind="stft", grid=GRID, output_kind="clip_scores", classes=["s"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = randomisation_test(spec, y, "class=s", method="saliency", return_maps=True)
    assert r["layers"][0] == "trained" and r["layers"][1:] == ["head", "tf"]  # top-down, in call order
    assert r["spearman"][0] == 1.0 and len(r["maps"]) == 3
    assert r["spearman"][-1] <= 0.3 and r["ssim"][-1] < 0.5 and r["ssim_rank"][-1] < 0.5, r
    for k, v in model.state_dict().items():  # the user's model is untouched (a deep copy was randomised)
        assert torch.equal(v, before[k]), k
    ind = randomisation_test(spec, y, "class=s", method="saliency", mode="independent", layers=["head"])
    assert ind["layers"] == ["trained", "head"]


# ---- completeness ------------------------------------------------------------------------------
def test_ig_completeness_on_linear_and_steps_search():
    y, _ = scene(1.0)
    F, T = GRID.n_freqs, GRID.n_frames(len(y))
    W = np.random.default_rng(2).random((F, T)).astype(np.float32)
    lin = ModelSpec(LinearTF(W).eval(), input_kind="stft", grid=GRID, output_kind="clip_scores", classes=["s"])
    a = attribute(lin, y, "class=s", method="ig", steps=4)
    assert completeness(a) <= 1e-4  # linear: exact at any step count
    # a saturating detector needs more steps; the search reports errors and the first count under 1 %
    r = ig_steps_for_completeness(box_spec(), y, "class=beep,t=0.5:1.0", steps=(2, 4, 8, 16, 32), stop=False)
    errs = [r["errors"][n] for n in (2, 4, 8, 16, 32)]
    assert r["steps_needed"] is not None and r["errors"][r["steps_needed"]] <= 0.01
    assert errs[0] > errs[-1]
    assert all(e > 0.01 for n, e in r["errors"].items() if n < r["steps_needed"])
    # InputXGradient has no Captum delta; its own sum is complete on a linear model from silence
    assert completeness(attribute(lin, y, "class=s", method="ixg")) <= 1e-4
    # occlusion gives each bin its whole window's effect: no completeness axiom, no number
    assert completeness(attribute(lin, y, "class=s", method="occlusion", patch=(32, 32))) is None


# ---- localisation --------------------------------------------------------------------------------
def test_localisation_scores_and_chance_level():
    spec = box_spec()
    y, _ = scene()
    a = attribute(spec, y, "class=beep,t=0.5:1.0", method="ig", steps=16)
    loc = localisation(a, BOX)
    assert loc["relevance_mass"] >= 0.9 and loc["pointing_game"] and loc["rank_accuracy"] > 0.5
    assert 800 <= loc["peak"]["freq"] <= 1200 and 0.5 <= loc["peak"]["time"] <= 1.0
    # a flat map scores its box's share of the area (chance level)
    a.map = np.ones_like(a.map)
    flat = localisation(a, BOX)
    assert flat["relevance_mass"] == pytest.approx(flat["box_fraction"], rel=1e-6)
    with pytest.raises(AnalysisError, match="covers no bin"):
        localisation(a, {"onset": 50.0, "offset": 51.0})
