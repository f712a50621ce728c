"""The app in a real headless Chromium, per page and per model: `streamlit run` on a free port, driven with Playwright.

For the tiny spec-file model (uploaded clip) and every trained zoo model (its first
example), each page must load without an error box, and:

* Attribution under the defaults: IG with a completeness error ≤ 1 % (or a visible warning
  saying why there is none), and no warning-free degenerate map — when the deletion AUC is
  no better than random, a warning says so;
* one cluster numbering (1..k) on Overview, Embeddings and Attribution for embedding models;
* a click on a point of the embedding map produces an audio element (its neighbourhood);
* a download button produces a file;
* no request leaves the server (every request the page makes is recorded).

Cold (first visit after the server started) and warm (second visit) page times are written
to ``app_timings.json`` next to the screenshots. Screenshots go to ``tmp_path`` or to
``$PROBE_SCREENSHOT_DIR`` (e.g. ``docs/img``) for the model named by
``$PROBE_SCREENSHOT_MODEL`` (default: the tiny model). ``$PROBE_BROWSER_MODELS`` (comma
separated: ``tiny``, zoo names, or ``all``) chooses the models; by default the tiny model,
``crnn_sed`` and ``dc_blstm`` are walked (``all`` takes many minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests._app_fixtures import tone_and_noise, trained_zoo_models, write_tiny_spec

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "probe_app.py"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
NAV = ("Overview", "Filters", "Embeddings", "Attribution", "Activations", "NMF")
#: nav title → page heading
HEADINGS = {"Overview": "probe", "Filters": "Learned filters", "Embeddings": "Embeddings", "Attribution": "Attribution",
            "Activations": "Activations", "NMF": "NMF comparison"}
COMPLETENESS_OK = 1.0  # percent
MIN_AUC_GAIN = 0.05  # probe.analyze.faithfulness.MIN_AUC_GAIN: below it, "no better than random"


#: walked by default: the tiny spec model, one detector and one embedding model (every page of the
#: other zoo models is covered by AppTest in tests/test_app.py); PROBE_BROWSER_MODELS=all walks every one
DEFAULT_BROWSER_MODELS = ("tiny", "crnn_sed", "dc_blstm")


def _models() -> list[str]:
    wanted = os.environ.get("PROBE_BROWSER_MODELS", "")
    zoo = trained_zoo_models()
    if wanted.strip() == "all":
        return ["tiny"] + zoo
    if wanted:
        return [m.strip() for m in wanted.split(",") if m.strip()]
    return [m for m in DEFAULT_BROWSER_MODELS if m == "tiny" or m in zoo]


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
    """A server started as `probe app` starts it, allowing one folder of spec files and one of audio."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: bash .ci/setup installs it (pip install -e '.[dev]'); see `probe doctor`")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not installed: bash .ci/setup installs it (apt-get install -y chromium); "
                    "see `probe doctor`")
    import soundfile as sf

    from probe.cli.app import ENV_AUDIO, ENV_MODELS, command

    port = _free_port()
    home = tmp_path_factory.mktemp("st_home")
    models, audio = home / "models", home / "audio"
    spec = write_tiny_spec(models / "tiny")
    audio.mkdir()
    clip = audio / "clip.wav"
    sf.write(str(clip), tone_and_noise(2.0), 8000)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           ENV_MODELS: str(models.resolve()), ENV_AUDIO: str(audio.resolve()),
           "PROBE_APP_WARMUP": os.environ.get("PROBE_APP_WARMUP", "0")}
    log = open(home / "streamlit.log", "w")
    cmd = command(port, "127.0.0.1")  # the exact command line `probe app` runs
    assert cmd[cmd.index("--server.headless") + 1] == "true" and str(APP) in cmd
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield {"url": url, "spec": str(spec.resolve()), "clip": str(clip.resolve())}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def timings(tmp_path_factory):
    out: dict = {}
    yield out
    folder = Path(os.environ.get("PROBE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("timings"))
    (folder / "app_timings.json").write_text(json.dumps(out, indent=1))
    print("\napp page times (s):", json.dumps(out))


def _idle(page, timeout_ms: int = 60000) -> None:
    """Wait until the script run is over and the page shows a result (a chart or a message).

    While a script runs, the header shows the status widget (a running icon and "Stop"); it
    appears only after a short delay, so the page must also show a chart or an alert twice
    in a row, 1 s apart, with no status widget.
    """
    js = """() => !document.querySelector('[data-testid="stStatusWidget"]') &&
                  (document.querySelector('[data-testid="stPlotlyChart"]') ||
                   document.querySelector('[data-testid="stAlert"]') ||
                   document.querySelector('[data-testid="stException"]'))"""
    for _ in range(2):
        page.wait_for_timeout(1000)
        page.wait_for_function(js, timeout=timeout_ms)


def _check_clean(page, where: str) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{where}: {exc.first.inner_text()[:500]}"
    err = page.locator('[data-testid="stAlertContentError"]')
    assert err.count() == 0, f"{where}: {err.first.inner_text()[:500]}"


def _charts_drawn(page, n: int, where: str, timeout_ms: int = 60000) -> None:
    """At least ``n`` plotly charts whose SVG has been drawn."""
    js = ("n => { const cs = Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'));"
          " cs.forEach(c => { if (!c.querySelector('.main-svg')) c.scrollIntoView(); });"  # drawn when in view
          " return cs.filter(c => c.querySelector('.js-plotly-plot .main-svg')).length >= n; }")
    try:
        page.wait_for_function(js, arg=n, timeout=timeout_ms)
    except Exception:
        raise AssertionError(f"{where}: fewer than {n} plotly charts drawn "
                             f"({page.locator('[data-testid=stPlotlyChart]').count()} containers)") from None


def _n_audio(page) -> int:
    return page.eval_on_selector_all("audio", "els => els.filter(e => e.currentSrc || e.src).length")


def _metric(page, label: str):
    """(value, delta) text of the first metric whose label starts with ``label``, or ``None``."""
    for m in page.locator('[data-testid="stMetric"]').all():
        text = m.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        if text.startswith(label):
            value = m.locator('[data-testid="stMetricValue"]').inner_text().strip()
            d = m.locator('[data-testid="stMetricDelta"]')
            return value, (d.inner_text().strip() if d.count() else "")
    return None


def _warnings(page) -> list[str]:
    return [w.inner_text() for w in page.locator('[data-testid="stAlertContentWarning"]').all()]


def _shot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot, palette-quantised so docs images stay small."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"app_{name}.png"
    # Streamlit scrolls inside its main container, not the document: grow the viewport to the page's height
    size = page.viewport_size
    tall = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]'); "
                         "return m ? m.scrollHeight : document.body.scrollHeight; }")
    page.set_viewport_size({"width": size["width"], "height": int(min(max(tall, size["height"]), 6000))})
    page.wait_for_timeout(800)  # plotly redraws at the new size
    page.screenshot(path=str(path), full_page=False)
    page.set_viewport_size(size)
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w = 1000
    im = im.resize((w, round(im.height * w / im.width)), Image.Resampling.LANCZOS)
    # octree keeps the rare colours (a colour bar's blue end) that median cut merges away
    im.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def _goto_page(page, nav: str, where: str, timeout_ms: int) -> float:
    t0 = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_text(nav, exact=True).click()
    page.get_by_role("heading", name=HEADINGS[nav], exact=True).wait_for()
    _idle(page, timeout_ms)
    return time.perf_counter() - t0


def _click_a_map_point(page) -> None:
    """Click the first point of the embedding map where plotly drew it (pixel position from its axes)."""
    xy = page.evaluate("""() => {
        const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'));
        const ok = t => (t.type === 'scattergl' || t.type === 'scatter') && t.x && t.x.length && t.visible !== false;
        const gd = charts.find(g => g._fullData && g._fullData.some(ok));
        if (!gd) return null;
        gd.scrollIntoView();
        const t = gd._fullData.find(ok);
        const fl = gd._fullLayout, r = gd.getBoundingClientRect();
        // the point nearest the middle of the plot area: away from the legend and the mode bar
        const px = i => [fl.xaxis.l2p(t.x[i]), fl.yaxis.l2p(t.y[i])];
        const cx = fl._size.w / 2, cy = fl._size.h / 2;
        let best = 0, bd = Infinity;
        for (let i = 0; i < t.x.length; i++) {
            const [x, y] = px(i), d = (x - cx) ** 2 + (y - cy) ** 2;
            if (d < bd) { bd = d; best = i; }
        }
        const [x, y] = px(best);
        return [r.left + fl._size.l + x, r.top + fl._size.t + y];
    }""")
    assert xy, "no embedding map drawn"
    page.mouse.move(xy[0], xy[1])
    page.wait_for_timeout(300)
    page.mouse.click(xy[0], xy[1])


@pytest.mark.timeout(3600)  # IG until completeness ≤ 1 % on dc_blstm takes minutes on a shared CPU
@pytest.mark.parametrize("name", _models())
def test_every_page_in_chromium(name, server, browser, timings, tmp_path):
    url = server["url"]
    tiny = name == "tiny"
    model = server["spec"] if tiny else f"zoo:{name}"
    shots_for = os.environ.get("PROBE_SCREENSHOT_MODEL", "tiny")
    shots = Path(os.environ.get("PROBE_SCREENSHOT_DIR") or tmp_path) if shots_for in (name, f"zoo:{name}") \
        else tmp_path
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.set_default_timeout(60000)
    slow = 900_000  # IG until completeness ≤ 1 % on a shared CPU
    times = timings.setdefault(name, {})
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}/?model={model}" + (f"&audio={server['clip']}" if tiny else ""))
        page.get_by_role("heading", name="probe", exact=True).wait_for()
        _idle(page, slow)
        _charts_drawn(page, 2 if tiny else 1, "overview")  # an embedding model's output has no figure of its own
        times["Overview"] = {"cold": round(time.perf_counter() - t0, 2)}
        _check_clean(page, "overview")
        assert _n_audio(page) >= 1
        clusters = {}
        if page.get_by_text("its embeddings clustered").count():
            clusters["Overview"] = sorted(set(int(x) for x in re.findall(r"\bcluster (\d+)\b", page.inner_text("main"))))
        _shot(page, shots, "overview")
        for nav in NAV[1:]:
            where = f"{name} · {nav}"
            times[nav] = {"cold": round(_goto_page(page, nav, where, slow), 2)}
            _check_clean(page, where)
            body = page.inner_text("main")
            if "no filterbank to show" in body or "no spectral filter bank" in body:
                times[nav]["note"] = "no filterbank"  # said in an info box (Filters, NMF)
            else:
                _charts_drawn(page, 1, where)
            assert "on the Overview page" in body or nav == "Filters", f"{where}: the selection was lost"
            if nav == "Embeddings":
                page.wait_for_function("() => document.querySelectorAll('audio').length >= 2", timeout=30000)
                n_before = _n_audio(page)
                assert n_before >= 2, f"{where}: one player per cluster"
                body = page.inner_text("main")
                clusters["Embeddings"] = sorted(set(int(x) for x in re.findall(r"\bCluster (\d+)\b", body)))
                _click_a_map_point(page)
                page.wait_for_function(f"() => document.querySelectorAll('audio').length > {n_before}",
                                       timeout=120000)
                _idle(page)
                assert page.get_by_text("Picked point").count() or page.get_by_text("Selection:").count()
                with page.expect_download() as dl:
                    page.get_by_text("Points + clusters (CSV)").click()
                path = Path(dl.value.path())
                head = path.read_text().splitlines()[0].split(",")
                assert head[:3] == ["time_s", "freq_hz", "energy_db"] and "cluster" in head, head
            if nav == "Attribution":
                _check_attribution_defaults(page, where)
                targets = page.locator('[data-testid="stSelectbox"]').first.inner_text()
                page.locator('[data-testid="stSelectbox"]').first.click()
                options = [o.inner_text() for o in page.locator('[role="option"]').all()]
                page.keyboard.press("Escape")
                found = sorted(int(x) for x in re.findall(r"cluster=(\d+)", " ".join(options + [targets])))
                if found:
                    clusters["Attribution"] = sorted(set(found))
                with page.expect_download() as dl:
                    page.get_by_text("Map (CSV)").click()
                assert Path(dl.value.path()).read_text().startswith("time_s,freq_hz,relevance\n")
            _shot(page, shots, nav.lower())
        # warm: every page again
        for nav in NAV[1:] + NAV[:1]:
            times[nav]["warm"] = round(_goto_page(page, nav, nav, slow), 2)
        if "Embeddings" in clusters and len(clusters) > 1:
            k = clusters["Embeddings"]
            assert k == list(range(1, len(k) + 1)), clusters
            assert all(v == k for v in clusters.values()), f"cluster numbering differs between pages: {clusters}"
        times["clusters"] = clusters
    finally:
        context.close()
    outside = [u for u in requests if not (u.startswith(url) or u.startswith(("data:", "blob:")))]
    assert not outside, f"requests left the server: {sorted(set(outside))[:10]}"
    assert requests, "no request recorded"


def _check_attribution_defaults(page, where: str) -> None:
    """IG by default with completeness ≤ 1 % (or a warning why not); a degenerate map never without a warning."""
    warnings = _warnings(page)
    comp = _metric(page, "Completeness error")
    if comp is None:
        assert warnings, f"{where}: no completeness figure and no warning saying why"
    else:
        value = float(comp[0].rstrip("%"))
        assert value <= COMPLETENESS_OK or any("completeness" in w for w in warnings), (where, comp, warnings)
        assert re.search(r"\d+ steps", comp[1]), f"{where}: steps used not shown ({comp})"
    dele = _metric(page, "Deletion AUC")
    if dele is not None:
        auc = float(dele[0])
        rnd = float(re.search(r"random order (-?[\d.]+)", dele[1]).group(1))
        if rnd - auc < MIN_AUC_GAIN:
            assert any("no better than random" in w for w in warnings), (where, dele, warnings)
    elif not warnings:
        pytest.fail(f"{where}: no deletion test and no warning saying why")
