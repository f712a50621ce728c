"""``probe embed MODEL AUDIO``: map a layer's embeddings to 2-D, cluster them, listen to the clusters.

Examples::

    probe embed zoo:dc_blstm example:dc_blstm:3 --json
    probe embed spec.toml clip.wav --layer rnn --projection pca --clusters 3 --audio-out out/wav --out out/fig
"""

from __future__ import annotations

import time
from pathlib import Path

from ._common import add_audio_arg, add_model_arg, resolve_audio, resolve_model


def add_parser(sub):
    p = sub.add_parser("embed", help="2-D map, clusters and per-cluster audio of a layer's embeddings",
                       description="Take per-T-F embeddings (a tf_embeddings output) or any layer with a time axis, "
                                   "drop silent bins, draw an energy-stratified sample, project it to 2-D (PCA or UMAP, "
                                   "with trustworthiness), cluster in the original space and score the clusters.")
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--layer", default=None,
                   help="module path to capture (default: the model's tf_embeddings output)")
    p.add_argument("--projection", choices=["pca", "umap"], default="umap", help="2-D projection (default umap)")
    p.add_argument("--budget", type=int, default=4000, help="most points to draw (default 4000)")
    p.add_argument("--threshold-db", type=float, default=40.0,
                   help="drop bins further than this below the loudest (default 40; 0 keeps all)")
    p.add_argument("--clusters", type=int, default=2, help="k of the clustering (default 2)")
    p.add_argument("--method", choices=["kmeans", "gmm"], default="kmeans", help="clustering (default kmeans)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, projection and clustering")
    p.add_argument("--audio-out", default=None, help="write one wav per cluster here (masked mixture)")
    p.add_argument("--out", default=None, help="write figures and points.csv here")
    p.add_argument("--format", choices=["html", "png"], default="html", help="figure format in --out (default html)")
    p.add_argument("--color", default=None, help="colouring of the map figure (default: source if known, else cluster)")
    p.add_argument("--cache-dir", default=None, help="also cache maps on disk here")
    p.add_argument("--no-jit-cache", action="store_true", help="do not cache umap's compiled code on disk")
    return p


def run(args) -> dict:
    import numpy as np

    from ..analyze.embeddings import (EmbeddingClusters, EmbeddingMap, clusterability, embeddings_from_layer,
                                      enable_jit_cache, oracle_agreement, select_points)
    from ..errors import AnalysisError

    t_start = time.perf_counter()
    if args.budget < 1:
        raise AnalysisError(f"--budget must be positive, given {args.budget}")
    if args.clusters < 1:
        raise AnalysisError(f"--clusters must be positive, given {args.clusters}")
    spec = resolve_model(args.model)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    clip = embeddings_from_layer(spec, ex, args.layer)
    points = select_points(clip, threshold_db=args.threshold_db or None, budget=args.budget, seed=args.seed)
    if len(points) < max(4 * args.clusters, 8):
        raise AnalysisError(f"only {len(points)} non-silent points; lower --threshold-db or use longer audio")
    if args.projection == "umap" and not args.no_jit_cache:
        enable_jit_cache()
    emap = EmbeddingMap(args.projection, random_state=args.seed, cache_dir=args.cache_dir).fit(points)
    clusters = EmbeddingClusters(args.clusters, method=args.method, random_state=args.seed).fit(points)
    result = {"model": spec.name, "layer": args.layer or "tf_embeddings", "audio": ex.name, "kind": points.kind,
              "dim": int(points.X.shape[1]), "grid": list(clip.shape), "n_points": len(points),
              "projection": args.projection, "metric": emap.metric_, "seconds": round(emap.seconds_, 3),
              "trustworthiness": round(float(emap.trustworthiness_), 4), "clusters": int(args.clusters),
              "method": args.method,
              "cluster_sizes": np.bincount(clusters.labels_, minlength=args.clusters).tolist()}
    if points.source is not None:
        agree = oracle_agreement(clusters, points)
        result["oracle"] = {k: round(float(agree[k]), 4) for k in ("ari", "nmi", "mask_accuracy")}
    try:
        score = clusterability(points, n_clusters=max(2, args.clusters), random_state=args.seed)
        result["clusterability"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in score.items()}
    except AnalysisError as exc:
        result["clusterability"] = {"error": str(exc)}
    if args.audio_out:
        result["audio_files"] = clusters.write_audio(clip, args.audio_out)
    if args.out:
        result["figures"] = _write_outputs(args, points, emap, clusters, clip)
    result["total_seconds"] = round(time.perf_counter() - t_start, 3)
    return result


def _write_outputs(args, points, emap, clusters, clip) -> list:
    import numpy as np

    from ..figures.embeddings import cluster_mask_figure, embedding_scatter

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    colour = args.color or ("source" if points.source is not None else "cluster")
    figs = {f"map_{colour}": embedding_scatter(points, emap.embedding_, color=colour, clusters=clusters)}
    if colour != "cluster":
        figs["map_cluster"] = embedding_scatter(points, emap.embedding_, color="cluster", clusters=clusters)
    masks = clusters.masks(clip)
    for j in range(masks.shape[0]):
        figs[f"mask_cluster{j}"] = cluster_mask_figure(clip, masks, cluster=j)
    written = []
    for name, fig in figs.items():
        path = out / f"{name}.{args.format}"
        if args.format == "png":
            fig.write_image(str(path))
        else:
            fig.write_html(str(path), include_plotlyjs="directory")  # offline: one plotly.min.js beside them
        written.append(str(path))
    table = np.column_stack([points.clip, points.time, points.freq, points.energy_db, emap.embedding_,
                             clusters.labels_, points.source if points.source is not None else np.full(len(points), -1)])
    csv = out / "points.csv"
    np.savetxt(csv, table, delimiter=",", fmt=["%d", "%.4f", "%.1f", "%.2f", "%.5f", "%.5f", "%d", "%d"],
               header="clip,time_s,freq_hz,energy_db,x,y,cluster,source", comments="")
    written.append(str(csv))
    return written
