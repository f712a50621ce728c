"""What this machine has, what it lacks, what each missing piece disables, and the command that fixes it.

:func:`diagnose` checks, without building or downloading anything:

* the data sources the model zoo builds its data from (Debian packages and the path each is
  found at), through the zoo's ``probe.zoo`` → ``sources`` entry point — the core library
  never imports the zoo;
* the shipped zoo checkpoints and the examples that ship with the package;
* Chromium (browser tests, PNG export of figures);
* torch: version, build (CPU / CUDA x.y) and whether a CUDA device answers;
* Python extras: the ones the tests need (``playwright``, ``kaleido``, ``pytest``,
  ``hypothesis``; ``tinysoundfont`` is listed with the data sources) and the optional ones
  (``transformers``, ``onnx2torch``, ``ray``).

Each check is a dict with ``status`` ``"ok"`` or ``"missing"`` (``"info"`` for facts such as
the torch build), ``needed`` (the test suite needs it: ``.ci/setup`` installs it) and ``fix``
(the exact command, ``None`` when ok). ``probe doctor`` prints them and exits 2 when anything
``needed`` is missing.

Examples
--------
>>> from probe.doctor import diagnose
>>> report = diagnose()
>>> sorted(report)[:3]
['checks', 'missing_needed', 'ok']
>>> all({"name", "status", "needed", "fix"} <= set(c) for c in report["checks"])
True
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys

__all__ = ["diagnose", "format_report", "CHROMIUM", "EXTRAS"]

#: Debian's Chromium: the browser tests and kaleido's PNG export drive it
CHROMIUM = os.environ.get("BROWSER_PATH") or "/usr/bin/chromium"

#: (import name, distribution, needed by the tests, what it enables, fix command)
EXTRAS = (
    ("playwright", "playwright", True, "the browser tests of the app (with Chromium)", "pip install playwright"),
    ("kaleido", "kaleido", True, "PNG export of figures (--png, docs figures; with Chromium)", "pip install kaleido"),
    ("pytest", "pytest", True, "running the test suite", "pip install pytest pytest-timeout hypothesis"),
    ("hypothesis", "hypothesis", True, "the property-based tests", "pip install hypothesis"),
    ("transformers", "transformers", True, "hf:PATH models (wav2vec2, HuBERT, WavLM, AST, Whisper encoder)",
     "pip install -c constraints-cpu.txt 'transformers>=4.40'"),
    ("onnx", "onnx", True, "onnx:PATH models (reading ONNX graphs; tests export with onnxscript)",
     "pip install -c constraints-cpu.txt onnx onnxscript"),
    ("onnx2torch", "onnx2torch", True, "onnx:PATH models (ONNX graphs converted to PyTorch)",
     "pip install --no-deps onnx2torch"),
    ("ray", "ray", False, "corpus runs on Ray Data (the in-process engine works without it)", "pip install 'ray[data]'"),
)


def _version(dist: str):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def _check(name, group, ok, *, needed, path=None, version=None, disables=None, fix=None, detail=None) -> dict:
    return {"name": name, "group": group, "status": "ok" if ok else "missing", "needed": bool(needed),
            "path": path, "version": version, "disables": None if ok else disables, "fix": None if ok else fix,
            "detail": detail}


def _data_sources() -> list[dict]:
    from .errors import SpecError
    from .resolve import zoo_entry

    try:
        sources = zoo_entry("sources")()
    except (SpecError, ImportError) as exc:
        return [_check("model_zoo", "data", False, needed=True, disables="zoo:NAME models and example:NAME:i clips",
                       fix="pip install -e . (from a checkout) or pip install probe-audio", detail=str(exc))]
    out = []
    for s in sources:
        ok = s["status"] == "ok"
        detail = s.get("what", "")
        if s.get("found_by"):
            detail += f" ({s['found_by']})"
        out.append(_check(s["key"], "data", ok, needed=True, path=s.get("path"), version=s.get("version"),
                          disables=s.get("disables"), fix=s.get("fix"),
                          detail=f"{s['package']}: {detail}"))
    return out


def _zoo() -> list[dict]:
    from .errors import SpecError
    from .resolve import zoo_entry

    try:
        cat = zoo_entry("catalogue")()
    except (SpecError, ImportError):
        return []  # reported by the data-source check
    untrained = [e["name"] for e in cat if not e.get("trained")]
    out = [_check("checkpoints", "zoo", not untrained, needed=True, version=f"{len(cat) - len(untrained)}/{len(cat)}",
                  disables=f"zoo models without weights: {', '.join(untrained)}",
                  fix="reinstall probe (the checkpoints ship in model_zoo/checkpoints)",
                  detail="trained checkpoints shipped with the zoo")]
    try:
        shipped = zoo_entry("shipped_examples")()
    except (SpecError, ImportError):
        shipped = None
    if shipped is not None:
        out.append(_check("shipped_examples", "zoo", bool(shipped), needed=True, version=str(len(shipped)),
                          disables="example:NAME:0 without the Debian data packages",
                          fix="reinstall probe (model_zoo/examples ships with it)",
                          detail="examples usable without building data: " + ", ".join(shipped)))
    return out


def _chromium() -> dict:
    path = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    version = None
    if path:
        try:
            r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            version = r.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            version = None
    return _check("chromium", "browser", bool(path), needed=True, path=path, version=version,
                  disables="browser tests of the app and PNG export of figures (kaleido)",
                  fix="apt-get install -y chromium", detail="headless Chromium (set BROWSER_PATH for another one)")


def _torch() -> list[dict]:
    spec = importlib.util.find_spec("torch")
    if spec is None:
        return [_check("torch", "torch", False, needed=True, disables="everything",
                       fix="pip install -c constraints-cpu.txt torch  (CPU build; on a GPU box keep your CUDA torch)")]
    import torch

    cuda_build = torch.version.cuda
    try:
        n = torch.cuda.device_count() if cuda_build else 0
        available = bool(cuda_build) and torch.cuda.is_available()
    except Exception:  # a broken driver must not break the doctor
        n, available = 0, False
    devices = [torch.cuda.get_device_name(i) for i in range(n)] if available else []
    build = f"CUDA {cuda_build}" if cuda_build else ("ROCm " + torch.version.hip if getattr(torch.version, "hip", None)
                                                     else "CPU")
    return [
        _check("torch", "torch", True, needed=True, path=os.path.dirname(spec.origin), version=torch.__version__,
               detail=f"{build} build"),
        {"name": "cuda", "group": "torch", "status": "ok" if available else "info", "needed": False, "path": None,
         "version": cuda_build, "disables": None if available else "the gpu-marked tests (skipped) and GPU speed",
         "fix": None, "detail": (f"{n} device(s): {', '.join(devices)}" if available else
                                 "no CUDA device answers" + ("" if cuda_build else " (CPU build of torch)"))},
    ]


def _extras() -> list[dict]:
    out = []
    for mod, dist, needed, enables, fix in EXTRAS:
        spec = importlib.util.find_spec(mod)
        out.append(_check(mod, "extras", spec is not None, needed=needed, version=_version(dist),
                          path=os.path.dirname(spec.origin) if spec is not None and spec.origin else None,
                          disables=enables, fix=fix, detail=("needed by the tests" if needed else "optional") +
                          f"; enables {enables}"))
    return out


def diagnose() -> dict:
    """Check everything :mod:`probe` and its test suite use; never raises, never downloads.

    Returns
    -------
    dict
        ``{"ok": bool, "missing_needed": [name, ...], "python": str, "platform": str,
        "checks": [{"name", "group", "status", "needed", "path", "version", "disables", "fix", "detail"}, ...]}``.
        ``ok`` is ``False`` when a check the tests need is missing.
    """
    checks = _data_sources() + _zoo() + [_chromium()] + _torch() + _extras()
    missing = [c["name"] for c in checks if c["needed"] and c["status"] == "missing"]
    try:
        from . import __version__
    except Exception:  # pragma: no cover
        __version__ = None
    return {"ok": not missing, "missing_needed": missing, "probe": __version__,
            "python": sys.version.split()[0], "platform": platform.platform(), "checks": checks}


_GROUPS = (("data", "data sources (Debian packages the zoo builds its data from)"), ("zoo", "model zoo"),
           ("browser", "browser"), ("torch", "torch"), ("extras", "Python extras"))


def format_report(report: dict) -> str:
    """A plain-text table of :func:`diagnose`'s report: one line per check, fixes indented below."""
    lines = [f"probe {report.get('probe')} · Python {report['python']} · {report['platform']}"]
    for group, title in _GROUPS:
        rows = [c for c in report["checks"] if c["group"] == group]
        if not rows:
            continue
        lines.append(f"\n{title}")
        for c in rows:
            mark = {"ok": "ok", "missing": "MISSING" if c["needed"] else "missing", "info": "--"}[c["status"]]
            where = c["path"] or c.get("detail") or ""
            lines.append(f"  {mark:8s}{c['name']:17s}{c['version'] or '':12s} {where}")
            if c["status"] != "ok":
                if c["path"] and c.get("detail"):
                    lines.append(f"  {'':25s}{'':12s} {c['detail']}")
                if c["disables"]:
                    lines.append(f"  {'':25s}{'':12s} disables: {c['disables']}")
                if c["fix"]:
                    lines.append(f"  {'':25s}{'':12s} fix: {c['fix']}")
    lines.append("")
    if report["ok"]:
        lines.append("everything the tests need is here")
    else:
        lines.append(f"missing what the tests need: {', '.join(report['missing_needed'])} (fix commands above; "
                     "`bash .ci/setup` in a checkout installs all of them)")
    return "\n".join(lines)
