"""Attribution on a model shared by threads: nothing another thread relies on changes, ever.

Eight threads × 50 iterations share one small CRNN (conv → ReLU → GRU → linear, like the
zoo's) and one conv-only detector (DeepLift has no rule for GRUs). Each iteration captures
every layer while running a forward pass, then runs one attribution method (every method,
GradientShap and NoiseTunnel included, rotates through the threads). Ground truth: the same
calls made in a single thread before any thread starts. Every capture must hold every
record with the single-thread values, every map must equal the single-thread map bit for
bit, and afterwards the models must be bit-identical with their flags as set and zero hooks.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

import probe
from probe.adapter import ModelSpec
from probe.attribution import attribute
from probe.grid import TFGrid

torch.set_num_threads(1)

SR = 8000
GRID = TFGrid(SR, n_fft=128, hop_length=32, n_mels=12)
N_THREADS, N_ITERS = 8, 50


class SmallCRNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d((3, 1)))
        self.rnn = nn.GRU(3 * 4, 6, batch_first=True)
        self.head = nn.Linear(6, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):  # (B, n_mels=12, T) log-mel
        h = self.conv(x[:, None])
        b, c, f, t = h.shape
        h, _ = self.rnn(self.drop(h.reshape(b, c * f, t).transpose(1, 2)))
        return torch.sigmoid(self.head(h)).transpose(1, 2)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv1d(65, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Conv1d(4, 2, 1)
        self.out = nn.Sigmoid()

    def forward(self, x):  # (B, F, T) magnitude
        return self.out(self.head(self.act(self.conv(x))))


def _specs():
    crnn = SmallCRNN().eval()
    crnn.head.train()  # a flag the user set (harmless on a Linear): attribution must not change it
    crnn.head.bias.requires_grad_(False)
    cnn = SmallCNN().eval()
    return (ModelSpec(crnn, input_kind="logmel", grid=GRID, output_kind="frame_probs", classes=["a", "b"]),
            ModelSpec(cnn, input_kind="stft", grid=GRID, output_kind="frame_probs", classes=["a", "b"]))


def _clip(seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.25 * SR)) / SR
    return (0.1 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (500 + 200 * seed) * t)).astype(np.float32)


# (method, model, options): every method of probe.attribution.METHODS, plus NoiseTunnel and the default IG
CASES = [("saliency", 0, {}), ("ixg", 0, {}), ("ig", 0, {"steps": 4, "spacing": "linear"}),
         ("ig", 0, {"steps": 4, "spacing": "adaptive"}), ("gradshap", 0, {"steps": 4, "n_baselines": 3}),
         ("deeplift", 1, {}), ("occlusion", 0, {"patch": (32, 8), "stride": (32, 8)}),
         ("ablation", 0, {"bands": 3, "segment_seconds": 0.1}), ("gradcam", 0, {}),
         ("saliency", 1, {"smooth": "smoothgrad", "nt_samples": 3}), ("ig", 1, {})]


def _hooks(model):
    return sum(len(getattr(m, d)) for m in model.modules()
               for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                         "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs"))


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, {n: m.training for n, m in model.named_modules()},
            {n: p.requires_grad for n, p in model.named_parameters()})


def _capture(spec, y):
    with probe.capture(spec, layers="*") as cache:
        with torch.no_grad():
            out = spec.forward(y)
    return out, {k: cache[k].tensor.clone() for k in cache.keys()}


def test_threads_sharing_a_model_lose_nothing_and_change_nothing():
    specs = _specs()
    clips = [_clip(i) for i in range(3)]
    before = [_state(s.model) for s in specs]
    # ground truth, one thread
    ref_caps = {(m, c): _capture(specs[m], clips[c]) for m in range(2) for c in range(3)}
    ref_maps = {(k, c): attribute(specs[CASES[k][1]], clips[c], "class=a", method=CASES[k][0], seed=0,
                                  **CASES[k][2]).map
                for k in range(len(CASES)) for c in range(3)}
    assert all(len(caps) >= 4 for _, caps in ref_caps.values())
    errors: list = []
    done = [0] * N_THREADS
    start = threading.Barrier(N_THREADS)

    def work(i):
        try:
            start.wait()
            for it in range(N_ITERS):
                k, c, m = (i + it) % len(CASES), (i * 7 + it) % 3, (i + it) % 2
                out, caps = _capture(specs[m], clips[c])
                ref_out, ref_cap = ref_caps[(m, c)]
                if sorted(caps) != sorted(ref_cap):
                    errors.append(f"thread {i} iter {it}: capture keys {sorted(caps)} != {sorted(ref_cap)}")
                elif not all(torch.equal(caps[n], ref_cap[n]) for n in caps) or not torch.equal(out, ref_out):
                    errors.append(f"thread {i} iter {it}: captured values differ")
                method, mi, kw = CASES[k]
                a = attribute(specs[mi], clips[c], "class=a", method=method, seed=0, **kw)
                if not np.array_equal(a.map, ref_maps[(k, c)]):
                    diff = float(np.nanmax(np.abs(a.map - ref_maps[(k, c)])))
                    errors.append(f"thread {i} iter {it}: {method} {kw} map differs by {diff:.3g}")
                for s, (_, flags, req) in zip(specs, before):  # flags others see never flip, not even briefly
                    if {n: mm.training for n, mm in s.model.named_modules()} != flags:
                        errors.append(f"thread {i} iter {it}: training flags changed")
                    if {n: p.requires_grad for n, p in s.model.named_parameters()} != req:
                        errors.append(f"thread {i} iter {it}: requires_grad changed")
                done[i] += 1
        except Exception as exc:  # noqa: BLE001 - reported below with the thread's number
            errors.append(f"thread {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:5]
    assert done == [N_ITERS] * N_THREADS
    for s, (state, flags, req) in zip(specs, before):
        assert {n: m.training for n, m in s.model.named_modules()} == flags
        assert {n: p.requires_grad for n, p in s.model.named_parameters()} == req
        for k, v in s.model.state_dict().items():
            assert torch.equal(v, state[k]), k
        assert _hooks(s.model) == 0 and all(p.grad is None for p in s.model.parameters())
        assert not any(hasattr(m, "input") or hasattr(m, "output") for m in s.model.modules())


def test_preserved_model_yields_a_shadow_and_never_touches_the_model():
    from probe.attribution import preserved_model

    spec, _ = _specs()
    model = spec.model
    seen = []
    h = model.head.register_forward_hook(lambda *a: seen.append(1))  # another party's hook
    with preserved_model(model) as shadow:
        assert shadow is not model and not shadow.training and shadow.head.training is False
        assert shadow.head.weight is model.head.weight  # the very same tensors: nothing copied, nothing drifts
        assert model.head.training and not model.head.bias.requires_grad
        shadow.conv[0].register_forward_hook(lambda *a: None)
        assert _hooks(model) == 1
    h.remove()
    assert _hooks(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with preserved_model(model):
            raise RuntimeError("boom")
    assert model.head.training
