"""``probe bench --only app``: page times of the Streamlit app per zoo model, cold / warm / after a restart.

The measurement itself lives with the app (``python -m apps.bench``, Streamlit's AppTest:
the server-side seconds of each page's script); the library does not import the app, so this
section runs it as a child process — as ``probe app`` starts the server — and returns its JSON.
The section is opt-in (not part of a plain ``probe bench``): a cold walk of every zoo model
computes every page's results from scratch (minutes per model on a small CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..errors import ProbeError

#: the checkout's root (``apps/`` sits beside ``probe/``); an installed wheel has ``apps`` on its path already
_ROOT = Path(__file__).resolve().parents[2]


def bench(*, quick: bool = False, models=None, cache_dir=None) -> dict:
    """Run ``python -m apps.bench --json`` and return its result.

    ``quick``: two zoo models only. ``models``: names of zoo models (default: every trained one).
    ``cache_dir``: the on-disk cache folder to use (default: a fresh temporary one, so the cold
    walk is really cold).
    """
    cmd = [sys.executable, "-m", "apps.bench", "--json"]
    if models:
        cmd += ["--models", ",".join(models)]
    elif quick:
        cmd += ["--models", "crnn_sed,dc_blstm"]
    if cache_dir:
        cmd += ["--cache-dir", str(cache_dir)]
    env = dict(os.environ)
    if (_ROOT / "apps" / "bench.py").is_file():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise ProbeError(f"the app benchmark failed (exit {proc.returncode}): {' '.join(cmd)}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ProbeError(f"the app benchmark printed no JSON ({exc}); run {' '.join(cmd)} to see why") from None
