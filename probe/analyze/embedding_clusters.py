"""Clusters of embeddings in their original space: masks and audio per cluster, oracle agreement, clusterability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AnalysisError
from .embedding_points import DEFAULT_THRESHOLD_DB, ClipEmbeddings, EmbeddingPoints, _threads, _X, select_points

__all__ = ["EmbeddingClusters", "cluster_embeddings", "separate_clusters", "mask_accuracy", "oracle_agreement",
           "silhouette", "clusterability", "colourings", "write_cluster_audio", "order_clusters", "cluster_clip",
           "ClipClustering", "shared_clustering", "SHARED_CLUSTERING"]

# =====================================================================================
# Clustering and listening
# =====================================================================================
class EmbeddingClusters:
    """Cluster embeddings in their original space; turn clusters into masks and audio.

    Parameters
    ----------
    n_clusters : int
        ``k`` (the number of sources for separation).
    method : {"kmeans", "gmm"}
        k-means (deep clustering's inference) or a Gaussian mixture (soft, elliptical).
    normalize : bool
        L2-normalise rows first (cosine geometry for embeddings that are not unit-norm).
    n_init : int
        Restarts; the best objective is kept.
    random_state : int
    n_threads : int or None
        BLAS/OpenMP threads while fitting and predicting (default 1; ``None`` leaves them alone).

    Attributes
    ----------
    labels_ : np.ndarray [shape=(n,)]
        Cluster of each fitted point.
    centers_ : np.ndarray [shape=(k, D)]
    estimator_ : sklearn estimator
    objective_ : float
        k-means inertia, or the GMM's mean log-likelihood.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, .1, (50, 3)) + 1, rng.normal(0, .1, (50, 3)) - 1])
    >>> km = EmbeddingClusters(2).fit(X)
    >>> len(set(km.labels_[:50])), len(set(km.labels_[50:])), bool(km.labels_[0] != km.labels_[-1])
    (1, 1, True)
    """

    def __init__(self, n_clusters: int = 2, *, method: str = "kmeans", normalize: bool = False, n_init: int = 4,
                 random_state: int = 0, n_threads: int | None = 1):
        self.n_clusters = n_clusters
        self.method = method
        self.normalize = normalize
        self.n_init = n_init
        self.random_state = random_state
        self.n_threads = n_threads

    def _prep(self, X) -> np.ndarray:
        X = _X(X).astype(np.float64)
        if self.normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return X

    def fit(self, points) -> "EmbeddingClusters":
        with _threads(self.n_threads):
            return self._fit(points)

    def _fit(self, points) -> "EmbeddingClusters":
        X = self._prep(points)
        k = int(self.n_clusters)
        if k < 1 or len(X) < k:
            raise AnalysisError(f"cannot make {k} clusters from {len(X)} points")
        if self.method == "kmeans":
            from sklearn.cluster import KMeans

            est = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(X)
            self.labels_, self.centers_, self.objective_ = est.labels_.astype(np.int64), est.cluster_centers_, float(est.inertia_)
        elif self.method == "gmm":
            from sklearn.mixture import GaussianMixture

            est = GaussianMixture(n_components=k, covariance_type=_cov_type(X.shape[1]), n_init=self.n_init,
                                  reg_covar=1e-4, random_state=self.random_state).fit(X)
            self.labels_, self.centers_, self.objective_ = est.predict(X).astype(np.int64), est.means_, float(est.score(X))
        else:
            raise AnalysisError(f"unknown clustering method {self.method!r}; known: kmeans, gmm")
        self.estimator_ = est
        self.n_clusters_ = k
        return self

    def _check(self):
        if not hasattr(self, "estimator_"):
            raise AnalysisError("EmbeddingClusters is not fitted: call fit(points) first")

    def predict(self, X) -> np.ndarray:
        """Cluster of each row of ``X (n, D)``."""
        self._check()
        with _threads(self.n_threads):
            return self.estimator_.predict(self._prep(X)).astype(np.int64)

    def predict_clip(self, clip: ClipEmbeddings) -> np.ndarray:
        """Cluster of every embedding cell, ``(F, T)``: silent cells go to their nearest cluster."""
        self._check()
        return self.predict(clip.flat()).reshape(clip.shape)

    def masks(self, clip: ClipEmbeddings) -> np.ndarray:
        """Binary masks ``(k, n_freqs, n_frames)`` on the clip's STFT grid (each bin in exactly one)."""
        lab = clip.to_stft_grid(self.predict_clip(clip))
        return np.stack([(lab == j) for j in range(self.n_clusters_)]).astype(np.float32)

    def separate(self, clip: ClipEmbeddings) -> np.ndarray:
        """Audio of every cluster, ``(k, n)``: ``istft(mask * STFT(mixture))`` with the mixture's phase."""
        return _resynthesise(clip, self.masks(clip))

    def write_audio(self, clip: ClipEmbeddings, out_dir, *, prefix: str = "cluster", names=None) -> list:
        """Write ``{prefix}_{j}.wav`` (j from 1, float, at the grid's rate) for every cluster; returns the paths."""
        return write_cluster_audio(self.separate(clip), clip.sr, out_dir, prefix=prefix, names=names)


def _cov_type(D: int) -> str:
    """Full covariances up to 32 dimensions; diagonal above, where 1000 points cannot pin D² numbers."""
    return "full" if D <= 32 else "diag"


def _resynthesise(clip: ClipEmbeddings, masks: np.ndarray) -> np.ndarray:
    import torch

    M = torch.as_tensor(np.asarray(masks, np.float32))
    X = torch.as_tensor(clip.stft)
    return clip.grid.istft(M * X[None], length=len(clip.y)).numpy().astype(np.float32)


def _file_part(name: str) -> str:
    """A cluster name made safe for a file name (letters, digits, ``-``; else ``_``)."""
    import re

    return re.sub(r"[^A-Za-z0-9-]+", "_", str(name)).strip("_")[:40]


def write_cluster_audio(audio: np.ndarray, sr: int, out_dir, *, prefix: str = "cluster", names=None) -> list:
    """Write row ``j - 1`` of ``audio (k, n)`` to ``out_dir/{prefix}_{j}.wav`` (32-bit float), ``j`` from 1 — the
    numbering every page and command shows; with ``names`` (e.g. the ground-truth ones) ``{prefix}_{j}_{name}.wav``.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> [os.path.basename(p) for p in write_cluster_audio(np.zeros((2, 8)), 8000, d, names=["high", "cluster 2"])]
    ['cluster_1_high.wav', 'cluster_2.wav']
    """
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, a in enumerate(np.asarray(audio, np.float32), start=1):
        name = names[j - 1] if names is not None and j - 1 < len(names) else None
        part = _file_part(name) if name and name != f"cluster {j}" else ""
        p = out / (f"{prefix}_{j}_{part}.wav" if part else f"{prefix}_{j}.wav")
        sf.write(str(p), a, int(sr), subtype="FLOAT")
        paths.append(str(p))
    return paths


def cluster_embeddings(points, n_clusters: int = 2, *, method: str = "kmeans", **params) -> np.ndarray:
    """Function twin of :class:`EmbeddingClusters`: cluster labels ``(n,)``.

    Examples
    --------
    >>> X = np.r_[np.zeros((10, 2)), np.ones((10, 2))]
    >>> cluster_embeddings(X, 2).reshape(2, 10).std(1).tolist()
    [0.0, 0.0]
    """
    return EmbeddingClusters(n_clusters, method=method, **params).fit(points).labels_


def separate_clusters(clip: ClipEmbeddings, n_clusters: int = 2, *, method: str = "kmeans",
                      threshold_db: float | None = DEFAULT_THRESHOLD_DB, budget: int | None = None, seed: int = 0):
    """Deep-clustering inference on one clip: fit on its non-silent cells, mask every bin, resynthesise.

    Returns
    -------
    audio : np.ndarray [shape=(k, n)]
    masks : np.ndarray [shape=(k, n_freqs, n_frames)]
    clusters : EmbeddingClusters
    """
    pts = select_points(clip, threshold_db=threshold_db, budget=budget, seed=seed)
    km = EmbeddingClusters(n_clusters, method=method, random_state=seed).fit(pts)
    masks = km.masks(clip)
    return _resynthesise(clip, masks), masks, km


# =====================================================================================
# Metrics
# =====================================================================================
def mask_accuracy(labels, oracle, weights=None) -> tuple[float, dict]:
    """Permutation-invariant, weighted agreement of cluster labels with oracle labels.

    Clusters are matched one-to-one to sources by the Hungarian algorithm on the weighted
    confusion matrix (``scipy.optimize.linear_sum_assignment``); the accuracy is the weight
    of correctly labelled cells over the total. With more clusters than sources the extra
    clusters stay unmatched and count as errors.

    Parameters
    ----------
    labels, oracle : array of int, same shape
    weights : array, same shape, optional
        E.g. mixture power ``|X|^2``: energy-weighted accuracy vs the ideal binary mask.

    Returns
    -------
    accuracy : float
    mapping : dict {cluster: source}

    Examples
    --------
    >>> mask_accuracy(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))
    (1.0, {0: 1, 1: 0})
    """
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels).ravel()
    oracle = np.asarray(oracle).ravel()
    if labels.shape != oracle.shape:
        raise AnalysisError(f"labels and oracle must have the same size, given {labels.size} and {oracle.size}")
    w = np.ones(labels.size) if weights is None else np.asarray(weights, float).ravel()
    ok = oracle >= 0
    labels, oracle, w = labels[ok], oracle[ok], w[ok]
    if w.sum() <= 0:
        return float("nan"), {}
    K, S = int(labels.max()) + 1, int(oracle.max()) + 1
    C = np.zeros((K, S))
    np.add.at(C, (labels, oracle), w)
    r, c = linear_sum_assignment(-C)
    return float(C[r, c].sum() / C.sum()), {int(a): int(b) for a, b in zip(r, c)}


def oracle_agreement(clusters, points: EmbeddingPoints) -> dict:
    """How well clusters recover the oracle dominant source.

    Parameters
    ----------
    clusters : EmbeddingClusters (fitted) or array [shape=(n,)]
        Fitted clusters (gives mask accuracy on every STFT bin) or labels of ``points``.
    points : EmbeddingPoints
        With oracle ``source`` labels (clips built from stems).

    Returns
    -------
    dict
        ``ari``, ``nmi`` (adjusted Rand index / normalised mutual information on the
        non-silent points), ``mask_accuracy`` (energy-weighted, permutation-invariant
        agreement with the ideal binary mask over *all* STFT bins, mean over clips, each
        clip matched on its own), ``per_clip`` accuracies.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if points.source is None:
        raise AnalysisError("these points have no oracle sources: build the clip from an AudioExample with sources "
                            "(or pass sources=)")
    labels = clusters.labels_ if isinstance(clusters, EmbeddingClusters) else np.asarray(clusters)
    if len(labels) != len(points):
        raise AnalysisError(f"{len(labels)} labels for {len(points)} points")
    out = {"ari": float(adjusted_rand_score(points.source, labels)),
           "nmi": float(normalized_mutual_info_score(points.source, labels))}
    per = []
    if isinstance(clusters, EmbeddingClusters):
        for c in points.clips:
            if c.dominant_stft is None:
                per.append(float("nan"))
                continue
            lab = c.to_stft_grid(clusters.predict_clip(c))
            per.append(mask_accuracy(lab, c.dominant_stft, np.abs(c.stft) ** 2)[0])
    else:  # labels only: weighted by the points' energy over the points
        for ci in range(len(points.clips)):
            m = points.clip == ci
            per.append(mask_accuracy(labels[m], points.source[m], 10 ** (points.energy_db[m] / 10) * points.weight[m])[0])
    out["mask_accuracy"] = float(np.nanmean(per)) if per else float("nan")
    out["per_clip"] = per
    return out


def silhouette(X, labels, *, metric: str = "euclidean", sample_size: int = 2000, random_state: int = 0) -> float:
    """Mean silhouette (on a seeded sample of at most ``sample_size`` points)."""
    from sklearn.metrics import silhouette_score

    X = _X(X)
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(X) < 3:
        return float("nan")
    return float(silhouette_score(X, labels, metric=metric, sample_size=min(sample_size, len(X)),
                                  random_state=random_state))


def clusterability(X, energy_db=None, *, n_loudest: int = 1000, n_clusters: int = 2, random_state: int = 0,
                   n_threads: int | None = 1) -> dict:
    """Reference-free scores of how cleanly the loudest bins split into clusters.

    Separation by clustering works when the embeddings of the bins that carry the energy
    form tight, separate groups. These scores need no reference sources, so they can rank
    mixtures by expected separation quality (see docs/findings_embeddings.md).

    Parameters
    ----------
    X : array [shape=(n, D)] or EmbeddingPoints
    energy_db : array [shape=(n,)], optional
        Selects the ``n_loudest`` points (taken from EmbeddingPoints when given those).
    n_loudest : int
    n_clusters : int
    n_threads : int or None
        BLAS/OpenMP threads (default 1; ``None`` leaves them alone).

    Returns
    -------
    dict
        ``silhouette`` of k-means(k) labels (higher = more separable);
        ``gmm_ll_gain``: mean log-likelihood per point of a k-component GMM minus one
        Gaussian (nats; higher = more multimodal); ``bic_gain``: (BIC₁ − BIC_k) per point
        (penalises the extra parameters); ``kmeans_ratio``: k-means objective with k over
        with one cluster (lower = more separable); ``n`` points used.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> two = np.r_[rng.normal(0, .1, (200, 4)) + 1, rng.normal(0, .1, (200, 4)) - 1]
    >>> one = rng.normal(0, 1, (400, 4))
    >>> clusterability(two)["silhouette"] > 0.8 > clusterability(one)["silhouette"]
    True
    """
    with _threads(n_threads):
        return _clusterability(X, energy_db, n_loudest, n_clusters, random_state)


def _clusterability(X, energy_db, n_loudest, n_clusters, random_state) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    if isinstance(X, EmbeddingPoints):
        energy_db = X.energy_db if energy_db is None else energy_db
        X = X.X
    X = _X(X).astype(np.float64)
    if energy_db is not None and len(X) > n_loudest:
        X = X[np.argsort(np.asarray(energy_db))[::-1][:n_loudest]]
    if len(X) < 4 * n_clusters:
        raise AnalysisError(f"clusterability needs at least {4 * n_clusters} points, given {len(X)}")
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=random_state).fit(X)
    total = float(((X - X.mean(0)) ** 2).sum())
    cov = _cov_type(X.shape[1])
    g1 = GaussianMixture(1, covariance_type=cov, reg_covar=1e-4, random_state=random_state).fit(X)
    gk = GaussianMixture(n_clusters, covariance_type=cov, reg_covar=1e-4, n_init=2, random_state=random_state).fit(X)
    sil = float(silhouette_score(X, km.labels_)) if len(np.unique(km.labels_)) > 1 else float("nan")
    return {"silhouette": sil, "gmm_ll_gain": float(gk.score(X) - g1.score(X)),
            "bic_gain": float((g1.bic(X) - gk.bic(X)) / len(X)),
            "kmeans_ratio": float(km.inertia_ / total) if total > 0 else float("nan"), "n": int(len(X))}


# =====================================================================================
# Colourings
# =====================================================================================
def colourings(points: EmbeddingPoints, *, clusters=None) -> dict:
    """Every way to colour the points: ``{name: {"values", "kind", "names"}}``.

    ``kind`` is ``"categorical"`` (``values`` are ints, ``names`` their labels) or
    ``"continuous"`` (``names`` is the unit). Present: ``time`` (s), ``freq`` (Hz, per-T-F
    only), ``energy`` (dB), ``clip`` (pooled sets), ``source`` (oracle dominant source,
    with stems), ``class`` (event boxes), ``cluster`` (with ``clusters``: fitted
    EmbeddingClusters or labels).
    """
    out = {"time": {"values": points.time, "kind": "continuous", "names": "s"},
           "energy": {"values": points.energy_db, "kind": "continuous", "names": "dB"}}
    if points.kind == "tf":
        out["freq"] = {"values": points.freq, "kind": "continuous", "names": "Hz"}
    if len(points.clips) > 1:
        out["clip"] = {"values": points.clip, "kind": "categorical", "names": [c.name for c in points.clips]}
    if points.source is not None:
        out["source"] = {"values": points.source, "kind": "categorical",
                         "names": list(points.source_names or [f"source {i}" for i in range(int(points.source.max()) + 1)])}
    if points.label is not None:
        out["class"] = {"values": np.where(points.label < 0, len(points.class_names or []), points.label),
                        "kind": "categorical", "names": list(points.class_names or []) + ["(none)"]}
    if clusters is not None:
        lab = clusters.labels_ if isinstance(clusters, EmbeddingClusters) else np.asarray(clusters)
        if len(lab) != len(points):
            raise AnalysisError(f"{len(lab)} cluster labels for {len(points)} points")
        out["cluster"] = {"values": lab, "kind": "categorical", "names": [f"cluster {j}" for j in range(int(lab.max()) + 1)]}
    return out


# =====================================================================================
# One clustering per (model, clip, layer, k): numbered from 1 by energy, named from the truth
# =====================================================================================
#: defaults of the shared clustering (``probe.pipelines.EmbeddingOptions`` has the same; a test checks)
SHARED_CLUSTERING = {"threshold_db": DEFAULT_THRESHOLD_DB, "budget": 4000, "seed": 0, "method": "kmeans"}


class _Relabelled:
    """An estimator whose predictions go through a label permutation (cluster order by energy)."""

    def __init__(self, estimator, new_of_old):
        self.estimator, self.new_of_old = estimator, np.asarray(new_of_old, np.int64)

    def predict(self, X):
        return self.new_of_old[np.asarray(self.estimator.predict(X), np.int64)]

    def __getattr__(self, name):  # only reached for names not set here (and never during unpickling)
        if name.startswith("__") or name in ("estimator", "new_of_old"):
            raise AttributeError(name)
        return getattr(self.estimator, name)


def order_clusters(km, clip) -> list:
    """Renumber fitted clusters by decreasing energy (in place) and name them; returns the names.

    The energy of a cluster is the mixture power ``|STFT|²`` of the bins its mask holds. After
    this, ``km.labels_ == 0`` is cluster 1 (the loudest), ``km.predict`` / ``km.masks`` follow
    the same order. Names: with oracle sources (``clip.dominant_stft``), the source holding most
    of the cluster's energy; else ``"cluster j"`` (1-based).

    Examples
    --------
    >>> X = np.r_[np.zeros((5, 2)), np.ones((5, 2))]
    >>> km = EmbeddingClusters(2).fit(X)
    >>> class Clip:  # two cells: the second (cluster of the ones) is louder
    ...     shape, stft, dominant_stft, source_names = (1, 2), np.array([[1.0, 3.0]]), None, None
    ...     def flat(self): return np.array([[0.0, 0.0], [1.0, 1.0]])
    ...     def to_stft_grid(self, v): return v
    >>> order_clusters(km, Clip()), km.predict(np.array([[1.0, 1.0]])).tolist()
    (['cluster 1', 'cluster 2'], [0])
    """
    k = int(km.n_clusters_)
    power = np.abs(np.asarray(clip.stft)) ** 2
    lab = clip.to_stft_grid(km.predict_clip(clip))
    energy = np.array([float(power[lab == j].sum()) for j in range(k)])
    order = np.argsort(-energy, kind="stable")  # new j -> old label
    new_of_old = np.empty(k, np.int64)
    new_of_old[order] = np.arange(k)
    km.labels_ = new_of_old[np.asarray(km.labels_, np.int64)]
    km.centers_ = np.asarray(km.centers_)[order]
    km.estimator_ = _Relabelled(km.estimator_, new_of_old)
    lab = new_of_old[lab]
    dom = getattr(clip, "dominant_stft", None)
    if dom is None:
        return [f"cluster {j + 1}" for j in range(k)]
    src_names = list(getattr(clip, "source_names", None) or [])
    names, seen = [], {}
    for j in range(k):
        m = (lab == j) & (np.asarray(dom) >= 0)
        if not m.any():
            names.append(f"cluster {j + 1}")
            continue
        s = int(np.argmax(np.bincount(np.asarray(dom)[m], weights=power[m])))
        name = src_names[s] if s < len(src_names) else f"source {s + 1}"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


def cluster_clip(clip: ClipEmbeddings, points: EmbeddingPoints, n_clusters: int, *, method: str = "kmeans",
                 seed: int = 0, threshold_db: float | None = DEFAULT_THRESHOLD_DB):
    """Fit ``n_clusters`` clusters on ``points``, number them from 1 by energy, name them, and find their bins.

    The one clustering step behind :func:`probe.pipelines.analyse_embeddings`, attribution's
    ``cluster=j`` targets (library, CLI, report, app) and the sanity panel.

    Returns
    -------
    clusters : EmbeddingClusters
        Fitted and renumbered (:func:`order_clusters`).
    names : list of str
    bins : np.ndarray [shape=(k, F, T)], bool
        Each cluster's cells on the embedding grid within ``threshold_db`` of the loudest.
    """
    km = EmbeddingClusters(int(n_clusters), method=method, random_state=seed).fit(points)
    names = order_clusters(km, clip)
    edb = clip.energy_db()
    loud = edb - edb.max() >= -float(threshold_db) if threshold_db else np.ones(clip.shape, bool)
    cells = km.predict_clip(clip)
    bins = np.stack([(cells == j) & loud for j in range(int(n_clusters))])
    return km, names, bins


class ClipClustering:
    """The shared clustering of one clip at one layer: ``clusters``, ``names``, ``bins``, ``clip``, ``n_clusters``.

    Has the attributes :func:`probe.pipelines.explain.cluster_target` reads from an
    :class:`~probe.pipelines.EmbeddingAnalysis` (``cluster_bins``, ``cluster_names``).
    """

    def __init__(self, clip, clusters, names, bins):
        self.clip, self.clusters, self.cluster_names, self.cluster_bins = clip, clusters, list(names), bins
        self.n_clusters = int(len(bins))
        self.cluster_numbers = list(range(1, self.n_clusters + 1))


def shared_clustering(spec, audio, *, n_clusters: int | None = None, layer: str | None = None,
                      threshold_db: float | None = SHARED_CLUSTERING["threshold_db"],
                      budget: int = SHARED_CLUSTERING["budget"], seed: int = SHARED_CLUSTERING["seed"],
                      method: str = SHARED_CLUSTERING["method"]) -> ClipClustering:
    """The clustering :func:`probe.pipelines.analyse_embeddings` makes with its default options, without the map.

    ``probe.attribute(..., "cluster=j")`` uses it, so the library's cluster ``j`` is the
    Embeddings page's and ``probe embed``'s cluster ``j`` (same points, same seed, same order).

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 6, 64, stride=32), torch.nn.Tanh())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000, 256, 64), input_layout="bcn")
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> c = shared_clustering(spec, y, layer="0", budget=200)
    >>> c.cluster_numbers, c.cluster_names
    ([1, 2], ['cluster 1', 'cluster 2'])
    """
    from .embedding_points import embeddings_from_layer

    k = int(n_clusters or getattr(spec, "n_sources", None) or 2)
    clip = embeddings_from_layer(spec, audio, None if layer in (None, "", "output", "tf_embeddings") else layer)
    points = select_points(clip, threshold_db=threshold_db or None, budget=int(budget), seed=seed)
    need = max(4 * k, 8)
    if len(points) < need:
        raise AnalysisError(f"only {len(points)} non-silent embedding points; need at least {need} to cluster")
    km, names, bins = cluster_clip(clip, points, k, method=method, seed=seed, threshold_db=threshold_db)
    return ClipClustering(clip, km, names, bins)
