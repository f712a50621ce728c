"""The filter gallery and the matched responses, drawn on one axis each, still show every kernel in its place.

Both figures used to be grids of subplots (32 axes and 16 titles for a 16-filter bank); a browser
spends ~10–25 ms on each axis or title, so they now tile the kernels in one axis. These tests plant
kernels whose identity is known by construction (gammatone kernels at known centres, in shuffled
order; T-F patches with one marked cell; Gaussian responses at known Hz) and read the figure back
as the browser gets it: which points belong to which filter (from the hover data), where each cell
sits, what its label says, and that each drawn curve is the planted kernel, scaled.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import plotly.graph_objects as go

from probe.analyze.filters import filter_responses, scale_fit
from probe.figures.filters import (filter_gallery, matched_responses_plot, matching_overview, response_heatmap,
                                   responses_and_spacing, side_by_side)
from probe.filterbank import FilterBank

SR = 16000


def _gammatone(centres, n_taps=128, order=4):
    t = np.arange(n_taps) / SR
    erb = 24.7 + 0.108 * np.asarray(centres)[:, None]
    k = t ** (order - 1) * np.exp(-2 * np.pi * 1.019 * erb * t) * np.cos(2 * np.pi * np.asarray(centres)[:, None] * t)
    return k / np.abs(k).max(1, keepdims=True)


def _axes(fig) -> list[str]:
    """The layout's axis names (``xaxis``, ``yaxis2``, ...)."""
    return sorted(k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis")))


def _kernel_points(trace):
    """Per filter index: (x, y, customdata rows) of the points drawn for it (gaps dropped)."""
    cd = np.asarray(trace.customdata, float)
    x, y = np.asarray(trace.x, float), np.asarray(trace.y, float)
    keep = np.isfinite(cd[:, 0])
    out = {}
    for i in np.unique(cd[keep, 0]).astype(int):
        m = keep & (cd[:, 0] == i)
        out[i] = (x[m], y[m], cd[m])
    return out


def test_gallery_puts_every_planted_kernel_in_its_cell_sorted_by_centre():
    centres = np.array([3000.0, 400.0, 1500.0, 700.0, 5000.0, 250.0, 2200.0, 1000.0, 4000.0, 550.0])
    amps = np.arange(1, 11) * 0.1  # each kernel its own amplitude: the hover must give it back
    K = _gammatone(centres) * amps[:, None]
    bank = FilterBank("planted", K[:, None], "samples", SR)
    fr = filter_responses(bank)
    fig = filter_gallery(bank, fr, max_filters=10, n_cols=4)
    # one axis, no subplot grid, no layout annotations
    assert not fig.layout.annotations and _axes(fig) == ["xaxis", "yaxis"]
    lines = [t for t in fig.data if t.customdata is not None]
    assert len(lines) == 1 and len(fig.data) <= 4
    points = _kernel_points(lines[0])
    assert sorted(points) == list(range(10))  # every kernel drawn, once
    expected_order = np.argsort(centres)  # cells run row by row in order of the planted centres
    t_ms = np.arange(K.shape[1]) / SR * 1000
    cell = {}
    for i, (x, y, cd) in points.items():
        assert len(x) == K.shape[1]
        # the drawn curve is the planted kernel scaled by a positive factor, sign kept, peak |y| = 1
        # (offset-free: correlation, and the span it is drawn with against the kernel's peak magnitude)
        assert np.corrcoef(y, K[i])[0, 1] > 0.999
        assert abs(np.ptp(y) * np.abs(K[i]).max() / np.ptp(K[i]) - 1) < 1e-3
        # hover gives the kernel's own time (ms) and value, and x runs over the kernel's taps in order
        np.testing.assert_allclose(cd[:, 1], t_ms, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(cd[:, 2], K[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.diff(x), np.diff(t_ms), rtol=1e-3)
        cell[i] = (x.min(), x.max(), y.min(), y.max())
    # positions: rank j of the sorted centres sits at row j // 4, column j % 4
    col_x = {}
    row_y = {}
    for j, i in enumerate(expected_order):
        r, c = divmod(j, 4)
        col_x.setdefault(c, []).append(cell[i][0])
        row_y.setdefault(r, []).append((cell[i][2] + cell[i][3]) / 2)
    starts = [np.mean(col_x[c]) for c in range(4)]
    assert all(np.ptp(col_x[c]) < 1e-6 for c in range(4)) and np.all(np.diff(starts) > t_ms[-1])  # left to right
    for c in range(3):  # no two columns overlap
        assert max(cell[i][1] for i in expected_order[c::4]) < min(cell[i][0] for i in expected_order[c + 1::4])
    mids = [np.mean(row_y[r]) for r in range(3)]
    assert np.all(np.diff(mids) <= -2.0)  # top to bottom, kernels in [−1, 1] cannot reach the next row
    # labels: one text trace, each label above its own kernel and naming it with its centre
    text = [t for t in fig.data if isinstance(t, go.Scatter) and t.mode == "text"][0]
    for j, i in enumerate(expected_order):
        label, lx, ly = text.text[j], text.x[j], text.y[j]
        assert label.startswith(f"#{i} · ")
        assert cell[i][0] <= lx <= cell[i][1] and ly >= cell[i][3] - 1e-6
        assert ly < cell[i][2] + 3.0  # and below the row above
    hz = [float(lbl.split("· ")[1].replace(" kHz", "e3").replace(" Hz", "")) for lbl in text.text]
    assert np.all(np.diff(hz) > 0) and abs(hz[0] - 250) < 60 and abs(hz[-1] - 5000) < 600
    # the meta record agrees with what is drawn
    for m in lines[0].meta["cells"]:
        x, y, _ = points[m["filter"]]
        np.testing.assert_allclose(x - m["x_offset"], t_ms, atol=1e-3)
        np.testing.assert_allclose((y - m["y_offset"]) * m["scale"], K[m["filter"]], atol=1e-5)
        assert abs(m["scale"] - amps[m["filter"]]) < 1e-6


def test_gallery_spreads_a_capped_selection_and_ticks_the_time_axis():
    K = _gammatone(np.geomspace(200, 6000, 40), n_taps=64)
    bank = FilterBank("many", K[:, None], "samples", SR)
    fig = filter_gallery(bank, max_filters=16, n_cols=8)
    shown = sorted(_kernel_points([t for t in fig.data if t.customdata is not None][0]))
    assert shown == sorted(np.linspace(0, 39, 16).round().astype(int).tolist())
    # each of the 8 columns is ticked at its first and last tap, in ms
    assert list(fig.layout.xaxis.ticktext) == ["0", f"{63 / SR * 1000:.3g}"] * 8
    assert "time (ms)" in fig.layout.xaxis.title.text


def test_patch_mosaic_holds_each_planted_patch_at_its_cell():
    h, w, n = 5, 7, 12
    P = np.zeros((n, 1, h, w))
    for i in range(n):  # patch i: one marked cell at (i mod h, i mod w) with value ±(i + 1)
        P[i, 0, i % h, i % w] = (i + 1) * (-1) ** i
    fig = filter_gallery(FilterBank("c", P, "spectrotemporal", SR, freqs_hz=np.linspace(0, 8000, 64)), n_cols=5)
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heat) == 1 and not fig.layout.annotations and _axes(fig) == ["xaxis", "yaxis"]
    Z = np.asarray(heat[0].z, float)
    assert heat[0].zmin == -12 and heat[0].zmax == 12
    text = [t for t in fig.data if isinstance(t, go.Scatter) and t.mode == "text"][0]
    covered = np.zeros(Z.shape, bool)
    for j in range(n):
        r, c = divmod(j, 5)
        cells = [m for m in heat[0].meta["cells"] if m["filter"] == j]
        assert len(cells) == 1 and (cells[0]["row"], cells[0]["col"]) == (r, c)
        x0, y0 = cells[0]["x_offset"], cells[0]["y_offset"]
        np.testing.assert_array_equal(Z[y0:y0 + h, x0:x0 + w], P[j, 0])
        covered[y0:y0 + h, x0:x0 + w] = True
        # rows go top to bottom (y grows upwards), columns left to right
        assert x0 == c * (w + 1) and y0 == (2 - r) * (Z.shape[0] // 3)
        assert heat[0].text[y0 + j % h][x0 + j % w].startswith(f"filter #{j}<br>frame {j % w}<br>bin {j % h}")
        assert text.text[j] == f"#{j}" and x0 <= text.x[j] <= x0 + w - 1 and text.y[j] >= y0 + h - 1
    assert np.isnan(Z[~covered]).all()  # gaps and the empty end of the last row are blank


def test_matched_responses_stack_each_pair_in_its_band():
    f = np.linspace(0, 8000, 2049)
    centres = np.array([500.0, 1500.0, 3000.0, 5000.0])
    resp = np.exp(-0.5 * ((f[None] - centres[:, None]) / 150) ** 2)
    ref = np.exp(-0.5 * ((f[None] - centres[::-1, None] - 100) / 200) ** 2)  # reference k is centred at centres[3-k]+100
    fr = NS(order_=np.array([2, 0, 3, 1]), freqs_hz_=f, responses_=resp, name_="bank")
    match = NS(assignment_=np.array([3, 2, 1, 0]), reference_responses_=ref,
               matched_cosine_=np.array([0.9, 0.8, 0.7, 0.6]), reference="gauss")
    fig = matched_responses_plot(fr, match, n_show=4)
    assert not fig.layout.annotations and _axes(fig) == ["xaxis", "yaxis"]
    learned = [t for t in fig.data if t.name == "learned"]
    matched = [t for t in fig.data if t.name == "matched gauss"]
    assert len(learned) == len(matched) == 1
    bands = learned[0].meta["bands"]
    assert [b["filter"] for b in bands] == [2, 0, 3, 1]  # top to bottom in the responses' order
    offs = [b["offset"] for b in bands]
    assert np.all(np.diff(offs) <= -45)  # a band spans 0 to −40 dB: bands never overlap
    text = [t for t in fig.data if isinstance(t, go.Scatter) and t.mode == "text"][0]
    for (i, off), label, ly in zip([(b["filter"], b["offset"]) for b in bands], text.text, text.y):
        assert label == f"#{i}, cos={match.matched_cosine_[i]:.2f}" and off - 40 <= ly <= off
        for trace, c in ((learned[0], centres[i]), (matched[0], centres[3 - match.assignment_[i]] + 100)):
            x, y, cd = _kernel_points(trace)[i]
            assert len(x) <= 400 and np.isin(x.astype(np.float32), f.astype(np.float32)).all()
            shown = np.isfinite(y)
            # drawn within the band, peaking at 0 dB at the planted centre
            assert np.all(y[shown] <= off + 1e-3) and np.all(y[shown] >= off - 40 - 1e-3)
            assert abs(x[shown][np.argmax(y[shown])] - c) <= 8000 / 399 and y[shown].max() > off - 0.5
            # hover reads the curve's own dB, including below the band's floor
            np.testing.assert_allclose(cd[shown & (cd[:, 1] >= -40), 1] + off, y[shown & (cd[:, 1] >= -40)], atol=1e-3)
            assert cd[:, 1].min() < -40


# ---- several charts as panels of one figure (one chart in a page) ---------------------------------------------
def _inside(dom, box, tol=1e-6):
    return box[0] - tol <= dom[0] <= dom[1] <= box[1] + tol


def test_side_by_side_keeps_each_panels_traces_axes_colour_bar_and_legend_in_its_box():
    z = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = go.Figure([go.Heatmap(z=z, x0=0, dx=1, colorbar=dict(title=dict(text="A"))),
                   go.Scatter(x=[0, 3], y=[5, 6], name="mean", xaxis="x2", yaxis="y2")],
                  layout=dict(title=dict(text="panel A"), height=500,
                              xaxis=dict(domain=[0, 1], anchor="y", matches="x2"), yaxis=dict(domain=[0.3, 1.0]),
                              xaxis2=dict(domain=[0, 1], anchor="y2"), yaxis2=dict(domain=[0, 0.2], anchor="x2"),
                              annotations=[dict(text="note", x=0.5, y=0.5, xref="paper", yref="paper")]))
    b = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="b line"),
                  layout=dict(title=dict(text="panel B"), height=300, legend=dict(x=0.01, y=0.99)))
    c = go.Figure(go.Bar(x=["p", "q"], y=[1, 2], name="c bars"), layout=dict(title=dict(text="panel C"), height=300))
    fig = side_by_side([a, [b, c]], widths=[3, 2], gap=0.1, names=["A", "B", "C"])
    panels = {p["name"]: p for p in fig.layout.meta["panels"]}
    assert list(panels) == ["A", "B", "C"]
    # columns 3:2 of the width left after the gap; B over C in the right column, B the taller
    assert np.allclose(panels["A"]["box"], [0, 0.54, 0, 1]) and np.allclose(panels["B"]["box"][:2], [0.64, 1.0])
    assert panels["B"]["box"][2] > panels["C"]["box"][3] and panels["B"]["box"][3] == 1.0
    # every trace kept, with its data, on its panel's renamed axes
    assert [(t.type, t.xaxis, t.yaxis) for t in fig.data] == [("heatmap", "x", "y"), ("scatter", "x2", "y2"),
                                                            ("scatter", "x3", "y3"), ("bar", "x4", "y4")]
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), z)
    assert list(fig.data[3].y) == [1, 2]
    lay = fig.layout
    # axis domains squeezed into the boxes, anchors and matches renamed
    for name in panels["A"]["axes"]:
        dom = lay[name].domain
        assert _inside(dom, panels["A"]["box"][:2] if name[0] == "x" else panels["A"]["box"][2:])
    assert lay.xaxis.matches == "x2" and lay.yaxis2.anchor == "x2" and lay.xaxis3.anchor == "y3"
    assert np.allclose(lay.yaxis.domain, [0.3, 1.0]) and np.allclose(lay.yaxis2.domain, [0, 0.2])
    for p in ("B", "C"):
        assert all(_inside(lay[n].domain, panels[p]["box"][:2] if n[0] == "x" else panels[p]["box"][2:])
                   for n in panels[p]["axes"])
    # the colour bar sits at panel A's right edge (in the gap), spanning the heat map's rows only
    cb = fig.data[0].colorbar
    assert panels["A"]["box"][1] <= cb.x < panels["B"]["box"][0] and cb.len <= 0.7 + 1e-6
    # each panel its own legend, placed in its box; titles above their boxes; A's paper note in A's box
    assert fig.data[2].legend == "legend2" and fig.data[3].legend == "legend3"
    assert panels["B"]["box"][0] <= lay.legend2.x <= 1 and lay.legend2.y > panels["C"]["box"][3]
    notes = {n.text: n for n in lay.annotations}
    for p in ("A", "B", "C"):
        n = notes[f"panel {p}"]
        x0, x1, _, y1 = panels[p]["box"]
        assert abs(n.x - (x0 + x1) / 2) < 1e-9 and n.y >= y1
    assert abs(notes["note"].x - 0.27) < 1e-9
    # second in line, A's axes are renumbered and its references follow them
    swapped = side_by_side([c, a]).layout
    assert swapped.xaxis2.matches == "x3" and swapped.xaxis2.anchor == "y2" and swapped.yaxis3.anchor == "x3"


def test_responses_and_spacing_holds_the_planted_bank_in_three_panels():
    centres = np.geomspace(200, 6000, 12)
    K = _gammatone(centres[::-1].copy(), n_taps=256)  # planted in reverse order: the figure sorts them
    fr = filter_responses(FilterBank("planted", K[:, None], "samples", SR))
    fit = scale_fit(fr, sample_rate=SR)
    fig = responses_and_spacing(fr, fit, sample_rate=SR)
    panels = {p["name"]: p for p in fig.layout.meta["panels"]}
    assert list(panels) == ["responses", "centres", "octaves"]
    # left: the response heat map, the same picture as on its own (at most 300 frequencies: half the width)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 1 and heat[0].xaxis == "x"
    np.testing.assert_array_equal(np.asarray(heat[0].z), np.asarray(response_heatmap(fr, max_columns=300).data[0].z))
    assert np.asarray(heat[0].z).shape[1] <= 300
    # whole dB in one byte per cell, the responses rounded: the same picture at a quarter of float32's bytes
    z = np.asarray(heat[0].z)
    assert z.dtype == np.int8
    n = fr.freqs_hz_.size
    want = fr.responses_db_[fr.order_][:, ::int(np.ceil(n / 300)) if n > 300 else 1]
    assert z.shape == want.shape and np.abs(z - want).max() <= 0.5 + 1e-6 and want.min() > -127
    # right, top: the learned centres in rank order (ascending: the planted centres), on the centre panel's axes
    cx, cy = panels["centres"]["axes"]
    learned = [t for t in fig.data if t.name and t.name.startswith("learned centres")][0]
    assert (learned.xaxis, learned.yaxis) == (cx.replace("axis", ""), cy.replace("axis", ""))
    np.testing.assert_allclose(learned.y, np.sort(fr.centre_hz_))
    assert np.all(np.abs(np.log(np.asarray(learned.y) / centres)) < 0.1)  # at the planted centres
    # geometric spacing: the log-spaced fit is the best one, and says so
    best = [t.name for t in fig.data if t.name and "(best)" in t.name]
    assert best == [f"{fit.best_scale_}-spaced fit, R²={fit.r2_[fit.best_scale_]:.3f} (best)"]
    assert fit.best_scale_ == "log"
    # right, bottom: filters per octave add up to the bank
    bars = [t for t in fig.data if t.type == "bar"][0]
    assert sum(bars.y) == 12 and bars.xaxis == panels["octaves"]["axes"][0].replace("axis", "")
    assert panels["centres"]["box"][0] > panels["responses"]["box"][1]
    assert panels["centres"]["box"][2] > panels["octaves"]["box"][3]


def test_matching_overview_marks_the_planted_matching_beside_the_pairs():
    f = np.linspace(0, 8000, 513)
    centres = np.array([500.0, 1500.0, 3000.0, 5000.0])
    resp = np.exp(-0.5 * ((f[None] - centres[:, None]) / 150) ** 2)
    ref = np.exp(-0.5 * ((f[None] - centres[::-1, None]) / 200) ** 2)
    assignment = np.array([3, 2, 1, 0])  # learned i ↔ reference 3 − i, planted
    cos = np.full((4, 4), 0.1)
    cos[np.arange(4), assignment] = [0.9, 0.8, 0.7, 0.6]
    fr = NS(order_=np.array([2, 0, 3, 1]), freqs_hz_=f, responses_=resp, name_="bank")
    match = NS(cosine_=cos, assignment_=assignment, reference_responses_=ref, matched_cosine_=cos.max(1),
               reference="gauss", mean_cosine_=0.75)
    fig = matching_overview(fr, match, n_show=4)
    panels = {p["name"]: p for p in fig.layout.meta["panels"]}
    assert list(panels) == ["matrix", "pairs"] and "mean matched cosine 0.750" in fig.layout.title.text
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    Z = np.asarray(heat.z)
    assert Z.dtype == np.float32 and np.asarray(heat.customdata).dtype == np.uint8  # ids < 256: one byte
    # row r is learned filter order_[r] (hover names it); the circles sit on the planted cells
    np.testing.assert_array_equal(np.asarray(heat.customdata)[:, 0], fr.order_)
    circles = [t for t in fig.data if t.name == "optimal matching"][0]
    for x, y in zip(circles.x, circles.y):
        assert x == assignment[fr.order_[y]] and Z[y, x] == np.float32(cos[fr.order_[y], x])
    # the pairs panel: learned and matched curves of every pair, on the right panel's axes
    for name in ("learned", "matched gauss"):
        t = [t for t in fig.data if t.name == name][0]
        assert t.xaxis == panels["pairs"]["axes"][0].replace("axis", "") and t.meta["bands"][0]["filter"] == 2
    assert panels["pairs"]["box"][0] > heat.colorbar.x > panels["matrix"]["box"][1] - 1e-9


def test_a_big_bank_draws_its_centres_and_bands_as_lines_not_one_element_per_filter():
    from probe.figures.filters import MANY_POINTS, centre_frequency_plot

    centres = np.geomspace(150, 7000, 100)
    fr = filter_responses(FilterBank("big", _gammatone(centres, n_taps=256)[:, None], "samples", SR))
    assert fr.n_filters_ > MANY_POINTS
    fig = centre_frequency_plot(fr, scale_fit(fr, sample_rate=SR))
    low, high, line = fig.data[:3]
    # the −3 dB band: one shaded area between the sorted filters' low and high edges, not 100 error bars
    assert line.error_y.array is None and line.mode == "lines" and high.fill == "tonexty"
    np.testing.assert_allclose(low.y, fr.low_hz_[fr.order_])
    np.testing.assert_allclose(high.y, fr.high_hz_[fr.order_])
    np.testing.assert_allclose(line.y, np.sort(fr.centre_hz_))
    assert np.all(np.abs(np.log(np.asarray(line.y) / centres)) < 0.1)  # at the planted centres
    assert list(line.customdata) == list(fr.order_)
    assert np.all(np.asarray(low.y) <= np.asarray(line.y)) and np.all(np.asarray(line.y) <= np.asarray(high.y))
    # the heat map's centre marks: one line through every row's centre
    marks = [t for t in response_heatmap(fr).data if t.name and t.name.startswith("centre")][0]
    assert marks.mode == "lines" and list(marks.y) == list(range(100))
    np.testing.assert_allclose(marks.x, np.sort(fr.centre_hz_))
    # a small bank keeps a marker and an error bar per filter
    small = filter_responses(FilterBank("small", _gammatone(centres[::10], n_taps=256)[:, None], "samples", SR))
    dots = centre_frequency_plot(small).data[0]
    assert dots.mode == "markers" and len(dots.error_y.array) == 10
