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


def _with_kinds(entry: dict) -> dict:
    """The catalogue entry with ``input`` / ``output`` kinds and ``sample_rate`` (from the model when the card lacks them)."""
    e = dict(entry)
    if e.get("input") and e.get("output") and e.get("sample_rate"):
        return e
    try:  # the architecture only (no weights): cheap, and the kinds are the spec's own
        spec = zoo_entry("models")(e["name"], checkpoint=False)
        e["input"] = e.get("input") or spec.input_kind
        e["output"] = e.get("output") or spec.output_kind
        e["sample_rate"] = e.get("sample_rate") or int(spec.sample_rate)
    except Exception as exc:  # a zoo entry whose code is not installed: listed, with why
        e.setdefault("output", None)
        e.setdefault("sample_rate", None)
        e["unavailable"] = f"{type(exc).__name__}: {exc}"
    return e


def _headline(metrics: dict) -> str:
    """The first test metric of a card, e.g. ``dc_kmeans si_sdri 14.70``."""
    test = (metrics or {}).get("test") or {}
    for head, vals in test.items():
        if isinstance(vals, dict):
            nums = {k: v for k, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for k in ("si_sdri", "segment_f1", "si_sdr", "sdri", "f1", *nums):  # quality first, then anything
                if k in nums:
                    return f"{head} {k} {nums[k]:.4g}"
        elif isinstance(vals, (int, float)) and not isinstance(vals, bool):
            return f"{head} {vals:.4g}"
    return ""


def table(models: list) -> str:
    """A readable table of the zoo: one row per model."""
    rows = [("name", "task", "input → output", "rate", "params", "trained", "test metric (card)")]
    for e in models:
        rows.append((e["name"], e.get("task") or "", f"{e.get('input') or '?'} → {e.get('output') or '?'}",
                     f"{e['sample_rate'] / 1000:g} kHz" if e.get("sample_rate") else "",
                     f"{e['params']:,}" if isinstance(e.get("params"), int) else "",
                     "yes" if e.get("trained") else "no", _headline(e.get("metrics"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args) -> dict | None:
    if args.action == "list":
        models = [_with_kinds(e) for e in zoo_entry("catalogue")()]
        if not getattr(args, "json", False):
            print(table(models))
            return None
        return {"models": models}
    if not args.name:
        raise SpecError("probe zoo eval needs a model name, e.g. `probe zoo eval crnn_sed`")
    name = args.name.removeprefix("zoo:")
    spec = zoo_entry("models")(name)
    t0 = time.perf_counter()
    result = zoo_entry("evaluate")(name, spec.model, split="test", n=args.n)
    metrics, oracle = result.get("metrics", {}), result.get("oracle", {})
    return {"name": name, "n": args.n, "metrics": metrics, "oracle": oracle,
            "card_metrics": (spec.info.get("card") or {}).get("metrics"), "seconds": round(time.perf_counter() - t0, 2)}
