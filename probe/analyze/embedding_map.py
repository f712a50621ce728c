"""A 2-D map of embedding points (PCA or UMAP), its trustworthiness, and umap's numba cold start.

Neighbours are computed exactly here (blocked matrix products) and handed to umap as
``precomputed_knn``; :func:`enable_jit_cache` and :func:`warm_up` keep umap's compilation off
the interactive path (see :mod:`probe.analyze.embeddings` for the measurements).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import AnalysisError
from .embedding_points import EmbeddingPoints, _threads, _X

__all__ = ["EmbeddingMap", "embedding_map", "trustworthiness", "enable_jit_cache", "warm_up"]

# =====================================================================================
# Projection
# =====================================================================================
def _is_unit_norm(X: np.ndarray, tol: float = 1e-2) -> bool:
    n = np.linalg.norm(X, axis=1)
    return bool(len(n) and np.all(np.abs(n - 1.0) < tol))


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _pairwise_block(A: np.ndarray, B: np.ndarray, metric: str, *, b_unit: np.ndarray | None = None,
                    b_sq: np.ndarray | None = None) -> np.ndarray:
    """Distances ``(len(A), len(B))`` in the dtype of the inputs, computed in place (one temporary).

    ``b_unit`` (rows of B normalised) / ``b_sq`` (squared row norms of B) may be passed
    precomputed when B is reused across blocks.
    """
    if metric == "cosine":
        bn = _unit_rows(B) if b_unit is None else b_unit
        D = _unit_rows(A) @ bn.T
        np.subtract(1.0, D, out=D)
        return np.maximum(D, 0.0, out=D)
    if metric == "euclidean":
        D = A @ B.T
        D *= -2.0
        D += (A * A).sum(1)[:, None]
        D += ((B * B).sum(1) if b_sq is None else b_sq)[None, :]
        np.maximum(D, 0.0, out=D)
        return np.sqrt(D, out=D)
    raise AnalysisError(f"unknown metric {metric!r}; known: cosine, euclidean")


def _block_args(X: np.ndarray, metric: str) -> dict:
    return {"b_unit": _unit_rows(X)} if metric == "cosine" else {"b_sq": (X * X).sum(1)}


def _exact_knn(X: np.ndarray, k: int, metric: str, block: int = 1024):
    """Exact k nearest neighbours (self included first), ``(indices (n, k) int64, distances (n, k) float32)``."""
    X = X.astype(np.float32)
    n = len(X)
    k = min(k, n)
    idx = np.empty((n, k), np.int64)
    dst = np.empty((n, k), np.float32)
    pre = _block_args(X, metric)
    for s in range(0, n, block):
        Dm = _pairwise_block(X[s:s + block], X, metric, **pre)
        rows = np.arange(Dm.shape[0])
        Dm[rows, s + rows] = -1.0  # self first, whatever the rounding
        part = np.argpartition(Dm, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (Dm.shape[0], 1))
        d = np.take_along_axis(Dm, part, 1)
        order = np.argsort(d, axis=1, kind="stable")
        idx[s:s + block] = np.take_along_axis(part, order, 1)
        dst[s:s + block] = np.maximum(np.take_along_axis(d, order, 1), 0.0)
    return idx, dst


def trustworthiness(X, Z, *, n_neighbors: int = 10, metric: str = "euclidean", exact_limit: int = 2000,
                    n_threads: int | None = 1) -> float:
    """Trustworthiness of a 2-D map: are the map's neighbours true neighbours? (1 = perfect).

    The score of :func:`sklearn.manifold.trustworthiness` (Venna & Kaski): for each point,
    the map's ``k`` nearest neighbours are ranked by distance in the original space and
    ranks beyond ``k`` are penalised. Up to ``exact_limit`` points sklearn computes it; above
    that, the same quantity is computed here in blocks (sklearn argsorts the full n×n
    matrix: 1.5 s and 200 MB at n = 5000), counting for each map neighbour how many points
    are closer in the original space (against a partitioned head of each row, the full row
    only for far neighbours). Ties aside, the two agree (tested).

    Parameters
    ----------
    X : array [shape=(n, D)]
    Z : array [shape=(n, 2)]
    n_neighbors : int
        Clamped below ``n / 2`` as sklearn requires.
    metric : {"euclidean", "cosine"}
        Distance in the original space.
    n_threads : int or None
        BLAS/OpenMP threads for the block (``None``: as configured).

    Returns
    -------
    float (``nan`` for fewer than 6 points)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.standard_normal((300, 2)) @ rng.standard_normal((2, 10))
    >>> from sklearn.decomposition import PCA
    >>> round(trustworthiness(plane, PCA(2).fit_transform(plane)), 3)
    1.0
    """
    X = np.asarray(X)
    X = X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)
    with _threads(n_threads):
        return _trustworthiness(X, np.asarray(Z, np.float64), n_neighbors, metric, exact_limit)


def _trustworthiness(X, Z, n_neighbors, metric, exact_limit) -> float:
    n = len(X)
    if n < 6:
        return float("nan")
    k = int(min(n_neighbors, (n - 1) // 2 - 1 if (n - 1) // 2 - 1 >= 1 else 1))
    if n <= exact_limit:
        from sklearn.manifold import trustworthiness as sk_trust

        return float(sk_trust(X, Z, n_neighbors=k, metric=metric))
    from sklearn.neighbors import NearestNeighbors

    nbr = NearestNeighbors(n_neighbors=k).fit(Z).kneighbors(return_distance=False)
    penalty = 0.0
    m_head = int(min(n - 1, 8 * k + 64))
    block = max(1, int(8_000_000 // n))
    pre = _block_args(X, metric)
    for s in range(0, n, block):
        Dm = _pairwise_block(X[s:s + block], X, metric, **pre)
        rows = np.arange(Dm.shape[0])
        Dm[rows, s + rows] = np.inf
        dj = np.take_along_axis(Dm, nbr[s:s + block], 1)  # (b, k) original distance to each map neighbour
        # rank = 1 + number of points closer than the neighbour; count it against the M smallest
        # distances of the row (a partition, O(n)), and against the whole row only past those
        head = np.sort(np.partition(Dm, m_head - 1, axis=1)[:, :m_head], axis=1)
        ranks = 1 + (head[:, None, :] < dj[:, :, None]).sum(-1)
        far_rows = np.flatnonzero((dj > head[:, -1:]).any(1))
        if len(far_rows):
            full = np.sort(Dm[far_rows], axis=1)
            for r, row in zip(far_rows, full):
                ranks[r] = 1 + np.searchsorted(row, dj[r], side="left")
        penalty += np.maximum(ranks - k, 0).sum()
    return float(1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def _default_cache_root() -> Path:
    root = os.environ.get("PROBE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "probe"


def enable_jit_cache(cache_dir=None) -> Path:
    """Cache umap-learn's numba-compiled kernels on disk, so new processes skip most JIT time.

    umap declares its kernels without numba's ``cache=True``; this turns caching on for
    every compiled function in umap's modules and points numba at ``cache_dir`` (default
    ``$NUMBA_CACHE_DIR``, else ``$PROBE_CACHE_DIR/numba``, else ``~/.cache/probe/numba``).
    The first process still compiles (and writes ~3 MB); later ones load machine code.
    Idempotent; affects umap in this process only.

    Returns
    -------
    Path
        The cache directory in use.
    """
    import numba
    from numba.core.registry import CPUDispatcher

    target = Path(cache_dir or os.environ.get("NUMBA_CACHE_DIR") or _default_cache_root() / "numba")
    target.mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = str(target)
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils

    for mod in (umap.umap_, umap.layouts, umap.utils, umap.spectral):
        for value in list(vars(mod).values()):
            if isinstance(value, CPUDispatcher) and type(value._cache).__name__ == "NullCache":
                try:
                    value.enable_caching()
                except Exception:  # pragma: no cover - a kernel numba cannot cache stays uncached
                    pass
    return target


def warm_up(*, background: bool = False, cache: bool = True):
    """Compile umap's kernels now (a tiny fit), so the first real map is fast.

    Parameters
    ----------
    background : bool
        Run in a daemon thread and return it (show :meth:`EmbeddingMap.preview` meanwhile).
    cache : bool
        Call :func:`enable_jit_cache` first.

    Returns
    -------
    float or threading.Thread
        Seconds taken, or the started thread.
    """
    def _run():
        t0 = time.perf_counter()
        if cache:
            enable_jit_cache()
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 8)).astype(np.float32)
        _umap_2d(X / np.linalg.norm(X, axis=1, keepdims=True), metric="cosine", n_neighbors=15, min_dist=0.1,
                 n_epochs=10, random_state=0, init="spectral")
        return time.perf_counter() - t0

    if background:
        import threading

        th = threading.Thread(target=_run, name="probe-umap-warm-up", daemon=True)
        th.start()
        return th
    return _run()


def _umap_2d(X, *, metric, n_neighbors, min_dist, n_epochs, random_state, init):
    import umap

    k = int(min(n_neighbors, len(X) - 1))
    idx, dst = _exact_knn(X, k + 0, metric)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*is not an NNDescent object.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric=metric, n_epochs=n_epochs,
                            random_state=random_state, init=init, precomputed_knn=(idx, dst, None),
                            force_approximation_algorithm=True, low_memory=False)
        return np.asarray(reducer.fit_transform(X), np.float32)


def _pca_2d(X: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    if X.shape[1] < 2:
        return np.column_stack([X[:, 0], np.zeros(len(X))]).astype(np.float32)
    return PCA(n_components=2, random_state=0).fit_transform(X).astype(np.float32)


class EmbeddingMap:
    """2-D map of embedding points (PCA or UMAP) with its trustworthiness, cached.

    Parameters
    ----------
    projection : {"umap", "pca"}
        ``pca`` is instant and linear (a preview); ``umap`` shows clusters and manifolds.
    metric : {"auto", "cosine", "euclidean"}
        UMAP's (and trustworthiness's) distance; ``auto`` picks ``cosine`` for unit-norm
        embeddings (deep clustering normalises every bin's vector) and ``euclidean`` otherwise.
    n_neighbors, min_dist : int, float
        UMAP's locality and packing. umap-learn's defaults (15, 0.1) scatter deep-clustering
        embeddings into dozens of islands (a trained network maps many bins to near-identical
        unit vectors: 75 % of the bins of a well-separated mixture have a neighbour within
        cosine distance 1e-3), hiding the two-source structure; 30 and 0.3 keep the map in a
        few groups at a trustworthiness 0.004–0.03 lower (0.93–0.985 on zoo test mixtures).
    n_epochs : int
        UMAP optimisation epochs. 200 (umap uses 500 below 10 000 points) halves the time and
        leaves trustworthiness within ~0.005 on deep-clustering embeddings.
    random_state : int
        Seed: the same points give the same map.
    trust_neighbors : int
        ``k`` of the trustworthiness score.
    cache_size : int
        Maps kept in this object's in-memory LRU, keyed by (model, audio hashes, layer,
        selection and projection parameters, content hash of the points).
    cache_dir : path, optional
        Also keep maps as ``.npz`` files here (survives restarts).
    n_threads : int or None
        BLAS/OpenMP threads while fitting (default 1, see *Threads* in the module notes; ``None``
        leaves them alone).

    Attributes
    ----------
    embedding_ : np.ndarray [shape=(n, 2)]
    trustworthiness_ : float
    seconds_ : float
        Time of the fit that produced the map (0 from the in-memory cache).
    metric_ : str
    projection_ : str
        The projection used: ``pca`` also for ``umap`` when there are too few points
        (``n <= n_neighbors + 1``) for a neighbour graph.
    from_cache_ : {None, "memory", "disk"}
    key_ : str

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 2)) @ rng.standard_normal((2, 6))
    >>> m = EmbeddingMap("pca").fit(X)
    >>> m.embedding_.shape, round(m.trustworthiness_, 3)
    ((200, 2), 1.0)
    >>> m.fit(X).from_cache_
    'memory'
    """

    def __init__(self, projection: str = "umap", *, metric: str = "auto", n_neighbors: int = 30,
                 min_dist: float = 0.3, n_epochs: int = 200, random_state: int = 0, trust_neighbors: int = 10,
                 cache_size: int = 16, cache_dir=None, n_threads: int | None = 1):
        self.projection = projection
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.trust_neighbors = trust_neighbors
        self.cache_size = cache_size
        self.cache_dir = cache_dir
        self.n_threads = n_threads

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("projection", "metric", "n_neighbors", "min_dist", "n_epochs",
                                              "random_state", "trust_neighbors")}

    def _key(self, points_or_X, X: np.ndarray) -> str:
        meta = dict(points_or_X.meta) if isinstance(points_or_X, EmbeddingPoints) else {}
        h = hashlib.sha1(np.ascontiguousarray(X).tobytes())
        h.update(str(X.shape).encode())
        blob = json.dumps({"model": meta.get("model"), "audio": meta.get("audio"), "layer": meta.get("layer"),
                           "selection": {k: meta.get(k) for k in ("threshold_db", "budget", "n_strata", "seed")},
                           "params": self.get_params(), "points": h.hexdigest()}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:20]

    @property
    def _lru(self) -> OrderedDict:
        if not hasattr(self, "_lru_store"):
            self._lru_store = OrderedDict()
        return self._lru_store

    def cache_clear(self) -> None:
        """Empty the in-memory cache (disk files stay)."""
        self._lru.clear()

    def preview(self, points) -> np.ndarray:
        """PCA coordinates ``(n, 2)`` at once, to show while UMAP runs (no caching, no score)."""
        return _pca_2d(_X(points))

    def fit(self, points) -> "EmbeddingMap":
        """Project ``points`` (EmbeddingPoints or an ``(n, D)`` array) to 2-D."""
        if self.projection not in ("umap", "pca"):
            raise AnalysisError(f"unknown projection {self.projection!r}; known: umap, pca")
        if self.metric not in ("auto", "cosine", "euclidean"):
            raise AnalysisError(f"unknown metric {self.metric!r}; known: auto, cosine, euclidean")
        X = _X(points)
        if len(X) < 3:
            raise AnalysisError(f"a map needs at least 3 points, given {len(X)}")
        metric = self.metric if self.metric != "auto" else ("cosine" if _is_unit_norm(X) else "euclidean")
        key = self._key(points, X)
        self.key_, self.metric_ = key, metric
        self.projection_ = "pca" if self.projection == "pca" or len(X) <= self.n_neighbors + 1 else "umap"
        lru = self._lru
        if key in lru:
            lru.move_to_end(key)
            self.embedding_, self.trustworthiness_, _ = lru[key]
            self.seconds_, self.from_cache_ = 0.0, "memory"
            return self
        path = Path(self.cache_dir) / f"embedmap-{key}.npz" if self.cache_dir else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                emb, tw, secs = z["embedding"], float(z["trustworthiness"]), float(z["seconds"])
            self._remember(key, emb, tw, secs)
            self.embedding_, self.trustworthiness_, self.seconds_, self.from_cache_ = emb, tw, 0.0, "disk"
            return self
        t0 = time.perf_counter()
        with _threads(self.n_threads):
            if self.projection_ == "pca":
                emb = _pca_2d(X)
            else:
                emb = _umap_2d(X, metric=metric, n_neighbors=self.n_neighbors, min_dist=self.min_dist,
                               n_epochs=self.n_epochs, random_state=self.random_state, init="spectral")
            tw = trustworthiness(X, emb, n_neighbors=self.trust_neighbors, metric=metric, n_threads=None)
        secs = time.perf_counter() - t0
        self._remember(key, emb, tw, secs)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, embedding=emb, trustworthiness=tw, seconds=secs)
            os.replace(tmp, path)
        self.embedding_, self.trustworthiness_, self.seconds_, self.from_cache_ = emb, tw, secs, None
        return self

    def _remember(self, key, emb, tw, secs):
        lru = self._lru
        lru[key] = (emb, tw, secs)
        lru.move_to_end(key)
        while len(lru) > max(0, int(self.cache_size)):
            lru.popitem(last=False)

    def fit_transform(self, points) -> np.ndarray:
        return self.fit(points).embedding_


def embedding_map(points, projection: str = "umap", **params) -> tuple[np.ndarray, float]:
    """Function twin of :class:`EmbeddingMap`: ``(coords (n, 2), trustworthiness)``.

    Examples
    --------
    >>> X = np.random.default_rng(0).standard_normal((100, 2)) @ np.ones((2, 5))
    >>> Z, tw = embedding_map(X, "pca")
    >>> Z.shape
    (100, 2)
    """
    m = EmbeddingMap(projection, cache_size=0, **params).fit(points)
    return m.embedding_, m.trustworthiness_
