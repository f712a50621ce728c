"""Command line for the zoo's data sets.

``python -m model_zoo.data build [--kind K ...] [--sr 8000]`` builds (or reads from the cache) every
split and prints item counts, shapes, sizes and times.
``python -m model_zoo.data manifest [--kind K] [--used]`` prints the provenance as JSON.
``python -m model_zoo.data ship`` stores the examples that ship inside the package (model_zoo/data/shipped.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import SPLITS, default_size, noisy_set, separation_set
from ._common import build_dir

_KINDS = ("instruments", "speech", "noisy", "speakers")


def _build(kinds, sr: int) -> dict:
    report = {}
    for kind in kinds:
        for split in SPLITS:
            t0 = time.perf_counter()
            if kind == "noisy":
                items = noisy_set(split, sr=sr)
                arrays = ("noisy", "clean", "noise")
            else:
                items = separation_set(kind, split, sr=sr)
                arrays = ("mixture", "sources")
            dt = time.perf_counter() - t0
            nbytes = sum(it[a].nbytes for it in items for a in arrays)
            shapes = {a: list(items[0][a].shape) for a in arrays}
            extra = ""
            if kind == "noisy":
                frac = sum(it["has_signal"] for it in items) / len(items)
                extra = f"  signal fraction {frac:.2f}"
            print(f"{kind:12s} {split:5s} {len(items):4d}/{default_size(kind, split):4d} items  {shapes}  "
                  f"{nbytes / 2**20:7.1f} MiB in memory  {dt:6.1f} s{extra}", flush=True)
            report[f"{kind}/{split}"] = {"n": len(items), "seconds_to_build": round(dt, 2), "mib": round(nbytes / 2**20, 1)}
    disk = sum(p.stat().st_size for p in build_dir().rglob("*") if p.is_file())
    print(f"cache {build_dir()}: {disk / 2**20:.1f} MiB on disk")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_zoo.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build every split (cached) and print sizes")
    b.add_argument("--kind", action="append", choices=_KINDS, help="only this kind (repeatable); default all")
    b.add_argument("--sr", type=int, default=8000)
    m = sub.add_parser("manifest", help="print sources, licences, splits and seeds as JSON")
    m.add_argument("--kind", action="append", choices=_KINDS, help="only this kind (repeatable); default all")
    m.add_argument("--used", action="store_true", help="also count the sources the default splits use (builds them)")
    sub.add_parser("ship", help="store the shipped examples (model_zoo/data/shipped/) from a fresh build")
    args = parser.parse_args(argv)
    if args.command == "ship":
        from .shipped import FOLDER, ship

        index = ship()
        size = sum(p.stat().st_size for p in FOLDER.iterdir())
        print(json.dumps({"examples": index, "folder": str(FOLDER), "bytes": size}, indent=1))
        return 0
    kinds = args.kind or list(_KINDS)
    if args.command == "build":
        t0 = time.perf_counter()
        _build(kinds, args.sr)
        print(f"total {time.perf_counter() - t0:.1f} s")
    else:
        from .manifest import manifest

        out = {k: manifest(k, used=args.used) for k in kinds}
        json.dump(out if len(kinds) > 1 else out[kinds[0]], sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
