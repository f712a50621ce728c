"""The app in a real headless Chromium, per page and per model: `streamlit run` on a free port, driven with Playwright.

ONE server (started as ``probe app`` starts it, warm-up on) and ONE browser walk the tiny
spec-file model (uploaded clip) and every trained zoo model that the zoo lists (its first
example). Each page must load without an error box, and:

* Attribution under the defaults: IG with a completeness error ≤ 1 % (or a visible warning
  saying why there is none), and no warning-free degenerate map — when the deletion AUC is
  no better than random, a warning says so;
* one cluster numbering (1..k) on Overview, Embeddings and Attribution for embedding models;
* a click on a point of the embedding map produces an audio element (its neighbourhood);
* download buttons produce files (points CSV, attribution map CSV);
* no request leaves the server (every request the page makes is recorded).

Waits are on the page's own state, never fixed sleeps: Streamlit marks its app root with
``data-test-script-state``; an init script counts the runs that finish, so a page is "done"
when a new run has finished, no spinner is left and its charts' SVG is drawn. That time
(click → done) is the page time: the first visit in this server ("first", while the warm-up
thread may still be running) and the second ("again", once the server process is idle: the
warm-up done, the time waited and the load average recorded under ``_again``) are written to
``app_timings.json`` with the kilobytes the second visit received over the websocket
(``again_kB``: the page's figures are most of it) and whether the on-disk result cache was empty
when the server started.

The result cache is the app's own (``$PROBE_APP_CACHE_DIR``, default ``~/.cache/probe/app``):
the first walk after a change to the analysis code computes every default (minutes on a
shared CPU: IG until completeness ≤ 1 %), later walks read it. ``$PROBE_BROWSER_MODELS``
(comma separated: ``tiny``, zoo names) narrows the walk; ``$PROBE_SCREENSHOT_DIR`` (e.g.
``docs/img``) receives full-page screenshots of the models named by ``$PROBE_SCREENSHOT_MODEL``
(comma separated: the first one's as ``app_PAGE.png``, the others' as ``app_PAGE_NAME.png``).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests._app_fixtures import tone_and_noise, trained_zoo_models, write_tiny_spec
from tests._browser import (ARGS, CHROMIUM, RUN_COUNTER, check_clean, free_port, mark_click, require_browser,
                            streamlit_server, wait_done, wait_quiet)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "probe_app.py"
NAV = ("Overview", "Filters", "Embeddings", "Attribution", "Activations", "NMF")
#: nav title → page heading
HEADINGS = {"Overview": "probe", "Filters": "Learned filters", "Embeddings": "Embeddings", "Attribution": "Attribution",
            "Activations": "Activations", "NMF": "NMF comparison"}
COMPLETENESS_OK = 1.0  # percent
MIN_AUC_GAIN = 0.05  # probe.analyze.faithfulness.MIN_AUC_GAIN: below it, "no better than random"
#: a page whose defaults must be computed (empty cache, IG until completeness ≤ 1 %) may take this long
SLOW_MS = 900_000


def _models() -> list[str]:
    """The models the walk visits.

    By default the tiny spec model and two zoo models that cover two output kinds (T-F embeddings,
    frame probabilities; crnn_sed, dc_blstm): a cold walk of every zoo model took 45 min on a loaded 2-core
    machine, too long for every test run. ``PROBE_BROWSER_MODELS=all`` walks the tiny model and every trained
    model ``probe zoo list`` shows; a comma-separated list walks those.
    """
    wanted = os.environ.get("PROBE_BROWSER_MODELS", "").strip()
    if wanted == "all":
        return ["tiny"] + trained_zoo_models()
    if wanted:
        return [m.strip() for m in wanted.split(",") if m.strip()]
    return ["tiny"] + [m for m in ("crnn_sed", "dc_blstm") if m in trained_zoo_models()]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server started as `probe app` starts it (warm-up on), allowing one folder of spec files and one of audio."""
    require_browser()
    import soundfile as sf

    from apps.diskcache import ENV as ENV_CACHE
    from apps.diskcache import cache_dir
    from probe.cli.app import ENV_AUDIO, ENV_MODELS, command

    port = free_port()
    cache = cache_dir()  # the app's own cache (before HOME is moved): what earlier walks computed is reused
    home = tmp_path_factory.mktemp("st_home")
    models, audio = home / "models", home / "audio"
    spec = write_tiny_spec(models / "tiny")
    audio.mkdir()
    clip = audio / "clip.wav"
    sf.write(str(clip), tone_and_noise(2.0), 8000)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           ENV_MODELS: str(models.resolve()), ENV_AUDIO: str(audio.resolve()),
           ENV_CACHE: str(cache) if cache is not None else "off",
           "PROBE_APP_WARMUP": os.environ.get("PROBE_APP_WARMUP", "1")}
    n_cached = len(list(cache.glob("*/*.safetensors"))) if cache is not None and cache.is_dir() else 0
    cmd = command(port, "127.0.0.1")  # the exact command line `probe app` runs
    assert cmd[cmd.index("--server.headless") + 1] == "true" and str(APP) in cmd
    log = home / "streamlit.log"
    info: dict = {}
    with streamlit_server(cmd, port=port, cwd=ROOT, env=env, log_path=log, timeout=60, info=info) as url:
        yield {"url": url, "spec": str(spec.resolve()), "clip": str(clip.resolve()), "cache": str(cache),
               "cached_files_at_start": n_cached, "log": str(log), "pid": info["pid"]}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class _Timings(dict):
    """Page times per model, written to ``app_timings.json`` after every model (a long walk cut short keeps them)."""

    def __init__(self, path: Path, **kw):
        super().__init__(**kw)
        self.path, self.t0 = path, time.perf_counter()

    def write(self) -> None:
        self["_server"]["walk_seconds"] = round(time.perf_counter() - self.t0, 1)
        self.path.write_text(json.dumps(self, indent=1))


@pytest.fixture(scope="module")
def timings(tmp_path_factory, server):
    folder = Path(os.environ.get("PROBE_SCREENSHOT_DIR") or tmp_path_factory.mktemp("timings"))
    folder.mkdir(parents=True, exist_ok=True)
    out = _Timings(folder / "app_timings.json",
                   _server={"cache": server["cache"], "cached_files_at_start": server["cached_files_at_start"]})
    yield out
    out.write()
    print(f"\napp page times (s), written to {out.path}:", json.dumps(out))


def _runs_so_far(page) -> int:
    return int(page.evaluate("() => window.__probeRuns || 0"))


def _busy(page) -> bool:
    """The app is running a script or shows a spinner."""
    return bool(page.evaluate("""() => { const a = document.querySelector('[data-testid="stApp"]');
        return (a && a.getAttribute('data-test-script-state') !== 'notRunning')
               || !!document.querySelector('.stSpinner, [data-testid="stSpinner"]'); }"""))


def _charts_drawn(page, n: int, where: str, timeout_ms: int = 60000) -> None:
    """At least ``n`` plotly charts whose SVG has been drawn."""
    js = ("n => { const cs = Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'));"
          " cs.forEach(c => { if (!c.querySelector('.main-svg')) c.scrollIntoView(); });"  # drawn when in view
          " return cs.filter(c => c.querySelector('.js-plotly-plot .main-svg')).length >= n; }")
    try:
        page.wait_for_function(js, arg=n, timeout=timeout_ms, polling=100)
    except Exception:
        raise AssertionError(f"{where}: fewer than {n} plotly charts drawn "
                             f"({page.locator('[data-testid=stPlotlyChart]').count()} containers); "
                             f"{_page_state(page)}") from None


def _page_state(page) -> str:
    """What the page shows, for a failure message: script state, alerts and the start of the main text."""
    try:
        state = page.evaluate("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
                              " return a ? a.getAttribute('data-test-script-state') : null; }")
        alerts = [a.inner_text()[:200] for a in page.locator('[data-testid^="stAlertContent"], '
                                                              '[data-testid="stException"]').all()]
        text = " ".join(page.inner_text("main").split())[:600]
        return f"script state {state!r}, runs {page.evaluate('() => window.__probeRuns')}, alerts {alerts}, main: {text!r}"
    except Exception as exc:  # the message must not hide the failure it describes
        return f"(page state unavailable: {exc})"


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
    page.wait_for_timeout(800)  # plotly redraws at the new size (a screenshot only, not a page time)
    page.screenshot(path=str(path), full_page=False)
    page.set_viewport_size(size)
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w = 1000
    im = im.resize((w, round(im.height * w / im.width)), Image.Resampling.LANCZOS)
    # octree keeps the rare colours (a colour bar's blue end) that median cut merges away
    im.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def _n_charts_expected(page) -> int:
    body = page.inner_text("main")
    if "no filterbank to show" in body or "no spectral filter bank" in body or "no spectral bank" in body:
        return 0  # said in an info box (Filters, NMF)
    return 1


def _goto_page(page, nav: str, timeout_ms: int) -> float:
    """Click ``nav`` in the sidebar; seconds until its run has finished and its charts are drawn."""
    t0 = time.perf_counter()
    n = mark_click(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_text(nav, exact=True).click()
    page.get_by_role("heading", name=HEADINGS[nav], exact=True).wait_for(timeout=timeout_ms)
    deadline = t0 + timeout_ms / 1000
    while True:
        wait_done(page, n, max(1000, int((deadline - time.perf_counter()) * 1000)))
        check_clean(page, nav)  # an error box explains a missing chart better than a count does
        runs = _runs_so_far(page)
        try:
            _charts_drawn(page, _n_charts_expected(page), nav)
            return time.perf_counter() - t0
        except AssertionError:
            # a run can look finished for one poll and then go on (Streamlit reruns a page whose widgets
            # registered their values): keep waiting while the app is still at work, fail once it is idle
            if time.perf_counter() < deadline and (_busy(page) or _runs_so_far(page) > runs):
                n = runs
                continue
            raise


#: the Filters page's tabs (drawn only when open), in the order the walk opens them; it ends on the default
FILTER_TABS = ("Responses and spacing", "Reference matching", "Gallery")


def _open_tab(page, label: str, where: str, timeout_ms: int = SLOW_MS) -> float:
    """Click the tab ``label``; seconds until its run has finished and the open tab's chart (or note) is drawn."""
    t0 = time.perf_counter()
    n = mark_click(page)
    page.get_by_role("tab", name=label, exact=True).click()
    wait_done(page, n, timeout_ms)
    check_clean(page, where)
    # a drawn chart, or a note saying why there is none (a bank on frequency bins has no responses to draw)
    js = ("() => { const p = Array.from(document.querySelectorAll('[role=\"tabpanel\"]'))"
          ".find(e => !e.hidden && e.offsetParent !== null);"
          " return !!(p && (p.querySelector('[data-testid=\"stPlotlyChart\"] .js-plotly-plot .main-svg')"
          " || p.querySelector('[data-testid^=\"stAlert\"]'))); }")
    try:
        page.wait_for_function(js, timeout=timeout_ms, polling=100)
    except Exception:
        raise AssertionError(f"{where}: no chart (or note) drawn in the open tab; {_page_state(page)}") from None
    return time.perf_counter() - t0


def _click_a_map_point(page) -> None:
    """Click the point of the embedding map nearest the middle of its plot area (pixel position from its axes)."""
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
    page.mouse.click(xy[0], xy[1])


def _cluster_numbers(text: str, pattern: str) -> list[int]:
    return sorted(set(int(x) for x in re.findall(pattern, text)))


@pytest.mark.timeout(3600)  # an empty cache: IG until completeness ≤ 1 % for every model on a shared CPU
@pytest.mark.parametrize("name", _models())
def test_every_page_in_chromium(name, server, browser, timings, tmp_path):
    url = server["url"]
    tiny = name == "tiny"
    model = server["spec"] if tiny else f"zoo:{name}"
    # comma separated; the first model's pages are app_PAGE.png, the others' app_PAGE_NAME.png
    shots_for = [m.strip().removeprefix("zoo:") for m in os.environ.get("PROBE_SCREENSHOT_MODEL", "tiny").split(",")]
    shots = Path(os.environ["PROBE_SCREENSHOT_DIR"]) if os.environ.get("PROBE_SCREENSHOT_DIR") and \
        name in shots_for else None
    suffix = "" if not shots_for or name == shots_for[0] else f"_{name}"
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    context.add_init_script(RUN_COUNTER)
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    received: list = []  # websocket bytes the page receives (figures travel as JSON in Streamlit's messages)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda data: received.append(len(data))))
    page.set_default_timeout(60000)
    times = timings.setdefault(name, {})
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}/?model={model}" + (f"&audio={server['clip']}" if tiny else ""))
        page.get_by_role("heading", name="probe", exact=True).wait_for(timeout=SLOW_MS)
        wait_done(page, 0, SLOW_MS)
        _charts_drawn(page, 2 if tiny else 1, "overview")  # an embedding model's output has no figure of its own
        times["Overview"] = {"first": round(time.perf_counter() - t0, 2)}
        check_clean(page, f"{name} · Overview")
        assert _n_audio(page) >= 1
        clusters = {}
        body = page.inner_text("main")
        if "its embeddings clustered" in body:
            clusters["Overview"] = _cluster_numbers(body, r"\bcluster (\d+)\b")
        if shots:
            _shot(page, shots, "overview" + suffix)
        for nav in NAV[1:]:
            where = f"{name} · {nav}"
            times[nav] = {"first": round(_goto_page(page, nav, SLOW_MS), 2)}
            check_clean(page, where)
            body = page.inner_text("main")
            assert "on the Overview page" in body or nav == "Filters", f"{where}: the selection was lost"
            if nav == "Embeddings":
                page.wait_for_function("() => document.querySelectorAll('audio').length >= 2", timeout=30000)
                n_before = _n_audio(page)
                assert n_before >= 2, f"{where}: one player per cluster"
                clusters["Embeddings"] = _cluster_numbers(body, r"\bCluster (\d+)\b")
                n = mark_click(page)
                _click_a_map_point(page)
                page.wait_for_function(f"() => document.querySelectorAll('audio').length > {n_before}",
                                       timeout=120000)
                wait_done(page, n, 120000)
                assert page.get_by_text("Picked point").count() or page.get_by_text("Selection:").count()
                with page.expect_download() as dl:
                    page.get_by_text("Points + clusters (CSV)").click()
                path = Path(dl.value.path())
                head = path.read_text().splitlines()[0].split(",")
                assert head[:3] == ["time_s", "freq_hz", "energy_db"] and "cluster" in head, head
            if nav == "Filters" and _n_charts_expected(page):  # each tab draws its own chart when opened
                present = [t for t in FILTER_TABS if page.get_by_role("tab", name=t, exact=True).count()]
                assert "Gallery" in present, f"{where}: no gallery tab ({present})"
                tabs = times["Filters"].setdefault("tabs", {}) if len(present) > 1 else {}
                for label in present if len(present) > 1 else []:  # a gallery alone: nothing to switch to
                    tabs[label] = {"first": round(_open_tab(page, label, f"{where} · {label}"), 2)}
                    if shots and label == "Reference matching":
                        _shot(page, shots, "filters_matching" + suffix)
            if nav == "Attribution":
                _check_attribution_defaults(page, where)
                box = page.locator('[data-testid="stSelectbox"]').first
                targets = box.inner_text()
                box.click()
                options = [o.inner_text() for o in page.locator('[role="option"]').all()]
                page.keyboard.press("Escape")
                found = _cluster_numbers(" ".join(options + [targets]), r"cluster=(\d+)")
                if found:
                    clusters["Attribution"] = found
                with page.expect_download() as dl:
                    page.get_by_text("Map (CSV)").click()
                assert Path(dl.value.path()).read_text().startswith("time_s,freq_hz,relevance\n")
            if shots:
                _shot(page, shots, nav.lower() + suffix)
        # again: every page a second time (the session's and the server's caches hold everything), once the
        # server is idle: the warm-up thread (every model's defaults, a minute or more after start) would
        # otherwise be measured with the page
        times["_again"] = wait_quiet(server["pid"])
        times["_again"]["load_1min"] = round(os.getloadavg()[0], 2)
        for nav in NAV[1:] + NAV[:1]:
            received.clear()
            times[nav]["again"] = round(_goto_page(page, nav, SLOW_MS), 2)
            times[nav]["again_kB"] = round(sum(received) / 1000)  # what this visit sent to the browser
            for label in times[nav].get("tabs", {}):  # a tab opened on a warm page is a page-like wait too
                times[nav]["tabs"][label]["again"] = round(_open_tab(page, label, f"{name} · {nav} · {label}"), 2)
        if "Embeddings" in clusters and "Attribution" in clusters:  # an embedding model: one numbering everywhere
            k = clusters["Embeddings"]
            assert k == list(range(1, len(k) + 1)), clusters
            assert "Overview" in clusters, f"{name}: the Overview shows no clusters ({clusters})"
            assert all(v == k for v in clusters.values()), f"cluster numbering differs between pages: {clusters}"
        times["clusters"] = clusters
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"))
        log = Path(server["log"])
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no server log)"
        print(f"\n--- last lines of the server log ({log}) ---\n{tail}")  # shown by pytest with the failure
        raise
    finally:
        context.close()
        timings.write()
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
            # either the map is no better than random, or the target rebounds after its top bins go: said either way
            assert any("no better than random" in w or "rebounds" in w for w in warnings), (where, dele, warnings)
    elif not warnings:
        pytest.fail(f"{where}: no deletion test and no warning saying why")
