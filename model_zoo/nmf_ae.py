"""NMF-like autoencoder on the raw waveform (Smaragdis & Venkataramani, 2017), with latent-space masking.

The model reads NMF into a neural network: a learned analysis bank turns the waveform into
a non-negative "magnitude spectrogram" ``w`` (one row per learned basis), separation
happens by masking ``w``, and a learned synthesis bank turns each masked latent back into
a waveform — the NMF picture "spectrogram = bases × activations, a source = its share of
the spectrogram", with all three parts learned end to end::

    y (b, 1, n) ──encoder (Conv1d 1→K, kernel L, stride L/2)──softplus──► w (b, K, T) ≥ 0
          log1p(w) ──bottleneck (1x1 K→H)──BLSTM (H per direction)──mask head (K·S)──softmax over S──► m (b, S, K, T)
          w ⊙ m_s ──decoder (ConvTranspose1d K→1, kernel L, stride L/2)──► ŝ_s (b, S, n)

The masks are a softmax over sources, so they sum to one in every latent cell and the
estimates add up to the autoencoder's reconstruction of the mixture, as NMF's Wiener
masks do. Softplus (not ReLU) keeps every latent cell alive, as in the paper's
non-negative autoencoder. The encoder is the first layer on the waveform and the decoder
the last, so :func:`probe.filterbank.filters` lists them as the analysis and synthesis banks.
Each clip is divided by its RMS before the encoder and the estimates multiplied back (the
softplus is only non-linear for O(1) inputs). Output length equals input length (both
banks pad ``L - stride`` internally, the decoder is called with ``output_size=n``).
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn

from model_zoo._waveform import mixture_example, waveform_spec

from model_zoo.convtasnet_lite import run_separator

NAME = "nmf_ae"
TASK = "separation"
DEFAULT_CONFIG = {
    "dataset": "instruments",  # separation_set name the checkpoint was trained on
    "sr": 8000,
    "n_filters": 256,          # K: learned bases
    "kernel_size": 32,         # L: 4 ms at 8 kHz
    "stride": 16,              # L / 2
    "hidden": 96,              # H: bottleneck and BLSTM size per direction
    "lstm_layers": 1,
    "n_sources": 2,
}

__all__ = ["NAME", "TASK", "DEFAULT_CONFIG", "NMFAutoencoder", "build", "make_spec", "example", "separate"]


class NMFAutoencoder(nn.Module):
    """Waveform autoencoder with a non-negative latent and a BLSTM latent masker.

    Parameters
    ----------
    n_filters, kernel_size, stride : int
        Analysis / synthesis banks: ``n_filters`` kernels of ``kernel_size`` samples, hop ``stride``.
    hidden : int
        Size of the bottleneck and of each BLSTM direction.
    lstm_layers : int
    n_sources : int

    Forward: ``(batch, 1, n)`` (or ``(batch, n)``) → ``(batch, n_sources, n)``.
    """

    def __init__(self, n_filters=256, kernel_size=32, stride=16, hidden=96, lstm_layers=1, n_sources=2, **_):
        super().__init__()
        self.n_filters, self.n_sources = int(n_filters), int(n_sources)
        pad = kernel_size - stride
        self.encoder = nn.Conv1d(1, n_filters, kernel_size, stride=stride, padding=pad, bias=False)
        self.nonneg = nn.Softplus()
        self.bottleneck = nn.Conv1d(n_filters, hidden, 1)
        self.blstm = nn.LSTM(hidden, hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True)
        self.mask_head = nn.Conv1d(2 * hidden, n_sources * n_filters, 1)
        self.decoder = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, padding=pad, bias=False)

    # named steps -----------------------------------------------------------------------
    def forward_encoder(self, x):
        """``(b, 1, n)`` → non-negative latent "spectrogram" ``(b, K, T)``."""
        return self.nonneg(self.encoder(x))

    def forward_masker(self, w):
        """Latent ``(b, K, T)`` → masks ``(b, S, K, T)`` that sum to one over sources."""
        h = self.bottleneck(torch.log1p(w))
        h, _ = self.blstm(h.transpose(1, 2))
        m = self.mask_head(h.transpose(1, 2))
        return torch.softmax(m.view(w.shape[0], self.n_sources, self.n_filters, w.shape[-1]), dim=1)

    def forward_decoder(self, w_masked, n: int):
        """Masked latents ``(b, S, K, T)`` → waveforms ``(b, S, n)``."""
        b, s, K, T = w_masked.shape
        return self.decoder(w_masked.reshape(b * s, K, T), output_size=[n]).view(b, s, n)

    def reconstruct(self, x):
        """Plain autoencoding ``(b, 1, n)`` → ``(b, 1, n)`` (no masking): what the bases can represent."""
        if x.ndim == 2:
            x = x.unsqueeze(1)
        scale = _rms(x)
        return self.decoder(self.forward_encoder(x / scale), output_size=[x.shape[-1]]) * scale

    def forward(self, x):
        if x.ndim == 2:
            x = x.unsqueeze(1)
        n = x.shape[-1]
        scale = _rms(x)  # level-free latent: softplus is only non-linear for O(1) inputs
        w = self.forward_encoder(x / scale)
        return self.forward_decoder(w.unsqueeze(1) * self.forward_masker(w), n) * scale


def _rms(x):
    """Per-clip RMS ``(b, 1, 1)`` of ``(b, 1, n)`` (floored so silence stays finite)."""
    return x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-5


def build(config: dict | None = None):
    """Build an untrained model from ``DEFAULT_CONFIG`` updated by ``config``."""
    return NMFAutoencoder(**{**DEFAULT_CONFIG, **(config or {})})


def make_spec(model, *, info: dict | None = None):
    """Wrap the module for probe: waveform in (``bcn``), separated sources out (``bsn``)."""
    return waveform_spec(model, NAME, info=info)


def example(i: int = 0, split: str = "test", *, dataset: str | None = None):
    """Mixture ``i`` of the split this model was evaluated on, with its exact sources."""
    return mixture_example(NAME, dataset or DEFAULT_CONFIG["dataset"], int(i), split)


def separate(model, y) -> np.ndarray:
    """Separate a mono 8 kHz mixture ``(n,)`` into ``(S, n)`` sources."""
    return run_separator(model, y)
