"""CRNN sound-event detector on log-mel frames (Çakır, Parascandolo, Heittola, Huttunen & Virtanen, 2017).

Named steps, each a plain module so probe's capture sees them with their time axis::

    X (b, 64 mels, T)  ──input_norm (BatchNorm1d per mel band)──►  (b, 1, 64, T)
        ──conv.0..2  [Conv2d 3×3 → BatchNorm2d → ReLU → max-pool over frequency only]──►  (b, C, F', T)
        ──reshape (b, T, C·F')──rnn (bidirectional GRU)──rnn_dropout──►  (b, T, 2H)
        ──classifier (Linear 2H → classes)──sigmoid──►  P (b, classes, T)

Pooling never touches time, so output frame ``t`` is input frame ``t``: 20 ms frames centred
at ``t * 0.02`` s (TFGrid 16 kHz, ``n_fft`` 1024, hop 320, centred). The normalisation
lives inside the model (``input_norm``), so the model eats the raw ``log(mel + 1e-6)``
that :class:`probe.ModelSpec` computes. The decision rule (threshold and median filter,
chosen on the validation split) is stored in the config under ``postprocessing``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from model_zoo.data.scenes import SCENE_CLASSES

NAME = "crnn_sed"
TASK = "detection"
DEFAULT_CONFIG = {
    "sr": 16000,
    "n_fft": 1024,
    "hop_length": 320,              # 20 ms frames
    "n_mels": 64,
    "channels": [16, 32, 64],       # conv blocks
    "freq_pool": [4, 2, 2],         # 64 mel bands → 16 → 8 → 4
    "kernel_size": 3,
    "rnn_hidden": 64,               # per direction
    "dropout": 0.1,                 # after the GRU
    "classes": list(SCENE_CLASSES),
    "postprocessing": {"threshold": 0.5, "median_frames": 1},
}

__all__ = ["NAME", "TASK", "DEFAULT_CONFIG", "CRNN", "FreqMaxPool", "build", "make_spec", "example", "grid"]


class FreqMaxPool(nn.Module):
    """Max over groups of ``factor`` adjacent frequency rows: ``(b, c, F, T)`` → ``(b, c, F // factor, T)``.

    The same as ``nn.MaxPool2d((factor, 1))``, written as a reshape and ``amax``, which is several
    times faster on CPU.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)

    def forward(self, x):
        b, c, f, t = x.shape
        return x.reshape(b, c, f // self.factor, self.factor, t).amax(dim=3)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class CRNN(nn.Module):
    """Convolutional recurrent network: frame-wise multi-label probabilities from log-mel frames.

    Parameters
    ----------
    n_mels : int
    channels, freq_pool : list of int
        Output channels and frequency max-pool factor of each conv block.
    kernel_size : int
    rnn_hidden : int
        GRU units per direction.
    dropout : float
        After the GRU.
    classes : list of str
    postprocessing : dict
        ``{"threshold", "median_frames"}``: how probabilities become events (stored, not used in ``forward``).

    Shapes
    ------
    forward: ``(batch, n_mels, frames)`` → ``(batch, n_classes, frames)`` in [0, 1].
    """

    def __init__(self, *, n_mels: int = 64, channels=(16, 32, 64), freq_pool=(4, 2, 2), kernel_size: int = 3,
                 rnn_hidden: int = 64, dropout: float = 0.2, classes=tuple(SCENE_CLASSES),
                 postprocessing: dict | None = None, **_grid):
        super().__init__()
        if len(channels) != len(freq_pool):
            raise ValueError(f"channels and freq_pool need one entry per block, given {list(channels)} and {list(freq_pool)}")
        f = n_mels
        for p in freq_pool:
            if f % p:
                raise ValueError(f"freq_pool {list(freq_pool)} does not divide n_mels={n_mels} evenly")
            f //= p
        self.n_mels, self.classes = int(n_mels), list(classes)
        self.postprocessing = dict(postprocessing or {"threshold": 0.5, "median_frames": 1})
        self.input_norm = nn.BatchNorm1d(n_mels)
        blocks, c_in = [], 1
        for c, p in zip(channels, freq_pool):
            blocks.append(nn.Sequential(
                nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm2d(c), nn.ReLU(),
                FreqMaxPool(p)))  # frequency only: time resolution is kept
            c_in = c
        self.conv = nn.Sequential(*blocks)
        self.rnn = nn.GRU(c_in * f, rnn_hidden, batch_first=True, bidirectional=True)
        self.rnn_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * rnn_hidden, len(self.classes))

    def forward_conv(self, x):
        """``(b, n_mels, T)`` → ``(b, C, F', T)``."""
        return self.conv(self.input_norm(x).unsqueeze(1))

    def forward_rnn(self, h):
        """``(b, C, F', T)`` → ``(b, T, 2H)``."""
        b, c, f, t = h.shape
        out, _ = self.rnn(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
        return self.rnn_dropout(out)

    def forward_classifier(self, h):
        """``(b, T, 2H)`` → probabilities ``(b, classes, T)``."""
        return torch.sigmoid(self.classifier(h)).transpose(1, 2)

    def forward(self, x):
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"CRNN expects log-mel frames (batch, {self.n_mels}, frames), given shape {tuple(x.shape)}")
        return self.forward_classifier(self.forward_rnn(self.forward_conv(x)))


def _config(config: dict | None) -> dict:
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    cfg["postprocessing"] = {**DEFAULT_CONFIG["postprocessing"], **(cfg.get("postprocessing") or {})}
    return cfg


def build(config: dict | None = None) -> CRNN:
    """Build an untrained CRNN from ``DEFAULT_CONFIG`` updated by ``config``."""
    cfg = _config(config)
    model = CRNN(**{k: v for k, v in cfg.items() if k not in ("sr", "n_fft", "hop_length")})
    model.config = cfg
    return model


def grid(config: dict | None = None):
    """The model's input grid: 16 kHz, ``n_fft`` 1024, hop 320 (20 ms), 64 mel bands."""
    from probe.grid import TFGrid

    cfg = _config(config)
    return TFGrid(int(cfg["sr"]), n_fft=int(cfg["n_fft"]), hop_length=int(cfg["hop_length"]), n_mels=int(cfg["n_mels"]))


def make_spec(model, *, info: dict | None = None):
    """Wrap the module for probe: log-mel in (``bft``), frame probabilities out (``bct``)."""
    from probe.adapter import ModelSpec

    cfg = getattr(model, "config", None) or _config(None)
    return ModelSpec(model, input_kind="logmel", grid=grid(cfg), output_kind="frame_probs", classes=list(model.classes),
                     name=NAME, info={"postprocessing": dict(model.postprocessing), **dict(info or {})})


def example(i: int = 0, split: str = "test"):
    """Scene ``i`` of ``split`` as a :class:`probe.AudioExample` with ``events`` and ``event_stems``."""
    from model_zoo.data.scenes import scene_example

    return scene_example(int(i), str(split), sr=DEFAULT_CONFIG["sr"], name=f"{NAME}:scenes:{split}:{int(i)}")
