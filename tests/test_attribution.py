"""Attribution on the T-F grid: tiny models with analytic answers.

Ground truths built here: a linear model on |X| (IG = weight * (x - baseline)), a
detector that only looks at a known T-F box, a waveform model vs the same model behind an
explicitly written inverse-STFT front end, a local model for chunked-vs-unchunked, and a
scene whose in-box tone stem is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from probe.adapter import ModelSpec
from probe.attribution import (Attribution, ClassTarget, EmbeddingTarget, SourceTarget, attribute, listen, parse_target,
                               snr_db, write_explanation)
from probe.errors import AnalysisError, SpecError
from probe.grid import TFGrid

torch.set_num_threads(1)

SR = 8000
GRID = TFGrid(SR, n_fft=256, hop_length=64)  # 129 bins of 31.25 Hz, 8 ms frames
BOX = {"label": "beep", "onset": 0.5, "offset": 1.0, "fmin": 800.0, "fmax": 1200.0}


# ---- signals -------------------------------------------------------------------------------
def scene(seconds=2.0, seed=0):
    """A 1 kHz tone inside BOX, a 3 kHz tone all along, a broadband noise burst at 1.3–1.6 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    a, b = int(BOX["onset"] * SR), int(BOX["offset"] * SR)
    fade = int(0.02 * SR)
    env = np.zeros(max(n, b))
    env[a:b] = 1.0
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    env[a:a + fade] = ramp
    env[b - fade:b] = ramp[::-1]
    env = env[:n]
    stem = 0.3 * np.sin(2 * np.pi * 1000 * t) * env
    other = 0.2 * np.sin(2 * np.pi * 3000 * t)
    burst = np.zeros(n)
    seg = burst[int(1.3 * SR):int(1.6 * SR)]
    seg[:] = 0.05 * rng.standard_normal(seg.size)
    return (stem + other + burst).astype(np.float32), stem.astype(np.float32)


# ---- models --------------------------------------------------------------------------------
class LinearTF(nn.Module):
    """Clip score = sum(W * |X|): IG from baseline b is exactly W * (x - b)."""

    def __init__(self, W):
        super().__init__()
        self.W = nn.Parameter(torch.as_tensor(W, dtype=torch.float32))

    def forward(self, x):  # (B, F, T)
        return (x * self.W).sum((-1, -2))[:, None]


class BoxDetector(nn.Module):
    """p(t) = sigmoid(gain * smooth_t(band energy 800–1200 Hz) - bias); blind outside the band."""

    def __init__(self, grid=GRID, f0=800.0, f1=1200.0, gain=0.2, bias=4.0):
        super().__init__()
        f = grid.bin_frequencies()
        self.register_buffer("band", torch.as_tensor(((f >= f0) & (f <= f1)).astype(np.float32)))
        self.smooth = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.smooth.weight.copy_(torch.tensor([[[0.25, 0.5, 0.25]]]))
        self.act = nn.Sigmoid()
        self.gain, self.bias = gain, bias

    def forward(self, x):  # (B, F, T) → (B, 1, T)
        e = (x * self.band[:, None]).sum(1, keepdim=True)
        return self.act(self.gain * self.smooth(e) - self.bias)


def box_spec(**kw):
    return ModelSpec(BoxDetector(**kw).eval(), input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["beep"])


class LocalConv(nn.Module):
    """Log-magnitude conv detector with a short receptive field (5 frames), for chunking."""

    def __init__(self, n_freqs=129, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv1d(n_freqs, 4, 5, padding=2)
        self.head = nn.Conv1d(4, 2, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, x):  # (B, F, T) log-magnitude
        return torch.sigmoid(self.head(torch.tanh(self.conv(x))))


class WaveNet(nn.Module):
    """A small waveform classifier: strided Conv1d → ReLU → mean over time → Linear."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.front = nn.Conv1d(1, 6, 64, stride=16)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 2)

    def forward(self, y):  # (B, 1, n)
        return self.head(self.act(self.front(y)).mean(-1))


class ExplicitFrontEnd(nn.Module):
    """The same waveform net behind a hand-written inverse STFT with the mixture's phase."""

    def __init__(self, net, phase, n, n_fft=256, hop=64):
        super().__init__()
        self.net = net
        self.register_buffer("cos", torch.as_tensor(np.cos(phase), dtype=torch.float32))
        self.register_buffer("sin", torch.as_tensor(np.sin(phase), dtype=torch.float32))
        self.n, self.n_fft, self.hop = n, n_fft, hop

    def forward(self, mag):  # (B, F, T)
        S = torch.complex(mag * self.cos, mag * self.sin)
        y = torch.istft(S, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), center=True, length=self.n)
        return self.net(y[:, None, :])


class TinyCRNN(nn.Module):
    def __init__(self, n_mels=16):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.gru = nn.GRU(4 * n_mels, 8, batch_first=True)
        self.out = nn.Linear(8, 2)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):  # (B, F, T) log-mel
        h = self.act(self.conv(x[:, None]))
        b, c, f, t = h.shape
        h, _ = self.gru(self.drop(h.reshape(b, c * f, t).transpose(1, 2)))
        return torch.sigmoid(self.out(h)).transpose(1, 2)


def crnn_spec():
    g = TFGrid(SR, n_fft=256, hop_length=64, n_mels=16)
    return ModelSpec(TinyCRNN().eval(), input_kind="logmel", grid=g, output_kind="frame_probs", classes=["a", "b"])


# ---- targets -------------------------------------------------------------------------------
def test_parse_targets():
    t = parse_target("class=bell,t=3.0:3.5")
    assert isinstance(t, ClassTarget) and t.cls == "bell" and t.t == (3.0, 3.5) and t.reduce == "mean"
    s = parse_target("source=1,f=200:1000")
    assert isinstance(s, SourceTarget) and s.index == 0 and s.f == (200.0, 1000.0) and s.t is None
    assert str(s) == "source=1,f=200:1000"
    assert parse_target("class=bell,t=1:2,reduce=max").reduce == "max"
    lg = parse_target("class=bell,score=logit")
    assert lg.score == "logit" and str(lg) == "class=bell,score=logit"
    p = torch.tensor([[0.5, 0.9]])
    assert torch.allclose(lg._score(p), torch.log(p / (1 - p)))
    assert isinstance(parse_target("cluster=2"), EmbeddingTarget)
    with pytest.raises(AnalysisError, match="unknown key 'tt'"):
        parse_target("class=bell,tt=3:4")
    with pytest.raises(AnalysisError, match="numbered from 1"):
        parse_target("source=0")
    with pytest.raises(AnalysisError, match="end > start"):
        parse_target("class=bell,t=3:2")
    with pytest.raises(AnalysisError, match="exactly one of"):
        parse_target("t=1:2")


def test_class_target_frames_and_errors():
    spec = box_spec()
    y, _ = scene()
    with pytest.raises(AnalysisError, match=r"unknown class 'bell'; the model's classes are \['beep'\]"):
        attribute(spec, y, "class=bell", method="saliency")
    with pytest.raises(AnalysisError, match="masks or sources"):
        attribute(spec, y, "source=1", method="saliency")
    with pytest.raises(AnalysisError, match="unknown attribution method 'magic'"):
        attribute(spec, y, "class=beep", method="magic")
    with pytest.raises(SpecError, match="needs a ModelSpec"):
        attribute(spec.model, y, "class=beep")


# ---- ground truth: linear model ----------------------------------------------------------
def test_linear_model_ig_equals_weight_times_delta():
    y, _ = scene(1.0)
    F, T = GRID.n_freqs, GRID.n_frames(len(y))
    W = np.random.default_rng(1).standard_normal((F, T)).astype(np.float32)
    spec = ModelSpec(LinearTF(W).eval(), input_kind="stft", grid=GRID, output_kind="clip_scores", classes=["s"])
    X = GRID.magnitude(torch.as_tensor(y)).numpy()
    for base in ("silence", "noise:-30"):
        a = attribute(spec, y, "class=s", method="ig", baseline=base, steps=8)
        np.testing.assert_allclose(a.map, W * (X - a.baseline), rtol=1e-4, atol=1e-4 * np.abs(W * X).max())
        assert a.completeness_error <= 0.01
        assert a.map.shape == (F, T) and a.times.shape == (T,) and a.freqs[-1] == SR / 2
        assert abs(a.target_value - float((W * X).sum())) < 1e-3 * abs(a.target_value) + 1e-3
    # a bandstop baseline confines relevance to the band: outside it input and baseline agree
    a = attribute(spec, y, "class=s", method="ig", baseline="bandstop:800:1200", steps=8)
    out = (a.freqs < 800) | (a.freqs > 1200)
    assert np.abs(a.map[out]).max() == 0.0 and np.abs(a.map[~out]).max() > 0
    # InputXGradient on a linear model: W * x exactly; Saliency: |W|
    np.testing.assert_allclose(attribute(spec, y, "class=s", method="ixg").map, W * X, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attribute(spec, y, "class=s", method="saliency").map, np.abs(W), rtol=1e-6)


def test_ig_spacing_and_geometric_path():
    y, _ = scene(1.0)
    F, T = GRID.n_freqs, GRID.n_frames(len(y))
    W = np.random.default_rng(1).standard_normal((F, T)).astype(np.float32)
    spec = ModelSpec(LinearTF(W).eval(), input_kind="stft", grid=GRID, output_kind="clip_scores", classes=["s"])
    X = GRID.magnitude(torch.as_tensor(y)).numpy()
    # any node spacing / path walks to the same answer on a linear model
    for kw in ({"spacing": "adaptive"}, {"path": "geometric"}):
        a = attribute(spec, y, "class=s", method="ig", baseline="noise:-30", steps=32, **kw)
        np.testing.assert_allclose(a.map, W * (X - a.baseline), atol=2e-3 * np.abs(W * X).max())
        assert a.completeness_error <= 1e-3
    # a detector that switches on within a narrow range of scales: adaptive nodes find the switch
    sharp = box_spec(gain=2.0, bias=10.0)
    y2, _ = scene()
    lin = attribute(sharp, y2, "class=beep,t=0.5:1.0", method="ig", steps=16, spacing="linear")
    ada = attribute(sharp, y2, "class=beep,t=0.5:1.0", method="ig", steps=16, spacing="adaptive")
    assert lin.completeness_error > 0.05 and ada.completeness_error < 0.02
    assert ada.info["spacing"] == "adaptive" and ada.info["spacing_knots"] > 90
    with pytest.raises(AnalysisError, match="needs a baseline above 0"):
        attribute(spec, y, "class=s", method="ig", path="geometric")
    with pytest.raises(AnalysisError, match="spacing must be"):
        attribute(spec, y, "class=s", method="ig", spacing="log")
    with pytest.raises(AnalysisError, match="applies to method='ig'"):
        attribute(spec, y, "class=s", method="saliency", spacing="adaptive")



def test_nested_rule_reuses_every_gradient_and_equals_from_scratch():
    """steps='auto' doubles an open trapezoid grid: the 2n-interval nodes contain the n-interval ones."""
    y, _ = scene(0.6)
    wave = ModelSpec(WaveNet().eval(), input_kind="waveform", grid=GRID, input_layout="bcn", output_kind="clip_scores",
                     classes=["a", "b"])
    for spec, target in ((crnn_spec(), "class=a"), (wave, "class=a")):
        # tol out of reach: every level 31 → 63 → … → 511 is tried, on one set of gradients
        auto = attribute(spec, y, target, tol=1e-9)
        assert auto.info["nested"] and list(auto.info["steps_tried"]) == [31, 63, 127, 255, 511]
        assert auto.steps_used == 511 and auto.info["gradient_evaluations"] == 511  # not 31 + 63 + … = 1017
        assert auto.completeness_error < 0.01
        # the same nodes and weights computed from scratch at 511 (same adaptive knots: same clip, same scan)
        fresh = attribute(spec, y, target, steps=511, quadrature="nested", spacing="adaptive")
        assert fresh.info["spacing_knots"] == auto.info["spacing_knots"]
        scale = np.abs(fresh.map).max()
        np.testing.assert_allclose(auto.map, fresh.map, rtol=0, atol=1e-6 * scale, err_msg=target)
        assert abs(auto.completeness_error - fresh.completeness_error) < 1e-5
    # against the rule written out by hand (linear spacing): inner nodes k/n weight 1/n, the two end
    # neighbours 3/(2n); neither end (the silent baseline, the clip) is evaluated
    spec = box_spec(gain=0.5, bias=6.0)
    n = 16
    ours = attribute(spec, y, lambda out: out[:, 0].mean(-1), method="ig", steps=n - 1, quadrature="nested",
                     spacing="linear")
    x = GRID.magnitude(torch.as_tensor(y))
    ref = torch.zeros_like(x)
    for k in range(1, n):
        pt = ((k / n) * x).requires_grad_(True)
        (g,) = torch.autograd.grad(spec.model(pt[None])[0, 0].mean(), pt)
        ref += g * (1.5 if k in (1, n - 1) else 1.0) / n
    ref = (ref * x).numpy()
    np.testing.assert_allclose(ours.map, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    # a linear model is integrated exactly at any node count (the weights sum to one)
    F, T = GRID.n_freqs, GRID.n_frames(len(y))
    W = np.random.default_rng(1).standard_normal((F, T)).astype(np.float32)
    lin = ModelSpec(LinearTF(W).eval(), input_kind="stft", grid=GRID, output_kind="clip_scores", classes=["s"])
    for steps in (1, 2, 3, 7):
        a = attribute(lin, y, "class=s", steps=steps, quadrature="nested")
        np.testing.assert_allclose(a.map, W * x.numpy(), rtol=1e-4, atol=1e-5 * np.abs(a.map).max())
    with pytest.raises(AnalysisError, match="quadrature='nested' applies to method='ig' on the straight path"):
        attribute(lin, y, "class=s", quadrature="nested", smooth="smoothgrad")


def test_noise_baseline_level():
    y, _ = scene(1.0)
    spec = box_spec()
    a = attribute(spec, y, "class=beep", method="saliency", baseline="noise:-20")
    rms = np.sqrt(np.mean(y.astype(np.float64) ** 2))
    expected = rms * 0.1 * np.sqrt((GRID.window_tensor().double() ** 2).sum().item())
    np.testing.assert_allclose(a.baseline, expected, rtol=1e-5)
    with pytest.raises(AnalysisError, match="unknown baseline 'zeros'"):
        attribute(spec, y, "class=beep", baseline="zeros")


# ---- ground truth: a detector that only looks at a box --------------------------------------
@pytest.mark.parametrize("method", ["ig", "deeplift", "occlusion", "ablation", "ixg"])
def test_box_detector_localises(method):
    from probe.analyze.faithfulness import localisation

    spec = box_spec()
    y, _ = scene()
    a = attribute(spec, y, "class=beep,t=0.5:1.0", method=method, steps=16, patch=(6, 8), stride=(3, 8),
                  bands=16, segment_seconds=0.125, internal_batch_size=32)
    loc = localisation(a, BOX)
    assert loc["relevance_mass"] >= 0.9, (method, loc)
    assert loc["pointing_game"], (method, loc)
    assert loc["box_fraction"] < 0.05
    if method in ("ig", "deeplift"):
        assert a.completeness_error <= 0.01, a.completeness_error


def test_box_detector_gradcam_and_smoothgrad():
    spec = crnn_spec()
    y, _ = scene(1.0)
    a = attribute(spec, y, "class=a,t=0.5:1.0", method="gradcam")
    assert a.map.shape == (spec.grid.n_freqs, spec.grid.n_frames(len(y)))
    assert a.info["layer"] == "conv" and a.info["layer_axes"] == "ft" and (a.map >= 0).all()
    a2 = attribute(box_spec(), scene()[0], "class=beep,t=0.5:1.0", method="saliency", smooth="smoothgrad",
                   nt_samples=4)
    assert np.isfinite(a2.map).all() and a2.info["smooth"]["samples"] == 4
    with pytest.raises(AnalysisError, match="NoiseTunnel smoothing applies"):
        attribute(box_spec(), scene()[0], "class=beep", method="occlusion", smooth="smoothgrad")


def test_deeplift_refuses_recurrent_model():
    spec = crnn_spec()
    y, _ = scene(0.5)
    with pytest.raises(AnalysisError, match="DeepLift has no rule for GRU.*use method='ig'"):
        attribute(spec, y, "class=a", method="deeplift")


def test_logmel_model_attributed_in_hz_with_mel_view():
    spec = crnn_spec()
    y, _ = scene(1.0)
    a = attribute(spec, y, "class=b,t=0.2:0.6", method="ig", steps=16)
    assert a.map.shape[0] == spec.grid.n_freqs  # linear bins (Hz), not mel bands
    assert a.completeness_error <= 0.05
    mel, mf = a.mel_view()
    assert mel.shape == (16, a.map.shape[1]) and mf.shape == (16,)
    # folding onto mel bands conserves relevance (bins above the last filter carry none here)
    covered = spec.grid.mel_basis().sum(0) > 0
    np.testing.assert_allclose(mel.sum(), a.map[covered].sum(), rtol=1e-4, atol=1e-7)


# ---- waveform models ---------------------------------------------------------------------------
def test_waveform_model_matches_explicit_stft_front_end():
    y, _ = scene(1.0)
    net = WaveNet().eval()
    wspec = ModelSpec(net, input_kind="waveform", grid=GRID, input_layout="bcn", output_kind="clip_scores",
                      classes=["a", "b"])
    phase = np.angle(GRID.stft(torch.as_tensor(y)).numpy())
    fspec = ModelSpec(ExplicitFrontEnd(net, phase, len(y)).eval(), input_kind="stft", grid=GRID,
                      output_kind="clip_scores", classes=["a", "b"])
    for method, kw in (("ig", {}), ("ig", {"quadrature": "nested", "spacing": "adaptive"}),
                       ("saliency", {}), ("occlusion", {})):
        aw = attribute(wspec, y, "class=a", method=method, steps=16, patch=(16, 16), **kw)
        af = attribute(fspec, y, "class=a", method=method, steps=16, patch=(16, 16), **kw)
        scale = np.abs(af.map).max()
        np.testing.assert_allclose(aw.map, af.map, atol=2e-4 * scale, err_msg=f"{method} {kw}")
        assert aw.info.get("domain") == ("waveform" if method == "ig" else None)
    assert aw.reconstruction_error_db <= -60
    assert af.reconstruction_error_db is None


def test_waveform_grid_that_cannot_invert_is_refused():
    net = WaveNet().eval()
    bad = TFGrid(SR, n_fft=256, hop_length=256, window="hann")  # no overlap: the window's zeros lose samples
    spec = ModelSpec(net, input_kind="waveform", grid=bad, input_layout="bcn", output_kind="clip_scores", classes=["a", "b"])
    with pytest.raises(SpecError, match="does not invert this clip"):
        attribute(spec, scene(0.5)[0], "class=a", method="saliency")


# ---- long audio ------------------------------------------------------------------------------
def test_chunked_matches_unchunked_away_from_edges():
    rng = np.random.default_rng(3)
    y = (0.1 * rng.standard_normal(int(9.0 * SR))).astype(np.float32)
    spec = ModelSpec(LocalConv().eval(), input_kind="logmag", grid=GRID, output_kind="frame_probs", classes=["a", "b"])
    for target in ("class=a", "class=b,t=2.0:6.5"):
        # the same quadrature nodes in every chunk (adaptive spacing would place each chunk's own)
        full = attribute(spec, y, target, method="ig", steps=8, spacing="linear")
        ch = attribute(spec, y, target, method="ig", steps=8, spacing="linear", chunk_seconds=3.0, overlap_seconds=1.0)
        assert ch.info["chunks_n"] >= 3 and ch.map.shape == full.map.shape
        edges = [c[k] for c in ch.info["chunks"] for k in ("start", "end")]
        far = np.min(np.abs(full.times[:, None] - np.asarray(edges)[None, :]), axis=1) > 0.1
        scale = np.abs(full.map).max()
        np.testing.assert_allclose(ch.map[:, far], full.map[:, far], atol=1e-3 * scale, err_msg=target)
        # each chunk's IG keeps completeness as well as the whole clip's does (f(x) - f(b) is tiny for class b)
        assert ch.completeness_error < max(0.05, 3 * full.completeness_error)


def test_chunked_waveform_and_progress_plan():
    from probe.attribution.core import _fade_weights, _plan_chunks

    spans = _plan_chunks(10 * SR, SR, 64, 3.0, 1.0, align=64 * 32)
    assert spans[0][0] == 0 and spans[-1][1] == 10 * SR and all(s % 2048 == 0 for s, _ in spans)
    T = GRID.n_frames(10 * SR)
    acc = np.zeros(T)
    for a, w in _fade_weights(spans, 64, T):
        acc[a:a + len(w)] += w
    np.testing.assert_allclose(acc, 1.0, atol=1e-6)  # the cross-fades sum to one everywhere
    y = scene(4.0)[0]
    wspec = ModelSpec(WaveNet().eval(), input_kind="waveform", grid=GRID, input_layout="bcn", output_kind="clip_scores",
                      classes=["a", "b"])
    a = attribute(wspec, y, "class=a", method="saliency", chunk_seconds=1.5, overlap_seconds=0.5)
    assert a.map.shape == (129, GRID.n_frames(len(y))) and a.reconstruction_error_db <= -60


# ---- listenable explanations -------------------------------------------------------------------
def test_listenable_explanation_recovers_in_box_tone(tmp_path):
    import soundfile as sf

    spec = box_spec()
    y, stem = scene()
    a = attribute(spec, y, "class=beep,t=0.5:1.0", method="ig", steps=16)
    expl, comp = listen(a, top_percent=10)
    assert snr_db(expl, stem) > 10
    np.testing.assert_allclose(expl + comp, y, atol=1e-4)  # explanation + complement = the clip
    info = write_explanation(a, tmp_path, top_percent=10)
    e, sr = sf.read(info["explanation"])
    assert sr == SR and len(e) == len(y) and info["kept_bins"] <= 0.1
    assert snr_db(e, stem) > 10


# ---- guarantees ------------------------------------------------------------------------------------
def _hooks(model):
    return sum(len(getattr(m, d)) for m in model.modules()
               for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


@pytest.mark.parametrize("method", ["ig", "gradcam", "occlusion", "gradshap", "saliency"])
def test_model_left_exactly_as_it_came(method):
    spec = crnn_spec()
    model = spec.model
    model.train()  # the user left it in training mode, with dropout
    model.gru.weight_hh_l0.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    req = {n: p.requires_grad for n, p in model.named_parameters()}
    y, _ = scene(0.5)
    a1 = attribute(spec, y, "class=a", method=method, steps=8, patch=(16, 8))
    a2 = attribute(spec, y, "class=a", method=method, steps=8, patch=(16, 8))
    np.testing.assert_array_equal(a1.map, a2.map)  # eval mode inside: dropout off, deterministic
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert {n: p.requires_grad for n, p in model.named_parameters()} == req
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert _hooks(model) == 0 and all(p.grad is None for p in model.parameters())


def test_failing_target_leaves_no_hooks():
    spec = box_spec()

    def broken(out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        attribute(spec, scene(0.5)[0], broken, method="deeplift")
    assert _hooks(spec.model) == 0
    assert not any(hasattr(m, "input") or hasattr(m, "output") for m in spec.model.modules())


# ---- separation and embeddings -----------------------------------------------------------------
class MaskNet(nn.Module):
    """Two fixed masks: low band (< 2 kHz) and high band, from a log-magnitude input."""

    def __init__(self, grid=GRID):
        super().__init__()
        low = torch.as_tensor(grid.bin_frequencies() < 2000, dtype=torch.float32)
        self.register_buffer("m", torch.stack([low, 1 - low])[:, :, None])
        self.gate = nn.Parameter(torch.ones(1))

    def forward(self, x):  # (B, F, T) → (B, 2, F, T)
        return self.m[None] * torch.sigmoid(10 * self.gate + 0 * x[:, None])


def test_source_targets_on_mask_model():
    spec = ModelSpec(MaskNet().eval(), input_kind="logmag", grid=GRID, output_kind="masks", n_sources=2)
    y, _ = scene()
    a = attribute(spec, y, "source=2", method="ig", steps=16)  # high band: the 3 kHz tone
    hi = a.freqs >= 2000
    assert np.maximum(a.map, 0)[hi].sum() / np.maximum(a.map, 0).sum() > 0.99
    assert a.completeness_error <= 0.01
    b = attribute(spec, y, "source=1,f=800:1200,t=0.5:1.0", method="ig", steps=16)
    from probe.analyze.faithfulness import localisation

    assert localisation(b, BOX)["relevance_mass"] > 0.99
    with pytest.raises(AnalysisError, match="out of range: the model emits 2 sources"):
        attribute(spec, y, "source=3", method="saliency")


def test_embedding_target_cluster():
    class Emb(nn.Module):  # bins below 2 kHz point one way, above the other
        def __init__(self):
            super().__init__()
            low = torch.as_tensor(GRID.bin_frequencies() < 2000, dtype=torch.float32)
            self.register_buffer("low", low[:, None])
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):  # (B, F, T) → (B, 2, F, T)
            v = torch.stack([self.low * x, (1 - self.low) * x], 1) * self.w
            return v + 1e-3

    spec = ModelSpec(Emb().eval(), input_kind="stft", grid=GRID, output_kind="tf_embeddings", n_sources=2)
    y, _ = scene()
    a = attribute(spec, y, "cluster=1", method="saliency")
    assert isinstance(a.target, EmbeddingTarget) and a.target.bins.any()
    assert a.map.shape == (129, GRID.n_frames(len(y)))


# ---- result object -------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    a = attribute(box_spec(), scene(1.0)[0], "class=beep,t=0.5:1.0", method="ig", steps=8)
    p = tmp_path / "attr.safetensors"
    a.save(p)
    b = Attribution.load(p)
    np.testing.assert_array_equal(a.map, b.map)
    assert b.grid == a.grid and str(b.target) == "class=beep,t=0.5:1" and b.method == "ig"
    assert b.completeness_error == pytest.approx(a.completeness_error)


def test_default_target_from_example():
    from probe.audio import AudioExample

    y, stem = scene()
    ex = AudioExample(y=y, sr=SR, events=[BOX], event_stems=stem[None])
    a = attribute(box_spec(), ex, method="saliency")
    assert str(a.target) == "class=beep,t=0.5:1"
    # without events: the top-scoring class over the clip
    b = attribute(box_spec(), y, method="saliency")
    assert str(b.target) == "class=beep"


# ---- figures (pure builders; no rendering here) ------------------------------------------------
def test_figure_builders():
    import plotly.graph_objects as go

    from probe.analyze.faithfulness import deletion_test
    from probe.figures.attribution import (attribution_figure, deletion_figure, randomisation_figure,
                                           target_track_figure)

    spec = box_spec()
    y, _ = scene()
    a = attribute(spec, y, "class=beep,t=0.5:1.0", method="ig", steps=8)
    fig = attribution_figure(a, boxes=[BOX], max_frames=100, max_bins=64)
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heat) == 2 and heat[1].zmid == 0 and heat[1].zmin == -heat[1].zmax  # diverging, symmetric
    rows, cols = np.shape(heat[1].z)  # cells placed by a start and a step (drawn as one image)
    assert cols <= 100 and rows <= 64 and heat[1].y0 + heat[1].dy * (rows - 1) <= SR / 2
    assert len(fig.layout.shapes) == 2  # the box on both panels
    assert isinstance(target_track_figure(a), go.Figure)
    d = deletion_test(spec, a, n_random=1)
    assert len(deletion_figure(d).data) == 4
    r = {"method": "ig", "layers": ["trained", "x"], "spearman": [1.0, 0.1], "spearman_abs": [1.0, 0.2],
         "ssim": [1.0, 0.3], "ssim_rank": [1.0, 0.2], "maps": [a.map, -a.map]}
    f = randomisation_figure(r)
    assert sum(isinstance(t, go.Heatmap) for t in f.data) == 2 and sum(isinstance(t, go.Scatter) for t in f.data) == 4
    with pytest.raises(AnalysisError, match="deletion_test"):
        deletion_figure({"auc": 1})


# ---- encoders: feature targets --------------------------------------------------------------
def test_feature_target_strings_and_their_errors():
    from probe.attribution import FeatureTarget

    assert parse_target("feature=norm") == FeatureTarget(None)
    assert parse_target("feature=3,t=0.5:1") == FeatureTarget(3, t=(0.5, 1.0))
    assert str(parse_target("feature=3,t=0.5:1")) == "feature=3,t=0.5:1"
    for bad, msg in [("feature=-1", "numbered from 0"), ("feature=abc", "'norm' or a 0-based unit"),
                     ("feature=1,f=100:200", "f= and of= do not apply"), ("feature=1,class=x", "exactly one of")]:
        with pytest.raises(AnalysisError, match=msg):
            parse_target(bad)


class ClipEncoder(nn.Module):
    """One feature vector per clip (B, 2): the mean |X| of two bands (no time axis)."""

    def forward(self, x):
        f = torch.linspace(0, SR / 2, x.shape[1])
        bands = torch.stack([((f >= 800) & (f <= 1200)).float(), ((f >= 2800) & (f <= 3200)).float()])
        return torch.einsum("kf,bft->bk", bands, x) / x.shape[-1]


def test_feature_target_on_a_clip_level_encoder():
    y, _ = scene()
    spec = ModelSpec(ClipEncoder(), input_kind="stft", grid=GRID, output_kind="features")
    a = attribute(spec, y, method="ig")  # the default target of a clip-level encoder: its largest unit
    out = spec.forward(y)[0]
    assert str(a.target) == f"feature={int(out.abs().argmax())}" and a.completeness_error <= 0.01
    a = attribute(spec, y, "feature=norm", method="ig")
    assert a.completeness_error <= 0.01
    a = attribute(spec, y, "feature=0", method="ig")
    rows = (a.freqs >= 750) & (a.freqs <= 1250)
    assert np.abs(a.map[rows]).sum() / np.abs(a.map).sum() > 0.95
    with pytest.raises(AnalysisError, match="no time axis"):
        attribute(spec, y, "feature=0,t=0.5:1.0", method="ig")
    with pytest.raises(AnalysisError, match="needs a 'features' model"):
        attribute(ModelSpec(LinearTF(torch.ones(129, 1)), input_kind="stft", grid=GRID, output_kind="clip_scores",
                            classes=["x"]), y, "feature=0", method="saliency")


class NoGradFront(nn.Module):
    """A band detector whose front end runs under torch.no_grad(): the output has parameters' gradients only."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(129, 1)

    def forward(self, x):  # (B, F, T)
        with torch.no_grad():
            h = torch.log1p(x)
        return torch.sigmoid(self.lin(h.transpose(1, 2))).transpose(1, 2)


@pytest.mark.parametrize("method", ["ig", "saliency", "ixg"])
def test_gradient_methods_refuse_a_model_without_an_input_gradient(method):
    """Captum failed deep in autograd ('appears to not have been used in the graph'); now one message with the fix."""
    y, _ = scene()
    spec = ModelSpec(NoGradFront(), input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["beep"])
    with pytest.raises(AnalysisError, match="no gradient path back to its input.*use method='occlusion'"):
        attribute(spec, y, "class=beep", method=method)
    a = attribute(spec, y, "class=beep", method="occlusion")  # perturbation methods need no gradient
    assert np.isfinite(a.map).all() and np.abs(a.map).sum() > 0


def test_a_waveform_separators_target_track_spans_the_clip():
    """A sources model's track is probe's STFT of the output waveform: frames on the grid, over the whole clip.

    It took the model output's own time axis (one step per sample), which put nmf_ae's 4-s track into its first 63 ms.
    """

    class Split(nn.Module):  # waveform in, two "sources" out: the clip and half of it
        def forward(self, x):
            return torch.stack([x, 0.5 * x], dim=1)

    spec = ModelSpec(Split().eval(), input_kind="waveform", grid=GRID, output_kind="sources", n_sources=2)
    t = np.arange(2 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 500 * t) * ((t >= 1.0) & (t < 1.5))).astype(np.float32)
    a = attribute(spec, y, "source=1", method="saliency")
    times, values = a.track
    assert len(times) == len(values) == GRID.n_frames(len(y))
    assert times[-1] == pytest.approx(len(y) / SR, abs=2 * GRID.hop_length / SR)  # the whole clip, not 63 ms
    loud = times[values > 0.5 * values.max()]
    assert loud.min() >= 1.0 - 0.05 and loud.max() <= 1.5 + 0.05  # the burst, where it is
