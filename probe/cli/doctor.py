"""``probe doctor [--json]``: what is installed, what is missing, what it disables, and the command that fixes it.

Exit status 0 when everything the test suite needs is present, 2 (with one line on stderr)
when something is missing; the report is printed either way.
"""

from __future__ import annotations

import json

from ..errors import ProbeError


class SetupIncomplete(ProbeError):
    """Something the test suite needs is not installed (the report names the fix)."""


def add_parser(sub):
    return sub.add_parser("doctor", help="check the installation: data packages, browser, torch, extras",
                          description="List every data source, the browser, torch's build and the optional extras: "
                                      "ok or missing, the path used, what a missing piece disables and the command "
                                      "that fixes it. Exits 2 when something the tests need is missing.")


def run(args) -> None:
    from ..doctor import diagnose, format_report

    report = diagnose()
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    if not report["ok"]:
        raise SetupIncomplete(f"missing: {', '.join(report['missing_needed'])} (fix commands in the report above)")
    return None
