"""Capture overhead: a forward with every leaf module captured over a plain forward (and over bare hooks)."""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["capture_overhead"]


def _blstm_spec():
    import torch

    from ..adapter import ModelSpec
    from ..grid import TFGrid

    class BLSTMEmbedder(torch.nn.Module):  # deep-clustering shape: 129 bins → 2×BLSTM(300) → D=20 per bin
        def __init__(self, n_freqs=129, hidden=300, dim=20):
            super().__init__()
            self.blstm = torch.nn.LSTM(n_freqs, hidden, num_layers=2, batch_first=True, bidirectional=True)
            self.embed = torch.nn.Linear(2 * hidden, n_freqs * dim)
            self.n_freqs, self.dim = n_freqs, dim

        def forward(self, x):  # (B, T, F)
            h, _ = self.blstm(x)
            v = torch.tanh(self.embed(h)).reshape(x.shape[0], x.shape[1], self.n_freqs, self.dim)
            return torch.nn.functional.normalize(v, dim=-1).permute(0, 3, 2, 1)

    return ModelSpec(BLSTMEmbedder().eval(), input_kind="logmag", grid=TFGrid(8000, 256, 64), input_layout="btf",
                     output_kind="tf_embeddings", name="bench_blstm")


def _crnn_spec():
    import torch
    import torch.nn as nn

    from ..adapter import ModelSpec
    from ..grid import TFGrid

    class CRNN(nn.Module):
        def __init__(self, n_mels=64, n_classes=8, ch=64):
            super().__init__()
            blocks, c_in = [], 1
            for pool in (4, 2, 2):
                blocks += [nn.Conv2d(c_in, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.MaxPool2d((pool, 1))]
                c_in = ch
            self.conv = nn.Sequential(*blocks)
            self.gru = nn.GRU(ch * (n_mels // 16), 64, batch_first=True, bidirectional=True)
            self.head = nn.Linear(128, n_classes)

        def forward(self, x):  # (B, 1, F, T)
            h = self.conv(x)
            b, c, f, t = h.shape
            h, _ = self.gru(h.reshape(b, c * f, t).transpose(1, 2))
            return torch.sigmoid(self.head(h)).transpose(1, 2)

    return ModelSpec(CRNN().eval(), input_kind="logmel", grid=TFGrid(16000, 1024, 320, n_mels=64), input_layout="bcft",
                     output_kind="frame_probs", name="bench_crnn")


def _leaf(name, module):
    return len(list(module.children())) == 0


def capture_overhead(spec, seconds: float = 4.0, repeats: int = 9) -> dict:
    """Median time of a forward with all leaf modules captured over a plain forward."""
    import torch

    from ..hooks import capture

    x = spec.features(np.random.default_rng(0).standard_normal(int(seconds * spec.sample_rate)).astype(np.float32) * 0.1)
    model = spec.model

    def plain():
        with torch.no_grad():
            model(x)

    def captured():
        with torch.no_grad(), capture(spec, _leaf):
            model(x)

    leaves = [m for n, m in model.named_modules() if n and _leaf(n, m)]
    kept = []

    def bare_hooks():  # the floor: do-nothing forward hooks that keep a reference, no probe code
        handles = [m.register_forward_hook(lambda mod, i, o: kept.append(o)) for m in leaves]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
            kept.clear()

    fns = {"plain": plain, "capture": captured, "bare_hooks": bare_hooks}
    for _ in range(2):  # warm-up (and the one-off axis inference, cached on the spec)
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    order = list(fns)
    for i in range(repeats):
        for k in (order if i % 2 == 0 else order[::-1]):  # interleaved, alternating order
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"ratio": round(med["capture"] / med["plain"], 4), "bare_hooks_ratio": round(med["bare_hooks"] / med["plain"], 4),
            "plain_ms": round(med["plain"] * 1e3, 2), "capture_ms": round(med["capture"] * 1e3, 2),
            "bare_hooks_ms": round(med["bare_hooks"] * 1e3, 2), "repeats": repeats}


