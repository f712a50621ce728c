"""``probe app [--port P]``: start the Streamlit app (headless; open the printed URL in a browser)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import ProbeError

#: the app's entry script in a source checkout (apps/ sits beside probe/)
APP_SCRIPT = Path(__file__).resolve().parents[2] / "apps" / "probe_app.py"


def app_script() -> Path:
    """The app's entry script: the checkout's ``apps/`` beside ``probe/``, else the installed ``apps`` package."""
    if APP_SCRIPT.is_file():
        return APP_SCRIPT
    spec = importlib.util.find_spec("apps")  # a wheel install puts apps/ beside probe/ in site-packages
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            script = Path(folder) / "probe_app.py"
            if script.is_file():
                return script
    raise ProbeError(f"the app is not installed (no apps/probe_app.py beside {Path(__file__).resolve().parents[1]} "
                     "and no installed `apps` package); reinstall probe: pip install probe-audio")


def add_parser(sub):
    p = sub.add_parser("app", help="start the interactive Streamlit app",
                       description="Start probe's Streamlit app headless on localhost (Ctrl-C stops it).")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="localhost", help="address to bind (default localhost)")
    p.add_argument("--dry-run", action="store_true", help="print the app's path and the command instead of running it")
    return p


def command(port: int = 8501, address: str = "localhost", script: Path | None = None) -> list[str]:
    """The ``streamlit run`` command line that serves the app."""
    return [sys.executable, "-m", "streamlit", "run", str(script or app_script()), "--server.headless", "true",
            "--server.port", str(int(port)), "--server.address", str(address),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def run(args) -> dict | None:
    if not 1 <= int(args.port) <= 65535:
        raise ProbeError(f"--port must lie in 1..65535, given {args.port}")
    script = app_script()
    cmd = command(args.port, args.address, script)
    if args.dry_run:
        return {"command": cmd, "url": f"http://{args.address}:{args.port}", "app": str(script),
                "port": int(args.port), "address": args.address}
    print(f"probe app: serving on http://{args.address}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    root = str(script.parents[1])  # the folder holding the `apps` package: checkout root or site-packages
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, cwd=root)

    def stop(signum, frame):  # `kill` on probe app stops the server too
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if rc not in (0, -2, -15, 130, 143):
        raise ProbeError(f"streamlit exited with status {rc}")
    return None
