"""``probe report MODEL AUDIO --out DIR``: one self-contained HTML report (works offline) of a model on a clip."""

from __future__ import annotations

from ._common import add_audio_arg, add_model_arg, add_overwrite_arg, add_time_args


def add_parser(sub):
    from ..report import SECTIONS

    p = sub.add_parser("report", help="write a self-contained HTML report (figures + audio players) of MODEL on AUDIO",
                       description="Overview, learned filters, embeddings, attribution and activations of MODEL on "
                                   "AUDIO in one HTML file that needs no network (plotly.js and the audio are embedded).")
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for report.html")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--target", default=None, help="attribution target, e.g. 'class=bell,t=3:3.5' or 'source=1' "
                                                  "(default: the example's first event / source 1)")
    p.add_argument("--method", default=None, help="attribution method (default: the pipeline's, ig)")
    p.add_argument("--steps", default=None, help="IG / GradientShap steps, or auto (default auto: completeness ≤ 1 %%)")
    p.add_argument("--layer", default=None, help="layer for the embeddings section (default: the model's own)")
    add_overwrite_arg(p)
    add_time_args(p)
    return p


def run(args) -> dict:
    import time

    from ..errors import SpecError
    from ..pipelines import EmbeddingOptions
    from ..report import write_report
    from ..outputs import check_output_dir
    from ._common import apply_time_args, attribution_options, resolve_model

    t0 = time.perf_counter()
    sections = [s.strip() for s in str(args.sections).split(",") if s.strip()]
    if not sections:
        raise SpecError("--sections is empty; name at least one section")
    options = {"attribution": {"options": attribution_options(args)}}
    if args.layer:
        options["embeddings"] = {"options": EmbeddingOptions(layer=args.layer)}
    check_output_dir(args.out, overwrite=args.overwrite)  # refuse a user's folder before loading the model
    spec = apply_time_args(resolve_model(args.model), args)
    out = write_report(spec, args.audio, args.out, sections=sections, options=options, max_seconds=args.max_seconds,
                       overwrite=args.overwrite)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
