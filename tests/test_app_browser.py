"""The app in a real headless Chromium: `streamlit run` on a free port, driven with Playwright.

Checks what AppTest cannot: the pages load in a browser, plotly draws its charts (an SVG
inside ``.js-plotly-plot``), audio players get a playable source, an upload through the
real file input works, and client-side navigation keeps the selection. Screenshots go to
``tmp_path`` (or to ``$PROBE_SCREENSHOT_DIR``, e.g. ``docs/img``, with
``$PROBE_SCREENSHOT_MODEL=zoo:NAME`` to show a zoo model there instead of the tiny one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests._app_fixtures import tone_and_noise, write_tiny_spec

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "probe_app.py"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
#: (nav title, heading, plotly charts expected at least, audio players expected at least)
PAGES = (("Filters", "Learned filters", 3, 0), ("Embeddings", "Embeddings", 2, 2),
         ("Attribution", "Attribution", 2, 3), ("Activations", "Activations", 2, 0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: bash .ci/setup installs it (pip install -e '.[dev]'); see `probe doctor`")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not installed: bash .ci/setup installs it (apt-get install -y chromium); "
                    "see `probe doctor`")
    port = _free_port()
    home = tmp_path_factory.mktemp("st_home")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(home / "streamlit.log", "w")
    from probe.cli.app import command  # the exact command line `probe app` runs (streamlit run … --server.headless true)

    cmd = command(port, "127.0.0.1")
    assert cmd[cmd.index("--server.headless") + 1] == "true" and str(APP) in cmd
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _idle(page, timeout_ms: int = 60000) -> None:
    """Wait until the script run is over."""
    page.wait_for_timeout(400)
    # while a script runs, the header shows the status widget (a running icon and "Stop"); it goes when the run ends
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_timeout(200)


def _check_clean(page, where: str) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{where}: {exc.first.inner_text()[:500]}"
    err = page.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"{where}: {err.first.inner_text()[:500]}"


def _charts_drawn(page, n: int, where: str) -> None:
    """At least ``n`` plotly charts whose SVG has been drawn."""
    js = ("n => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
          ".filter(c => c.querySelector('.js-plotly-plot .main-svg')).length >= n")
    try:
        page.wait_for_function(js, arg=n, timeout=60000)
    except Exception:
        raise AssertionError(f"{where}: fewer than {n} plotly charts drawn "
                             f"({page.locator('[data-testid=stPlotlyChart]').count()} containers)") from None


def _audio_ok(page, n: int, where: str) -> None:
    if n == 0:
        return
    page.wait_for_function(f"() => document.querySelectorAll('audio').length >= {n}", timeout=30000)
    srcs = page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src)")
    assert len(srcs) >= n and all(s for s in srcs), (where, srcs)


def _shot(page, folder: Path, name: str) -> Path:
    """A viewport screenshot, palette-quantised so docs images stay small."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"app_{name}.png"
    page.screenshot(path=str(path), full_page=False)
    try:
        from PIL import Image

        im = Image.open(path).convert("RGB")
        w = 1000
        im = im.resize((w, round(im.height * w / im.width)), Image.Resampling.LANCZOS)
        # octree keeps the rare colours (a colour bar's blue end) that median cut merges away
        im.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    except ImportError:  # pragma: no cover - Pillow ships with streamlit
        pass
    return path


def test_app_in_headless_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    model = os.environ.get("PROBE_SCREENSHOT_MODEL")
    shots = Path(os.environ.get("PROBE_SCREENSHOT_DIR") or tmp_path / "shots")
    clip = tmp_path / "clip.wav"
    import soundfile as sf

    sf.write(str(clip), tone_and_noise(2.0), 8000)
    tiny = not model
    if tiny:
        model = str(write_tiny_spec(tmp_path / "tiny"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1700})
            page.set_default_timeout(60000)
            page.goto(f"{server}/?model={model}")
            page.get_by_role("heading", name="probe", exact=True).wait_for()
            _idle(page)
            if model.startswith("zoo:"):
                _charts_drawn(page, 1, "overview")
            else:
                # a spec-file model has no examples: upload through the real file input
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(clip))
                page.get_by_text("Audio: clip.wav").wait_for()
                _idle(page)
            _check_clean(page, "overview")
            _charts_drawn(page, 2, "overview")
            _audio_ok(page, 1, "overview")
            page.get_by_text("Spectrogram", exact=False).first.wait_for()
            first = _shot(page, shots, "overview")
            assert first.stat().st_size > 10_000
            for nav, heading, n_charts, n_audio in PAGES:
                page.locator('[data-testid="stSidebarNav"]').get_by_text(nav, exact=True).click()
                page.get_by_role("heading", name=heading, exact=True).wait_for()
                _idle(page, 120000)
                _check_clean(page, nav)
                _charts_drawn(page, n_charts if tiny else 1, nav)  # a zoo model may lack e.g. a waveform filterbank
                _audio_ok(page, n_audio, nav)
                assert "on the Overview page" in page.content(), f"{nav}: the selection was lost"
                page.wait_for_timeout(300)
                _shot(page, shots, nav.lower())
            # a deep link on a fresh session goes through the router (menu, page config) and keeps ?model=
            if tiny:
                page2 = browser.new_page(viewport={"width": 1280, "height": 900})
                page2.goto(f"{server}/activations?model={model}&audio={clip}")
                page2.get_by_role("heading", name="Activations", exact=True).wait_for()
                _idle(page2, 120000)
                _check_clean(page2, "deep link")
                _charts_drawn(page2, 2, "deep link")
                nav = page2.locator('[data-testid="stSidebarNav"]').inner_text()
                lines = [x.strip() for x in nav.splitlines() if x.strip()]
                titles = [x for x in lines if x in ("Overview", "Filters", "Embeddings", "Attribution", "Activations")]
                assert titles == ["Overview", "Filters", "Embeddings", "Attribution", "Activations"], lines
                assert "probe app" not in lines and "activations" not in lines, lines  # not the legacy folder menu
                page2.close()
        finally:
            browser.close()
    for name in ("overview", "filters", "embeddings", "attribution", "activations"):
        assert (shots / f"app_{name}.png").stat().st_size < 250_000
