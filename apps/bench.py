"""Page times of the app, measured server-side with Streamlit's AppTest (``probe bench --only app``).

For every zoo model (its first test example) and every page, the seconds the page's script
takes, in three cache states measured in one process:

* **cold** — an empty on-disk cache folder and empty memory caches: the page computes
  everything it shows (the first visitor of a server without a warm-up);
* **warm** — the same session visits the page again: every result comes from Streamlit's
  memory cache (what a visitor pays when switching pages or models back and forth);
* **restart** — the memory caches are cleared (models included) as after a server restart,
  and a new session walks the pages: results come from the disk cache only (what the first
  visitor of a warmed-up or restarted server pays).

Each visit records wall seconds (``s``) and the process's CPU seconds (``cpu_s``: every
thread, one torch thread by default; what the page costs on an idle core). The machine's
load average is recorded with every model, because wall seconds are only as good as the
share of the CPU the script got. Run it as ``python -m apps.bench --json``
(``--models a,b``, ``--pages overview,filters``, ``--profile PAGE`` for a cProfile of one
warm page). It needs the zoo's trained checkpoints; nothing is written outside a temporary
cache folder (``--cache-dir`` to keep it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = Path(__file__).resolve().parent / "probe_app.py"
#: the pages measured (Corpus shows corpus runs, not a model)
PAGES = ("overview", "filters", "embeddings", "attribution", "activations", "nmf")
#: the issue's goals (seconds): a cold first page after server start (warm-up done: the restart state), a warm page
GOAL_FIRST, GOAL_WARM = 5.0, 1.0


def _load() -> list:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _errors(at) -> list:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _visit(at, page: str, *, first: bool = False, timeout: float = 1800) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    if first:
        at.run(timeout=timeout)
    else:
        at.switch_page(f"views/{page}.py").run(timeout=timeout)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    errs = _errors(at)
    return {"s": round(dt, 3), "cpu_s": round(cpu, 3), **({"errors": [str(e)[:200] for e in errs]} if errs else {})}


_COMPONENTS: list = []


def _session(model: str):
    """A new AppTest session on ``model``.

    AppTest scans every installed distribution for Streamlit components on a session's first
    run (0.5–6 s here); a server does that once at start-up, so the sessions share one scan.
    """
    from streamlit.testing.v1 import AppTest

    from apps.ui import MODEL_KEY

    at = AppTest.from_file(str(APP), default_timeout=1800)
    if hasattr(at, "_bidi_component_manager"):
        if not _COMPONENTS:
            from streamlit.components.v2.component_manager import BidiComponentManager

            mgr = BidiComponentManager()
            mgr.discover_and_register_components(start_file_watching=False)
            _COMPONENTS.append(mgr)
        at._bidi_component_manager = _COMPONENTS[0]
    at.session_state[MODEL_KEY] = f"zoo:{model}"
    return at


def _walk(model: str, pages) -> dict:
    """One session: Overview first (it selects the model and its first example), then the other pages."""
    at = _session(model)
    out = {"overview": _visit(at, "overview", first=True)}
    for p in pages:
        if p != "overview":
            out[p] = _visit(at, p)
    return out, at


def _revisit(at, pages) -> dict:
    out = {}
    for p in pages:
        out[p] = _visit(at, p)
    return out


def _clear_memory() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def bench(*, models=None, pages=PAGES, cache_dir=None, cold: bool = True, progress: bool = True) -> dict:
    """Seconds per (model, page) cold / warm / restart; see the module docstring.

    ``cold=False`` skips the empty-cache walk (the disk cache in ``cache_dir`` must then hold
    the results, e.g. from an earlier run or a server's warm-up).
    """
    import torch

    from apps import diskcache, state

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    tmp = None
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="probe-app-bench-")
        cache_dir = tmp.name
    os.environ[diskcache.ENV] = str(cache_dir)
    torch.set_num_threads(int(os.environ.get("PROBE_BENCH_THREADS", "1")))
    if models is None:
        models = [e["ref"].split(":", 1)[1] for e in state.zoo_models() if e.get("trained")]
    pages = tuple(p for p in PAGES if p in pages)
    rows = []
    try:
        for m in models:
            row = {"model": m, "load_before": _load()}
            t0 = time.perf_counter()
            if cold:
                _clear_memory()
                row["cold"], at = _walk(m, pages)
                row["warm"] = _revisit(at, pages)
            _clear_memory()  # as a restarted server: only the disk cache remains
            row["restart"], at = _walk(m, pages)
            if not cold:
                row["warm"] = _revisit(at, pages)
            row["load_after"] = _load()
            row["total_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            if progress:
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    summary = summarise(rows)
    return {"app_pages": rows, "app_summary": summary, "app_torch_threads": torch.get_num_threads(),
            "app_cpu_count": os.cpu_count()}


def summarise(rows) -> dict:
    """The worst page per state and whether the issue's goals hold (first page after restart ≤ 5 s, warm ≤ 1 s)."""
    def worst(state):
        vals = [v["s"] for r in rows for v in (r.get(state) or {}).values()]
        return max(vals) if vals else None

    first = [r["restart"]["overview"]["s"] for r in rows if "overview" in (r.get("restart") or {})]
    restart_all = worst("restart")
    warm = worst("warm")
    return {"worst_cold_s": worst("cold"), "worst_warm_s": warm, "worst_restart_s": restart_all,
            "worst_first_page_s": max(first) if first else None,
            "first_page_goal_met": bool(first) and max(first) <= GOAL_FIRST,
            "every_restart_page_within_first_goal": restart_all is not None and restart_all <= GOAL_FIRST,
            "warm_goal_met": warm is not None and warm <= GOAL_WARM,
            "errors": [(r["model"], s, p, v["errors"]) for r in rows for s in ("cold", "warm", "restart")
                       for p, v in (r.get(s) or {}).items() if v.get("errors")]}


def table(result: dict) -> str:
    """A markdown table: one row per model, ``cold / warm / restart`` seconds per page, load average."""
    rows = result["app_pages"]
    pages = [p for p in PAGES if any(p in (r.get("restart") or {}) for r in rows)]
    head = "| model | " + " | ".join(p.capitalize() if p != "nmf" else "NMF" for p in pages) + " | load (1/5/15 min) |"
    lines = [head, "|---" * (len(pages) + 2) + "|"]

    def cell(r, p):
        return " / ".join("–" if p not in (r.get(s) or {}) else f"{r[s][p]['s']:.2f}" for s in ("cold", "warm", "restart"))

    for r in rows:
        load = r.get("load_after") or r.get("load_before") or []
        lines.append(f"| {r['model']} | " + " | ".join(cell(r, p) for p in pages) + " | "
                     + "/".join(f"{x:.1f}" for x in load) + " |")
    return "\n".join(lines)


def profile(model: str, page: str, *, cache_dir=None, restart: bool = False, top: int = 40) -> str:
    """cProfile of the page script's thread on one visit of ``page``: warm (the session visited every
    page once before) or, with ``restart``, the first visit after the memory caches were cleared."""
    import cProfile
    import io
    import pstats

    import streamlit.runtime.scriptrunner.script_runner as sr

    from apps import diskcache

    if cache_dir is not None:
        os.environ[diskcache.ENV] = str(cache_dir)
    _, at = _walk(model, PAGES)
    if restart:
        _clear_memory()
        at = _session(model)
        if page != "overview":
            at.run()
    else:
        at.switch_page("views/overview.py" if page != "overview" else "views/filters.py").run()
    orig, box = sr.exec_func_with_error_handling, {}

    def wrapped(fn, ctx):  # the script runs in its own thread: profile there
        pr = cProfile.Profile()
        pr.enable()
        try:
            return orig(fn, ctx)
        finally:
            pr.disable()
            box["pr"] = pr

    sr.exec_func_with_error_handling = wrapped
    t0 = time.perf_counter()
    try:
        if restart and page == "overview":
            at.run()
        else:
            at.switch_page(f"views/{page}.py").run()
    finally:
        sr.exec_func_with_error_handling = orig
    s = io.StringIO()
    print(f"{model} {page} {'restart' if restart else 'warm'}: {time.perf_counter() - t0:.2f} s", file=s)
    if "pr" in box:
        pstats.Stats(box["pr"], stream=s).sort_stats("cumulative").print_stats(top)
    return s.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m apps.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=None, help="comma-separated zoo model names (default: every trained one)")
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--cache-dir", default=None, help="disk cache folder (default: a fresh temporary one)")
    ap.add_argument("--no-cold", action="store_true", help="skip the empty-cache walk (the cache folder is filled)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON (else a markdown table)")
    ap.add_argument("--profile", default=None, metavar="PAGE", help="cProfile one warm visit of PAGE instead")
    ap.add_argument("--restart", action="store_true", help="with --profile: the first visit after a restart")
    a = ap.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()] if a.models else None
    if a.profile:
        for m in models or ["crnn_sed"]:
            print(profile(m, a.profile, cache_dir=a.cache_dir, restart=a.restart))
        return 0
    res = bench(models=models, pages=tuple(p.strip() for p in a.pages.split(",")), cache_dir=a.cache_dir,
                cold=not a.no_cold)
    print(json.dumps(res, indent=1) if a.json else table(res) + "\n\n" + json.dumps(res["app_summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
