"""``probe corpus run|dissect|probe|map``: whole-corpus analyses of a model.

Examples::

    probe corpus run zoo:crnn_sed clips/ --layers conv.2 conv.6 gru --out runs/crnn --json
    probe corpus run zoo:crnn_sed manifest.csv --layers gru --out runs/crnn --engine ray --workers 4
    probe corpus dissect runs/crnn --json
    probe corpus probe runs/crnn --label label --plot runs/crnn/probe.png
    probe corpus map runs/crnn --layer gru --plot runs/crnn/map.html
    probe corpus report runs/crnn --out runs/crnn-report
"""

from __future__ import annotations

import argparse
from pathlib import Path



def _layer_list(values) -> tuple:
    """``--layers a b`` and ``--layers a,b`` (as ``probe capture`` takes them) both name layers a and b.

    Examples
    --------
    >>> _layer_list(["conv.2,conv.6", "gru"]), _layer_list(None)
    (('conv.2', 'conv.6', 'gru'), ())
    """
    return tuple(p.strip() for v in (values or ()) for p in str(v).split(",") if p.strip())

def _common(p):
    # also accepted after the sub-subcommand (argparse hands the rest of the line to it)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object on stdout")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def add_parser(sub):
    from ..corpus.dissection import DissectOptions
    from ..corpus.maps import MapOptions
    from ..corpus.probing import ProbeOptions
    from ..corpus.worker import RunOptions

    ro, do, po, mo = RunOptions(), DissectOptions(), ProbeOptions(), MapOptions()
    p = sub.add_parser("corpus", help="whole-corpus analyses: run, dissect units, probe layers, map clips",
                       description="One pass of a model over a corpus (folder or CSV/JSONL manifest) into a resumable "
                                   "Parquet run, then unit dissection, layer probes and a corpus map.")
    cs = p.add_subparsers(dest="corpus_command", metavar="{run,dissect,probe,map,report}")
    cs.required = True

    r = cs.add_parser("run", help="run a model over a corpus into a Parquet run folder (resumable)")
    r.add_argument("model", metavar="MODEL", help="zoo:NAME or a path to a model spec .toml")
    r.add_argument("corpus", metavar="CORPUS", help="a folder of audio files, or a .csv/.jsonl manifest")
    r.add_argument("--layers", nargs="+", required=True, help="module paths or globs to analyse (space or comma separated)")
    r.add_argument("--out", required=True, help="run folder (created, or resumed if it holds the same run)")
    r.add_argument("--engine", choices=["inprocess", "ray"], default=ro.engine, help=f"default {ro.engine}")
    r.add_argument("--workers", type=int, default=ro.workers, help="Ray workers (Ray Data tasks at a time), one CPU each")
    r.add_argument("--ray-address", default=ro.ray_address, help="join this Ray cluster instead of a local Ray")
    r.add_argument("--batch-size", type=int, default=ro.batch_size, help=f"clips per batch (default {ro.batch_size})")
    r.add_argument("--frames-per-clip", default=str(ro.frames_per_clip),
                   help=f"sampled steps kept per clip and layer, or 'all' (default {ro.frames_per_clip})")
    r.add_argument("--concepts", default=",".join(ro.concepts),
                   help="comma-separated acoustic concepts, or 'none' (default: all)")
    r.add_argument("--no-random-init", action="store_true", help="skip the random-init control model")
    r.add_argument("--seed", type=int, default=ro.seed)
    r.add_argument("--top-k", type=int, default=ro.top_k, help="top excerpts kept per unit")
    r.add_argument("--min-seconds", type=float, default=ro.min_seconds, help="shorter clips are skipped as bad")
    r.add_argument("--max-seconds", type=float, default=ro.max_seconds, help="longer clips are skipped as bad")
    r.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _common(r)

    d = cs.add_parser("dissect", help="label units by the concept they follow, against shifted-time and random-init nulls")
    d.add_argument("run", metavar="RUN", help="a run folder from `probe corpus run`")
    d.add_argument("--layers", nargs="+", default=None, help="layers to dissect (default: all)")
    d.add_argument("--permutations", type=int, default=do.permutations, help=f"default {do.permutations}")
    d.add_argument("--fdr", type=float, default=do.fdr, help=f"false discovery rate (default {do.fdr})")
    d.add_argument("--no-random-init", action="store_true", help="do not require beating the random-init model")
    d.add_argument("--excerpts", type=int, default=do.excerpts, help="wav excerpts per labelled unit (0: none)")
    d.add_argument("--excerpt-seconds", type=float, default=do.excerpt_seconds)
    d.add_argument("--seed", type=int, default=do.seed)
    d.add_argument("--out", default=None, help="output folder (default RUN/dissect)")
    d.add_argument("--force", action="store_true", help="replace an existing output folder")
    _common(d)

    q = cs.add_parser("probe", help="layer-wise linear probes with control task and random-init baselines")
    q.add_argument("run", metavar="RUN")
    q.add_argument("--label", default=po.label, help="'label' (clip label), 'event' (frame event class) or a concept")
    q.add_argument("--layers", nargs="+", default=None)
    q.add_argument("--folds", type=int, default=po.folds)
    q.add_argument("--pooling", choices=["mean", "max"], default=po.pooling)
    q.add_argument("--no-control", action="store_true")
    q.add_argument("--control-repeats", type=int, default=po.control_repeats, help="control-task draws averaged")
    q.add_argument("--no-random-init", action="store_true")
    q.add_argument("--seed", type=int, default=po.seed)
    q.add_argument("--plot", default=None, help="write the score-per-layer figure (.png or .html)")
    _common(q)

    m = cs.add_parser("map", help="2-D map of the clips' pooled features, clusters scored against labels")
    m.add_argument("run", metavar="RUN")
    m.add_argument("--layer", default=mo.layer, help="default: the run's last layer")
    m.add_argument("--variant", choices=["trained", "random"], default=mo.variant)
    m.add_argument("--pooling", choices=["mean", "max"], default=mo.pooling)
    m.add_argument("--projection", choices=["pca", "umap"], default=mo.projection)
    m.add_argument("--clusters", type=int, default=mo.n_clusters, help="default: number of labels")
    m.add_argument("--seed", type=int, default=mo.seed)
    m.add_argument("--plot", default=None, help="write the map figure (.png or .html)")
    _common(m)

    o = cs.add_parser("report", help="offline HTML report of a run: unit table, dissection, probe plot, map")
    o.add_argument("run", metavar="RUN")
    o.add_argument("--out", required=True, help="output folder (index.html, figures, a local plotly.min.js)")
    o.add_argument("--label", default=None, help="probe target (default: clip label, else event, else a concept)")
    o.add_argument("--layer", default=None, help="map layer (default: the run's last layer)")
    o.add_argument("--excerpts", type=int, default=3, help="audio excerpts per labelled unit")
    o.add_argument("--permutations", type=int, default=do.permutations,
                   help=f"dissection permutations when RUN/dissect is absent (default {do.permutations})")
    o.add_argument("--overwrite", action="store_true", help="allow a non-empty folder that is not a probe output")
    _common(o)
    return p


def _write_figure(fig, path) -> str:
    from ..corpus.inputs import CorpusError

    path = Path(path)
    if path.suffix not in (".png", ".html"):
        raise CorpusError(f"--plot must end in .png or .html, given {path}")
    if path.exists():
        raise CorpusError(f"{path} exists; choose another --plot path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    if path.suffix == ".png":
        fig.write_image(str(tmp))
    else:
        fig.write_html(str(tmp), include_plotlyjs=True)  # self-contained: no network
    tmp.replace(path)
    return str(path)


def run(args) -> dict:
    from ..corpus.inputs import CorpusError
    from ..pipelines import corpus as pl

    cmd = args.corpus_command
    if cmd == "run":
        fpc = args.frames_per_clip
        if str(fpc).lower() in ("all", "none"):
            fpc = None
        else:
            try:
                fpc = int(fpc)
            except ValueError:
                raise CorpusError(f"--frames-per-clip must be an integer or 'all', given {fpc!r}") from None
        concepts = () if args.concepts.strip().lower() in ("", "none") else \
            tuple(c.strip() for c in args.concepts.split(",") if c.strip())
        opts = pl.RunOptions(layers=_layer_list(args.layers), frames_per_clip=fpc, concepts=concepts,
                             random_init=not args.no_random_init, seed=args.seed, batch_size=args.batch_size,
                             min_seconds=args.min_seconds, max_seconds=args.max_seconds, top_k=args.top_k,
                             engine=args.engine, workers=args.workers, ray_address=args.ray_address)
        from ..corpus.concepts import DEFAULT_CONCEPTS

        bad = [c for c in concepts if c not in DEFAULT_CONCEPTS]
        if bad:
            raise CorpusError(f"unknown concepts {bad}; known: {', '.join(DEFAULT_CONCEPTS)}")
        return pl.corpus_run(args.model, args.corpus, args.out, options=opts, progress=not args.no_progress).to_json()
    if cmd == "dissect":
        opts = pl.DissectOptions(layers=_layer_list(args.layers), permutations=args.permutations, fdr=args.fdr,
                                 random_init=not args.no_random_init, seed=args.seed, excerpts=args.excerpts,
                                 excerpt_seconds=args.excerpt_seconds)
        return pl.corpus_dissect(args.run, options=opts, out=args.out, force=args.force).to_json()
    if cmd == "probe":
        opts = pl.ProbeOptions(label=args.label, layers=_layer_list(args.layers), folds=args.folds,
                               pooling=args.pooling, control=not args.no_control,
                               control_repeats=args.control_repeats,
                               random_init=not args.no_random_init, seed=args.seed)
        res = pl.corpus_probe(args.run, options=opts)
        out = res.to_json()
        if args.plot:
            out["figure"] = _write_figure(res.figure(), args.plot)
        return out
    if cmd == "report":
        from ..report import write_corpus_report

        return write_corpus_report(args.run, args.out, label=args.label, layer=args.layer, excerpts=args.excerpts,
                                   dissect_options=pl.DissectOptions(permutations=args.permutations),
                                   overwrite=args.overwrite)
    opts = pl.MapOptions(layer=args.layer, variant=args.variant, pooling=args.pooling, projection=args.projection,
                         n_clusters=args.clusters, seed=args.seed)
    res = pl.corpus_map(args.run, options=opts)
    out = res.to_json()
    if args.plot:
        out["figure"] = _write_figure(res.figure(), args.plot)
    return out
