"""``probe bench``: measured speed ratios (capture overhead, embedding maps, attribution)."""

from __future__ import annotations


def add_parser(sub):
    from ..benchmarks import SECTIONS

    p = sub.add_parser("bench", help="run the benchmarks and print ratios measured side by side")
    p.add_argument("--quick", action="store_true", help="fewer repeats / shorter audio")
    p.add_argument("--only", default=None, help=f"comma-separated sections: {','.join(SECTIONS)} (app: page times of "
                                                "the Streamlit app per zoo model; only when named)")
    return p


def run(args) -> dict:
    from ..benchmarks import DEFAULT, run_all

    include = tuple(s.strip() for s in args.only.split(",") if s.strip()) if args.only else DEFAULT
    return run_all(quick=args.quick, include=include)
