"""Deep clustering (Hershey, Chen, Le Roux & Watanabe, ICASSP 2016) on an 8 kHz STFT grid.

A BLSTM reads the log-magnitude STFT frame by frame and maps every time-frequency bin
to a unit-norm D-dimensional embedding. Training pulls embeddings of bins dominated by
the same source together (the affinity ``V Vᵀ`` should match the ideal ``Y Yᵀ``);
separation clusters the embeddings of the mixture with k-means (k = 2) and uses the
cluster labels as binary masks.

Parts, in ``forward`` order (module paths for :func:`probe.capture`):

* ``normalise`` — per-frequency mean/variance of the log-magnitude, buffers fitted on the
  training mixtures (``in_mean``, ``in_std``);
* ``blstm`` — ``layers`` bidirectional LSTM layers over time, ``hidden`` units per direction;
* ``embed`` — linear map from ``2 * hidden`` to ``n_freqs * emb_dim``, then ``tanh`` and
  unit normalisation over ``D`` (``forward_embeddings``).

Output: ``tf_embeddings`` in canonical layout ``(batch, D, F, T)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from probe.adapter import ModelSpec
from probe.audio import AudioExample
from probe.grid import TFGrid

__all__ = ["NAME", "TASK", "SYSTEMS", "DEFAULT_CONFIG", "GRID", "DATASET", "DeepClustering", "build", "make_spec", "example",
           "separate", "embed", "kmeans_masks", "dc_loss", "dc_loss_naive", "dc_targets", "silence_weights",
           "apply_masks", "load_items"]

NAME = "dc_blstm"
TASK = "separation"
#: the grid every separation model of the zoo shares: 8 kHz, 32 ms Hann window, 8 ms hop
GRID = TFGrid(sample_rate=8000, n_fft=256, hop_length=64)
#: training/evaluation set (model_zoo.data.separation_set kind)
DATASET = "instruments"
DEFAULT_CONFIG = {"n_freqs": 129, "hidden": 128, "layers": 3, "emb_dim": 20, "dropout": 0.0}
#: bins more than this far below the mixture's loudest bin are silent: no loss, no clustering
SILENCE_DB = -40.0
EPS = 1e-6


class DeepClustering(nn.Module):
    """BLSTM embedding network of deep clustering.

    Parameters
    ----------
    n_freqs : int
        Frequency bins of the input (``1 + n_fft // 2``).
    hidden : int
        LSTM units per direction.
    layers : int
        Stacked BLSTM layers.
    emb_dim : int
        Embedding dimension D.
    dropout : float
        Dropout between LSTM layers.

    Examples
    --------
    >>> net = DeepClustering(n_freqs=129, hidden=16, layers=1, emb_dim=4)
    >>> net(torch.randn(2, 129, 50)).shape
    torch.Size([2, 4, 129, 50])
    """

    def __init__(self, n_freqs: int = 129, hidden: int = 128, layers: int = 3, emb_dim: int = 20, dropout: float = 0.0):
        super().__init__()
        self.config = {"n_freqs": int(n_freqs), "hidden": int(hidden), "layers": int(layers), "emb_dim": int(emb_dim),
                       "dropout": float(dropout)}
        self.n_freqs, self.emb_dim = int(n_freqs), int(emb_dim)
        self.register_buffer("in_mean", torch.zeros(n_freqs))
        self.register_buffer("in_std", torch.ones(n_freqs))
        self.blstm = nn.LSTM(n_freqs, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                             dropout=dropout if layers > 1 else 0.0)
        self.embed = nn.Linear(2 * hidden, n_freqs * emb_dim)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F, T)`` log-magnitude → standardised per frequency."""
        return (x - self.in_mean[:, None]) / self.in_std[:, None]

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F, T)`` → BLSTM states ``(B, T, 2 * hidden)``."""
        h, _ = self.blstm(self.normalise(x).transpose(1, 2))
        return h

    def forward_embeddings(self, h: torch.Tensor) -> torch.Tensor:
        """BLSTM states ``(B, T, 2H)`` → unit-norm embeddings ``(B, D, F, T)``."""
        B, T, _ = h.shape
        v = torch.tanh(self.embed(h)).view(B, T, self.n_freqs, self.emb_dim)
        v = nn.functional.normalize(v, dim=-1)
        return v.permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-magnitude ``(B, F, T)`` → embeddings ``(B, D, F, T)``."""
        return self.forward_embeddings(self.forward_trunk(x))

    @torch.no_grad()
    def fit_normalisation(self, logmags) -> None:
        """Set ``in_mean``/``in_std`` from log-magnitudes ``(..., F, T)`` (a tensor or a list of them)."""
        if isinstance(logmags, (list, tuple)):
            logmags = torch.cat([torch.as_tensor(x).reshape(-1, self.n_freqs, torch.as_tensor(x).shape[-1])
                                 .permute(1, 0, 2).reshape(self.n_freqs, -1) for x in logmags], dim=1)
        else:
            x = torch.as_tensor(logmags)
            logmags = x.reshape(-1, self.n_freqs, x.shape[-1]).permute(1, 0, 2).reshape(self.n_freqs, -1)
        self.in_mean.copy_(logmags.mean(1))
        self.in_std.copy_(logmags.std(1).clamp_min(1e-3))


def build(config: dict | None = None) -> DeepClustering:
    """Build the network from ``DEFAULT_CONFIG`` updated with ``config``."""
    return DeepClustering(**{**DEFAULT_CONFIG, **(config or {})})


def make_spec(model: nn.Module) -> ModelSpec:
    """Wrap the network for probe: log-magnitude input on :data:`GRID`, ``tf_embeddings`` output."""
    return ModelSpec(model, input_kind="logmag", grid=GRID, output_kind="tf_embeddings", n_sources=2, eps=EPS,
                     name=NAME, info={"task": TASK, "config": getattr(model, "config", None)})


# ---- data ------------------------------------------------------------------------------------
def load_items(split: str = "test", n: int | None = None, *, dataset: str = DATASET) -> list[dict]:
    """Items of the zoo separation set on this model's grid (8 kHz, 4 s)."""
    from model_zoo.data import separation_set

    return separation_set(dataset, split, n=n, sr=GRID.sample_rate, seconds=4.0)


def example(i: int = 0, split: str = "test", *, dataset: str = DATASET) -> AudioExample:
    """Mixture ``i`` of the ``split`` split, with its exact sources attached."""
    item = load_items(split, n=int(i) + 1, dataset=dataset)[int(i)]
    return AudioExample(y=np.asarray(item["mixture"], np.float32), sr=int(item["sr"]), name=f"{dataset}-{split}-{i}",
                        sources=np.asarray(item["sources"], np.float32), source_names=list(item["source_names"]),
                        info={**(item.get("meta") or {}), "split": split, "index": int(i), "dataset": dataset})


# ---- training targets and loss -------------------------------------------------------------
def silence_weights(mix_mag: torch.Tensor, *, threshold_db: float = SILENCE_DB) -> torch.Tensor:
    """1 for bins within ``threshold_db`` of each mixture's loudest bin, else 0. ``(B, F, T)`` → ``(B, F, T)``."""
    db = 20 * torch.log10(mix_mag + 1e-10)
    peak = db.flatten(1).amax(1).view(-1, *([1] * (db.ndim - 1)))
    return (db > peak + threshold_db).to(mix_mag.dtype)


def dc_targets(src_mag: torch.Tensor) -> torch.Tensor:
    """Ideal binary assignment: ``(B, S, F, T)`` source magnitudes → one-hot ``(B, S, F, T)`` of the dominant source."""
    return nn.functional.one_hot(src_mag.argmax(1), src_mag.shape[1]).permute(0, 3, 1, 2).to(src_mag.dtype)


def dc_loss(V: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor | None = None, *, normalise: bool = True
            ) -> torch.Tensor:
    """Deep-clustering loss in its low-rank form, never forming the N×N affinity.

    ``‖VᵀWV‖² − 2‖VᵀWY‖² + ‖YᵀWY‖²`` (Frobenius norms, ``W`` = diagonal bin weights),
    which equals ``Σ_ij w_i w_j (v_i·v_j − y_i·y_j)²``.

    Parameters
    ----------
    V : torch.Tensor [shape=(B, D, F, T)]
        Embeddings.
    Y : torch.Tensor [shape=(B, S, F, T)]
        One-hot source assignments.
    weights : torch.Tensor [shape=(B, F, T)], optional
        Per-bin weights (e.g. :func:`silence_weights`); all ones when omitted.
    normalise : bool
        Divide each item's loss by ``(Σ w)²`` (the number of weighted pairs), so the
        scale does not depend on segment length.

    Returns
    -------
    torch.Tensor
        Scalar, mean over the batch.
    """
    B, D = V.shape[:2]
    v = V.reshape(B, D, -1).transpose(1, 2)  # (B, N, D)
    y = Y.reshape(B, Y.shape[1], -1).transpose(1, 2).to(v.dtype)  # (B, N, S)
    if weights is not None:
        w = weights.reshape(B, -1, 1).to(v.dtype)
        sw = w.sqrt()
        v, y = v * sw, y * sw
        norm = w.sum((1, 2)) ** 2
    else:
        norm = torch.full((B,), float(v.shape[1]) ** 2, dtype=v.dtype, device=v.device)
    vv = torch.bmm(v.transpose(1, 2), v)
    vy = torch.bmm(v.transpose(1, 2), y)
    yy = torch.bmm(y.transpose(1, 2), y)
    loss = vv.pow(2).sum((1, 2)) - 2 * vy.pow(2).sum((1, 2)) + yy.pow(2).sum((1, 2))
    if normalise:
        loss = loss / norm.clamp_min(1.0)
    return loss.mean()


def dc_loss_naive(V: torch.Tensor, Y: torch.Tensor, weights: torch.Tensor | None = None, *, normalise: bool = True
                  ) -> torch.Tensor:
    """Reference form of :func:`dc_loss` with the explicit N×N affinities (tests only: O(N²) memory)."""
    B, D = V.shape[:2]
    v = V.reshape(B, D, -1).transpose(1, 2)
    y = Y.reshape(B, Y.shape[1], -1).transpose(1, 2).to(v.dtype)
    w = torch.ones(v.shape[:2], dtype=v.dtype) if weights is None else weights.reshape(B, -1).to(v.dtype)
    A_hat, A = v @ v.transpose(1, 2), y @ y.transpose(1, 2)
    W = w[:, :, None] * w[:, None, :]
    loss = (W * (A_hat - A) ** 2).sum((1, 2))
    if normalise:
        loss = loss / (w.sum(1) ** 2).clamp_min(1.0)
    return loss.mean()


# ---- inference -------------------------------------------------------------------------------
@torch.no_grad()
def embed(model: nn.Module, y) -> tuple[np.ndarray, torch.Tensor]:
    """Embeddings of one mixture: ``y (N,)`` → ``(V (D, F, T) numpy, complex STFT (F, T))``."""
    model.eval()
    x = torch.as_tensor(np.asarray(y, np.float32))
    X = GRID.stft(x)
    out = model(torch.log(X.abs() + EPS)[None])
    V = out["tf_embeddings"] if isinstance(out, dict) else out
    return V[0].numpy(), X


def kmeans_masks(V: np.ndarray, mix_mag: np.ndarray, *, n_sources: int = 2, threshold_db: float = SILENCE_DB,
                 seed: int = 0) -> np.ndarray:
    """Binary masks from k-means on the embeddings of non-silent bins.

    Parameters
    ----------
    V : np.ndarray [shape=(D, F, T)]
    mix_mag : np.ndarray [shape=(F, T)]
    n_sources : int
        k of k-means.
    threshold_db : float
        Only bins within this many dB of the loudest take part in fitting the centroids; all
        bins are then assigned to their nearest centroid.
    seed : int
        k-means random state (fixed: separation is deterministic).

    Returns
    -------
    masks : np.ndarray [shape=(n_sources, F, T), dtype=float32]
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    D, F, T = V.shape
    flat = V.reshape(D, -1).T.astype(np.float64)
    db = 20 * np.log10(mix_mag.reshape(-1) + 1e-10)
    active = db > db.max() + threshold_db
    if active.sum() < n_sources * 4:
        active = np.ones_like(active)
    with threadpool_limits(1):  # deterministic and far faster than OpenMP threads on shared cores
        km = KMeans(n_clusters=n_sources, n_init=4, random_state=seed).fit(flat[active])
        labels = km.predict(flat)
    return np.stack([(labels == k).reshape(F, T) for k in range(n_sources)]).astype(np.float32)


def apply_masks(masks, X: torch.Tensor, length: int) -> np.ndarray:
    """Masks ``(S, F, T)`` times the mixture STFT ``(F, T)`` → waveforms ``(S, length)`` (mixture phase)."""
    M = torch.as_tensor(np.asarray(masks, np.float32))
    return GRID.istft(M * X[None], length=length).numpy().astype(np.float32)


def separate(model: nn.Module, y) -> np.ndarray:
    """Separate one mixture ``y (N,)`` into two sources ``(2, N)`` by k-means on the embeddings."""
    y = np.asarray(y, np.float32)
    V, X = embed(model, y)
    masks = kmeans_masks(V, X.abs().numpy())
    return apply_masks(masks, X, len(y))


#: evaluation rows of the card → separator functions ``(model, y) -> (S, N)``
SYSTEMS = {"dc_kmeans": separate}
