"""``probe embed MODEL AUDIO``: map a layer's embeddings to 2-D, cluster them, listen to the clusters.

Examples::

    probe embed zoo:dc_blstm example:dc_blstm:3 --json
    probe embed spec.toml clip.wav --layer rnn --projection pca --clusters 3 --audio-out out/wav --out out/fig
"""

from __future__ import annotations

import time
from pathlib import Path

from ._common import (add_audio_arg, add_model_arg, add_overwrite_arg, add_time_args, apply_time_args, check_out,
                      resolve_audio, resolve_model, write_into)


def add_parser(sub):
    from ..pipelines import EmbeddingOptions

    p = sub.add_parser("embed", help="2-D map, clusters and per-cluster audio of a layer's embeddings",
                       description="Take per-T-F embeddings (a tf_embeddings output) or any layer with a time axis, "
                                   "drop silent bins, draw an energy-stratified sample, project it to 2-D (PCA or UMAP, "
                                   "with trustworthiness), cluster in the original space and score the clusters.")
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--layer", default=None,
                   help="module path to capture, or 'output' (default: a deep-clustering model's tf_embeddings "
                        "output, else the last time-resolved layer before the head, as the app and report start)")
    d = EmbeddingOptions()
    p.add_argument("--projection", choices=["pca", "umap"], default=None, help=f"2-D projection (default {d.projection})")
    p.add_argument("--budget", type=int, default=None, help=f"most points to draw (default {d.budget})")
    p.add_argument("--threshold-db", type=float, default=None,
                   help=f"drop bins further than this below the loudest (default {d.threshold_db:g}; 0 keeps all)")
    p.add_argument("--clusters", type=int, default=None, help="k of the clustering (default: the model's sources, else 2)")
    p.add_argument("--method", choices=["kmeans", "gmm"], default=None, help=f"clustering (default {d.method})")
    p.add_argument("--seed", type=int, default=None, help=f"seed of the sample, projection and clustering (default {d.seed})")
    p.add_argument("--audio-out", default=None, help="write one wav per cluster here (masked mixture)")
    p.add_argument("--out", default=None, help="write figures and points.csv here")
    p.add_argument("--format", choices=["html", "png"], default="html", help="figure format in --out (default html)")
    add_overwrite_arg(p)
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="your labels (CSV/JSON of start,end,label, or file,label for a folder): colour the map by them "
                        "and score the clusters (ARI, NMI, purity)")
    p.add_argument("--color", default=None,
                   help="colouring of the map figure (default: your labels if given, else source if known, else cluster)")
    p.add_argument("--cache-dir", default=None, help="also cache maps on disk here")
    p.add_argument("--no-jit-cache", action="store_true", help="do not cache umap's compiled code on disk")
    add_time_args(p)
    return p


def run(args) -> dict:
    from ..errors import AnalysisError
    from ..pipelines import EmbeddingOptions, analyse_embeddings

    t_start = time.perf_counter()
    if args.budget is not None and args.budget < 1:
        raise AnalysisError(f"--budget must be positive, given {args.budget}")
    if args.clusters is not None and args.clusters < 1:
        raise AnalysisError(f"--clusters must be positive, given {args.clusters}")
    given = {"layer": args.layer, "projection": args.projection, "budget": args.budget,
             "threshold_db": args.threshold_db, "n_clusters": args.clusters, "method": args.method, "seed": args.seed,
             "cache_dir": args.cache_dir, "jit_cache": False if args.no_jit_cache else None, "labels": args.labels}
    options = EmbeddingOptions(**{k: v for k, v in given.items() if v is not None})
    check_out(args.out, args)
    check_out(args.audio_out, args)
    spec = apply_time_args(resolve_model(args.model), args)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    res = analyse_embeddings(spec, ex, options)
    result = {"model": spec.name, "audio": ex.name, **res.to_json()}
    if args.audio_out:
        result["audio_files"] = write_into(args.audio_out, lambda d: res.clusters.write_audio(res.clip, d, names=res.cluster_names),
                                           kind="cluster-audio", overwrite=args.overwrite)
    if args.out:
        result["figures"] = write_into(args.out, lambda d: _write_outputs(args, res, d), kind="embed",
                                       overwrite=args.overwrite)
    result["total_seconds"] = round(time.perf_counter() - t_start, 3)
    return result


def _write_outputs(args, res, out) -> list:
    import numpy as np

    from ..figures.embeddings import cluster_mask_figure, embedding_scatter
    from ..figures.export import write_figures

    out = Path(out)
    points, coords, clusters = res.points, res.coords, res.clusters
    colour = args.color or ("class" if args.labels else "source" if points.source is not None else "cluster")
    figs = {f"map_{colour}": embedding_scatter(points, coords, color=colour, clusters=clusters)}
    if colour != "cluster":
        figs["map_cluster"] = embedding_scatter(points, coords, color="cluster", clusters=clusters)
    names = res.cluster_names or []
    for j in range(res.cluster_masks.shape[0]):  # files and titles number clusters from 1, as the JSON does
        figs[f"mask_cluster{j + 1}"] = cluster_mask_figure(res.clip, res.cluster_masks, cluster=j,
                                                           name=names[j] if j < len(names) else None)
    written = write_figures(figs, out, formats=(args.format,))
    table = np.column_stack([points.clip, points.time, points.freq, points.energy_db, coords,
                             np.asarray(clusters.labels_) + 1, points.source if points.source is not None else np.full(len(points), -1)])
    csv = out / "points.csv"
    np.savetxt(csv, table, delimiter=",", fmt=["%d", "%.4f", "%.1f", "%.2f", "%.5f", "%.5f", "%d", "%d"],
               header="clip,time_s,freq_hz,energy_db,x,y,cluster,source", comments="")  # cluster from 1, source from 0
    written.append(str(csv))
    return written
