"""What the browser tests share: Chromium's flags, a Streamlit server's life, and waits on the page's own state.

Used by ``test_app_browser``, ``test_corpus_browser`` and ``test_install`` (the installed app in a
browser). Waits never sleep a fixed time: Streamlit marks its app root with
``data-test-script-state``; :data:`RUN_COUNTER` (an init script) counts the runs that finish, and
:func:`wait_done` waits until one more has finished and nothing spins or is stale.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
#: the flags the project runs Chromium with (no sandbox in containers, nothing that phones home)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

#: counts Streamlit script runs that finished (the app root's data-test-script-state turning "notRunning")
RUN_COUNTER = """
window.__probeRuns = 0;
new MutationObserver(ms => { for (const m of ms) {
    if (m.target.getAttribute('data-test-script-state') === 'notRunning'
        && m.oldValue !== 'notRunning') window.__probeRuns += 1; } })
  .observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""


def require_browser() -> None:
    """Fail (never skip) with the set-up hint when Playwright or Chromium is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: bash .ci/setup installs it (pip install -e '.[dev]'); see `probe doctor`")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not installed: bash .ci/setup installs it (apt-get install -y chromium); "
                    "see `probe doctor`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(cmd: list, *, port: int, cwd, env: dict, log_path: Path, timeout: float = 90.0,
                     info: dict | None = None):
    """Start ``cmd`` (a server listening on ``port``), yield its URL once its health check answers, stop it after.

    ``info``, when given, receives the server's process id (``info["pid"]``), e.g. for :func:`wait_quiet`.
    """
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT)
    if info is not None:
        info["pid"] = proc.pid
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}: "
                                   f"{Path(log_path).read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the server did not answer {url}/_stcore/health within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, *, busy: float = 0.1, window: float = 2.0, timeout: float = 300.0) -> dict:
    """Wait until process ``pid`` uses under ``busy`` CPU seconds per second for ``window`` seconds.

    The app's warm-up thread reads or computes every model's defaults for a minute or more after
    the server starts; page times measured while it runs measure the warm-up as much as the page.
    Returns ``{"waited_s", "quiet"}`` (``quiet`` false when ``timeout`` passed first).
    """
    t0 = time.monotonic()
    while True:
        c0 = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - c0) / window < busy:
            return {"waited_s": round(time.monotonic() - t0, 1), "quiet": True}
        if time.monotonic() - t0 > timeout:
            return {"waited_s": round(time.monotonic() - t0, 1), "quiet": False}


def mark_click(page) -> int:
    """Runs finished so far; also marks the time of the action that follows (see :func:`wait_done`)."""
    return int(page.evaluate("() => { window.__probeClick = performance.now(); return window.__probeRuns || 0; }"))


def wait_done(page, after: int, timeout_ms: int) -> None:
    """Wait until a script run after the ``after``-th has finished and nothing is left spinning or stale."""
    # a run too short to render its "running" state counts once 3 s have passed quietly since the click
    js = """n => { const app = document.querySelector('[data-testid="stApp"]');
                   return app && (window.__probeRuns > n || performance.now() - (window.__probeClick || 0) > 3000)
                          && app.getAttribute('data-test-script-state') === 'notRunning'
                          && !document.querySelector('.stSpinner, [data-testid="stSpinner"]')
                          && !document.querySelector('[data-stale="true"]'); }"""
    page.wait_for_function(js, arg=after, timeout=timeout_ms, polling=100)


def check_clean(page, where: str) -> None:
    """No exception and no error box on the page."""
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{where}: {exc.first.inner_text()[:500]}"
    err = page.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"{where}: {err.first.inner_text()[:500]}"
