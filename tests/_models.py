"""Tiny models used by the foundation tests (and spec-file fixtures)."""

from __future__ import annotations

import textwrap

import torch
import torch.nn as nn


class TinyBLSTM(nn.Module):
    """Deep-clustering shape: (B, T, F) log-magnitude → (B, D, F, T) unit-norm embeddings."""

    def __init__(self, n_freqs=65, hidden=16, dim=4):
        super().__init__()
        self.norm = nn.LayerNorm(n_freqs)
        self.blstm = nn.LSTM(n_freqs, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.embed = nn.Linear(2 * hidden, n_freqs * dim)
        self.act = nn.Tanh()
        self.n_freqs, self.dim = n_freqs, dim

    def forward(self, x):
        h, _ = self.blstm(self.norm(x))
        v = self.act(self.embed(h)).reshape(x.shape[0], x.shape[1], self.n_freqs, self.dim)
        return nn.functional.normalize(v, dim=-1).permute(0, 3, 2, 1)


class InplaceConv(nn.Module):
    """Waveform front end with an in-place ReLU and a module called twice."""

    def __init__(self):
        super().__init__()
        self.front = nn.Conv1d(1, 8, 32, stride=16)
        self.relu = nn.ReLU(inplace=True)
        self.mix = nn.Conv1d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):  # (B, 1, N)
        h = self.relu(self.front(x))
        h = self.mix(self.mix(h))  # shared weights, two calls
        return self.drop(self.bn(h))


SPEC_MODULE = textwrap.dedent('''
    import torch

    class UserDetector(torch.nn.Module):
        def __init__(self, n_mels=32, n_classes=3):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.rnn = torch.nn.LSTM(4 * n_mels, 8, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(16, n_classes)

        def forward(self, x):  # (B, 1, F, T)
            h = torch.relu(self.conv(x))
            b, c, f, t = h.shape
            h, _ = self.rnn(h.reshape(b, c * f, t).transpose(1, 2))
            return torch.sigmoid(self.out(h))  # (B, T, C)

    def build(n_mels=32, n_classes=3):
        torch.manual_seed(0)
        return UserDetector(n_mels, n_classes)
''')

SPEC_TOML = textwrap.dedent('''
    [model]
    factory = "usermodel:build"
    {checkpoint}
    [model.kwargs]
    n_mels = 32
    n_classes = 3
    [input]
    kind = "logmel"
    sample_rate = 16000
    n_fft = 512
    hop = 160
    n_mels = 32
    layout = "bcft"
    [output]
    kind = "frame_probs"
    classes = ["speech", "music", "noise"]
    layout = "btc"
''')


def write_user_spec(folder, checkpoint: str | None = None):
    """A user model declared only by a module and a TOML spec file in ``folder``."""
    (folder / "usermodel.py").write_text(SPEC_MODULE)
    spec = folder / "spec.toml"
    spec.write_text(SPEC_TOML.format(checkpoint=f'checkpoint = "{checkpoint}"' if checkpoint else ""))
    return spec


def snapshot(model):
    """Everything capture/analysis must leave untouched."""
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {k: v.requires_grad for k, v in model.named_parameters()},
    }


def assert_unchanged(model, snap):
    now = snapshot(model)
    for k, v in snap["params"].items():
        assert torch.equal(v, now["params"][k]), f"parameter {k} changed"
    for k, v in snap["buffers"].items():
        assert torch.equal(v, now["buffers"][k]), f"buffer {k} changed"
    assert snap["training"] == now["training"]
    assert snap["requires_grad"] == now["requires_grad"]


def n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
