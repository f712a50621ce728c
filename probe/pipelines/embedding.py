"""A layer's embeddings on one clip: points, a 2-D map, clusters, their audio and how well they match the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnalysisError
from ..analyze.embedding_clusters import _Relabelled, cluster_clip, order_clusters  # noqa: F401 (re-exported)
from ._base import Result, jsonable, locked, rounded

__all__ = ["EmbeddingOptions", "EmbeddingAnalysis", "analyse_embeddings", "order_clusters"]

_OUTPUT = (None, "", "output", "tf_embeddings")


@dataclass(frozen=True)
class EmbeddingOptions:
    """Options of :func:`analyse_embeddings` (the only place their defaults live).

    Attributes
    ----------
    layer : str, optional
        Module path to capture; ``"output"``: the model's own output. ``None`` (the default):
        the ``tf_embeddings`` output of a deep-clustering model, else the last time-resolved
        layer before the head (:func:`probe.pipelines.default_layer`) — the same first layer on
        every face (CLI, report, app).
    projection : {"pca", "umap"}
        PCA is instant and deterministic, so it is the default on every face; UMAP shows
        clusters better but compiles numba kernels on first use (cached on disk afterwards).
    budget : int
        Most points drawn (energy-stratified): :data:`probe.analyze.embeddings.DEFAULT_BUDGET`.
    threshold_db : float or None
        Drop cells further than this below the loudest (``None`` or 0 keeps all).
    n_clusters : int, optional
        ``k`` of the clustering; ``None``: the model's number of sources, else 2.
    method : {"kmeans", "gmm"}
    seed : int
        Seed of the sample, the projection and the clustering.
    clusterability : bool
        Also compute the reference-free clusterability scores.
    cache_dir : str, optional
        Also keep maps on disk here.
    jit_cache : bool
        Keep UMAP's compiled numba code on disk (later processes skip most of the JIT time).
    labels : str, optional
        A label file (:func:`probe.analyze.labels.read_labels`: CSV/JSON ``start,end,label`` rows, or
        ``file,label``): points take the label at their time (colour ``"class"``) and the clusters
        are scored against them (ARI, NMI, purity).
    """

    layer: str | None = None
    projection: str = "pca"
    budget: int = 4000
    threshold_db: float | None = 40.0
    n_clusters: int | None = None
    method: str = "kmeans"
    seed: int = 0
    clusterability: bool = True
    cache_dir: str | None = None
    jit_cache: bool = True
    labels: str | None = None

    def __post_init__(self):
        if int(self.budget) < 1:
            raise AnalysisError(f"budget must be positive, given {self.budget}")
        if self.n_clusters is not None and int(self.n_clusters) < 1:
            raise AnalysisError(f"n_clusters must be positive, given {self.n_clusters}")
        if self.projection not in ("pca", "umap"):
            raise AnalysisError(f"projection must be 'pca' or 'umap', given {self.projection!r}")


@dataclass
class EmbeddingAnalysis(Result):
    """Embeddings of one clip at one layer, mapped and clustered.

    Attributes
    ----------
    clip : ClipEmbeddings
    points : EmbeddingPoints
    coords : np.ndarray [shape=(n, 2)]
    trustworthiness : float
    projection, metric : str
    map_seconds : float
    clusters : EmbeddingClusters (fitted)
    n_clusters : int
    colourings : dict
        Name → values / kind / names, for the scatter's colour menu.
    cluster_audio : np.ndarray [shape=(k, n)]
    cluster_masks : np.ndarray [shape=(k, F, T)]
    cluster_bins : np.ndarray [shape=(k, F, T)], bool
        Per cluster, its cells on the embedding grid within ``threshold_db`` of the loudest (the
        cells the clustering describes): the bins an attribution target ``"cluster=j"`` uses.
    cluster_numbers : list of int
        ``[1, …, k]``: clusters are numbered from 1 by decreasing energy (cluster 1 is the loudest);
        ``clusters.labels_`` and every per-cluster array are in that order (index ``j - 1``).
    cluster_names : list of str
        From the ground truth when the example has sources: the oracle source holding most of
        each cluster's energy (``"low"``, ``"high"``; a repeated name gets ``" (2)"``); else
        ``"cluster 1"``, ….
    agreement : dict or None
        ``ari``, ``nmi``, ``mask_accuracy`` against the known sources.
    clusterability : dict or None
    sr : int
    layer, kind : str
    """

    clip: object
    points: object
    coords: np.ndarray
    trustworthiness: float
    projection: str
    metric: str
    map_seconds: float
    clusters: object
    n_clusters: int
    method: str
    colourings: dict
    cluster_audio: np.ndarray
    cluster_masks: np.ndarray
    agreement: dict | None
    clusterability: dict | None
    sr: int
    layer: str
    kind: str
    label_scores: dict | None = None
    cluster_bins: np.ndarray | None = None
    cluster_numbers: list | None = None
    cluster_names: list | None = None

    def to_json(self) -> dict:
        out = {"layer": self.layer, "kind": self.kind, "dim": int(self.points.X.shape[1]), "grid": list(self.clip.shape),
               "n_points": len(self.points), "projection": self.projection, "metric": self.metric,
               "seconds": round(float(self.map_seconds), 3), "trustworthiness": rounded(self.trustworthiness, 4),
               "clusters": int(self.n_clusters), "method": self.method,
               "cluster_sizes": np.bincount(self.clusters.labels_, minlength=self.n_clusters).tolist(),
               "cluster_numbers": list(self.cluster_numbers or range(1, self.n_clusters + 1)),
               "cluster_names": list(self.cluster_names or []),
               "cluster_bins": [int(b.sum()) for b in self.cluster_bins] if self.cluster_bins is not None else None,
               "time": self.time_axis(), "cluster_times": self.cluster_times()}
        if self.agreement:
            out["oracle"] = {k: rounded(self.agreement[k], 4) for k in ("ari", "nmi", "mask_accuracy")}
        if self.clusterability is not None:
            out["clusterability"] = jsonable({k: (round(v, 4) if isinstance(v, float) else v)
                                              for k, v in self.clusterability.items()})
        if self.label_scores is not None:
            out["labels"] = jsonable(self.label_scores)
        out["warnings"] = list(self.warnings)
        return out

    def time_axis(self) -> dict:
        """The embedding frames' clock: frame ``k`` at ``time_offset + k * seconds_per_step`` s, and where it came from.

        ``time_source``: ``inferred`` (shape probe), ``spec`` / ``given`` (overrides), ``grid``
        (the STFT frames) or ``spread`` (frames spread evenly over the clip: no step known).
        """
        t = np.asarray(self.clip.times, float)
        step = float(t[1] - t[0]) if len(t) > 1 else None
        return {"seconds_per_step": rounded(step, 9), "time_offset": rounded(float(t[0]), 9) if len(t) else None,
                "time_source": getattr(self.clip, "time_source", None)}

    def cluster_times(self) -> list:
        """Per cluster (numbered from 1): where its points lie in time (median, mean, first, last s) and their mean level (dB)."""
        p, labels = self.points, np.asarray(self.clusters.labels_)
        out = []
        for j in range(int(self.n_clusters)):
            m = labels == j
            if not m.any():
                out.append({"cluster": j + 1, "size": 0})
                continue
            t = np.asarray(p.time, float)[m]
            out.append({"cluster": j + 1, "size": int(m.sum()), "median_s": rounded(float(np.median(t)), 4),
                        "mean_s": rounded(float(t.mean()), 4), "first_s": rounded(float(t.min()), 4),
                        "last_s": rounded(float(t.max()), 4),
                        "mean_energy_db": rounded(float(np.mean(np.asarray(p.energy_db, float)[m])), 2)})
        return out


def analyse_embeddings(spec, example, options: EmbeddingOptions = EmbeddingOptions(), *, lock=None) -> EmbeddingAnalysis:
    """Embeddings of one clip at a layer: points, a 2-D map, clusters, their audio and oracle agreement.

    Parameters
    ----------
    spec : ModelSpec
    example : AudioExample or np.ndarray [shape=(n,)]
        With an AudioExample that carries sources or events, points know their source/class.
    options : EmbeddingOptions
    lock : context manager, optional
        Held while the model runs (a model shared between threads); the map and the
        clustering run outside it.

    Returns
    -------
    EmbeddingAnalysis

    Raises
    ------
    AnalysisError
        Too few non-silent cells, or no layer with a time axis to map.
    LayerNotFoundError
        Unknown layer.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 6, 64, stride=32), torch.nn.Tanh())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000, 256, 64), input_layout="bcn")
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> res = analyse_embeddings(spec, y, EmbeddingOptions(layer="0", budget=200))
    >>> res.coords.shape, res.n_clusters
    ((200, 2), 2)
    """
    from ..analyze import embeddings as E

    from ..diagnostics import finite_outputs, input_warnings

    o = options
    k = int(o.n_clusters or spec.n_sources or 2)
    audio_warnings = input_warnings(spec, example)  # refuses a clip shorter than one frame
    if o.layer is None and spec.output_kind != "tf_embeddings":
        from dataclasses import replace

        from .layers import default_layer

        first = default_layer(spec, getattr(example, "y", example), purpose="embeddings", lock=lock)
        if first is None:
            raise AnalysisError(f"{spec.name or 'the model'} has no layer with a time axis to map; name one with "
                                "layer= (--layer) or take the output (layer='output')")
        o = replace(o, layer=first)
    with locked(lock), finite_outputs(spec.model):
        clip = E.embeddings_from_layer(spec, example, None if o.layer in _OUTPUT else o.layer)
    points = E.select_points(clip, threshold_db=o.threshold_db or None, budget=int(o.budget), seed=o.seed)
    user_labels = None
    if o.labels:
        from ..analyze.labels import apply_labels, read_labels

        user_labels = read_labels(o.labels)
        points = apply_labels(points, user_labels)
    need = max(4 * k, 8)
    if len(points) < need:
        raise AnalysisError(f"only {len(points)} non-silent embedding points at layer {o.layer or 'output'!r}; need at "
                            f"least {need}: lower threshold_db or use longer audio")
    warnings = list(audio_warnings)
    if o.projection == "umap" and o.jit_cache:
        try:  # numba's machine code cached on disk: later processes skip most of the JIT time
            E.enable_jit_cache()
        except Exception as exc:  # pragma: no cover - a read-only home only costs the cache
            warnings.append(f"numba cache not enabled ({type(exc).__name__}: {exc})")
    emap = E.EmbeddingMap(o.projection, random_state=o.seed, cache_dir=o.cache_dir).fit(points)
    km, names, bins = cluster_clip(clip, points, k, method=o.method, seed=o.seed, threshold_db=o.threshold_db)
    agreement = None
    if points.source is not None:
        try:
            agreement = E.oracle_agreement(km, points)
        except AnalysisError as exc:
            warnings.append(f"no oracle agreement: {exc}")
    scores = None
    if user_labels is not None:
        from ..analyze.labels import label_scores

        scores = {"file": str(o.labels), **label_scores(km, points.label, names=points.class_names)}
    score = None
    if o.clusterability:
        try:
            score = E.clusterability(points, n_clusters=max(2, k), random_state=o.seed)
        except AnalysisError as exc:
            score = {"error": str(exc)}
    return EmbeddingAnalysis(
        clip=clip, points=points, coords=emap.embedding_, trustworthiness=float(emap.trustworthiness_),
        projection=o.projection, metric=emap.metric_, map_seconds=float(emap.seconds_), clusters=km, n_clusters=k,
        method=o.method, colourings=_colourings(E.colourings(points, clusters=km), names),
        cluster_audio=km.separate(clip),
        cluster_masks=km.masks(clip), agreement=agreement, clusterability=score, sr=clip.sr,
        layer=("tf_embeddings" if spec.output_kind == "tf_embeddings" else "output") if o.layer in _OUTPUT else o.layer,
        kind=clip.kind, label_scores=scores, warnings=warnings, cluster_bins=bins,
        cluster_numbers=list(range(1, k + 1)), cluster_names=names)


def _colourings(col: dict, names: list) -> dict:
    if "cluster" in col:
        col["cluster"] = {**col["cluster"], "names": [f"{j + 1}: {n}" if n != f"cluster {j + 1}" else n
                                                      for j, n in enumerate(names)]}
    return col
