"""``probe capture MODEL AUDIO --layers PATTERN --out DIR``: record activations to a run directory."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from ._common import add_audio_arg, add_model_arg, add_time_args, apply_time_args, resolve_audio, resolve_model


def add_parser(sub):
    p = sub.add_parser("capture", help="capture layer activations with time axes to a run directory",
                       description="Run MODEL on AUDIO and save the selected layers' outputs (safetensors + manifest).")
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--layers", default="*", help="glob, exact name, 're:REGEX' or comma-separated list (default: all)")
    p.add_argument("--out", default=None, help="run directory (default runs/capture-TIMESTAMP)")
    p.add_argument("--reduce", choices=["mean", "max"], default=None, help="reduce each record over time")
    p.add_argument("--every", type=int, default=None, help="keep every k-th time step")
    p.add_argument("--max-steps", type=int, default=None, help="keep at most N time steps per record")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="process long audio in chunks of this length (default: chunks of 60 s above 60 s)")
    p.add_argument("--float16", action="store_true", help="store records as float16")
    p.add_argument("--progress", action="store_true", help="progress bar over the chunks of long audio")
    add_time_args(p)
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that is not a probe output (only probe's own file names are replaced)")
    return p


def run(args) -> dict:
    from ..pipelines import CaptureOptions, record_activations

    t0 = time.perf_counter()
    spec = apply_time_args(resolve_model(args.model), args)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    layers = tuple(args.layers.split(",")) if "," in args.layers else args.layers
    options = CaptureOptions(layers=layers, reduce=args.reduce, every=args.every, max_steps=args.max_steps,
                             chunk_seconds=args.chunk_seconds, float16=args.float16)
    out = Path(args.out or f"runs/capture-{datetime.now():%Y%m%d-%H%M%S}")
    run = record_activations(spec, ex, out, options, model_id=args.model, audio_source=args.audio,
                             overwrite=args.overwrite, progress=args.progress)
    return {**run.to_json(), "seconds": round(time.perf_counter() - t0, 3)}
