"""Raw-waveform CNN sound-event detector (after Dieleman & Schrauwen, "End-to-end learning for music audio", 2014).

The first layer is a strided ``Conv1d`` straight on the samples: a learned filter bank that
:func:`probe.filterbank.filters` lists as the model's ``analysis`` bank. Named steps::

    y (b, 1, n) ──frontend (Conv1d 1→64, kernel 400 = 25 ms, stride 160 = 10 ms, pad 200)──►  (b, 64, n/160 + 1)
        ──|·| → log(1 + 100·|·|) → compress_norm (BatchNorm1d)──►  log "band energies", 10 ms steps
        ──body: Conv1d k5 → BN → ReLU, Conv1d k3 stride 2 → BN → ReLU  (→ 20 ms steps, n/320 + 1 frames)
               then dilated Conv1d k3 (dilations 1, 2, 4, 8, 16) → BN → ReLU, residual
        ──classifier (1×1 Conv1d → classes)──sigmoid──►  P (b, classes, n/320 + 1)

Frame ``t`` of the output is centred on sample ``320 t`` (0.02 t s), the same frames as the
CRNN's centred STFT, so the two detectors' outputs line up. The receptive field of an
output frame is about 1.4 s.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from model_zoo.data.scenes import SCENE_CLASSES

NAME = "rawcnn_sed"
TASK = "detection"
DEFAULT_CONFIG = {
    "sr": 16000,
    "n_filters": 64,            # first-layer filters (the learned filter bank)
    "kernel_size": 400,         # 25 ms
    "stride": 160,              # 10 ms
    "compress_gain": 100.0,     # log(1 + g·|x|)
    "hidden": 128,
    "dilations": [1, 2, 4, 8, 16],
    "dropout": 0.1,
    "classes": list(SCENE_CLASSES),
    "postprocessing": {"threshold": 0.5, "median_frames": 1},
}

__all__ = ["NAME", "TASK", "DEFAULT_CONFIG", "RawCNN", "build", "make_spec", "example"]


class _Dilated(nn.Module):
    """Residual block: dilated Conv1d k3 → BatchNorm → ReLU → Dropout, plus the input."""

    def __init__(self, ch: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm1d(ch)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(self.act(self.norm(self.conv(x))))


class RawCNN(nn.Module):
    """Frame-wise multi-label probabilities straight from the waveform.

    Parameters
    ----------
    n_filters, kernel_size, stride : int
        The first layer ``Conv1d(1, n_filters, kernel_size, stride, padding=kernel_size // 2)``.
    compress_gain : float
    hidden : int
    dilations : list of int
    dropout : float
    classes : list of str
    postprocessing : dict
        ``{"threshold", "median_frames"}`` (stored, not used in ``forward``).

    Shapes
    ------
    forward: ``(batch, 1, n)`` or ``(batch, n)`` → ``(batch, n_classes, n // (2 * stride) + 1)`` in [0, 1].
    """

    def __init__(self, *, n_filters: int = 64, kernel_size: int = 400, stride: int = 160, compress_gain: float = 100.0,
                 hidden: int = 128, dilations=(1, 2, 4, 8, 16), dropout: float = 0.1, classes=tuple(SCENE_CLASSES),
                 postprocessing: dict | None = None, **_unused):
        super().__init__()
        self.classes = list(classes)
        self.stride = int(stride)
        self.compress_gain = float(compress_gain)
        self.postprocessing = dict(postprocessing or {"threshold": 0.5, "median_frames": 1})
        # the learned filter bank: first module, plain Conv1d on the samples
        self.frontend = nn.Conv1d(1, n_filters, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.compress_norm = nn.BatchNorm1d(n_filters)
        self.body = nn.Sequential(
            nn.Conv1d(n_filters, hidden, 5, padding=2, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
            *[_Dilated(hidden, d, dropout) for d in dilations])
        self.classifier = nn.Conv1d(hidden, len(self.classes), 1)

    def forward_frontend(self, y):
        """``(b, 1, n)`` → log-compressed filter-bank outputs ``(b, n_filters, n // stride + 1)``."""
        return self.compress_norm(torch.log1p(self.compress_gain * self.frontend(y).abs()))

    def forward_body(self, h):
        """``(b, n_filters, T10)`` → ``(b, hidden, T20)``."""
        return self.body(h)

    def forward_classifier(self, h):
        """``(b, hidden, T)`` → probabilities ``(b, classes, T)``."""
        return torch.sigmoid(self.classifier(h))

    def forward(self, y):
        if y.ndim == 2:
            y = y.unsqueeze(1)
        if y.ndim != 3 or y.shape[1] != 1:
            raise ValueError(f"RawCNN expects waveforms (batch, 1, n) or (batch, n), given shape {tuple(y.shape)}")
        return self.forward_classifier(self.forward_body(self.forward_frontend(y)))


def _config(config: dict | None) -> dict:
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    cfg["postprocessing"] = {**DEFAULT_CONFIG["postprocessing"], **(cfg.get("postprocessing") or {})}
    return cfg


def build(config: dict | None = None) -> RawCNN:
    """Build an untrained raw-waveform CNN from ``DEFAULT_CONFIG`` updated by ``config``."""
    cfg = _config(config)
    model = RawCNN(**{k: v for k, v in cfg.items() if k != "sr"})
    model.config = cfg
    return model


def make_spec(model, *, info: dict | None = None):
    """Wrap the module for probe: waveform in (``bcn``), frame probabilities out (``bct``).

    The grid (16 kHz, ``n_fft`` 1024, hop 320) is the frame grid of the outputs and the
    T-F domain in which attributions are shown.
    """
    from probe.adapter import ModelSpec
    from probe.grid import TFGrid

    cfg = getattr(model, "config", None) or _config(None)
    sr = int(cfg["sr"])
    return ModelSpec(model, input_kind="waveform", grid=TFGrid(sr, n_fft=1024, hop_length=2 * model.stride, n_mels=64),
                     input_layout="bcn", output_kind="frame_probs", classes=list(model.classes), name=NAME,
                     info={"postprocessing": dict(model.postprocessing), **dict(info or {})})


def example(i: int = 0, split: str = "test"):
    """Scene ``i`` of ``split`` as a :class:`probe.AudioExample` with ``events`` and ``event_stems``."""
    from model_zoo.data.scenes import scene_example

    return scene_example(int(i), str(split), sr=DEFAULT_CONFIG["sr"], name=f"{NAME}:scenes:{split}:{int(i)}")
