"""Fixtures shared by the app, browser and report tests: a tiny spec-file model and clips with known content.

The tiny model never depends on training: a waveform front end whose 16 kernels are
Hann-windowed cosines at known, log-spaced centre frequencies (so the Filters page has a
real filterbank to describe), a per-frame embedding layer and a two-class detector head.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np

SR = 8000
CENTRES_HZ = np.geomspace(200.0, 3200.0, 16)

MODULE = textwrap.dedent('''
    import numpy as np
    import torch

    CENTRES_HZ = np.geomspace(200.0, 3200.0, 16)

    class TinyDetector(torch.nn.Module):
        """(B, 1, N) waveform at 8 kHz → (B, 2, T) frame probabilities, 8 ms frames."""

        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Conv1d(1, 16, 128, stride=64, padding=64, bias=False)
            self.relu = torch.nn.ReLU()
            self.embed = torch.nn.Conv1d(16, 8, 3, padding=1)
            self.act = torch.nn.Tanh()
            self.head = torch.nn.Conv1d(8, 2, 1)

        def forward(self, x):
            h = self.act(self.embed(torch.log1p(self.relu(self.encoder(x)))))
            return torch.sigmoid(self.head(h))

    def build():
        torch.manual_seed(0)
        net = TinyDetector()
        t = np.arange(128) / 8000.0
        w = np.hanning(128) * np.cos(2 * np.pi * CENTRES_HZ[:, None] * t[None, :])
        with torch.no_grad():
            net.encoder.weight.copy_(torch.as_tensor(w[:, None, :] / 8.0, dtype=torch.float32))
        return net.eval()
''')

SPEC = textwrap.dedent('''
    [model]
    factory = "tinydetector:build"
    name = "tiny_detector"
    [input]
    kind = "waveform"
    sample_rate = 8000
    n_fft = 256
    hop = 64
    layout = "bcn"
    [output]
    kind = "frame_probs"
    classes = ["tone", "noise"]
''')


def write_tiny_spec(folder) -> Path:
    """Write the tiny detector's module and TOML spec into ``folder``; returns the spec path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tinydetector.py").write_text(MODULE)
    path = folder / "tiny.toml"
    path.write_text(SPEC)
    return path


def tone_and_noise(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A 1 kHz tone over the whole clip plus a noise burst at 0.5–1.0 s (8 kHz, float32)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = 0.3 * np.sin(2 * np.pi * 1000 * t)
    a, b = min(int(0.5 * SR), n), min(int(1.0 * SR), n)
    y[a:b] += 0.1 * rng.standard_normal(b - a)
    return y.astype(np.float32)


def wav_bytes(y: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    """Encode a clip as a WAV/FLAC/OGG file in memory."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(y, np.float32), sr, format=fmt, subtype="PCM_16" if fmt in ("WAV", "FLAC") else None)
    return buf.getvalue()


def trained_zoo_models() -> list[str]:
    """Zoo models that have a shipped checkpoint right now (training may still be running)."""
    try:
        from model_zoo.registry import catalogue
    except Exception:
        return []
    return [e["name"] for e in catalogue() if e.get("trained")]
