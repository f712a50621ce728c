"""Corpora and a model whose answers are known by construction (tests, examples, benchmarks).

:func:`planted_spec` is a small magnitude-STFT model with two captured layers:

``units`` (12 units per frame)
    unit 3 is an onset detector (half-wave rectified rise of log power per mel band,
    averaged over bands), unit 7 the log power in the 1–2 kHz band, unit 9 the spectral flatness;
    every other unit is noise drawn from a generator seeded by the input, so it follows
    nothing in the audio.
``code`` (4 units per frame)
    log power in narrow bands at 3, 0.5, 1 and 6 kHz. Unit 0 carries the label of
    :func:`make_label_corpus` (a faint 3 kHz tone, far below the clip's loudness), which a
    random projection of the power spectrum cannot see.

Every planted quantity lives in module weights, so :func:`~probe.corpus.worker.random_init_copy`
destroys it; the noise units stay noise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

__all__ = ["planted_spec", "make_event_corpus", "make_label_corpus", "PLANTED", "SR"]

SR = 16000
#: unit → the concept it was built to follow
PLANTED = {3: "onset", 7: "band_1000_2000", 9: "flatness"}


def _build_model(n_fft: int = 512, sr: int = SR, n_units: int = 12):
    import torch
    import torch.nn as nn

    n_freqs = n_fft // 2 + 1
    freqs = np.arange(n_freqs) * sr / n_fft

    class Flux(nn.Module):
        """Rise of log power per mel band from the previous frame, half-wave rectified, averaged over bands."""

        def __init__(self, n_bands: int = 64):
            super().__init__()
            self.bands = nn.Linear(n_freqs, n_bands, bias=False)
            self.diff = nn.Conv2d(1, 1, (1, 2), bias=False)
            self.avg = nn.Linear(n_bands, 1, bias=False)
            import librosa

            with torch.no_grad():
                self.bands.weight.copy_(torch.as_tensor(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_bands)))
                self.diff.weight.copy_(torch.tensor([[[[-1.0, 1.0]]]]))
                self.avg.weight.fill_(1.0 / n_bands)

        def forward(self, pt):  # (B, T, F) power
            logb = torch.log(torch.relu(self.bands(pt)) + 1e-10).transpose(1, 2)  # (B, bands, T)
            d = torch.relu(self.diff(nn.functional.pad(logb, (1, 0), mode="replicate").unsqueeze(1))[:, 0])
            return self.avg(d.transpose(1, 2))[..., 0]  # (B, T)

    class Planted(nn.Module):
        def __init__(self):
            super().__init__()
            self.flux = Flux()
            self.band = nn.Linear(n_freqs, 1, bias=False)
            self.gmean = nn.Linear(n_freqs, 1, bias=False)
            self.amean = nn.Linear(n_freqs, 1, bias=False)
            self.units = nn.Identity()
            self.narrow = nn.Linear(n_freqs, 4, bias=False)
            self.code = nn.Identity()
            with torch.no_grad():
                self.band.weight.copy_(torch.as_tensor(((freqs >= 1000) & (freqs < 2000)).astype(np.float32))[None])
                self.gmean.weight.fill_(1.0 / n_freqs)
                self.amean.weight.fill_(1.0 / n_freqs)
                w = np.zeros((4, n_freqs), dtype=np.float32)
                for j, f in enumerate((3000, 500, 1000, 6000)):
                    w[j, np.abs(freqs - f) <= sr / n_fft] = 1.0
                self.narrow.weight.copy_(torch.as_tensor(w))

        def forward(self, S):  # (B, F, T) magnitude
            p = S ** 2 + 1e-10
            logp = torch.log(p)
            pt, logpt = p.transpose(1, 2), logp.transpose(1, 2)  # (B, T, F)
            onset = self.flux(pt)
            band = torch.log(torch.relu(self.band(pt)[..., 0]) + 1e-10)
            # flatness = geometric / arithmetic mean; the clamp only matters for random weights (AM >= GM)
            flat = torch.exp(torch.clamp(self.gmean(logpt)[..., 0] - torch.log(torch.relu(self.amean(pt)[..., 0]) + 1e-10),
                                         max=0.0))
            seed = int(torch.round(S.double().sum() * 1e3).item()) % (2 ** 31)
            g = torch.Generator().manual_seed(seed)
            noise = torch.randn(S.shape[0], n_units, S.shape[-1], generator=g)
            planted = {3: onset, 7: band, 9: flat}
            rows = [planted[i] if i in planted else noise[:, i] for i in range(n_units)]
            units = self.units(torch.stack(rows, dim=1))  # (B, U, T)
            code = self.code(torch.log(torch.relu(self.narrow(pt)) + 1e-10).transpose(1, 2))  # (B, 4, T)
            return torch.cat([units, code], dim=1)

    return Planted().eval()


def planted_spec():
    """The planted model as a :class:`~probe.ModelSpec` (magnitude STFT, 16 kHz, n_fft 512, hop 160).

    Examples
    --------
    >>> import probe
    >>> spec = planted_spec()
    >>> with probe.capture(spec, layers=["units", "code"]) as cache:
    ...     _ = spec.model(spec.features(np.zeros(SR, dtype=np.float32)))
    >>> cache["units"].shape, cache["units"].seconds_per_step
    ((1, 12, 101), 0.01)
    """
    from ..adapter import ModelSpec
    from ..grid import TFGrid

    return ModelSpec(_build_model(), input_kind="stft", grid=TFGrid(SR, n_fft=512, hop_length=160),
                     output_kind="features", name="planted")


def _event_clip(rng, seconds: float, sr: int = SR):
    n = int(seconds * sr)
    y = rng.standard_normal(n) * 1e-3
    events = []
    t_axis = np.arange(n) / sr
    for _ in range(int(rng.integers(2, 5))):
        kind = str(rng.choice(["tone", "noise", "click"]))
        start = float(rng.uniform(0.05, seconds - 0.3))
        dur = 0.004 if kind == "click" else float(rng.uniform(0.15, 0.5))
        a, b = int(start * sr), min(n, int((start + dur) * sr))
        m = b - a
        env = np.exp(-np.arange(m) / (0.6 * m + 1)) * np.minimum(1.0, np.arange(m) / (0.003 * sr))
        if kind == "tone":
            f = float(np.exp(rng.uniform(np.log(150), np.log(6000))))
            sig = float(rng.uniform(0.05, 0.3)) * np.sin(2 * np.pi * f * t_axis[a:b])
        elif kind == "noise":
            sig = float(rng.uniform(0.02, 0.1)) * rng.standard_normal(m)
        else:
            sig = float(rng.uniform(0.2, 0.5)) * rng.standard_normal(m)
        y[a:b] += sig * env
        events.append({"start": round(start, 4), "end": round(start + dur, 4), "label": kind})
    return y.astype(np.float32), events


def make_event_corpus(folder, *, n_clips: int = 24, seconds: float = 2.0, seed: int = 0, manifest: bool = False) -> Path:
    """Write clips of tones, noise bursts and clicks at random times over a faint noise floor.

    Returns the folder, or with ``manifest=True`` a JSONL manifest listing each clip's events.
    """
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_clips):
        y, events = _event_clip(rng, seconds)
        name = f"clip{i:03d}.wav"
        sf.write(folder / name, y, SR, subtype="FLOAT")
        lines.append(json.dumps({"path": name, "events": events, "group": f"g{i}"}))
    if manifest:
        path = folder / "manifest.jsonl"
        path.write_text("\n".join(lines) + "\n")
        return path
    return folder


def make_label_corpus(folder, *, n_clips: int = 40, seconds: float = 2.0, seed: int = 1,
                      tone_amp: float = 0.003) -> Path:
    """Write a CSV-manifest corpus with labels ``A``/``B``: A clips hide a faint steady 3 kHz tone.

    Every clip has loud low-frequency (brown) noise at a random level plus random events,
    so loudness and spectral shape say nothing about the label; only the narrow 3 kHz
    band does.
    """
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    rows = []
    for i in range(n_clips):
        label = "A" if i % 2 == 0 else "B"
        from scipy.signal import lfilter

        brown = lfilter([1.0], [1.0, -0.995], rng.standard_normal(n))  # leaky integrator: 1/f^2 above ~13 Hz
        brown *= float(rng.uniform(0.05, 0.2)) / (brown.std() + 1e-12)
        ev, _ = _event_clip(rng, seconds)
        y = brown + ev
        if label == "A":
            y = y + tone_amp * np.sin(2 * np.pi * 3000 * t + float(rng.uniform(0, 2 * np.pi)))
        name = f"clip{i:03d}.wav"
        sf.write(folder / name, y.astype(np.float32), SR, subtype="FLOAT")
        rows.append({"path": name, "label": label, "group": f"g{i // 2}"})
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "group"])
        w.writeheader()
        w.writerows(rows)
    return path
