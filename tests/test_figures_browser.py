"""The composite figures in headless Chromium: drawn once, not twice.

plotly.js draws a figure, then measures its tick labels, titles, colour bars and legends; if
they need more room than the layout's margins give, it grows the margins and draws the whole
figure again (``Plots.doAutoMargin``). On the Filters page that second pass was most of the
responses chart's cost (0.25-0.6 s against 0.09-0.16 s, measured standalone), and a push of 3 px
was enough to trigger it. The composite builders reserve margins with room to spare; these
tests draw them with the plotly.js that plotly.py ships (offline) and check that the margins
plotly ends with are the ones the figure asked for, and that each heat map's image was made once.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._browser import ARGS, CHROMIUM, require_browser
from tests.test_figures_filters import SR, _gammatone
from tests.test_figures_nmf import FREQS, _comparison

pytestmark = pytest.mark.browser

#: counts heat-map images (plotly.js encodes each drawn heat map with canvas.toDataURL)
COUNT_IMAGES = """() => { window.__images = 0; const o = HTMLCanvasElement.prototype.toDataURL;
  HTMLCanvasElement.prototype.toDataURL = function (...a) { window.__images++; return o.apply(this, a); }; }"""

DRAW = """async (spec) => {
  const f = JSON.parse(spec); const g = document.getElementById('g');
  Plotly.purge(g); window.__images = 0;
  await Plotly.newPlot(g, f.data, f.layout, {displaylogo: false});
  await new Promise(r => setTimeout(r, 100));
  const s = g._fullLayout._size;
  return {asked: f.layout.margin, drawn: {l: s.l, r: s.r, t: s.t, b: s.b}, images: window.__images}; }"""


@pytest.fixture(scope="module")
def page():
    require_browser()
    from pathlib import Path

    import plotly
    from playwright.sync_api import sync_playwright

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = b.new_page(viewport={"width": 1280, "height": 1000})
        pg.set_content("<html><body style='margin:0'><div id='g' style='width:820px'></div></body></html>")
        pg.add_script_tag(path=str(js))
        pg.evaluate(COUNT_IMAGES)
        try:
            yield pg
        finally:
            b.close()


def _bank_figures():
    from probe.analyze.filters import filter_responses, match_reference, scale_fit
    from probe.figures.filters import matching_overview, responses_and_spacing
    from probe.filterbank import FilterBank

    # 256 filters like the zoo's learned banks: 3-digit ranks on the y axes, kHz ticks, a colour bar each
    K = _gammatone(np.geomspace(60, 7000, 256), n_taps=512)
    fr = filter_responses(FilterBank("planted", K[:, None], "samples", SR))
    fit = scale_fit(fr, sample_rate=SR)
    match = match_reference(fr, "gammatone")
    return {"responses_and_spacing": responses_and_spacing(fr, fit, sample_rate=SR),
            "matching_overview": matching_overview(fr, match, title="planted × gammatone: mean matched cosine 0.999")}


def _nmf_figures():
    from probe.figures.nmf import bases_overview

    return {"bases_overview": bases_overview(_comparison(), FREQS)}


@pytest.mark.parametrize("which", ["responses_and_spacing", "matching_overview", "bases_overview"])
def test_composite_figure_is_drawn_once_with_the_margins_it_asked_for(page, which):
    figs = _nmf_figures() if which == "bases_overview" else _bank_figures()
    fig = figs[which]
    fig.update_layout(width=820)  # the page's width on a 1280-px window
    out = page.evaluate(DRAW, fig.to_json())
    asked, drawn = out["asked"], out["drawn"]
    assert {k: drawn[k] for k in "lrtb"} == {k: asked[k] for k in "lrtb"}, \
        f"plotly grew the margins {asked} -> {drawn}: it drew {which} twice"
    n_heat = sum(t.type == "heatmap" for t in fig.data)
    assert out["images"] == n_heat, f"{out['images']} heat-map images for {n_heat} heat maps"
