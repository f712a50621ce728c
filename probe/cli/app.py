"""``probe app [--port P] [--allow-models DIR] [--allow-audio DIR]``: start the Streamlit app headless.

A web user of the app reaches the installed zoo, uploads and examples only; the person who
starts the server may add folders of spec files (``--allow-models``: their code runs on this
machine) and of audio files (``--allow-audio``). The folders reach the app through the
environment variables ``PROBE_APP_ALLOW_MODELS`` / ``PROBE_APP_ALLOW_AUDIO``; the app checks
every model and audio reference against them (``apps/policy.py``).
"""

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
    p.add_argument("--address", default="localhost",
                   help="address to bind (default localhost; anything else exposes the app to other machines)")
    p.add_argument("--allow-models", action="append", default=[], metavar="DIR",
                   help="offer the .toml spec files under DIR to web users (their factory code runs on this machine); "
                        "repeatable")
    p.add_argument("--allow-audio", action="append", default=[], metavar="DIR",
                   help="let web users open the audio files under DIR; repeatable")
    p.add_argument("--allow-runs", action="append", default=[], metavar="DIR",
                   help="let web users browse the corpus run folders under DIR (Corpus page); repeatable")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="folder of the app's on-disk result cache, reused across restarts (default "
                        "~/.cache/probe/app; 'off' disables it)")
    p.add_argument("--dry-run", action="store_true", help="print the app's path and the command instead of running it")
    return p


#: addresses that keep the app on this machine
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1", "[::1]")
#: environment variables that carry the allowed folders to the app (read by apps/policy.py)
ENV_MODELS, ENV_AUDIO = "PROBE_APP_ALLOW_MODELS", "PROBE_APP_ALLOW_AUDIO"
ENV_RUNS = "PROBE_APP_ALLOW_RUNS"
#: Streamlit's upload limit (MB): apps/policy.py MAX_UPLOAD_MB (a file whose decoded size fits, or that the
#: app can crop to its first seconds); uploads are limited again by their decoded size from the header
MAX_UPLOAD_MB = 100


def command(port: int = 8501, address: str = "localhost", script: Path | None = None) -> list[str]:
    """The ``streamlit run`` command line that serves the app (no usage statistics, no file watcher)."""
    return [sys.executable, "-m", "streamlit", "run", str(script or app_script()), "--server.headless", "true",
            "--server.port", str(int(port)), "--server.address", str(address),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.maxUploadSize", str(MAX_UPLOAD_MB), "--server.enableXsrfProtection", "true",
            "--client.toolbarMode", "minimal", "--global.developmentMode", "false"]


def allowed_folders(paths, flag: str) -> list[str]:
    """Each ``--allow-* DIR`` resolved; a missing folder or a file is a user error."""
    out = []
    for p in paths or []:
        q = Path(p).expanduser()
        if not q.is_dir():
            raise ProbeError(f"{flag} {p}: no such folder")
        q = str(q.resolve())
        if q not in out:
            out.append(q)
    return out


def exposure_warning(address: str, port: int, models: list, audio: list, runs: list = ()) -> str | None:
    """What binding beyond localhost exposes, or ``None`` for a local address."""
    if str(address).strip().lower() in LOCAL_ADDRESSES:
        return None
    parts = ["run the installed zoo models on uploaded audio and the zoo's examples"]
    if models:
        parts.append("load the spec files under " + ", ".join(models) + " (their factory code runs on this machine)")
    if audio:
        parts.append("listen to every audio file under " + ", ".join(audio))
    if runs:
        parts.append("browse the corpus runs under " + ", ".join(runs) + " (and listen to their clips)")
    return (f"probe app: WARNING: binding to {address} makes the app reachable from other machines: anyone who can "
            f"reach port {port} can " + "; ".join(parts) + ", and use this machine's CPU and memory. There is no "
            "login; bind to localhost and use an SSH tunnel unless this network is trusted.")


def run(args) -> dict | None:
    if not 1 <= int(args.port) <= 65535:
        raise ProbeError(f"--port must lie in 1..65535, given {args.port}")
    models = allowed_folders(getattr(args, "allow_models", None), "--allow-models")
    audio = allowed_folders(getattr(args, "allow_audio", None), "--allow-audio")
    runs = allowed_folders(getattr(args, "allow_runs", None), "--allow-runs")
    script = app_script()
    cmd = command(args.port, args.address, script)
    warning = exposure_warning(args.address, int(args.port), models, audio, runs)
    if warning:
        print(warning, file=sys.stderr)
    allow = {ENV_MODELS: os.pathsep.join(models), ENV_AUDIO: os.pathsep.join(audio), ENV_RUNS: os.pathsep.join(runs)}
    if args.dry_run:
        return {"command": cmd, "url": f"http://{args.address}:{args.port}", "app": str(script),
                "port": int(args.port), "address": args.address, "allow_models": models, "allow_audio": audio,
                "allow_runs": runs,
                "env": allow, "max_upload_mb": MAX_UPLOAD_MB, "exposed": warning is not None}
    print(f"probe app: serving on http://{args.address}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    root = str(script.parents[1])  # the folder holding the `apps` package: checkout root or site-packages
    # the allowed folders are exactly those given here: an inherited value never widens them
    env = {**os.environ, **allow, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    env.setdefault("PROBE_APP_WARMUP", "1")  # the zoo's first example computed while nobody waits (apps/warmup.py)
    if getattr(args, "cache_dir", None):  # apps/diskcache.py: results kept across restarts
        env["PROBE_APP_CACHE_DIR"] = args.cache_dir if args.cache_dir == "off" else str(Path(args.cache_dir).expanduser().resolve())
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
