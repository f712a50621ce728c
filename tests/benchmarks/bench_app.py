"""The app's page times as a markdown table (README's app section).

``python -m tests.benchmarks.bench_app`` runs ``probe bench --only app`` (every trained zoo
model, cold / warm / restart; see :mod:`apps.bench`) and prints the table; ``--from FILE``
formats a saved ``probe bench --only app --json`` result instead, ``--models a,b`` narrows it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps.bench import GOAL_FIRST, GOAL_WARM, table  # noqa: E402


def verdicts(result: dict) -> str:
    """The issue's goals, met or not, from the result's summary."""
    s = result["app_summary"]
    return "\n".join([
        f"- first page after a restart (warm-up done; disk cache) ≤ {GOAL_FIRST:g} s: worst Overview "
        f"{s['worst_first_page_s']} s — {'met' if s['first_page_goal_met'] else 'NOT met'}; every page after a restart: "
        f"worst {s['worst_restart_s']} s — {'met' if s['every_restart_page_within_first_goal'] else 'NOT met'}",
        f"- warm page ≤ {GOAL_WARM:g} s: worst {s['worst_warm_s']} s — {'met' if s['warm_goal_met'] else 'NOT met'}",
        f"- cold (empty cache, no warm-up): worst {s['worst_cold_s']} s",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", default=None, help="a saved `probe bench --only app --json` result")
    ap.add_argument("--models", default=None)
    a = ap.parse_args(argv)
    if a.src:
        res = json.loads(Path(a.src).read_text())
    else:
        from probe.benchmarks.app import bench

        res = bench(models=[m for m in (a.models or "").split(",") if m] or None)
    print(table(res))
    print()
    print(verdicts(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
