"""Embedding clusters you can see and hear.

Deep-clustering style models map every time-frequency bin to a D-dimensional embedding;
any other layer with a time axis gives one embedding per frame. This module turns those
tensors into *points that remember where they came from* (clip, seconds, Hz, dB), draws
them in 2-D, clusters them in the original space and turns each cluster back into a
time-frequency mask and a waveform you can listen to.

The steps live in three modules — :mod:`~probe.analyze.embedding_points` (clips, points),
:mod:`~probe.analyze.embedding_map` (2-D maps, trustworthiness, umap's cold start) and
:mod:`~probe.analyze.embedding_clusters` (clusters, masks, audio, scores) — and are all
importable from here. The pipeline, one function (or estimator) per step::

    clip   = embeddings_from_model(spec, example)          # or embeddings_from_record / _from_layer
    points = select_points(clip, threshold_db=40, budget=4000)
    emap   = EmbeddingMap("umap").fit(points)              # emap.embedding_, emap.trustworthiness_
    km     = EmbeddingClusters(2).fit(points)              # km.labels_
    audio  = km.separate(clip)                              # (2, n): "listen to a cluster"
    oracle_agreement(km, points)                           # ARI, NMI, mask accuracy vs the IBM
    clusterability(points.X, points.energy_db)             # reference-free separability scores

Two grids meet here. The *embedding grid* is the tensor's own (frequency × time) lattice
(a deep-clustering output has the STFT's; a pooled CNN layer has a coarser one; a frame
embedding has a single "frequency"). The *STFT grid* is the model's :class:`~probe.grid.TFGrid`
applied to the audio: energies and oracle labels are measured there, pooled onto the
embedding grid, and masks are painted back onto it for resynthesis. Every STFT cell maps
to its nearest embedding cell in seconds and Hz, so the two stay aligned whatever the layer's
down-sampling.

UMAP and the cold start
-----------------------
umap-learn compiles its numba kernels on first use: 7–30 s in a fresh process depending
on machine load. Three things keep that off the interactive path:

* :meth:`EmbeddingMap.preview` (PCA, milliseconds) draws a first picture at once;
* :func:`enable_jit_cache` makes umap's kernels cache their machine code on disk (numba's
  ``cache=True``, in ``NUMBA_CACHE_DIR`` or ``~/.cache/probe/numba``), which cuts a later
  process's first fit to about the warm time;
* :func:`warm_up` compiles everything on a few hundred random points (optionally in a
  background thread while the preview is shown).

Independently, neighbours are computed here exactly (blocked matrix products) and handed
to umap as ``precomputed_knn``; umap's own path for fewer than 4096 points calls a Python
distance function for every pair (16 M calls, ~25 s for 4000 points), so this is what makes
the warm path take ~2 s instead.

Threads
-------
The estimators and scores here run their BLAS/OpenMP work on one thread by default
(``n_threads=1``, through threadpoolctl, restored on exit). The matrices are small, and on
a shared, loaded two-core machine spinning OpenBLAS/OpenMP threads made a 4000-point GMM fit
take 26 s instead of 0.7 s and k-means 6 s instead of 0.05 s. ``n_threads=None`` leaves the
pools as configured.
"""

from __future__ import annotations

from .embedding_clusters import (EmbeddingClusters, _clusterability, _cov_type, _resynthesise, cluster_embeddings,
                                 clusterability, colourings, mask_accuracy, oracle_agreement, separate_clusters,
                                 silhouette, write_cluster_audio)
from .embedding_map import (EmbeddingMap, _block_args, _default_cache_root, _exact_knn, _is_unit_norm,
                            _pairwise_block, _pca_2d, _trustworthiness, _umap_2d, _unit_rows, embedding_map,
                            enable_jit_cache, trustworthiness, warm_up)
from .embedding_points import (_TINY, DEFAULT_BUDGET, DEFAULT_THRESHOLD_DB, ClipEmbeddings, EmbeddingPoints, _as_audio,
                               _event_classes, _nearest, _pool, _record_freqs, _threads, _water_fill, _X,
                               clip_embeddings, embeddings_from_layer, embeddings_from_model, embeddings_from_record,
                               output_record, record_freqs, select_points)

__all__ = [
    "ClipEmbeddings", "EmbeddingPoints", "EmbeddingMap", "EmbeddingClusters",
    "clip_embeddings", "embeddings_from_model", "embeddings_from_record", "embeddings_from_layer", "output_record",
    "record_freqs", "select_points", "embedding_map", "trustworthiness", "cluster_embeddings", "separate_clusters",
    "mask_accuracy", "oracle_agreement", "silhouette", "clusterability", "colourings", "write_cluster_audio",
    "enable_jit_cache", "warm_up", "DEFAULT_THRESHOLD_DB", "DEFAULT_BUDGET",
]
