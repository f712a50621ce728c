"""Attribution never reports figures that look fine but mean nothing.

Ground truths built here: a model taking ``sqrt`` of the magnitude (a converted ONNX graph's
habit) on a clip ending in exact digital silence — its gradient is infinite on the silent
bins, so the module to blame is known; a model whose forward produces NaN in a known
module; a two-class detector and a clip that holds only the other class's tone (a
near-zero target); a model that reads only the Nyquist row (a near-empty map); a hard
threshold IG cannot integrate (completeness never reached); and long audio (automatic
chunking).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from probe.adapter import ModelSpec
from probe.analyze.faithfulness import CURVE_RANGE, deletion_test
from probe.attribution import attribute
from probe.attribution.methods import AUTO_STEPS
from tests.test_attribution import GRID, SR, LocalConv, box_spec, scene

torch.set_num_threads(1)


# ---- non-finite values --------------------------------------------------------------------------
class Sqrt(nn.Module):
    def __init__(self, eps=0.0):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return torch.sqrt(x + self.eps)


class SqrtDetector(nn.Module):
    """Frame score from the square root of the magnitude (sqrt'(0) = inf on exact silence)."""

    def __init__(self, eps=0.0):
        super().__init__()
        torch.manual_seed(0)
        self.mag_sqrt = Sqrt(eps)
        self.conv = nn.Conv1d(GRID.n_freqs, 2, 1)
        self.act = nn.Sigmoid()

    def forward(self, x):  # (B, F, T)
        return self.act(self.conv(self.mag_sqrt(x)))


def _tone_then_silence():
    t = np.arange(SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y[SR // 2:] = 0.0  # exact digital silence
    return y


def test_sqrt_on_digital_silence_is_caught_located_and_figures_withheld():
    y = _tone_then_silence()
    spec = ModelSpec(SqrtDetector().eval(), input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["a", "b"])
    a = attribute(spec, y, "class=a")
    assert not np.isfinite(a.map).all()  # the map itself shows where (silent bins)
    assert a.nonfinite["stage"] == "gradient" and a.nonfinite["module"] == "mag_sqrt"
    assert a.nonfinite["module_type"] == "Sqrt" and 0 < a.nonfinite["map_nonfinite_fraction"] < 1
    assert a.completeness_error is None and a.convergence_delta is None and not a.available
    msg = [w for w in a.warnings if "NaN/Inf" in w]
    assert len(msg) == 1 and "module 'mag_sqrt' (Sqrt)" in msg[0] and "epsilon" in msg[0] and "noise:-60" in msg[0]
    s = a.summary()
    json.dumps(s)  # JSON-able, no NaN figures
    assert s["completeness_error"] is None and s["nonfinite"]["module"] == "mag_sqrt"
    d = deletion_test(spec, a, n_random=1)
    assert d["auc"] is None and d["drop_at_10"] is None and d["drop_ratio"] is None and "non-finite" in d["reason"]
    # saliency hits the same module
    s2 = attribute(spec, y, "class=a", method="saliency")
    assert s2.nonfinite["module"] == "mag_sqrt"
    # the fix the warning names: an epsilon inside the model → finite, no warning
    fixed = ModelSpec(SqrtDetector(eps=1e-8).eval(), input_kind="stft", grid=GRID, output_kind="frame_probs",
                      classes=["a", "b"])
    ok = attribute(fixed, y, "class=a")
    assert np.isfinite(ok.map).all() and ok.nonfinite is None and ok.completeness_error <= 0.01
    assert not any("NaN" in w for w in ok.warnings)


class NanHead(nn.Module):
    def forward(self, x):  # log of a negative number for every frame whose energy is under 1
        return torch.log(x.sum(1, keepdim=True) - 1.0)


def test_model_returning_nan_names_the_module():
    spec = ModelSpec(nn.Sequential(nn.Identity(), NanHead()).eval(), input_kind="stft", grid=GRID,
                     output_kind="frame_probs", classes=["a"])
    a = attribute(spec, _tone_then_silence(), "class=a", method="saliency")
    assert a.nonfinite["stage"] == "forward" and a.nonfinite["module"] == "1" and a.nonfinite["what"] == "the target f(x)"
    assert a.target_value is None and a.completeness_error is None
    assert any("module '1' (NanHead) outputs NaN/Inf" in w for w in a.warnings)


# ---- steps="auto" ----------------------------------------------------------------------------------
def test_default_ig_raises_steps_until_complete():
    sharp = box_spec(gain=2.0, bias=10.0)  # switches on within a few dB of the clip's level
    y, _ = scene()
    a = attribute(sharp, y, "class=beep,t=0.5:1.0")  # the defaults: IG, adaptive spacing, steps="auto"
    assert a.method == "ig" and a.info["spacing"] == "adaptive"
    assert a.steps_used in AUTO_STEPS and a.completeness_error <= 0.01
    tried = a.info["steps_tried"]
    assert list(tried) == list(AUTO_STEPS[:len(tried)]) and tried[a.steps_used] <= 0.01
    assert all(e > 0.01 for n, e in tried.items() if n < a.steps_used)
    assert not a.warnings
    # linear spacing with few steps is far off: the warning says so and what to do
    lin = attribute(sharp, y, "class=beep,t=0.5:1.0", steps=8, spacing="linear")
    assert lin.completeness_error > 0.05 and lin.steps_used == 8
    assert any(w.startswith("completeness error") and "steps='auto'" in w for w in lin.warnings)


class HardThreshold(nn.Module):
    """Score = 1 if the band energy exceeds a level: zero gradient everywhere, IG can never be complete."""

    def forward(self, x):
        e = x[:, 20:40].sum(1, keepdim=True)
        return (e > 1.0).float() + 0.0 * e


def test_auto_steps_that_never_reach_the_tolerance_warn():
    spec = ModelSpec(HardThreshold().eval(), input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["a"])
    y, _ = scene()
    a = attribute(spec, y, "class=a,t=0.5:1.0", internal_batch_size=64)
    assert a.steps_used == AUTO_STEPS[-1] and a.completeness_error > 0.5
    assert any(f"after {AUTO_STEPS[-1]} steps" in w for w in a.warnings)
    with pytest.raises(Exception, match="steps must be a positive integer or 'auto'"):
        attribute(spec, y, "class=a,t=0.5:1.0", steps="many")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["crnn_sed", "rawcnn_sed"])
def test_zoo_default_ig_is_complete(name):
    import probe

    spec = probe.load(f"zoo:{name}")
    ex = probe.load_example(name, 0)
    a = probe.attribute(spec, ex)  # the defaults the CLI, report and app use
    assert a.completeness_error is not None and a.completeness_error <= 0.01, (a.completeness_error, a.info)
    assert a.steps_used in AUTO_STEPS and not any(w.startswith("completeness") for w in a.warnings)
    # the nested trapezoid rule: each step count reused the last one's gradients
    assert a.info["nested"] and a.info["gradient_evaluations"] == a.steps_used
    assert list(a.info["steps_tried"]) == list(AUTO_STEPS[:len(a.info["steps_tried"])])


# ---- near-zero targets and degenerate maps ---------------------------------------------------------
class TwoBands(nn.Module):
    """Class 0 ('beep') from 800–1200 Hz, class 1 ('hi') from 2.8–3.2 kHz."""

    def __init__(self):
        super().__init__()
        f = GRID.bin_frequencies()
        bands = np.stack([(f >= 800) & (f <= 1200), (f >= 2800) & (f <= 3200)]).astype(np.float32)
        self.register_buffer("bands", torch.as_tensor(bands))
        self.act = nn.Sigmoid()

    def forward(self, x):  # (B, F, T) → (B, 2, T)
        return self.act(0.2 * torch.einsum("cf,bft->bct", self.bands, x) - 4.0)


def test_near_zero_target_and_difference_warn_and_withhold_deletion():
    t = np.arange(SR) / SR
    y = (0.2 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)  # only the 'hi' tone
    spec = ModelSpec(TwoBands().eval(), input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["beep", "hi"])
    a = attribute(spec, y, "class=beep")
    assert a.target_value < 0.02 and a.info["output_scale"] > 0.5
    assert any(w.startswith("near-zero target") and "class 'hi'" in w for w in a.warnings)
    assert any(w.startswith("near-zero difference") for w in a.warnings)
    d = deletion_test(spec, a, n_random=2)
    assert d["auc"] is None and d["insertion_auc"] is None and "differ by at most" in d["reason"]
    good = attribute(spec, y, "class=hi")
    assert not any(w.startswith("near-zero") for w in good.warnings)


class NyquistOnly(nn.Module):
    def forward(self, x):  # reads only the top row: a map that is empty elsewhere
        return torch.sigmoid(x[:, -1:, :] * 10.0)


def test_near_empty_map_and_deletion_no_better_than_random_warn():
    spec = ModelSpec(NyquistOnly().eval(), input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["a"])
    y, _ = scene(1.0)
    a = attribute(spec, y, "class=a", method="saliency")
    assert any(w.startswith("near-empty map") for w in a.warnings)
    # a planted random map ranks bins no better than chance: the deletion test says so
    spec2 = box_spec()
    b = attribute(spec2, scene()[0], "class=beep,t=0.5:1.0", method="ixg")
    b.map = np.random.default_rng(0).standard_normal(b.map.shape).astype(np.float32)
    d = deletion_test(spec2, b, n_random=3)
    assert any(w.startswith("deletion no better than random") for w in d["warnings"])


# ---- faithfulness on any score ---------------------------------------------------------------------
def test_deletion_normalised_by_the_explained_difference_on_a_logit():
    spec = box_spec()
    y, _ = scene()
    a = attribute(spec, y, "class=beep,t=0.5:1.0,score=logit")  # f(b) < 0: a logit, not a probability
    assert a.baseline_value < 0
    d = deletion_test(spec, a, n_random=3)
    c = d["curves"]["deletion"]
    assert c["normalized"][0] == pytest.approx(1.0) and c["normalized"][-1] == pytest.approx(0.0, abs=1e-6)
    ins = d["curves"]["insertion"]["normalized"]
    assert ins[0] == pytest.approx(0.0, abs=1e-6) and ins[-1] == pytest.approx(1.0)
    for key in ("deletion", "deletion_random", "insertion", "insertion_random"):
        v = np.asarray(d["curves"][key]["normalized"])
        assert (v >= CURVE_RANGE[0]).all() and (v <= CURVE_RANGE[1]).all()
    assert d["drop_at_10"] > 0.8 and d["auc"] < d["auc_random"] - 3 * d["auc_random_std"]
    assert d["curves"]["deletion_random"]["n"] == 3 and len(d["curves"]["deletion_random"]["spread"]) == 21
    assert d["drop_ratio"] is None or d["drop_ratio"] > 3
    if d["drop_ratio"] is None:
        assert "a ratio to it would be noise" in d["drop_ratio_reason"]
    assert not d["warnings"]


# ---- long audio ------------------------------------------------------------------------------------------
def test_long_audio_is_chunked_automatically_and_says_so():
    rng = np.random.default_rng(0)
    y = (0.05 * rng.standard_normal(int(61 * SR))).astype(np.float32)
    spec = ModelSpec(LocalConv().eval(), input_kind="logmag", grid=GRID, output_kind="frame_probs", classes=["a", "b"])
    a = attribute(spec, y, "class=a", method="saliency")
    assert a.chunk_seconds == 10.0 and a.info["chunks_n"] >= 6 and a.summary()["chunk_seconds"] == 10.0
    assert a.map.shape == (GRID.n_freqs, GRID.n_frames(len(y)))
    short = attribute(spec, y[:SR], "class=a", method="saliency")
    assert short.chunk_seconds is None


# ---- embedding targets: explain the energy a cluster's mask assigns ---------------------------------
class BandEmbedder(nn.Module):
    """Deep-clustering-like embeddings, (B, T, F) log-magnitude → (B, 2, F, T): bins below 2 kHz point one
    way, bins above the other, each nudged a little by its own level (so the cosines barely move)."""

    def __init__(self):
        super().__init__()
        low = torch.as_tensor(GRID.bin_frequencies() < 2000, dtype=torch.float32)
        self.register_buffer("dirs", torch.stack([low, 1 - low]))  # (2, F)

    def forward(self, x):  # (B, T, F)
        nudge = 0.1 * torch.tanh(0.1 * x)  # the level enters, but hardly turns the unit vectors
        e = self.dirs[None, :, None, :] + nudge[:, None] * self.dirs.flip(0)[None, :, None, :]
        return e.permute(0, 1, 3, 2)  # (B, D, F, T)


def _two_tones():
    t = np.arange(SR) / SR
    return (0.5 * np.sin(2 * np.pi * 500 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)


def test_default_cluster_target_explains_its_mask_energy():
    """The default target of an embedding model is cluster 1 (the louder: the 500 Hz band here). It explains
    mean(m_1 · |X|), which is 0 on a silent baseline: IG is complete by default, the relevance sits in that
    band, and deletion beats random. The cosine target hardly differs between clip and silence: warned."""
    from probe.analyze.embedding_clusters import shared_clustering

    spec = ModelSpec(BandEmbedder(), input_kind="logmag", grid=GRID, input_layout="btf", output_kind="tf_embeddings",
                     n_sources=2)
    y = _two_tones()
    a = attribute(spec, y)
    assert str(a.target) == "cluster=1" and a.target.of == "energy"
    low = GRID.bin_frequencies() < 2000
    c = shared_clustering(spec, y)  # the same clustering: cluster 1 holds the loud low bins
    assert np.array_equal(np.asarray(a.target.bins), c.cluster_bins[0]) and c.cluster_bins[0][low].sum() > 0
    assert not c.cluster_bins[0][~low].any()
    assert a.baseline_value == 0.0 and a.target_value > 0
    assert a.completeness_error <= 0.01 and not any(w.startswith("completeness") for w in a.warnings), a.warnings
    pos = np.clip(a.map, 0, None)
    assert pos[low].sum() / pos.sum() > 0.95
    d = deletion_test(spec, a, n_random=3, seed=0)
    assert d["auc"] < d["auc_random"] - 0.2, d
    # the cosine of the cluster's bins to its centroid: the same on the clip and on silence
    s = attribute(spec, y, "cluster=1,of=similarity")
    assert str(s.target) == "cluster=1,of=similarity"
    assert any(w.startswith("near-zero difference") for w in s.warnings), s.warnings
