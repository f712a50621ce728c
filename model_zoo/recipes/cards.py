"""Zoo model cards: ``NAME.json`` (what the checkpoint records: config, data, licences, metrics) and a readable ``NAME.md``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["write_card", "render_card_md", "CARD_DIR", "provenance", "data_manifest"]

CARD_DIR = Path(__file__).resolve().parent.parent / "cards"


# ---- model cards -----------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == 0 or 0.01 <= abs(v) < 1e4:
            return f"{v:.2f}"
        return f"{v:.3g}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def _metric_table(rows: dict, *, label: str = "system") -> list[str]:
    """Render ``{row_name: {metric: value}}`` as a markdown table (metrics = union of keys, ordered)."""
    cols: list[str] = []
    for r in rows.values():
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in cols:
                cols.append(k)
    pref = ["si_sdri", "sdri", "si_sdr", "sdr"]
    cols = [c for c in pref if c in cols] + [c for c in cols if c not in pref]
    lines = ["| " + label + " | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        lines.append("| " + str(name) + " | " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return lines


def _is_rows(d) -> bool:
    """``{row: {metric: number}}`` (every value a dict of numbers)."""
    return bool(isinstance(d, dict) and d and all(
        isinstance(v, dict) and v and all(isinstance(x, (int, float)) or x is None for x in v.values())
        for v in d.values()))


def render_card_md(card: dict) -> str:
    """Readable markdown for a card dict (known sections first; unknown keys dumped as JSON at the end)."""
    name = card.get("name", "model")
    out = [f"# {name}", ""]
    if card.get("summary"):
        out += [str(card["summary"]), ""]
    facts = []
    for key, label in (("task", "Task"), ("params", "Parameters"), ("checkpoint", "Checkpoint"),
                       ("checkpoint_bytes", "Checkpoint size (bytes)"), ("input_kind", "Input"),
                       ("output_kind", "Output"), ("grid", "Grid")):
        if key in card:
            facts.append(f"- **{label}:** {_fmt(card[key]) if not isinstance(card[key], dict) else json.dumps(card[key])}")
    if facts:
        out += facts + [""]
    if card.get("architecture"):
        out += ["## Architecture", ""]
        arch = card["architecture"]
        out += ([str(arch)] if not isinstance(arch, (list, dict)) else
                [f"- {a}" for a in arch] if isinstance(arch, list) else [f"- **{k}:** {v}" for k, v in arch.items()])
        out.append("")
    if card.get("config"):
        out += ["Config: `" + json.dumps(card["config"], sort_keys=True) + "`", ""]
    if card.get("data"):
        out += ["## Data", ""]
        data = card["data"]
        if isinstance(data, dict):
            for k, v in data.items():
                if k == "licences" and isinstance(v, (list, dict)):
                    out.append("- **licences:**")
                    items = v.items() if isinstance(v, dict) else enumerate(v)
                    for kk, vv in items:
                        out.append(f"  - {vv}" if isinstance(kk, int) else f"  - {kk}: {vv}")
                else:
                    out.append(f"- **{k}:** {v if not isinstance(v, (dict, list)) else json.dumps(v)}")
        else:
            out.append(str(data))
        out.append("")
    if card.get("training"):
        out += ["## Training", ""]
        for k, v in card["training"].items():
            out.append(f"- **{k}:** {_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)}")
        out.append("")
    metrics = card.get("metrics")
    if metrics:
        out += ["## Metrics", ""]
        if _is_rows(metrics):
            out += _metric_table(metrics) + [""]
        else:
            for split, block in metrics.items():
                if _is_rows(block):
                    out += [f"### {split}", ""] + _metric_table(block) + [""]
                elif isinstance(block, dict):
                    rows = {k: v for k, v in block.items() if isinstance(v, dict)}
                    rest = {k: v for k, v in block.items() if not isinstance(v, dict)}
                    out += [f"### {split}", ""]
                    if rest:
                        out += [f"- {k}: {_fmt(v)}" for k, v in rest.items()] + [""]
                    if _is_rows(rows):
                        out += _metric_table(rows) + [""]
                else:
                    out += [f"- {split}: {_fmt(block)}", ""]
    if card.get("floors"):
        out += ["## Floors", ""]
        for k, v in card["floors"].items():
            out.append(f"- **{k}:** {v if not isinstance(v, dict) else json.dumps(v)}")
        out.append("")
    if card.get("notes"):
        out += ["## Notes", ""]
        notes = card["notes"]
        out += [f"- {n}" for n in notes] if isinstance(notes, list) else [str(notes)]
        out.append("")
    sub = card.get("subset_metrics")
    if isinstance(sub, dict) and _is_rows(sub.get("systems")):
        out += ["## Fixed test subset (re-checked by the tests)", "",
                f"First {sub.get('n_items')} items of the {sub.get('split', 'test')} split; a re-evaluation of the "
                "shipped checkpoint must match within 0.3 dB.", ""]
        out += _metric_table(sub["systems"]) + [""]
    hist = card.get("val_history")
    if isinstance(hist, list) and hist:
        out += ["## Validation history", "", "| step | seconds | mean train loss | val score |", "|---|---|---|---|"]
        for row in hist:
            out.append("| " + " | ".join(_fmt(x) if x is not None else "" for x in list(row)[:4]) + " |")
        out.append("")
    known = {"name", "summary", "task", "params", "checkpoint", "checkpoint_bytes", "input_kind", "output_kind", "grid",
             "architecture", "config", "data", "training", "metrics", "floors", "notes", "subset_metrics",
             "val_history", "earlier_runs"}  # earlier_runs: drawn with the learning curves (sed_common)
    for key, val in card.items():
        if key in known:
            continue
        out += [f"## {key.replace('_', ' ').capitalize()}", ""]
        if isinstance(val, dict):
            for k, v in val.items():
                out.append(f"- **{k}:** {_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v, default=str)}")
        elif isinstance(val, list):
            out += [f"- {v if not isinstance(v, (dict, list)) else json.dumps(v, default=str)}" for v in val]
        else:
            out.append(_fmt(val))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_card(name: str, card: dict, *, out_dir=None) -> tuple[Path, Path]:
    """Write ``NAME.json`` (machine-readable) and ``NAME.md`` (readable) into the cards folder.

    Parameters
    ----------
    name : str
    card : dict
        Free-form but with known sections rendered nicely: ``summary``, ``task``, ``params``,
        ``architecture``, ``config``, ``data`` (with ``licences``), ``training``,
        ``metrics`` (``{split: {system: {metric: value}}}``), ``floors``, ``notes``.
    out_dir : path, optional
        Defaults to ``model_zoo/cards``.

    Returns
    -------
    (json_path, md_path)
    """
    out_dir = Path(out_dir) if out_dir is not None else CARD_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    card = _jsonable({"name": name, **card})
    jp, mp = out_dir / f"{name}.json", out_dir / f"{name}.md"
    jp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    mp.write_text(render_card_md(card))
    return jp, mp


# ---- provenance recorded in cards ----------------------------------------------------
def data_manifest(dataset: str) -> dict:
    """Packages (with licences and versions) and held-out design from :func:`model_zoo.data.manifest.manifest`."""
    try:
        from model_zoo.data.manifest import manifest

        m = manifest(dataset)
    except Exception as exc:  # provenance must never stop a card from being written
        return {"manifest_error": f"{type(exc).__name__}: {exc}"}
    return {k: m[k] for k in ("kind", "version", "seed", "seeding", "defaults", "held_out", "packages") if k in m}


def provenance(*splits: list[dict]) -> dict:
    """Packages, licences and source files named anywhere in the items' ``meta`` (every split used)."""
    packages: dict = {}
    files: set = set()

    def walk(m):
        if isinstance(m, dict):
            pkg = m.get("package") or m.get("debian_package")
            if pkg:
                lic = str(m.get("licence", "see package"))
                packages.setdefault(str(pkg), set()).add(lic)
            for key in ("source_files", "files"):
                for f in m.get(key, []) or []:
                    files.add(str(f["file"] if isinstance(f, dict) and "file" in f else f))
            for key in ("file", "spectrum_from"):
                if isinstance(m.get(key), str):
                    files.add(m[key])
            for v in m.values():
                walk(v)
        elif isinstance(m, list):
            for v in m:
                walk(v)

    for items in splits:
        for it in items:
            walk(it.get("meta", {}) or {})
    return {"licences": {k: " / ".join(sorted(v)) for k, v in sorted(packages.items())},
            "source_files": sorted(files)[:40], "n_source_files": len(files)}
