"""A map of the corpus: every clip's pooled features in 2-D, clustered and scored against labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inputs import CorpusError

__all__ = ["MapOptions", "corpus_map"]


@dataclass(frozen=True)
class MapOptions:
    """Defaults of :func:`corpus_map`.

    Attributes
    ----------
    layer : str, optional
        Default: the run's last layer.
    variant : {"trained", "random"}
    pooling : {"mean", "max"}
    projection : {"pca", "umap"}
        PCA is instant and deterministic; UMAP compiles numba code on first use.
    n_clusters : int, optional
        Default: the number of distinct labels (2 without labels).
    seed : int
    """

    layer: str | None = None
    variant: str = "trained"
    pooling: str = "mean"
    projection: str = "pca"
    n_clusters: int | None = None
    seed: int = 0


def corpus_map(run, *, options: MapOptions | None = None) -> dict:
    """Project each clip's pooled features to 2-D, cluster them (k-means) and score clusters vs labels.

    Returns
    -------
    dict
        ``coords`` (n, 2), ``clip_ids``, ``labels`` (None where unknown), ``clusters``,
        ``ari`` / ``nmi`` against the labels (None without labels), ``explained_variance``
        (PCA), ``layer``, ``projection``.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.preprocessing import StandardScaler

    from .run import CorpusRun

    run = run if isinstance(run, CorpusRun) else CorpusRun(run)
    options = options or MapOptions()
    if options.projection not in ("pca", "umap"):
        raise CorpusError(f"projection must be 'pca' or 'umap', given {options.projection!r}")
    layer = run.check_layer(options.layer) if options.layer else run.layers[-1]
    X, idx = run.pooled(layer, options.variant, options.pooling)
    if len(X) < 3:
        raise CorpusError(f"a corpus map needs at least 3 clips, the run has {len(X)}")
    Z = StandardScaler().fit_transform(X)
    labels = [run.clips[i].label for i in idx]
    known = sorted({v for v in labels if v is not None})
    k = int(options.n_clusters or max(len(known), 2))
    if not 1 <= k <= len(X):
        raise CorpusError(f"n_clusters must lie in 1..{len(X)}, given {k}")
    explained = None
    if options.projection == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(2, Z.shape[1]), random_state=options.seed).fit(Z)
        coords = pca.transform(Z)
        explained = pca.explained_variance_ratio_.tolist()
        if coords.shape[1] == 1:
            coords = np.column_stack([coords[:, 0], np.zeros(len(coords))])
    else:
        import umap

        coords = umap.UMAP(n_components=2, n_neighbors=min(15, len(Z) - 1), random_state=options.seed).fit_transform(Z)
    clusters = KMeans(n_clusters=k, n_init=10, random_state=options.seed).fit_predict(Z)
    ari = nmi = None
    lab = np.array([v if v is not None else "" for v in labels], dtype=object)
    has = lab != ""
    if len(known) >= 2 and has.sum() >= 2:
        ari = float(adjusted_rand_score(lab[has], clusters[has]))
        nmi = float(normalized_mutual_info_score(lab[has], clusters[has]))
    return {"layer": layer, "variant": options.variant, "projection": options.projection, "pooling": options.pooling,
            "coords": coords, "clip_ids": [run.clips[i].clip_id for i in idx], "labels": labels,
            "clusters": clusters.tolist(), "n_clusters": k, "ari": ari, "nmi": nmi, "explained_variance": explained}
