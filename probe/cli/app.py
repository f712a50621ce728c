"""``probe app [--port P]``: start the Streamlit app (headless; open the printed URL in a browser)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import ProbeError

#: the app's entry script, from a source checkout (apps/ sits beside probe/)
APP_SCRIPT = Path(__file__).resolve().parents[2] / "apps" / "probe_app.py"


def add_parser(sub):
    p = sub.add_parser("app", help="start the interactive Streamlit app",
                       description="Start probe's Streamlit app headless on localhost (Ctrl-C stops it).")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="localhost", help="address to bind (default localhost)")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    return p


def command(port: int = 8501, address: str = "localhost") -> list[str]:
    """The ``streamlit run`` command line that serves the app."""
    return [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.headless", "true",
            "--server.port", str(int(port)), "--server.address", str(address),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def run(args) -> dict | None:
    if not APP_SCRIPT.is_file():
        raise ProbeError(f"the app script is missing ({APP_SCRIPT}); `probe app` needs a source checkout of probe")
    if not 1 <= int(args.port) <= 65535:
        raise ProbeError(f"--port must lie in 1..65535, given {args.port}")
    cmd = command(args.port, args.address)
    if args.dry_run:
        return {"command": cmd, "url": f"http://{args.address}:{args.port}"}
    print(f"probe app: serving on http://{args.address}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APP_SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, cwd=str(APP_SCRIPT.parents[1]))

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
