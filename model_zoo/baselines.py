"""Supervised NMF separation baseline (scikit-learn), the reference the NMF-like zoo models must beat.

One dictionary per source is learned on training stems (``|STFT|`` frames of that source
only, KL or Euclidean NMF); the dictionaries are concatenated ``W = [W_1 W_2]`` and frozen.
A mixture's activations are found by NMF with ``W`` fixed (:func:`mu_activations`: the
multiplicative updates scikit-learn's ``mu`` solver uses, from its constant start, in torch
for speed), and each source is resynthesised with a Wiener-like mask
``(W_s H_s)^p / Σ_j (W_j H_j)^p`` applied to the mixture STFT.

Magnitudes are divided by their mean before any NMF, per clip (``V / mean(V)``): masks do
not depend on the scale, and this keeps the multiplicative updates' epsilons meaningful.

The fitted baseline for a data set is cached (safetensors + JSON, under the gitignored
``model_zoo/_train/``), so :func:`nmf_baseline_scores` is cheap after the first call.

Examples
--------
>>> from model_zoo.recipes._common import synthetic_separation_set
>>> items = synthetic_separation_set("train", 4, seconds=2.0)
>>> nmf = SupervisedNMF(n_components=8, max_iter=50).fit(items)
>>> nmf.components_.shape
(129, 16)
>>> nmf.separate(items[0]["mixture"]).shape
(2, 16000)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from probe.errors import AnalysisError
from probe.grid import TFGrid

__all__ = ["SupervisedNMF", "mu_activations", "fitted_baseline", "DEFAULT_BASELINE", "nmf_baseline_scores", "normalised_magnitude", "GRID"]

GRID = TFGrid(sample_rate=8000, n_fft=256, hop_length=64)
_BETA = {"kl": "kullback-leibler", "kullback-leibler": "kullback-leibler", "euclidean": "frobenius",
         "frobenius": "frobenius", 1: "kullback-leibler", 2: "frobenius"}
_CACHE: dict = {}


def mu_activations(V: np.ndarray, W: np.ndarray, *, n_iter: int = 200, beta: str = "kullback-leibler",
                   eps: float = 1e-9) -> np.ndarray:
    """Multiplicative-update NMF activations with a fixed dictionary.

    Parameters
    ----------
    V : np.ndarray [shape=(F, T)]
        Non-negative data.
    W : np.ndarray [shape=(F, K)]
        Fixed non-negative dictionary.
    n_iter : int
    beta : {"kullback-leibler", "frobenius"}

    Returns
    -------
    H : np.ndarray [shape=(K, T)]
    """
    import torch

    beta = _BETA.get(beta, beta)
    Vt = torch.as_tensor(np.asarray(V, np.float64))
    Wt = torch.as_tensor(np.asarray(W, np.float64))
    K = Wt.shape[1]
    H = torch.full((K, Vt.shape[1]), float(np.sqrt(max(float(Vt.mean()), eps) / K)), dtype=torch.float64)
    if beta == "kullback-leibler":
        denom = Wt.sum(0)[:, None] + eps
        for _ in range(int(n_iter)):
            H = H * (Wt.T @ (Vt / (Wt @ H + eps))) / denom
    elif beta == "frobenius":
        WtV, WtW = Wt.T @ Vt, Wt.T @ Wt
        for _ in range(int(n_iter)):
            H = H * WtV / (WtW @ H + eps)
    else:
        raise AnalysisError(f"unknown beta_loss {beta!r}; known: kullback-leibler, frobenius")
    return H.numpy()


def normalised_magnitude(y, grid: TFGrid = GRID) -> tuple[np.ndarray, float]:
    """``|STFT(y)|`` divided by its mean. ``y (N,)`` → ``(V (F, T) float64, scale)``."""
    import torch

    mag = grid.stft(torch.as_tensor(np.asarray(y, np.float32))).abs().numpy().astype(np.float64)
    scale = float(mag.mean()) + 1e-12
    return mag / scale, scale


class SupervisedNMF:
    """Per-source NMF dictionaries, fixed-dictionary activations, Wiener-like masks.

    Parameters
    ----------
    n_components : int
        Atoms per source.
    beta_loss : {"kullback-leibler", "frobenius"} (aliases "kl", "euclidean")
    max_iter : int
        Iterations for dictionary learning and for the activations of a mixture.
    mask_power : float
        ``p`` of the mask ``(W_s H_s)^p / Σ_j (W_j H_j)^p`` (1: magnitude ratio, 2: Wiener).
    n_frames : int
        Training frames per source (non-silent frames, sampled evenly).
    grid : TFGrid
    random_state : int

    Attributes
    ----------
    components_ : np.ndarray [shape=(F, n_sources * n_components)]
        ``W = [W_1 W_2 ...]``, each column scaled to mean 1 over frequency.
    source_slices_ : list of slice
        Columns of each source in ``components_``.
    source_names_ : list of str
    """

    def __init__(self, n_components: int = 40, *, beta_loss="kullback-leibler", max_iter: int = 200,
                 mask_power: float = 1.0, n_frames: int = 6000, grid: TFGrid = GRID, random_state: int = 0):
        self.n_components = n_components
        self.beta_loss = beta_loss
        self.max_iter = max_iter
        self.mask_power = mask_power
        self.n_frames = n_frames
        self.grid = grid
        self.random_state = random_state

    # ---- fitting ---------------------------------------------------------------------
    def _beta(self) -> str:
        try:
            return _BETA[self.beta_loss]
        except KeyError:
            raise AnalysisError(f"unknown beta_loss {self.beta_loss!r}; known: kullback-leibler, frobenius") from None

    def fit(self, items) -> "SupervisedNMF":
        """Learn one dictionary per source from the stems of ``items`` (dicts with ``"sources"`` (S, N))."""
        import torch
        from sklearn.decomposition import NMF
        from threadpoolctl import threadpool_limits

        items = list(items)
        if not items:
            raise AnalysisError("SupervisedNMF.fit needs at least one item with sources")
        n_src = np.asarray(items[0]["sources"]).shape[0]
        blocks, slices = [], []
        for s in range(n_src):
            frames = []
            for it in items:
                mix_scale = normalised_magnitude(it["mixture"], self.grid)[1]
                mag = self.grid.stft(torch.as_tensor(np.asarray(it["sources"][s], np.float32))).abs().numpy()
                mag = mag.astype(np.float64) / mix_scale  # same scaling as the mixture it sits in
                e = mag.sum(0)
                keep = e > e.max() * 1e-3
                frames.append(mag[:, keep])
            V = np.concatenate(frames, axis=1)
            if V.shape[1] > self.n_frames:
                V = V[:, np.linspace(0, V.shape[1] - 1, self.n_frames).astype(int)]
            model = NMF(n_components=self.n_components, init="nndsvda", solver="mu", beta_loss=self._beta(),
                        max_iter=self.max_iter, random_state=self.random_state, tol=1e-5)
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore")
                model.fit(V.T + 1e-9)  # sklearn: X (n_samples=frames, n_features=F) ≈ Wsk Hsk; our W = Hskᵀ
            W = model.components_.T  # (F, K)
            W = W / (W.mean(0, keepdims=True) + 1e-12)
            slices.append(slice(s * self.n_components, (s + 1) * self.n_components))
            blocks.append(W)
        self.components_ = np.concatenate(blocks, axis=1)
        self.source_slices_ = slices
        self.source_names_ = list(items[0].get("source_names") or [f"source{s}" for s in range(n_src)])
        return self

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise AnalysisError("this SupervisedNMF is not fitted yet: call fit(items) or fitted_baseline()")

    # ---- inference -------------------------------------------------------------------
    def activations(self, V: np.ndarray) -> np.ndarray:
        """Activations of a normalised magnitude ``V (F, T)`` with the dictionary fixed → ``H (K_total, T)``.

        ``max_iter`` multiplicative updates from the constant start ``sqrt(mean(V) / K)``
        (scikit-learn's start for the ``mu`` solver), the same updates the unfolded NMF
        (:mod:`model_zoo.unfolded_nmf`) turns into layers: for KL
        ``H ← H ⊙ Wᵀ(V / WH) / Wᵀ1``, for Euclidean ``H ← H ⊙ WᵀV / WᵀWH``.
        """
        self._check_fitted()
        return mu_activations(V, self.components_, n_iter=self.max_iter, beta=self._beta())

    def masks(self, y) -> tuple[np.ndarray, "object"]:
        """Wiener-like masks of mixture ``y (N,)`` → ``(masks (S, F, T), complex STFT (F, T) tensor)``."""
        import torch

        self._check_fitted()
        X = self.grid.stft(torch.as_tensor(np.asarray(y, np.float32)))
        V = X.abs().numpy().astype(np.float64)
        V = V / (V.mean() + 1e-12)
        H = self.activations(V)
        parts = np.stack([self.components_[:, sl] @ H[sl] for sl in self.source_slices_]) ** self.mask_power
        masks = parts / (parts.sum(0, keepdims=True) + 1e-12)
        return masks.astype(np.float32), X

    def separate(self, y) -> np.ndarray:
        """Mixture ``y (N,)`` → estimated sources ``(S, N)`` (mixture phase)."""
        import torch

        y = np.asarray(y, np.float32)
        masks, X = self.masks(y)
        return self.grid.istft(torch.as_tensor(masks) * X[None], length=len(y)).numpy().astype(np.float32)

    # ---- persistence -----------------------------------------------------------------
    def get_params(self) -> dict:
        return {"n_components": self.n_components, "beta_loss": self.beta_loss, "max_iter": self.max_iter,
                "mask_power": self.mask_power, "n_frames": self.n_frames, "random_state": self.random_state}

    def save(self, path) -> Path:
        """Write the dictionary (safetensors) with parameters and slices as JSON metadata."""
        import torch
        from safetensors.torch import save_file

        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"params": json.dumps(self.get_params()), "n_sources": str(len(self.source_slices_)),
                "source_names": json.dumps(self.source_names_), "grid": json.dumps(self.grid.to_dict())}
        save_file({"components": torch.as_tensor(self.components_)}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> "SupervisedNMF":
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata()
            W = fh.get_tensor("components")
        obj = cls(**json.loads(meta["params"]), grid=TFGrid.from_dict(json.loads(meta["grid"])))
        obj.components_ = np.asarray(W, np.float64)
        k = obj.n_components
        obj.source_slices_ = [slice(s * k, (s + 1) * k) for s in range(int(meta["n_sources"]))]
        obj.source_names_ = json.loads(meta["source_names"])
        return obj


#: the baseline configuration chosen on the instruments VAL split by model_zoo.recipes.unfolded_nmf
DEFAULT_BASELINE = {"n_components": 20, "beta_loss": "kullback-leibler", "mask_power": 1.0, "n_train": 200}


def fitted_baseline(dataset: str = "instruments", *, n_components: int | None = None, beta_loss: str | None = None,
                    mask_power: float | None = None, n_train: int | None = -1, cache: bool = True) -> SupervisedNMF:
    """The supervised NMF baseline fitted on the first ``n_train`` training mixtures of ``dataset``.

    Arguments left out take :data:`DEFAULT_BASELINE`. The dictionary is cached in memory
    and on disk (``model_zoo/_train/nmf_baseline/``, gitignored), keyed by data set,
    atoms, divergence and ``n_train``; ``mask_power`` only changes inference.
    """
    n_components = DEFAULT_BASELINE["n_components"] if n_components is None else int(n_components)
    beta_loss = DEFAULT_BASELINE["beta_loss"] if beta_loss is None else beta_loss
    mask_power = DEFAULT_BASELINE["mask_power"] if mask_power is None else float(mask_power)
    n_train = DEFAULT_BASELINE["n_train"] if n_train == -1 else n_train
    key = (dataset, n_components, _BETA.get(beta_loss, beta_loss), n_train)
    nmf = _CACHE.get(key)
    if nmf is None:
        from model_zoo.recipes._common import TRAIN_DIR

        tag = f"{dataset}_k{n_components}_{_BETA.get(beta_loss, beta_loss)}_n{n_train}"
        path = TRAIN_DIR / "nmf_baseline" / f"{tag}.safetensors"
        if cache and path.is_file():
            try:
                nmf = SupervisedNMF.load(path)
            except Exception:  # stale/corrupt cache: refit
                nmf = None
        if nmf is None:
            from model_zoo.data import separation_set

            train = separation_set(dataset, "train", n=n_train, sr=GRID.sample_rate, seconds=4.0)
            nmf = SupervisedNMF(n_components=n_components, beta_loss=beta_loss).fit(train)
            if cache:
                nmf.save(path)
        _CACHE[key] = nmf
    out = SupervisedNMF(**{**nmf.get_params(), "mask_power": mask_power}, grid=nmf.grid)
    out.components_, out.source_slices_, out.source_names_ = nmf.components_, nmf.source_slices_, nmf.source_names_
    return out


def nmf_baseline_scores(items, *, baseline: SupervisedNMF | None = None, dataset: str = "instruments",
                        oracles=("ibm", "irm"), progress: bool = False) -> dict:
    """Score the supervised NMF baseline on ``items`` (dicts with ``mixture``/``sources`` at 8 kHz).

    Returns
    -------
    dict
        :func:`model_zoo.metrics.evaluate_separator` output with the row ``"nmf_baseline"``
        (means of ``si_sdr``, ``si_sdri``, ``sdr``, ``sdri``) plus oracle rows.
    """
    from model_zoo.metrics import evaluate_separator

    items = list(items)
    for it in items:
        sr = it.get("sr", GRID.sample_rate) if isinstance(it, dict) else getattr(it, "sr", GRID.sample_rate)
        if int(sr) != GRID.sample_rate:
            raise AnalysisError(f"the NMF baseline runs at {GRID.sample_rate} Hz, given an item at sr={sr}")
    nmf = baseline if baseline is not None else fitted_baseline(dataset)
    return evaluate_separator({"nmf_baseline": nmf.separate}, items, nmf.grid, oracles=oracles, progress=progress,
                              desc="nmf baseline")
