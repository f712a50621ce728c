"""Partitioned autoencoder: denoising learned from noisy clips only (after Stowell & Turner, 2015).

No clean signal is ever seen in training. The data are noisy clips, some holding
signal + noise and some noise alone (a flag says which). The autoencoder explains every
clip with a non-negative code split into a SIGNAL partition and a NOISE partition; on
noise-only clips the signal partition is zero-masked (and its activity penalised), so the
noise partition and its bases must explain noise on their own. On clips with a signal,
whatever the noise partition cannot explain has to go through the signal partition.
Denoising decodes the signal partition::

    y (b, 1, n) ──encoder (Conv1d 1→K, kernel L, stride L/4)──► a (b, K, T)             signed analysis coefficients
        a ──magnitude of each filter pair: sqrt(a_2j² + a_2j+1²)──► w (b, K/2, T) ≥ 0   learned "magnitude spectrogram"
        log(w) ──code net (1x1 + dilated conv blocks)──softplus──► z = [z_sig (b, Ks, T) | z_noise (b, Kn, T)] ≥ 0
        z_noise ──moving average over ~0.4 s──► z_noise (the noise partition can only follow slow changes)
        v_p = D_p z_p  (D_p ≥ 0: non-negative bases of each partition, K/2 × K_p)    NMF-like latent model of w
        m_p = v_p / (v_sig + v_noise + eps)                                          partition masks (one per pair)
        ŝ_p = decoder(a ⊙ m_p)  (ConvTranspose1d K→1)                                 signal and noise estimates

The analysis bank starts as Hann-windowed cosine/sine pairs (the STFT of the display grid:
32 ms windows, 8 ms hop), so ``w`` starts as an STFT magnitude; training is free to move
both banks away from it. The decoder starts as the matching least-squares synthesis.

Training losses (see the recipe): the waveform autoencoder ``decoder(a) ≈ y``, the
latent fit ``log(v_sig + v_noise) ≈ log(w)`` (on noise-only clips ``log(v_noise) ≈ log(w)``:
the signal partition is zero-masked), and an L1 penalty on ``z_sig`` — strong on
noise-only clips, weak elsewhere, so the model only uses the signal partition for what the
noise partition cannot explain. The noise code is averaged over ~0.4 s, so the noise
partition can only follow slowly varying sound: the fast structure of a signal (onsets,
harmonics that come and go) has to go through the signal partition.

``forward`` returns ``(b, 2, n)``: [signal estimate, noise estimate]; because the masks sum
to one (up to ``eps``) and the decoder is linear, the two add up to the autoencoder's
reconstruction of the input. ``forward(x, zero="signal")`` zero-masks the signal
partition exactly (the noise-only training mode: the signal estimate is exactly 0),
``zero="noise"`` the noise partition.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model_zoo.convtasnet_lite import run_separator

NAME = "partitioned_ae"
TASK = "denoising"
DEFAULT_CONFIG = {
    "sr": 8000,
    "n_filters": 256,        # K: learned analysis / synthesis bases (128 cos/sin-initialised pairs)
    "kernel_size": 256,      # L: 32 ms at 8 kHz, the display grid's window (31 Hz resolution)
    "stride": 64,            # 8 ms hop, the display grid's hop
    "hidden": 128,           # code net width
    "code_blocks": 4,        # dilated conv blocks in the code net (dilations 1, 2, 4, 8)
    "signal_size": 48,       # Ks: signal-partition code size
    "noise_size": 48,        # Kn: noise-partition code size
    "eps": 1e-4,
    "noise_smooth_frames": 51,   # moving average of the noise code: 51 frames × 8 ms ≈ 0.4 s
}
SOURCE_NAMES = ["signal", "noise"]

__all__ = ["NAME", "TASK", "DEFAULT_CONFIG", "SOURCE_NAMES", "PartitionedAutoencoder", "NonNegativeBases", "build",
           "make_spec", "example", "separate", "denoise"]


class NonNegativeBases(nn.Module):
    """``v = softplus(A) @ z``: a non-negative dictionary of ``n_atoms`` bases over ``n_filters`` channels.

    Forward: ``(b, n_atoms, T)`` → ``(b, n_filters, T)``. :attr:`bases` gives the
    ``(n_filters, n_atoms)`` dictionary itself.
    """

    def __init__(self, n_atoms: int, n_filters: int):
        super().__init__()
        self.raw = nn.Parameter(torch.randn(n_filters, n_atoms) * 0.5 - 2.0)

    @property
    def bases(self):
        return F.softplus(self.raw)

    def forward(self, z):
        return torch.einsum("ka,bat->bkt", self.bases, z)


class PairMagnitude(nn.Module):
    """``w_j = sqrt(a_2j² + a_2j+1² + floor)``: the magnitude of each pair of analysis filters.

    With the cosine/sine initialisation this is exactly an STFT magnitude. Forward:
    ``(b, K, T)`` → ``(b, K/2, T)``.
    """

    def __init__(self, floor: float = 1e-8):
        super().__init__()
        self.floor = float(floor)

    def forward(self, a):
        return torch.sqrt(a[:, 0::2] ** 2 + a[:, 1::2] ** 2 + self.floor)


def fourier_pairs(n_filters: int, kernel_size: int, sr: int = 8000) -> np.ndarray:
    """Hann-windowed cosine/sine pairs ``(n_filters, 1, kernel_size)`` at ``k · sr / kernel_size`` Hz, k = 0, 1, ...

    Channels ``2k`` and ``2k + 1`` are the real and imaginary parts of STFT bin ``k``.
    """
    t = np.arange(kernel_size)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * t / kernel_size)
    out = np.zeros((n_filters, 1, kernel_size), np.float32)
    for k in range(n_filters // 2):
        ang = 2 * np.pi * k * t / kernel_size
        out[2 * k, 0], out[2 * k + 1, 0] = win * np.cos(ang), -win * np.sin(ang)
    return out / np.sqrt(kernel_size)


class _CodeBlock(nn.Module):
    def __init__(self, H: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(H, H, 3, padding=dilation, dilation=dilation)
        self.act = nn.PReLU()
        self.norm = nn.GroupNorm(1, H, eps=1e-8)

    def forward(self, x):
        return x + self.norm(self.act(self.conv(x)))


class PartitionedAutoencoder(nn.Module):
    """Waveform autoencoder whose non-negative code is split into signal and noise partitions.

    Parameters
    ----------
    n_filters, kernel_size, stride : int
        Analysis / synthesis banks.
    hidden, code_blocks : int
        Code network width and depth.
    signal_size, noise_size : int
        Sizes of the two code partitions (and atoms of their non-negative bases).
    eps : float
        Floor of the partition masks' denominator.
    noise_smooth_frames : int
        Length of the moving average applied to the noise code (frames; 1 = none). It limits
        what the noise partition can explain to slowly varying sound, so the fast structure of
        a signal cannot hide in it.

    Forward: ``(batch, 1, n)`` → ``(batch, 2, n)`` = [signal, noise].
    """

    def __init__(self, n_filters=256, kernel_size=32, stride=16, hidden=128, code_blocks=4, signal_size=48,
                 noise_size=48, eps=1e-4, noise_smooth_frames=51, sr=8000, **_):
        super().__init__()
        self.n_filters, self.n_sources = int(n_filters), 2
        self.signal_size, self.noise_size, self.eps = int(signal_size), int(noise_size), float(eps)
        pad = kernel_size - stride
        if n_filters % 2:
            raise ValueError(f"n_filters must be even (filters come in pairs), given {n_filters}")
        self.encoder = nn.Conv1d(1, n_filters, kernel_size, stride=stride, padding=pad, bias=False)
        self.magnitude = PairMagnitude()
        n_mag = n_filters // 2
        self.code_in = nn.Conv1d(n_mag, hidden, 1)
        self.code_net = nn.Sequential(*[_CodeBlock(hidden, 2 ** i) for i in range(code_blocks)])
        self.code_out = nn.Conv1d(hidden, signal_size + noise_size, 1)
        self.code_act = nn.Softplus()  # not ReLU: an L1-penalised ReLU code dies early and never recovers
        P = int(noise_smooth_frames) | 1  # odd, so the smoothed code keeps its length
        self.noise_smoother = nn.AvgPool1d(P, stride=1, padding=P // 2, count_include_pad=False) if P > 1 else nn.Identity()
        self.signal_bases = NonNegativeBases(signal_size, n_mag)
        self.noise_bases = NonNegativeBases(noise_size, n_mag)
        self.decoder = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, padding=pad, bias=False)
        self._init_banks(sr)

    @torch.no_grad()
    def _init_banks(self, sr: int):
        """Encoder = windowed Fourier pairs; decoder = the same kernels scaled to reconstruct white noise."""
        K, L = self.encoder.out_channels, self.encoder.kernel_size[0]
        W = torch.from_numpy(fourier_pairs(K, L, sr))
        self.encoder.weight.copy_(W)
        self.decoder.weight.copy_(W)
        x = torch.randn(1, 1, 16 * L, generator=torch.Generator().manual_seed(0))
        y = self.decoder(self.encoder(x), output_size=[x.shape[-1]])
        core = slice(L, -L)  # ignore the edges, where fewer frames overlap
        self.decoder.weight.mul_((x[..., core] * y[..., core]).sum() / (y[..., core] ** 2).sum())

    # named steps -----------------------------------------------------------------------
    def forward_encoder(self, x):
        """``(b, 1, n)`` → signed analysis coefficients ``a`` ``(b, K, T)``."""
        return self.encoder(x)

    def forward_code(self, w, zero: str | None = None):
        """Latent ``w`` → ``(z_signal (b, Ks, T), z_noise (b, Kn, T))``, both ≥ 0.

        ``zero="signal"`` / ``"noise"`` replaces that partition by exact zeros.
        """
        z = self.code_act(self.code_out(self.code_net(self.code_in(torch.log(w + 1e-3)))))
        z_sig, z_noise = z[:, : self.signal_size], self.noise_smoother(z[:, self.signal_size:])
        if zero == "signal":
            z_sig = torch.zeros_like(z_sig)
        elif zero == "noise":
            z_noise = torch.zeros_like(z_noise)
        elif zero is not None:
            raise ValueError(f"zero must be None, 'signal' or 'noise', given {zero!r}")
        return z_sig, z_noise

    def forward_latent_model(self, z_sig, z_noise):
        """Codes → each partition's model of ``w``: ``(v_signal, v_noise)``, each ``(b, K, T)`` ≥ 0."""
        return self.signal_bases(z_sig), self.noise_bases(z_noise)

    def forward_decoder(self, w_masked, n: int):
        """Masked latents ``(b, S, K, T)`` → waveforms ``(b, S, n)``."""
        b, s, K, T = w_masked.shape
        return self.decoder(w_masked.reshape(b * s, K, T), output_size=[n]).view(b, s, n)

    def analyse(self, x, zero: str | None = None, signal_gate=None) -> dict:
        """Every intermediate of one pass.

        Parameters
        ----------
        x : torch.Tensor [shape=(b, 1, n) or (b, n)]
        zero : {None, "signal", "noise"}
            Zero-mask one partition for the whole batch.
        signal_gate : torch.Tensor [shape=(b,)], optional
            Per-item multiplier of the signal code (0 = zero-masked exactly, used for noise-only
            training clips; 1 = kept).

        Returns
        -------
        dict
            ``a`` (b, K, T) signed coefficients; ``w`` (b, K/2, T) the filter-pair magnitudes;
            ``z_signal_raw`` (before gating), ``z_signal``, ``z_noise``;
            ``v_signal``, ``v_noise`` (b, K/2, T); ``masks`` (b, 2, K/2, T); ``sources`` (b, 2, n)
            = [signal, noise]; ``reconstruction`` (b, 1, n) = decoder(a), all in input units.
        """
        if x.ndim == 2:
            x = x.unsqueeze(1)
        n = x.shape[-1]
        scale = x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-5  # (b, 1, 1): level-free latent, undone at the end
        a = self.forward_encoder(x / scale)
        w = self.magnitude(a)
        z_raw, z_noise = self.forward_code(w, "noise" if zero == "noise" else None)
        z_sig = torch.zeros_like(z_raw) if zero == "signal" else z_raw
        if signal_gate is not None:
            z_sig = z_sig * signal_gate.to(z_sig.dtype).view(-1, 1, 1)
        v_sig, v_noise = self.forward_latent_model(z_sig, z_noise)
        total = v_sig + v_noise + self.eps
        masks = torch.stack([v_sig / total, v_noise / total], 1)  # (b, 2, K/2, T): one mask per filter pair
        sources = self.forward_decoder(a.unsqueeze(1) * masks.repeat_interleave(2, dim=2), n) * scale
        return {"a": a, "w": w, "z_signal_raw": z_raw, "z_signal": z_sig, "z_noise": z_noise, "v_signal": v_sig,
                "v_noise": v_noise, "masks": masks, "sources": sources,
                "reconstruction": self.decoder(a, output_size=[n]) * scale}

    def forward(self, x, zero: str | None = None):
        return self.analyse(x, zero)["sources"]


def build(config: dict | None = None):
    """Build an untrained model from ``DEFAULT_CONFIG`` updated by ``config``."""
    return PartitionedAutoencoder(**{**DEFAULT_CONFIG, **(config or {})})


def make_spec(model, *, info: dict | None = None):
    """Wrap the module for probe: waveform in (``bcn``), [signal, noise] out (``bsn``)."""
    from probe.adapter import ModelSpec
    from probe.grid import TFGrid

    return ModelSpec(model, input_kind="waveform", grid=TFGrid(8000, n_fft=256, hop_length=64), input_layout="bcn",
                     output_kind="sources", n_sources=2, name=NAME,
                     info={"source_names": list(SOURCE_NAMES), **dict(info or {})})


@lru_cache(maxsize=4)
def _items(split: str, n: int):
    from model_zoo.data import noisy_set

    return noisy_set(split, n=n)


def example(i: int = 0, split: str = "test"):
    """Noisy clip ``i`` of the split, with its exact [clean, noise] stems as sources."""
    from probe.audio import AudioExample

    item = _items(split, int(i) + 1)[int(i)]
    sources = np.stack([np.asarray(item["clean"], np.float32), np.asarray(item["noise"], np.float32)])
    return AudioExample(np.asarray(item["noisy"], np.float32), int(item["sr"]), name=f"{NAME}:{split}:{i}",
                        sources=sources, source_names=list(SOURCE_NAMES),
                        info={"split": split, "has_signal": bool(item["has_signal"]), "snr_db": item.get("snr_db"),
                              **dict(item.get("meta", {}))})


def separate(model, y) -> np.ndarray:
    """Split a mono 8 kHz noisy clip ``(n,)`` into ``(2, n)`` = [signal estimate, noise estimate]."""
    return run_separator(model, y)


def denoise(model, y) -> np.ndarray:
    """Denoised clip ``(n,)``: the signal partition's decoding."""
    return separate(model, y)[0]
