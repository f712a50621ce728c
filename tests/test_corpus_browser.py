"""The Corpus page in a real headless Chromium: `streamlit run` as `probe app --allow-runs` starts it, driven with Playwright.

One small run of the planted synthetic model (by construction ``units:3`` follows onsets and
``units:7`` the 1–2 kHz band) is dissected and offered through ``PROBE_APP_ALLOW_RUNS``. In the
browser: the page opens with its unit table; a click on a column header sorts the table (read back
from the grid's accessibility rows); picking ``units:3`` in the unit menu puts its excerpts in
``<audio>`` elements (other sources, captions naming the clips) and draws its concept plot. No request
leaves the server. Waits are on the page's own state (Streamlit's ``data-test-script-state``), never
fixed sleeps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from probe.corpus import DissectOptions, RunOptions
from probe.corpus.synthetic import make_event_corpus, planted_spec
from probe.pipelines.corpus import corpus_dissect, corpus_run
from tests._browser import (ARGS, CHROMIUM, RUN_COUNTER, check_clean, free_port, mark_click, require_browser,
                            streamlit_server, wait_done)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
OPTS = RunOptions(layers=("units", "code"), concepts=("loudness", "onset", "bands", "flatness"), batch_size=4)
TIMEOUT_MS = 180_000

#: the unit table's visible rows, as text, from the data grid's accessibility table (the grid itself is a canvas)
GRID_ROWS = """() => {
    const t = document.querySelector('[data-testid="stDataFrame"] table[role="grid"]');
    if (!t) return null;
    const head = Array.from(t.querySelectorAll('thead th')).map(c => c.textContent.trim());
    const rows = Array.from(t.querySelectorAll('tbody tr')).map(r =>
        Array.from(r.querySelectorAll('td')).map(c => c.textContent.trim()));
    return {head, rows};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    from apps.diskcache import ENV as ENV_CACHE
    from apps.policy import ENV_RUNS
    from probe.cli.app import command

    root = tmp_path_factory.mktemp("corpus_browser")
    corpus = make_event_corpus(root / "clips", n_clips=8, seconds=1.0, manifest=True)
    corpus_run(planted_spec, corpus, root / "allowed" / "run", options=OPTS)
    corpus_dissect(root / "allowed" / "run", options=DissectOptions(permutations=200))
    home = root / "home"
    home.mkdir()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "OMP_NUM_THREADS": "1",
           ENV_RUNS: str((root / "allowed").resolve()), ENV_CACHE: "off", "PROBE_APP_WARMUP": "0"}
    with streamlit_server(command(port, "127.0.0.1"), port=port, cwd=ROOT, env=env,
                          log_path=home / "streamlit.log") as url:
        yield {"url": url, "run": str((root / "allowed" / "run").resolve())}


def _done(page, after: int) -> None:
    wait_done(page, after, TIMEOUT_MS)


def _grid(page) -> dict:
    page.wait_for_function(f"() => {{ const g = ({GRID_ROWS})(); return g && g.rows.length > 0; }}",
                           timeout=TIMEOUT_MS, polling=100)
    return page.evaluate(GRID_ROWS)


def _audio_sources(page) -> list:
    return page.eval_on_selector_all("audio", "els => els.map(e => e.currentSrc || e.src).filter(Boolean)")


@pytest.mark.timeout(900)
def test_corpus_page_sorts_units_and_plays_a_units_excerpts(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url = server["url"]
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.add_init_script(RUN_COUNTER)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            _done(page, 0)
            n = mark_click(page)
            page.locator('[data-testid="stSidebarNav"]').get_by_text("Corpus", exact=True).click()
            page.get_by_role("heading", name="Corpus", exact=True).wait_for()
            _done(page, n)
            check_clean(page, "Corpus page")
            assert "units labelled" in page.inner_text("main")

            # the unit table: labelled units first, in the order the pipeline wrote
            grid = _grid(page)
            head, rows = grid["head"], grid["rows"]
            assert head[:2] == ["layer", "unit"], head
            listed = {(r[0], r[1]): r for r in rows}
            label_col = head.index("label")
            assert listed[("units", "7")][label_col] == "band_1000_2000"
            assert listed[("units", "3")][label_col] == "onset"
            before = [(r[0], int(r[1])) for r in rows]
            assert before != sorted(before) and before != sorted(before, reverse=True)  # not yet sorted by layer

            # a click on the "layer" header sorts by it (ascending, then descending on a second click)
            box = page.locator('[data-testid="stDataFrame"] [data-testid="data-grid-canvas"]').bounding_box()
            orders = []
            for descending in (False, True):
                # sorted by layer (and no longer the table's own order); a click that lands while the grid is
                # still settling is not taken, so a few clicks are allowed, then the order must hold
                want = (f"() => {{ const g = ({GRID_ROWS})(); if (!g || g.rows.length === 0) return false; "
                        "const l = g.rows.map(r => r[0]); const s = [...l].sort(); "
                        f"{'s.reverse(); ' if descending else ''}"
                        "return JSON.stringify(l) === JSON.stringify(s) && "
                        f"JSON.stringify(g.rows.map(r => r[0] + ':' + r[1])) !== {json.dumps(json.dumps([f'{a}:{b}' for a, b in before]))}; }}")
                for _attempt in range(4):
                    page.mouse.click(box["x"] + 12, box["y"] + 17)
                    try:
                        page.wait_for_function(want, timeout=10000, polling=100)
                        break
                    except Exception:  # playwright's TimeoutError: click again
                        continue
                orders.append([(r[0], int(r[1])) for r in _grid(page)["rows"]])
            layers_1, layers_2 = [o[0] for o in orders[0]], [o[0] for o in orders[1]]
            assert layers_1 == sorted(layers_1) and layers_2 == sorted(layers_2, reverse=True), orders
            assert layers_1 != layers_2

            # picking another unit puts its excerpts in audio players and draws its concept plot
            old_audio = _audio_sources(page)
            n = mark_click(page)
            page.get_by_role("combobox", name="Unit").click()  # the unit menu; units:7 (top row) is shown first
            page.get_by_role("option").filter(has_text="units:3 ").first.click()
            _done(page, n)
            check_clean(page, "Corpus page, unit units:3")
            page.wait_for_function("() => document.querySelectorAll('audio').length >= 3", timeout=60000)
            new_audio = _audio_sources(page)
            # new excerpts (one may coincide: with one-second clips an excerpt is the whole clip, and two units
            # can share their best clip)
            assert len(new_audio) == 3 and set(new_audio) != set(old_audio), (old_audio, new_audio)
            body = page.inner_text("main")
            assert body.count(".wav") >= 3  # each excerpt's caption names its clip
            page.wait_for_function("() => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"] "
                                   ".gtitle')).some(t => t.textContent.includes('units unit 3'))", timeout=60000)
        finally:
            browser.close()
    outside = [r for r in requests if not r.startswith(url) and not r.startswith("data:") and not r.startswith("blob:")]
    assert not outside, outside[:5]
