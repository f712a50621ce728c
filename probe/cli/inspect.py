"""``probe inspect MODEL``: what probe inferred for a model — input, grid, every layer's axes, seconds and offset.

For every layer: output shape, axis names, seconds per time step (exact fraction), the
centre of step 0 in seconds, whether these were inferred or given, and whether the layer
is a filter bank and why. Wrong values are corrected in the spec (``[time]``) or with
``--seconds-per-step`` / ``--time-offset``.
"""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    from ._common import add_model_arg, add_time_args

    p = subparsers.add_parser("inspect", help="show inferred axes, seconds per step, offsets and filter banks",
                              description=" ".join(__doc__.split("\n\n")[0].split()).split(": ", 1)[-1])
    add_model_arg(p)
    add_time_args(p)
    p.add_argument("--no-banks", action="store_true", help="skip filter-bank discovery")
    return p


def _fmt_time(entry) -> tuple[str, str]:
    sps, off = entry.get("seconds_per_step"), entry.get("time_offset")
    if sps is None:
        return "-", "-"
    exact = entry.get("seconds_per_step_exact")
    s = f"{sps * 1000:.6g} ms" + (f" ({exact} s)" if exact and "/" in exact else "")
    o = "-" if off is None else f"{off:.6g} s"
    return s, o


def run(args) -> dict | None:
    from ..pipelines.inspect import InspectOptions, inspect_model
    from ._common import apply_time_args, resolve_model

    spec = apply_time_args(resolve_model(args.model), args)
    res = inspect_model(spec, InspectOptions(banks=not args.no_banks))
    out = res.to_json()
    if args.json:
        return out
    i = out["input"]
    print(f"model: {out['model']}")
    grid = ", ".join(f"{k}={i[k]}" for k in ("sample_rate", "n_fft", "hop_length", "center", "n_mels") if i.get(k) is not None)
    print(f"input: {i['kind']} (layout {i['layout'] or 'canonical'}), {grid}; shortest accepted input {i['min_seconds']} s; "
          f"shapes for {i['shapes_for_seconds']} s")
    if out["time_overrides"]:
        print(f"time overrides: {out['time_overrides']}")
    rows = [("layer", "type", "shape", "axes", "s/step", "offset", "source", "bank")]
    for e in out["layers"]:
        if e.get("shape") is None:
            rows.append((e["name"], e["type"] or "", "-", "-", "-", "-", "", "not called"))
            continue
        s, o = _fmt_time(e)
        bank = "" if "filter_bank" not in e else ("yes" if e["filter_bank"] else "no")
        rows.append((e["name"], e["type"] or "", "x".join(map(str, e["shape"])), ",".join(e["axes"]), s, o,
                     e.get("time_source") or "", bank))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    whys = [(e["module"], e["filter_bank"], e["filter_bank_why"]) for e in out["layers"]
            if e.get("filter_bank_why") and e.get("filter_bank") is not None
            and not e["filter_bank_why"].startswith("no parameters")]
    if whys:
        print("filter banks:")
        for name, yes, why in whys:
            print(f"  {name}: {'yes' if yes else 'no'} — {why}")
    for w in out["warnings"]:
        print(f"warning: {w}")
    return None
