"""``probe attribute MODEL AUDIO --target T --method M``: which T-F regions drive one output, and how faithfully.

Prints the method, target, grid, IG completeness, the deletion test (attribution order vs
random order) and, when the audio is a zoo example with event boxes, how much relevance
falls inside the true box. ``--out DIR`` writes the map (safetensors), figures (HTML, PNG
with ``--png``) and the listenable explanation (``explanation.wav`` + complement).
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    from ._common import add_audio_arg, add_model_arg, add_overwrite_arg, add_time_args

    p = subparsers.add_parser("attribute", help="attribute a model output to time-frequency regions",
                              description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--target", default=None,
                   help='what to explain: "class=NAME,t=START:END", "source=K[,f=LO:HI][,t=..]" (K from 1), "cluster=K" '
                        "(K from 1, as probe embed numbers them: the magnitude the cluster's mask assigns; add "
                        '",of=similarity" for the cosine to its centroid); "feature=norm|K[,t=..]" (an encoder\'s '
                        "features: the norm of its vectors, or unit K from 0); "
                        "default: the example's first event / source 1 / cluster 1 (the louder) / the top class / "
                        "the feature unit that varies most")
    p.add_argument("--method", default=None,
                   help="saliency | ixg | ig | gradshap | deeplift | occlusion | ablation | gradcam (default ig)")
    p.add_argument("--baseline", default=None, help="silence | noise[:DB] | smooth[:SECONDS] | bandstop:LO:HI")
    p.add_argument("--steps", default=None,
                   help="IG steps / GradientShap samples, or auto: raised until IG's completeness error is ≤ 1 %% "
                        "(default auto)")
    p.add_argument("--spacing", default=None,
                   help="IG node spacing along the path: linear (Captum's) | adaptive | db[:D] (default adaptive)")
    p.add_argument("--path", choices=("straight", "geometric"), default=None,
                   help="IG path: straight in |X| or geometric (straight in log|X|; needs a noise baseline)")
    p.add_argument("--smooth", choices=("smoothgrad", "smoothgrad_sq", "vargrad"), default=None,
                   help="wrap the method in Captum's NoiseTunnel")
    p.add_argument("--layer", default=None, help="GradCAM layer (module path; default the last conv)")
    p.add_argument("--chunk-seconds", type=float, default=None, help="attribute long audio in chunks of this length")
    p.add_argument("--overlap-seconds", type=float, default=None, help="chunk overlap (cross-faded), default 2")
    p.add_argument("--top-percent", type=float, default=None, help="bins kept in the listenable explanation (default 10)")
    p.add_argument("--no-deletion", action="store_true", help="skip the deletion/insertion test")
    p.add_argument("--random-orders", type=int, default=None, help="random orders averaged in the deletion test (default 3)")
    p.add_argument("--out", metavar="DIR", help="write map (safetensors), figures (HTML) and explanation audio here")
    p.add_argument("--png", action="store_true", help="also write PNG figures (kaleido + Chromium)")
    add_overwrite_arg(p)
    p.add_argument("--progress", action="store_true", help="progress bar over chunks")
    add_time_args(p)
    return p


def run(args) -> dict:
    from ..pipelines import analyse_attribution
    from ._common import apply_time_args, attribution_options, check_out, resolve_audio, resolve_model, write_into

    t0 = time.perf_counter()
    options = attribution_options(args, baseline=args.baseline, spacing=args.spacing, path=args.path, smooth=args.smooth,
                                  layer=args.layer, chunk_seconds=args.chunk_seconds,
                                  overlap_seconds=args.overlap_seconds, top_percent=args.top_percent,
                                  deletion=False if args.no_deletion else None, random_orders=args.random_orders,
                                  progress=args.progress or None)
    check_out(args.out, args)
    spec = apply_time_args(resolve_model(args.model), args)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    res = analyse_attribution(spec, ex, options)
    out = {"model": spec.name, **res.to_json()}
    if not out["warnings"]:
        out.pop("warnings")
    if args.out:
        out["outputs"] = write_into(args.out, lambda d: _write_outputs(d, res, png=args.png), kind="attribution",
                                    overwrite=args.overwrite)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _write_outputs(d: Path, res, *, png: bool) -> dict:
    import soundfile as sf

    from ..figures.attribution import attribution_figure, deletion_figure, target_track_figure
    from ..figures.export import write_figures

    a = res.attribution
    d.mkdir(parents=True, exist_ok=True)
    files = {"map": str(d / "attribution.safetensors")}
    a.save(d / "attribution.safetensors")
    sf.write(str(d / "explanation.wav"), res.explanation, a.sample_rate, subtype="FLOAT")
    sf.write(str(d / "explanation_complement.wav"), res.complement, a.sample_rate, subtype="FLOAT")
    files.update(explanation=str(d / "explanation.wav"), complement=str(d / "explanation_complement.wav"))
    boxes = [res.event] if res.event is not None else None
    figs = {"attribution": attribution_figure(a, boxes=boxes)}
    if a.grid.n_mels:
        figs["attribution_mel"] = attribution_figure(a, boxes=boxes, mel=True)
    if a.track is not None:
        figs["target_track"] = target_track_figure(a)
    if res.deletion is not None and res.deletion.get("auc") is not None:
        figs["deletion"] = deletion_figure(res.deletion)
    for name in figs:
        write_figures({name: figs[name]}, d, formats=("html", "png") if png else ("html",))
        files[f"{name}_html"] = str(d / f"{name}.html")
        if png:
            files[f"{name}_png"] = str(d / f"{name}.png")
    return files
