"""``probe attribute MODEL AUDIO --target T --method M``: which T-F regions drive one output, and how faithfully.

Prints the method, target, grid, IG completeness, the deletion test (attribution order vs
random order) and, when the audio is a zoo example with event boxes, how much relevance
falls inside the true box. ``--out DIR`` writes the map (safetensors), figures (HTML, PNG
with ``--png``) and the listenable explanation (``explanation.wav`` + complement).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import AnalysisError

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    from ._common import add_audio_arg, add_model_arg

    p = subparsers.add_parser("attribute", help="attribute a model output to time-frequency regions",
                              description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--target", default=None,
                   help='what to explain: "class=NAME,t=START:END", "source=K[,f=LO:HI][,t=..]" (K from 1), "cluster=K"; '
                        "default: the example's first event / source 1 / the top class")
    p.add_argument("--method", default="ig",
                   help="saliency | ixg | ig | gradshap | deeplift | occlusion | ablation | gradcam (default ig)")
    p.add_argument("--baseline", default="silence", help="silence | noise[:DB] | smooth[:SECONDS] | bandstop:LO:HI")
    p.add_argument("--steps", type=int, default=50, help="IG steps / GradientShap samples (default 50)")
    p.add_argument("--spacing", default="linear",
                   help="IG node spacing along the path: linear | adaptive | db[:D] (default linear, Captum's)")
    p.add_argument("--path", choices=("straight", "geometric"), default="straight",
                   help="IG path: straight in |X| or geometric (straight in log|X|; needs a noise baseline)")
    p.add_argument("--smooth", choices=("smoothgrad", "smoothgrad_sq", "vargrad"), default=None,
                   help="wrap the method in Captum's NoiseTunnel")
    p.add_argument("--layer", default=None, help="GradCAM layer (module path; default the last conv)")
    p.add_argument("--chunk-seconds", type=float, default=None, help="attribute long audio in chunks of this length")
    p.add_argument("--overlap-seconds", type=float, default=2.0, help="chunk overlap (cross-faded), default 2")
    p.add_argument("--top-percent", type=float, default=10.0, help="bins kept in the listenable explanation (default 10)")
    p.add_argument("--no-deletion", action="store_true", help="skip the deletion/insertion test")
    p.add_argument("--random-orders", type=int, default=3, help="random orders averaged in the deletion test (default 3)")
    p.add_argument("--out", metavar="DIR", help="write map (safetensors), figures (HTML) and explanation audio here")
    p.add_argument("--png", action="store_true", help="also write PNG figures (kaleido + Chromium)")
    p.add_argument("--progress", action="store_true", help="progress bar over chunks")
    return p


def _num(v, nd=6):
    if v is None:
        return None
    v = float(v)
    return None if not math.isfinite(v) else round(v, nd)


def _match_event(example, target):
    """The example's event the target explains: same class, overlapping span (first such)."""
    from ..attribution import ClassTarget

    events = getattr(example, "events", None) or []
    if not isinstance(target, ClassTarget):
        return None, None
    for i, ev in enumerate(events):
        if str(ev.get("label")) != str(target.cls):
            continue
        if target.t is None or (ev["onset"] < target.t[1] and ev["offset"] > target.t[0]):
            return i, ev
    return None, None


def run(args) -> dict:
    from ..analyze.faithfulness import deletion_test, localisation
    from ..attribution import SourceTarget, attribute, listen, snr_db
    from ._common import resolve_audio, resolve_model

    t0 = time.perf_counter()
    spec = resolve_model(args.model)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    a = attribute(spec, ex, args.target, method=args.method, baseline=args.baseline,
                  steps=args.steps, spacing=args.spacing, path=args.path, smooth=args.smooth, layer=args.layer,
                  chunk_seconds=args.chunk_seconds,
                  overlap_seconds=args.overlap_seconds, progress=args.progress)
    out: dict = {"method": a.method, "target": str(a.target), "grid": a.grid.to_dict(), "model": spec.name,
                 "audio_seconds": round(len(a.audio) / a.sample_rate, 4), "baseline": a.baseline_name,
                 "completeness_error": _num(a.completeness_error), "convergence_delta": _num(a.convergence_delta),
                 "target_value": _num(a.target_value), "baseline_value": _num(a.baseline_value)}
    if a.reconstruction_error_db is not None:
        out["reconstruction_error_db"] = _num(a.reconstruction_error_db, 2)
    if "chunks_n" in a.info:
        out["chunks"] = a.info["chunks_n"]
    if a.info.get("warnings"):
        out["warnings"] = a.info["warnings"]
    dele = None
    if not args.no_deletion:
        if "chunks_n" in a.info:
            out["deletion"] = None
            out.setdefault("notes", []).append("deletion test skipped for chunked (long) audio")
        else:
            dele = deletion_test(spec, a, n_random=max(1, args.random_orders))
            out["deletion"] = {k: _num(dele[k]) for k in ("auc", "auc_random", "drop_at_10", "drop_at_10_random",
                                                          "drop_ratio", "insertion_auc", "insertion_auc_random")}
    # ground truth from an example: the event box for localisation, the stem for the explanation audio
    idx, event = _match_event(ex, a.target)
    stem = None
    if event is not None:
        loc = localisation(a, event)
        out["localisation"] = {"relevance_mass": _num(loc["relevance_mass"]), "pointing_game": loc["pointing_game"],
                               "rank_accuracy": _num(loc["rank_accuracy"]), "box_fraction": _num(loc["box_fraction"]),
                               "box": {k: event.get(k) for k in ("label", "onset", "offset", "fmin", "fmax")}}
        if getattr(ex, "event_stems", None) is not None and idx < len(ex.event_stems):
            stem = np.asarray(ex.event_stems[idx])
    elif isinstance(a.target, SourceTarget) and getattr(ex, "sources", None) is not None \
            and a.target.index < len(ex.sources):
        stem = np.asarray(ex.sources[a.target.index])
    expl = None
    if stem is not None or args.out:
        expl, comp = listen(a, top_percent=args.top_percent)
        if stem is not None:
            out["explanation"] = {"top_percent": args.top_percent, "snr_db_vs_true_stem": _num(snr_db(expl, stem), 3)}
    if args.out:
        out["outputs"] = _write_outputs(Path(args.out), a, dele, ex, event, expl, comp, args)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _write_outputs(d: Path, a, dele, ex, event, expl, comp, args) -> dict:
    import soundfile as sf

    from ..figures.attribution import attribution_figure, deletion_figure, target_track_figure

    d.mkdir(parents=True, exist_ok=True)
    files = {"map": str(d / "attribution.safetensors")}
    a.save(d / "attribution.safetensors")
    peak = max(1.0, float(np.abs(expl).max(initial=0)), float(np.abs(comp).max(initial=0)))
    sf.write(str(d / "explanation.wav"), expl / peak, a.sample_rate, subtype="FLOAT")
    sf.write(str(d / "explanation_complement.wav"), comp / peak, a.sample_rate, subtype="FLOAT")
    files.update(explanation=str(d / "explanation.wav"), complement=str(d / "explanation_complement.wav"))
    boxes = [event] if event is not None else None
    figs = {"attribution": attribution_figure(a, boxes=boxes)}
    if a.grid.n_mels:
        figs["attribution_mel"] = attribution_figure(a, boxes=boxes, mel=True)
    if a.track is not None:
        figs["target_track"] = target_track_figure(a)
    if dele is not None:
        figs["deletion"] = deletion_figure(dele)
    for name, fig in figs.items():
        fig.write_html(str(d / f"{name}.html"), include_plotlyjs="cdn")
        files[f"{name}_html"] = str(d / f"{name}.html")
        if args.png:
            try:
                fig.write_image(str(d / f"{name}.png"))
            except Exception as exc:  # kaleido/Chromium missing: keep the HTML, say why
                raise AnalysisError(f"cannot write PNG figures ({type(exc).__name__}: {exc}); "
                                    "install kaleido and set BROWSER_PATH to Chromium, or drop --png") from None
            files[f"{name}_png"] = str(d / f"{name}.png")
    return files
