"""Conv-TasNet-lite: a free learned filterbank with a small dilated-TCN masker (Luo & Mesgarani, 2019).

Named steps, each a plain module so probe's capture and filter discovery see them::

    y (b, 1, n) ──encoder (Conv1d 1→N, kernel L, stride L/2)──ReLU──► w (b, N, T)   non-negative "spectrogram"
          w ──norm──bottleneck (1x1 N→B)──TCN (R×X dilated depthwise-separable blocks)──mask head──► m (b, S, N, T)
          w ⊙ m_s ──decoder (ConvTranspose1d N→1, kernel L, stride L/2)──► ŝ_s (b, S, n)

The encoder's first layer sees the raw waveform and the decoder is the last layer, so
:func:`probe.filterbank.filters` lists them as the ``analysis`` and ``synthesis`` banks.
Both pad internally (``padding = L - stride``) and the decoder is called with
``output_size=n``, so the output has exactly the input's length, odd lengths included.

The module also holds the helpers the other waveform models share: :func:`si_sdr`,
:func:`pit_si_sdr_loss` and :func:`run_separator`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn as nn

from model_zoo._waveform import mixture_example, waveform_spec

NAME = "convtasnet_lite"
TASK = "separation"
DEFAULT_CONFIG = {
    "dataset": "instruments", # separation_set name (the deep-clustering model uses the same)
    "sr": 8000,
    "n_filters": 128,         # N: encoder/decoder basis functions
    "kernel_size": 16,        # L: samples per basis function (2 ms at 8 kHz)
    "stride": 8,              # L / 2, as in the paper
    "bottleneck": 64,         # B
    "hidden": 128,            # H: channels inside a TCN block
    "blocks": 6,              # X: blocks per repeat, dilations 1, 2, 4, ..., 32 (masker context 253 ms)
    "repeats": 2,             # R
    "tcn_kernel": 3,          # P
    "n_sources": 2,
}

__all__ = ["NAME", "TASK", "DEFAULT_CONFIG", "ConvTasNetLite", "build", "make_spec", "example", "separate",
           "si_sdr", "pit_si_sdr_loss", "run_separator"]


# ---- shared helpers --------------------------------------------------------------------
def si_sdr(est, ref, eps: float = 1e-8):
    """Scale-invariant SDR in dB along the last axis.

    Parameters
    ----------
    est, ref : torch.Tensor [shape=(..., n)]

    Returns
    -------
    torch.Tensor [shape=(...)]
    """
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def pit_si_sdr_loss(est, ref):
    """Negative SI-SDR under the best permutation of sources, averaged over the batch.

    Parameters
    ----------
    est, ref : torch.Tensor [shape=(batch, S, n)]

    Returns
    -------
    loss : torch.Tensor (scalar)
    perm_scores : torch.Tensor [shape=(batch,)]  best mean SI-SDR per item (dB)
    """
    S = ref.shape[1]
    scores = []
    for perm in itertools.permutations(range(S)):
        scores.append(si_sdr(est[:, list(perm)], ref).mean(-1))
    best = torch.stack(scores, -1).max(-1).values
    return -best.mean(), best.detach()


def run_separator(model, y, *, sr: int = 8000) -> np.ndarray:
    """Run a waveform separator on one clip and return numpy sources.

    Parameters
    ----------
    model : torch.nn.Module  taking ``(batch, 1, n)`` and returning ``(batch, S, n)``
    y : np.ndarray [shape=(n,)]

    Returns
    -------
    np.ndarray [shape=(S, n), dtype=float32]
    """
    from probe.audio import validate_audio

    y = validate_audio(np.asarray(y, dtype=np.float32), sr=sr)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            out = model(torch.from_numpy(y).to(p.device)[None, None])
    finally:
        model.train(was)
    return out[0].cpu().numpy().astype(np.float32)


# ---- model -----------------------------------------------------------------------------
class TCNBlock(nn.Module):
    """1x1 B→H, PReLU, gLN, dilated depthwise conv, PReLU, gLN, 1x1 H→B, residual: ``(b, B, T)`` → same."""

    def __init__(self, B: int, H: int, P: int, dilation: int):
        super().__init__()
        self.inp = nn.Conv1d(B, H, 1)
        self.act1 = nn.PReLU()
        self.norm1 = nn.GroupNorm(1, H, eps=1e-8)
        self.depthwise = nn.Conv1d(H, H, P, padding=dilation * (P - 1) // 2, dilation=dilation, groups=H)
        self.act2 = nn.PReLU()
        self.norm2 = nn.GroupNorm(1, H, eps=1e-8)
        self.out = nn.Conv1d(H, B, 1)

    def forward(self, x):
        h = self.norm1(self.act1(self.inp(x)))
        h = self.norm2(self.act2(self.depthwise(h)))
        return x + self.out(h)


class ConvTasNetLite(nn.Module):
    """Learned-filterbank masking separator.

    Parameters
    ----------
    n_filters, kernel_size, stride : int
        Encoder/decoder bank: ``n_filters`` kernels of ``kernel_size`` samples, hop ``stride``.
    bottleneck, hidden, blocks, repeats, tcn_kernel : int
        TCN masker geometry (B, H, X, R, P in the paper).
    n_sources : int

    Forward: ``(batch, 1, n)`` (or ``(batch, n)``) → ``(batch, n_sources, n)``.
    """

    def __init__(self, n_filters=128, kernel_size=16, stride=8, bottleneck=64, hidden=128, blocks=6, repeats=2,
                 tcn_kernel=3, n_sources=2, **_):
        super().__init__()
        self.n_filters, self.n_sources = int(n_filters), int(n_sources)
        pad = kernel_size - stride
        self.encoder = nn.Conv1d(1, n_filters, kernel_size, stride=stride, padding=pad, bias=False)
        self.enc_act = nn.ReLU()
        self.norm = nn.GroupNorm(1, n_filters, eps=1e-8)
        self.bottleneck = nn.Conv1d(n_filters, bottleneck, 1)
        self.tcn = nn.Sequential(*[TCNBlock(bottleneck, hidden, tcn_kernel, 2 ** x)
                                   for _ in range(repeats) for x in range(blocks)])
        self.mask_act = nn.PReLU()
        self.mask_head = nn.Conv1d(bottleneck, n_sources * n_filters, 1)
        self.decoder = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, padding=pad, bias=False)

    # named steps (Asteroid style) ---------------------------------------------------
    def forward_encoder(self, x):
        """``(b, 1, n)`` → non-negative latent ``(b, N, T)``."""
        return self.enc_act(self.encoder(x))

    def forward_masker(self, w):
        """Latent ``(b, N, T)`` → masks in [0, 1] ``(b, S, N, T)``."""
        h = self.tcn(self.bottleneck(self.norm(w)))
        m = self.mask_head(self.mask_act(h))
        return torch.sigmoid(m).view(w.shape[0], self.n_sources, self.n_filters, w.shape[-1])

    def forward_decoder(self, w_masked, n: int):
        """Masked latents ``(b, S, N, T)`` → waveforms ``(b, S, n)``."""
        b, s, N, T = w_masked.shape
        y = self.decoder(w_masked.reshape(b * s, N, T), output_size=[n])
        return y.view(b, s, n)

    def forward(self, x):
        if x.ndim == 2:
            x = x.unsqueeze(1)
        n = x.shape[-1]
        w = self.forward_encoder(x)
        m = self.forward_masker(w)
        return self.forward_decoder(w.unsqueeze(1) * m, n)


def build(config: dict | None = None):
    """Build an untrained model from ``DEFAULT_CONFIG`` updated by ``config``."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    return ConvTasNetLite(**cfg)


def make_spec(model, *, info: dict | None = None):
    """Wrap the module for probe: waveform in (``bcn``), separated sources out (``bsn``)."""
    return waveform_spec(model, NAME, info=info)


def example(i: int = 0, split: str = "test", *, dataset: str | None = None):
    """Mixture ``i`` of the split this model was evaluated on, with its exact sources."""
    return mixture_example(NAME, dataset or DEFAULT_CONFIG["dataset"], int(i), split)


def separate(model, y) -> np.ndarray:
    """Separate a mono 8 kHz mixture ``(n,)`` into ``(S, n)`` sources."""
    return run_separator(model, y)
