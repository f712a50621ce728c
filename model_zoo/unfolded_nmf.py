"""Deep NMF (Le Roux, Hershey & Weninger, "Deep NMF for speech separation", ICASSP 2015).

Supervised NMF separates a mixture by running multiplicative updates (MU) of the
activations ``H`` with a fixed dictionary ``W = [W_1 W_2]``. Deep NMF *unfolds* K such
iterations into K layers and unties the dictionaries: layer ``k`` has its own
non-negative basis ``W^(k)``, and a final basis ``W^(K+1)`` reconstructs each source for
the masks. Initialised with the supervised NMF dictionary in every layer, the network is
exactly K MU iterations of that NMF; discriminative training of the untied bases then
makes it better than the NMF it unfolds, while every layer stays an interpretable
dictionary (``F × atoms``) and every hidden state an activation matrix.

Parts (module paths for :func:`probe.capture`):

* ``layers.k`` — ``nn.Linear(n_atoms, n_freqs, bias=False)``, weight ``(F, n_atoms)`` = ``W^(k)``;
  one KL MU step ``H ← H ⊙ W^(k)ᵀ(V / W^(k)H) / W^(k)ᵀ1`` per layer (the Linear maps
  ``H`` frame-wise to ``W^(k) H``, so a forward hook sees each layer's reconstruction);
* ``recon`` — ``W^(K+1)``: per-source reconstructions ``W_s H_s`` and masks
  ``(W_s H_s)^p / Σ_j (W_j H_j)^p``.

Non-negativity: weights are projected onto ``≥ 0`` after every optimiser step
(:meth:`UnfoldedNMF.project`), and the forward pass clamps them as well.

Input ``stft`` (magnitude ``(B, F, T)``); output ``masks`` ``(B, S, F, T)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from probe.adapter import ModelSpec
from probe.audio import AudioExample

from .dc_blstm import DATASET, GRID, apply_masks, load_items

__all__ = ["NAME", "TASK", "SYSTEMS", "DEFAULT_CONFIG", "GRID", "UnfoldedNMF", "build", "make_spec", "example", "separate",
           "init_from_baseline", "ma_loss"]

NAME = "unfolded_nmf"
TASK = "separation"
DEFAULT_CONFIG = {"n_freqs": 129, "n_sources": 2, "atoms_per_source": 40, "n_layers": 10, "beta": "kullback-leibler",
                  "mask_power": 1.0}
EPS = 1e-9


class UnfoldedNMF(nn.Module):
    """K unfolded KL multiplicative updates with untied, non-negative per-layer bases.

    Parameters
    ----------
    n_freqs : int
    n_sources : int
    atoms_per_source : int
        Atoms per source; ``n_atoms = n_sources * atoms_per_source``, source ``s`` owns
        columns ``s * atoms_per_source ... (s + 1) * atoms_per_source - 1``.
    n_layers : int
        Unfolded MU iterations K.
    beta : {"kullback-leibler", "frobenius"}
        Divergence whose MU rule the layers apply.
    mask_power : float
        ``p`` of the output masks.

    Examples
    --------
    >>> net = UnfoldedNMF(n_freqs=129, atoms_per_source=4, n_layers=3)
    >>> net(torch.rand(2, 129, 20)).shape
    torch.Size([2, 2, 129, 20])
    """

    def __init__(self, n_freqs: int = 129, n_sources: int = 2, atoms_per_source: int = 40, n_layers: int = 10,
                 beta: str = "kullback-leibler", mask_power: float = 1.0):
        super().__init__()
        if beta not in ("kullback-leibler", "frobenius"):
            raise ValueError(f"beta must be 'kullback-leibler' or 'frobenius', given {beta!r}")
        self.config = {"n_freqs": int(n_freqs), "n_sources": int(n_sources), "atoms_per_source": int(atoms_per_source),
                       "n_layers": int(n_layers), "beta": beta, "mask_power": float(mask_power)}
        self.n_freqs, self.n_sources, self.k = int(n_freqs), int(n_sources), int(atoms_per_source)
        self.n_atoms = self.n_sources * self.k
        self.beta, self.mask_power = beta, float(mask_power)
        self.layers = nn.ModuleList(nn.Linear(self.n_atoms, n_freqs, bias=False) for _ in range(int(n_layers)))
        self.recon = nn.Linear(self.n_atoms, n_freqs, bias=False)
        with torch.no_grad():
            for lin in list(self.layers) + [self.recon]:
                lin.weight.uniform_(0.1, 1.0)

    # ---- parts ---------------------------------------------------------------------------
    @staticmethod
    def _apply(lin: nn.Linear, H: torch.Tensor) -> torch.Tensor:
        """``W H`` for ``H (B, K, T)`` → ``(B, F, T)`` through the Linear (so hooks see it)."""
        return lin(H.transpose(1, 2)).transpose(1, 2)

    def normalise(self, V: torch.Tensor) -> torch.Tensor:
        """Divide each clip's magnitude by its mean (masks are scale-free; keeps epsilons meaningful)."""
        return V / (V.mean(dim=(1, 2), keepdim=True) + 1e-12)

    def init_activations(self, V: torch.Tensor) -> torch.Tensor:
        """Constant start ``sqrt(mean(V) / K)`` (scikit-learn's ``mu`` start), ``(B, n_atoms, T)``."""
        h0 = torch.sqrt(V.mean(dim=(1, 2), keepdim=True).clamp_min(EPS) / self.n_atoms)
        return h0.expand(V.shape[0], self.n_atoms, V.shape[2]).clone()

    def mu_step(self, lin: nn.Linear, V: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        """One multiplicative update of ``H`` with this layer's basis."""
        W = lin.weight.clamp_min(0)
        WH = self._apply(lin, H).clamp_min(0) + EPS
        if self.beta == "kullback-leibler":
            num = torch.einsum("fk,bft->bkt", W, V / WH)
            den = W.sum(0)[None, :, None] + EPS
        else:
            num = torch.einsum("fk,bft->bkt", W, V)
            den = torch.einsum("fk,bft->bkt", W, WH) + EPS
        return H * num / den

    def forward_activations(self, V: torch.Tensor) -> torch.Tensor:
        """Normalised magnitude ``(B, F, T)`` → last layer's activations ``(B, n_atoms, T)``."""
        H = self.init_activations(V)
        for lin in self.layers:
            H = self.mu_step(lin, V, H)
        return H

    def forward_sources(self, H: torch.Tensor) -> torch.Tensor:
        """Per-source reconstructions ``W_s H_s`` with the final basis, ``(B, S, F, T)``."""
        W = self.recon.weight.clamp_min(0)
        parts = [torch.einsum("fk,bkt->bft", W[:, s * self.k:(s + 1) * self.k], H[:, s * self.k:(s + 1) * self.k])
                 for s in range(self.n_sources)]
        _ = self.recon(H.transpose(1, 2))  # full reconstruction through the module, for hooks
        return torch.stack(parts, 1)

    def forward_masks(self, parts: torch.Tensor) -> torch.Tensor:
        p = parts.clamp_min(0) ** self.mask_power
        return p / (p.sum(1, keepdim=True) + EPS)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        """Mixture magnitude ``(B, F, T)`` → masks ``(B, S, F, T)``."""
        V = self.normalise(mag)
        return self.forward_masks(self.forward_sources(self.forward_activations(V)))

    @torch.no_grad()
    def project(self) -> None:
        """Clamp every basis to ``≥ 0`` (call after each optimiser step)."""
        for lin in list(self.layers) + [self.recon]:
            lin.weight.clamp_(min=0)

    def bases(self) -> np.ndarray:
        """All bases as ``(n_layers + 1, F, n_atoms)`` (last = the reconstruction basis)."""
        return np.stack([lin.weight.detach().clamp_min(0).numpy() for lin in list(self.layers) + [self.recon]])


def build(config: dict | None = None) -> UnfoldedNMF:
    """Build the network from ``DEFAULT_CONFIG`` updated with ``config``."""
    return UnfoldedNMF(**{**DEFAULT_CONFIG, **(config or {})})


@torch.no_grad()
def init_from_baseline(model: UnfoldedNMF, W: np.ndarray) -> UnfoldedNMF:
    """Put the supervised NMF dictionary ``W (F, n_atoms)`` into every layer (= K MU iterations of that NMF)."""
    W = torch.as_tensor(np.asarray(W, np.float32))
    if tuple(W.shape) != (model.n_freqs, model.n_atoms):
        raise ValueError(f"dictionary shape {tuple(W.shape)} does not fit the model ({model.n_freqs}, {model.n_atoms})")
    for lin in list(model.layers) + [model.recon]:
        lin.weight.copy_(W)
    return model


def make_spec(model: nn.Module) -> ModelSpec:
    """Wrap for probe: magnitude STFT input on the 8 kHz grid, per-source ``masks`` output."""
    return ModelSpec(model, input_kind="stft", grid=GRID, output_kind="masks", n_sources=model.n_sources, name=NAME,
                     info={"task": TASK, "config": getattr(model, "config", None)})


def example(i: int = 0, split: str = "test", *, dataset: str = DATASET) -> AudioExample:
    """Mixture ``i`` of the ``split`` split, with its exact sources attached."""
    item = load_items(split, n=int(i) + 1, dataset=dataset)[int(i)]
    return AudioExample(y=np.asarray(item["mixture"], np.float32), sr=int(item["sr"]), name=f"{dataset}-{split}-{i}",
                        sources=np.asarray(item["sources"], np.float32), source_names=list(item["source_names"]),
                        info={**(item.get("meta") or {}), "split": split, "index": int(i), "dataset": dataset})


def ma_loss(masks: torch.Tensor, mix_mag: torch.Tensor, src_mag: torch.Tensor, *, pit: bool = False) -> torch.Tensor:
    """Magnitude-approximation loss ``Σ_s ‖M_s ⊙ |X| − |S_s|‖² / ‖X‖²``, batch mean.

    Parameters
    ----------
    masks : torch.Tensor [shape=(B, S, F, T)]
    mix_mag : torch.Tensor [shape=(B, F, T)]
    src_mag : torch.Tensor [shape=(B, S, F, T)]
    pit : bool
        Take the best of all source permutations per item (permutation-invariant training).
    """
    import itertools

    est = masks * mix_mag[:, None]
    norm = mix_mag.pow(2).sum((1, 2)).clamp_min(1e-12)
    S = masks.shape[1]
    perms = list(itertools.permutations(range(S))) if pit else [tuple(range(S))]
    losses = torch.stack([(est - src_mag[:, list(p)]).pow(2).sum((1, 2, 3)) for p in perms], 1) / norm[:, None]
    return losses.min(1).values.mean()


@torch.no_grad()
def separate(model: nn.Module, y) -> np.ndarray:
    """Separate one mixture ``y (N,)`` into ``(S, N)`` with the model's masks (mixture phase)."""
    model.eval()
    y = np.asarray(y, np.float32)
    X = GRID.stft(torch.as_tensor(y))
    masks = model(X.abs()[None])[0]
    return apply_masks(masks.numpy(), X, len(y))


#: evaluation rows of the card → separator functions ``(model, y) -> (S, N)``
SYSTEMS = {"unfolded_nmf": separate}
