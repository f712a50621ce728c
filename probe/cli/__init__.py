"""``probe`` command line: one subcommand per module in this package, each printing one JSON object with ``--json``.

Every subcommand module exposes ``add_parser(subparsers)`` and ``run(args) -> dict``.
User errors (:class:`~probe.errors.ProbeError`) end with exit code 2 and a one-line
message; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

SUBCOMMANDS = ("doctor", "inspect", "capture", "filters", "nmf", "embed", "attribute", "corpus", "zoo", "bench", "report", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probe", description="See what audio neural networks have learned.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"probe.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"probe.cli.{name}":
                continue  # subcommand not shipped in this build
            raise
        p = module.add_parser(sub)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.set_defaults(_run=module.run)
    return parser


def _print_human(result: dict) -> None:
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value, default=str)
            value = text if len(text) < 200 else text[:197] + "..."
        print(f"{key}: {value}")


def main(argv=None) -> int:
    from ..errors import ProbeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        result = args._run(args)
    except ProbeError as exc:
        if args.debug:
            raise
        print(f"probe {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the user's model raising in its forward is a user error; probe's bugs keep tracebacks
        from ..diagnostics import model_error_from

        err = model_error_from(exc)
        if err is None or args.debug:
            raise
        print(f"probe {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    if result is None:
        return 0
    try:
        if args.json:
            print(json.dumps(result, default=_json_default))
        else:
            _print_human(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `probe … --json | head`: the reader left; the work is done, say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would raise again
        return 0
    return 0


def _one_line(exc) -> str:
    """An error message on one line (libraries' messages may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
