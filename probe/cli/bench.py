"""``probe bench``: measured speed ratios (capture overhead, embedding maps, attribution)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("bench", help="run the benchmarks and print ratios measured side by side")
    p.add_argument("--quick", action="store_true", help="fewer repeats / shorter audio")
    p.add_argument("--only", default=None, help="comma-separated sections: capture,embeddings,attribution")
    return p


def run(args) -> dict:
    import sys
    from pathlib import Path

    from ..bench import run_all

    # the benchmark scripts live in the source tree under tests/benchmarks
    root = Path(__file__).resolve().parents[2]
    if (root / "tests" / "benchmarks").is_dir() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    include = tuple(args.only.split(",")) if args.only else ("capture", "embeddings", "attribution")
    return run_all(quick=args.quick, include=include)
