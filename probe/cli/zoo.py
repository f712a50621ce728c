"""``probe zoo list`` / ``probe zoo eval NAME``: the shipped, trained models and their measured quality."""

from __future__ import annotations

import time

from ..errors import SpecError
from ..resolve import zoo_entry


def add_parser(sub):
    p = sub.add_parser("zoo", help="list the model zoo or re-evaluate a shipped checkpoint")
    p.add_argument("action", choices=["list", "eval"])
    p.add_argument("name", nargs="?", help="model name (for eval)")
    p.add_argument("--n", type=int, default=None, help="evaluate on the first N test items only")
    return p


def run(args) -> dict:
    if args.action == "list":
        return {"models": zoo_entry("catalogue")()}
    if not args.name:
        raise SpecError("probe zoo eval needs a model name, e.g. `probe zoo eval crnn_sed`")
    name = args.name.removeprefix("zoo:")
    spec = zoo_entry("models")(name)
    t0 = time.perf_counter()
    result = zoo_entry("evaluate")(name, spec.model, split="test", n=args.n)
    metrics, oracle = result.get("metrics", {}), result.get("oracle", {})
    return {"name": name, "n": args.n, "metrics": metrics, "oracle": oracle,
            "card_metrics": (spec.info.get("card") or {}).get("metrics"), "seconds": round(time.perf_counter() - t0, 2)}
