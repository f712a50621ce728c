"""``probe bench``: measured speed ratios (capture overhead, embedding maps, attribution)."""

from __future__ import annotations


def add_parser(sub):
    from ..benchmarks import SECTIONS

    p = sub.add_parser("bench", help="run the benchmarks and print ratios measured side by side")
    p.add_argument("--quick", action="store_true", help="fewer repeats / shorter audio")
    p.add_argument("--only", default=None, help=f"comma-separated sections: {','.join(SECTIONS)}")
    return p


def run(args) -> dict:
    from ..benchmarks import SECTIONS, run_all

    include = tuple(s.strip() for s in args.only.split(",") if s.strip()) if args.only else SECTIONS
    return run_all(quick=args.quick, include=include)
