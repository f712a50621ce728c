"""A gallery of small audio architectures whose time axes and filter banks are known by construction.

Each :class:`Entry` builds a randomly initialised (seeded) model and says, from the
architecture alone, what probe must infer for it: every listed layer's seconds per step
(an exact fraction), the centre of its step 0 in seconds, its axis names, and which layers
are filter banks (and along which axis). Frame centres follow the point convention — the
centre of samples ``a..b`` is ``(a + b) / 2`` — except for STFT frames, which follow the
grid's (librosa's) convention; the two differ by at most half a sample, the tolerance
the tests allow.

Other tests use it too::

    from tests.gallery import ENTRIES, spec_of, write_spec_folder
    spec = spec_of("conv_stack")                          # a ModelSpec
    toml = write_spec_folder("framed_conv2d", tmp_path)   # <tmp>/framed_conv2d/spec.toml (+ model.py)

The spec folder's ``model.py`` loads this file by path, so ``probe CMD <toml>`` works from
any working directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Entry", "Expect", "ENTRIES", "build", "spec_of", "write_spec_folder", "event_signal"]


@dataclass(frozen=True)
class Expect:
    """What one layer's first output must be inferred as."""

    seconds_per_step: Fraction
    offset: Fraction
    axes: tuple


@dataclass
class Entry:
    name: str
    make: Callable[[], nn.Module]
    input: dict
    output: dict
    layers: dict
    banks: dict
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        return int(self.input["sample_rate"])


# ---- models ------------------------------------------------------------------------------------
class LearnedSTFT(nn.Module):
    """A learned STFT: Conv1d with ``n_fft``-tap kernels and stride ``hop`` (zero-padded by ``n_fft // 2`` if centred).

    With ``hann=True`` the kernels are Hann-windowed cosines (an STFT magnitude-like front
    end whose energy peaks when a frame is centred on an event).
    """

    def __init__(self, n_fft: int, hop: int, center: bool, channels: int = 8, hann: bool = False):
        super().__init__()
        self.stft = nn.Conv1d(1, channels, n_fft, stride=hop, padding=n_fft // 2 if center else 0, bias=False)
        if hann:
            j = torch.arange(n_fft, dtype=torch.float32)
            win = torch.hann_window(n_fft, periodic=False)
            bins = torch.linspace(4, n_fft // 4, channels)
            with torch.no_grad():
                self.stft.weight.copy_((win * torch.cos(2 * torch.pi * bins[:, None] * j / n_fft))[:, None, :])
        self.head = nn.Conv1d(channels, 4, 1)

    def forward(self, x):  # (B, 1, N)
        return self.head(torch.log1p(self.stft(x) ** 2))


class ValidSame(nn.Module):
    """Valid strided front end, then a 'same'-padded and a 'valid' conv."""

    def __init__(self):
        super().__init__()
        self.front = nn.Conv1d(1, 8, 400, stride=160)
        self.same = nn.Conv1d(8, 8, 5, padding=2)
        self.valid = nn.Conv1d(8, 8, 5)

    def forward(self, x):
        return self.valid(torch.relu(self.same(torch.relu(self.front(x)))))


CONV_STACK = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))  # (kernel, stride), wav2vec 2.0's encoder


class ConvStack(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        layers = []
        c_in = 1
        for k, s in CONV_STACK:
            layers.append(nn.Conv1d(c_in, channels, k, stride=s))
            c_in = channels
        self.conv = nn.ModuleList(layers)

    def forward(self, x):
        for conv in self.conv:
            x = F.gelu(conv(x))
        return x


class FramedConv2d(nn.Module):
    """Frames of ``frame`` samples every ``hop``, folded into the batch; a Conv2d with ``(k, 1)`` kernels per frame."""

    def __init__(self, frame: int = 1024, hop: int = 512, k: int = 512, channels: int = 8):
        super().__init__()
        self.frame, self.hop = frame, hop
        self.conv = nn.Conv2d(1, channels, (k, 1))
        self.head = nn.Linear(channels, 4)

    def forward(self, x):  # (B, N)
        b = x.shape[0]
        frames = x.unfold(-1, self.frame, self.hop)  # (B, F, frame)
        n_frames = frames.shape[1]
        h = self.conv(frames.reshape(b * n_frames, 1, self.frame, 1))  # (B*F, C, frame-k+1, 1)
        h = torch.relu(h).mean(dim=(2, 3)).reshape(b, n_frames, -1)
        return self.head(h)  # (B, F, 4)


SINC_EDGES = ((150.0, 450.0), (400.0, 800.0), (700.0, 1200.0), (1100.0, 1800.0), (1700.0, 2600.0),
              (2500.0, 3600.0), (3400.0, 4800.0), (4600.0, 6200.0))


class SincConv(nn.Module):
    """SincNet-style band-pass front end: kernels built in ``forward`` from learnable band edges."""

    def __init__(self, edges=SINC_EDGES, taps: int = 251, sample_rate: int = 16000):
        super().__init__()
        lo = torch.tensor([a for a, _ in edges], dtype=torch.float32)
        hi = torch.tensor([b for _, b in edges], dtype=torch.float32)
        self.low_hz = nn.Parameter(lo)
        self.band_hz = nn.Parameter(hi - lo)
        self.taps, self.sample_rate = taps, sample_rate
        self.register_buffer("t", (torch.arange(taps, dtype=torch.float32) - taps // 2) / sample_rate)
        self.register_buffer("window", torch.hamming_window(taps, periodic=False))

    def kernels(self) -> torch.Tensor:
        """``(n_filters, taps)`` band-pass impulse responses (unit gain in the pass band)."""
        low = self.low_hz.abs()[:, None]
        high = low + self.band_hz.abs()[:, None]
        k = 2 * high * torch.sinc(2 * high * self.t) - 2 * low * torch.sinc(2 * low * self.t)
        return k * self.window / self.sample_rate

    def forward(self, x):  # (B, 1, N)
        return F.conv1d(x, self.kernels()[:, None, :], padding=self.taps // 2)


class SincNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.sinc = SincConv()
        self.pool = nn.MaxPool1d(4)
        self.conv = nn.Conv1d(8, 8, 5, padding=2)

    def forward(self, x):
        return self.conv(torch.relu(self.pool(self.sinc(x).abs())))


class WindowEmbedder(nn.Module):
    """Embeddings of 1.6 s windows every 0.1 s (frames folded into the batch), like speaker-embedding models."""

    def __init__(self, sample_rate: int = 16000, window_s: float = 1.6, hop_s: float = 0.1, dim: int = 16):
        super().__init__()
        self.win, self.hop = int(window_s * sample_rate), int(hop_s * sample_rate)
        self.conv = nn.Conv1d(1, 8, 400, stride=200)  # 127 positions tile the 25600-sample window exactly
        self.embed = nn.Linear(8, dim)

    def forward(self, x):  # (B, N)
        b = x.shape[0]
        frames = x.unfold(-1, self.win, self.hop)  # (B, F, win)
        n_frames = frames.shape[1]
        h = torch.relu(self.conv(frames.reshape(b * n_frames, 1, self.win)))  # (B*F, 8, T')
        e = self.embed(h.mean(-1))  # (B*F, dim)
        return e.reshape(b, n_frames, -1)


class MelLSTM(nn.Module):
    """LSTM over log-mel frames (B, T, 64) whose hidden size equals the number of mel bins."""

    def __init__(self, n_mels: int = 64, n_classes: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, n_mels, batch_first=True)
        self.head = nn.Linear(n_mels, n_classes)

    def forward(self, x):  # (B, T, F)
        h, _ = self.lstm(x)
        return torch.sigmoid(self.head(h))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h)[0]
        return x + self.mlp(self.ln2(x))


class FbankTransformer(nn.Module):
    """Transformer on fbank frames (B, T, 64); its MLP width equals the number of mel bins (a false-bank trap)."""

    def __init__(self, n_mels: int = 64, d: int = 32, n_classes: int = 5):
        super().__init__()
        self.proj = nn.Linear(n_mels, d)
        self.block = Block(d, 4, n_mels)
        self.head = nn.Linear(d, n_classes)

    def forward(self, x):  # (B, T, F)
        return self.head(self.block(self.proj(x)).mean(1))  # (B, C)


class MaskBLSTM(nn.Module):
    """|STFT| (B, T, F) → BLSTM → Linear mask head over the F bins → masks (B, 1, F, T)."""

    def __init__(self, n_freqs: int = 129, hidden: int = 32):
        super().__init__()
        self.blstm = nn.LSTM(n_freqs, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, n_freqs)

    def forward(self, x):  # (B, T, F)
        h, _ = self.blstm(x)
        return torch.sigmoid(self.head(h)).transpose(1, 2).unsqueeze(1)


class MelCRNN(nn.Module):
    """Conv2d over (mel, time), 2×2 max-pool, conv, mean over frequency, 1×1 conv to frame scores."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.out = nn.Conv1d(8, n_classes, 1)

    def forward(self, x):  # (B, 1, F, T)
        h = self.conv2(torch.relu(self.pool(torch.relu(self.conv1(x)))))
        return torch.sigmoid(self.out(h.mean(2)))  # (B, C, T/2)


# ---- the gallery -------------------------------------------------------------------------------
def _s(samples, sr) -> Fraction:
    return Fraction(samples) / int(sr)


def _stft_entry(hop: int, sr: int, n_fft: int, center: bool, hann: bool = False) -> Entry:
    # frame k: samples k*hop - n_fft/2 … (centred) or k*hop … k*hop + n_fft - 1; the analytic centre
    # is librosa's (k*hop, or k*hop + n_fft/2), half a sample from the point centre
    off = Fraction(0) if center else _s(n_fft // 2, sr)
    ex = Expect(_s(hop, sr), off, ("batch", "channel", "time"))
    return Entry(f"stft{hop}_{sr}_{'c' if center else 'nc'}" + ("_hann" if hann else ""),
                 lambda: LearnedSTFT(n_fft, hop, center, hann=hann),
                 {"kind": "waveform", "sample_rate": sr, "n_fft": n_fft, "hop_length": hop, "center": center,
                  "layout": "bcn"},
                 {"kind": "features"}, {"stft": ex, "head": ex}, {"stft": "samples"},
                 notes=f"learned STFT, hop {hop} at {sr} Hz, n_fft {n_fft}, center={center}")


def _conv_stack_entry() -> Entry:
    sr = 16000
    layers, hop, field_ = {}, 1, 1
    for i, (k, s) in enumerate(CONV_STACK):
        field_ += (k - 1) * hop  # receptive field grows by (k-1) input steps of the previous hop
        hop *= s
        layers[f"conv.{i}"] = Expect(_s(hop, sr), _s(Fraction(field_ - 1, 2), sr), ("batch", "channel", "time"))
    return Entry("conv_stack", ConvStack, {"kind": "waveform", "sample_rate": sr, "n_fft": 512, "hop_length": 160,
                                           "layout": "bcn"},
                 {"kind": "features"}, layers, {"conv.0": "samples"},
                 notes="strides (5,2,2,2,2,2,2), kernels (10,3,3,3,3,2,2): hop 320 (20 ms), receptive field 400")


def _entries() -> dict:
    out = {}
    for e in (_stft_entry(160, 16000, 400, True), _stft_entry(160, 16000, 400, False),
              _stft_entry(256, 22050, 1024, False), _stft_entry(320, 16000, 640, False),
              _stft_entry(441, 44100, 1024, True), _stft_entry(512, 22050, 1024, False),
              _stft_entry(512, 44100, 2048, True), _stft_entry(441, 44100, 1024, True, hann=True)):
        out[e.name] = e
    sr = 16000
    front = Expect(_s(160, sr), _s(Fraction(399, 2), sr), ("batch", "channel", "time"))
    out["valid_same"] = Entry(
        "valid_same", ValidSame, {"kind": "waveform", "sample_rate": sr, "n_fft": 512, "hop_length": 160, "layout": "bcn"},
        {"kind": "features"},
        {"front": front, "same": front,
         "valid": Expect(_s(160, sr), _s(Fraction(399, 2) + 2 * 160, sr), ("batch", "channel", "time"))},
        {"front": "samples"}, notes="valid strided conv (400 taps, hop 160), same conv, valid conv (shifts 2 frames)")
    out["conv_stack"] = _conv_stack_entry()
    sr = 22050
    fr = Expect(_s(512, sr), _s(Fraction(1023, 2), sr), ("time", "channel", "dim1", "dim2"))
    out["framed_conv2d"] = Entry(
        "framed_conv2d", FramedConv2d, {"kind": "waveform", "sample_rate": sr, "n_fft": 1024, "hop_length": 512},
        {"kind": "features"},
        {"conv": fr, "head": Expect(_s(512, sr), _s(Fraction(1023, 2), sr), ("batch", "time", "channel"))},
        {"conv": "samples"}, notes="1024-sample frames every 512 folded into the batch, Conv2d (512, 1) per frame")
    sr = 16000
    out["sincnet"] = Entry(
        "sincnet", SincNet, {"kind": "waveform", "sample_rate": sr, "n_fft": 512, "hop_length": 160, "layout": "bcn"},
        {"kind": "features"},
        {"sinc": Expect(_s(1, sr), Fraction(0), ("batch", "channel", "time")),
         # max-pool of 4: step k covers sinc outputs 4k … 4k+3
         "pool": Expect(_s(4, sr), _s(Fraction(3, 2), sr), ("batch", "channel", "time")),
         "conv": Expect(_s(4, sr), _s(Fraction(3, 2), sr), ("batch", "channel", "time"))},
        {"sinc": "samples"}, notes="band-pass kernels generated in forward from learnable band edges (F.conv1d)",
        extra={"edges": SINC_EDGES})
    emb = Expect(_s(1600, sr), _s(Fraction(25599, 2), sr), ("time", "channel"))
    out["window_embedder"] = Entry(
        "window_embedder", WindowEmbedder, {"kind": "waveform", "sample_rate": sr, "n_fft": 512, "hop_length": 160},
        {"kind": "features"},
        {"conv": Expect(_s(1600, sr), _s(Fraction(25599, 2), sr), ("time", "channel", "dim1")), "embed": emb},
        {"conv": "samples"}, notes="1.6 s windows every 0.1 s: frame k describes 0.8 + 0.1 k s")
    mel = {"kind": "logmel", "sample_rate": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 64, "center": True,
           "layout": "btf"}
    out["mel_lstm"] = Entry(
        "mel_lstm", MelLSTM, mel, {"kind": "frame_probs", "layout": "btc", "classes": ["a", "b", "c"]},
        {"lstm": Expect(_s(160, 16000), Fraction(0), ("batch", "time", "channel")),
         "head": Expect(_s(160, 16000), Fraction(0), ("batch", "time", "channel"))},
        {}, notes="LSTM on centred log-mel frames; hidden size = n_mels (not a mel axis), h_n is not either")
    fbank = {"kind": "logmel", "sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 64,
             "center": False, "layout": "btf"}
    tf = Expect(_s(160, 16000), _s(256, 16000), ("batch", "time", "channel"))
    out["fbank_transformer"] = Entry(
        "fbank_transformer", FbankTransformer, fbank, {"kind": "clip_scores", "classes": list("vwxyz")},
        {"proj": tf, "block.mlp.0": tf, "block.mlp.2": tf, "block": tf},
        {"proj": "frequency"}, notes="transformer on uncentred fbank frames; MLP width 64 = n_mels is no filter bank")
    mag = {"kind": "stft", "sample_rate": 8000, "n_fft": 256, "hop_length": 64, "center": True, "layout": "btf"}
    out["mask_blstm"] = Entry(
        "mask_blstm", MaskBLSTM, mag, {"kind": "masks", "n_sources": 1},
        {"blstm": Expect(_s(64, 8000), Fraction(0), ("batch", "time", "channel")),
         "head": Expect(_s(64, 8000), Fraction(0), ("batch", "time", "freq"))},
        {"head": "frequency"}, notes="mask head: its 129 outputs are the mask's frequency bins (found from the output side)")
    sr = 22050
    crnn_in = {"kind": "logmel", "sample_rate": sr, "n_fft": 1024, "hop_length": 256, "n_mels": 40, "center": True,
               "layout": "bcft"}
    half = _s(Fraction(256, 2), sr)  # 2×2 pool: step k covers frames 2k, 2k+1
    out["mel_crnn"] = Entry(
        "mel_crnn", MelCRNN, crnn_in, {"kind": "frame_probs", "classes": ["a", "b", "c"]},
        {"conv1": Expect(_s(256, sr), Fraction(0), ("batch", "channel", "mel", "time")),
         "pool": Expect(_s(512, sr), half, ("batch", "channel", "dim1", "time")),
         "conv2": Expect(_s(512, sr), half, ("batch", "channel", "dim1", "time")),
         "out": Expect(_s(512, sr), half, ("batch", "channel", "time"))},
        {"conv1": "spectrotemporal"}, notes="CRNN on centred log-mel at 22.05 kHz, hop 256, 2x2 pooling")
    return out


ENTRIES: dict = _entries()


def build(name: str) -> nn.Module:
    """The gallery model ``name``, seeded (identical weights on every call), in eval mode."""
    torch.manual_seed(0)
    return ENTRIES[name].make().eval()


def spec_of(name: str, **kwargs):
    """A :class:`~probe.ModelSpec` of gallery model ``name`` (``kwargs`` go to ModelSpec)."""
    from probe import ModelSpec, TFGrid

    e = ENTRIES[name]
    i, o = dict(e.input), e.output
    grid = TFGrid.from_dict({k: v for k, v in i.items() if k not in ("kind", "layout")})
    return ModelSpec(build(name), input_kind=i["kind"], grid=grid, output_kind=o.get("kind", "features"),
                     classes=o.get("classes"), input_layout=i.get("layout"), output_layout=o.get("layout"),
                     name=name, **kwargs)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)  # strings and lists of strings are valid TOML in JSON spelling


def write_spec_folder(name: str, root, *, time: dict | None = None) -> Path:
    """Write gallery model ``name`` as a spec folder ``root/name`` (``spec.toml`` + ``model.py``); return the TOML path.

    ``time`` adds a ``[time]`` table (``seconds_per_step``, ``offset``).
    """
    e = ENTRIES[name]
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(
        "import importlib.util, sys\n"
        f"_path = {str(Path(__file__).resolve())!r}\n"
        "_mod = sys.modules.get('probe_test_gallery')\n"
        "if _mod is None:\n"
        "    _spec = importlib.util.spec_from_file_location('probe_test_gallery', _path)\n"
        "    _mod = importlib.util.module_from_spec(_spec)\n"
        "    sys.modules['probe_test_gallery'] = _mod\n"
        "    _spec.loader.exec_module(_mod)\n\n\n"
        "def build(name):\n"
        "    return _mod.build(name)\n")
    lines = ["[model]", 'factory = "model:build"', f"name = {_toml_value(name)}", f"kwargs = {{ name = {_toml_value(name)} }}",
             "", "[input]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in e.input.items()]
    lines += ["", "[output]"] + [f"{k} = {_toml_value(v)}" for k, v in e.output.items()]
    if time:
        lines += ["", "[time]"] + [f"{k} = {_toml_value(v)}" for k, v in time.items()]
    path = folder / "spec.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def event_signal(name: str, at_s: float, *, seconds: float, kind: str = "burst", seed: int = 0) -> np.ndarray:
    """Quiet noise with one loud event centred at ``at_s``: a 0.1 s tone burst (``burst``) or a click."""
    sr = ENTRIES[name].sample_rate
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(int(seconds * sr)).astype(np.float32) * 1e-3
    c = int(round(at_s * sr))
    if kind == "click":
        y[c] += 1.0
    else:
        half = int(0.05 * sr)
        t = np.arange(-half, half) / sr
        y[c - half:c + half] += (0.5 * np.sin(2 * np.pi * 1000 * t) * np.hanning(2 * half)).astype(np.float32)
    return y
