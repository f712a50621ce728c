"""Heat maps drawn at display resolution, and the embedding map drawn as SVG, keep what they show true.

The app sends every figure to the browser; full-resolution maps (250,000+ cells) made warm pages
take seconds. These tests plant content at known cells (a tone at a known bin, a mask over a
known rectangle, relevance in a known box) and check that the reduced figure shows it at the
right seconds and Hz, that the size caps hold, that the reduction is deterministic, and that a
point clicked on the SVG map still names its own T-F cell.
"""

from __future__ import annotations

import json
from types import SimpleNamespace as NS

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from probe.figures.display import MAX_COLUMNS, MAX_ROWS, block_factor, to_display
from probe.grid import TFGrid

SR = 16000
GRID = TFGrid(SR, n_fft=512, hop_length=160)  # 257 bins × 1001 frames for 10 s: crnn_sed's size


def _z(trace) -> np.ndarray:
    """A heatmap trace's z as the array the browser gets (typed arrays decoded)."""
    return np.asarray(trace.z, dtype=float)


def _axis(trace, name: str) -> np.ndarray:
    """A heatmap's cell centres along ``x`` or ``y``: its array, or its start and step (``x0``/``dx``)."""
    v = getattr(trace, name)
    if v is not None:
        return np.asarray(v, float)
    n = _z(trace).shape[1 if name == "x" else 0]
    return trace[f"{name}0"] + trace[f"d{name}"] * np.arange(n)


# ---- to_display ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(257, 1001), (129, 501), (1025, 3001), (64, 40), (201, 601)])
def test_caps_hold_and_untouched_maps_stay_exact(shape):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(shape)
    d, x, y = to_display(z, np.arange(shape[1]) * 0.01, np.arange(shape[0]) * 10.0)
    assert d.shape[0] <= MAX_ROWS and d.shape[1] <= MAX_COLUMNS and d.dtype == np.float32
    assert d.shape == (len(y), len(x))
    if shape[0] <= MAX_ROWS and shape[1] <= MAX_COLUMNS:  # small enough: every cell as it was
        np.testing.assert_array_equal(d, z.astype(np.float32))
        np.testing.assert_array_equal(x, np.arange(shape[1]) * 0.01)
    d2, _, _ = to_display(z, np.arange(shape[1]) * 0.01, np.arange(shape[0]) * 10.0)
    np.testing.assert_array_equal(d, d2)  # deterministic


def test_blocks_keep_their_cells_values_and_coordinates():
    # 257 rows → blocks of 2 (129 rows, the last one a single row); 1001 columns → blocks of 2 (501)
    z = np.zeros((257, 1001))
    z[100, :] = 1.0  # a one-bin tone
    z[256, 1000] = 5.0  # the last cell: alone in its block on both axes
    t = GRID.frame_times(1001)
    f = GRID.bin_frequencies()
    d, x, y = to_display(z, t, f, how="max")
    assert d.shape == (129, 501) and block_factor(257, MAX_ROWS) == 2
    row = int(np.argmax(d[:, 10]))
    assert row == 50 and f[100] in (f[2 * row], f[2 * row + 1])  # the tone's block holds its bin
    assert abs(y[row] - f[100]) <= SR / 512  # within one bin of the tone
    assert d[50].min() == 1.0  # max keeps a one-bin tone at its level
    assert d[-1, -1] == 5.0  # a short last block holds its own cell's value ...
    assert np.allclose(np.diff(y), 2 * (f[1] - f[0])) and np.allclose(np.diff(x), 2 * (t[1] - t[0]))  # ... evenly spaced
    assert x[0] == pytest.approx((t[0] + t[1]) / 2)
    m, _, _ = to_display(z, how="mean")
    assert m[50, 10] == pytest.approx(0.5)  # the mean of the tone's bin and its silent neighbour


def test_majority_marks_blocks_mostly_inside_a_planted_rectangle():
    mask = np.zeros((400, 1200), bool)
    mask[100:300, 240:720] = True  # rows 100-299, frames 240-719: whole blocks of 2 × 2
    d, _, _ = to_display(mask, how="majority")
    assert d.shape == (200, 600) and set(np.unique(d)) == {0.0, 1.0}
    expect = np.zeros((200, 600))
    expect[50:150, 120:360] = 1.0
    np.testing.assert_array_equal(d, expect)


def test_nan_cells_are_left_out_and_an_all_nan_block_stays_nan():
    z = np.full((4, 1200), np.nan)
    z[0, 0] = -10.0  # one finite cell in the first 1 × 2 block
    d, _, _ = to_display(z, max_rows=None)
    assert d[0, 0] == -10.0 and np.isnan(d[0, 1]) and np.isnan(d[1:]).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="how must be"):
        to_display(np.zeros((2, 2)), how="median")
    with pytest.raises(ValueError, match="2-D"):
        to_display(np.zeros(5))


def test_uniform_axes_only_for_evenly_spaced_coordinates():
    from probe.figures.display import uniform_axes

    assert uniform_axes(GRID.frame_times(1001)) == {"x0": 0.0, "dx": pytest.approx(0.01)}
    mel_like = np.geomspace(50, 8000, 64)
    out = uniform_axes(None, mel_like)
    assert set(out) == {"y"} and np.array_equal(out["y"], mel_like)


# ---- the figures that use it -----------------------------------------------------------------
def _clip_with_two_tones(seconds: float = 10.0):
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = (np.sin(2 * np.pi * 500 * t) + 0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    X = np.asarray(GRID.stft(y))
    return NS(stft=X, grid=GRID, name="two tones", y=y, sr=SR)


def test_cluster_mask_figure_is_light_and_tints_the_right_bins():
    from probe.figures.embeddings import cluster_mask_figure

    clip = _clip_with_two_tones()
    F, T = clip.stft.shape
    f = GRID.bin_frequencies()
    high = np.zeros((F, T), np.float32)
    high[f >= 1500] = 1.0  # cluster 1 = everything above 1.5 kHz: holds the 3 kHz tone
    masks = np.stack([high, 1 - high])
    fig = cluster_mask_figure(clip, masks, 0, name="high")
    grey, tint, right = fig.data
    assert all(isinstance(t, go.Heatmap) for t in fig.data)
    for tr in fig.data:
        assert _z(tr).shape[0] <= MAX_ROWS and _z(tr).shape[1] <= 400
    # the tint covers exactly the blocks above 1.5 kHz, the right panel shows only those
    rows_in = _axis(tint, "y") >= 1500
    zt = _z(tint)  # 0 = not in the cluster; 1-255 = the block's level, white (silent) to the cluster's colour
    assert (zt[rows_in] >= 1).all() and (zt[~rows_in] == 0).all() and np.asarray(tint.z).dtype == np.uint8
    # the cluster's loudest bin is the 3 kHz tone at half the 500 Hz tone's amplitude: -6 dB re max on an 80-dB scale
    assert abs(zt[rows_in].max() - (1 + 254 * (80 + 20 * np.log10(0.5)) / 80)) <= 2
    zr = _z(right)  # the same byte levels on the dB colour scale: 0 (transparent) outside the cluster
    assert (zr[~rows_in] == 0).all() and (zr[rows_in] >= 1).all() and np.asarray(right.z).dtype == np.uint8
    # its colour bar reads dB: level 1 is −80 dB, level 255 is 0 dB
    assert list(right.colorbar.ticktext) == ["-80", "-60", "-40", "-20", "0"] and right.colorbar.tickvals[-1] == 255
    # the 3 kHz tone is the right panel's loudest row; the energy share is the full-resolution one
    assert abs(_axis(right, "y")[np.argmax(zr.mean(axis=1))] - 3000) < 2 * SR / 512
    P = np.abs(clip.stft) ** 2
    share = 100 * (P * high).sum() / P.sum()  # 0.25 / 1.25 of the power: 20 %
    assert f"({share:.0f}% of energy)" in fig.layout.annotations[1].text and round(share) == 20
    assert "cluster 1 (high) bins" in fig.layout.annotations[0].text
    # a few picked cells: a majority of each display block would hide them, "any" keeps them
    few = np.zeros((1, F, T), np.float32)
    few[0, 100:103, 500:503] = 1.0
    hidden = _z(cluster_mask_figure(clip, few, 0).data[1])
    shown = _z(cluster_mask_figure(clip, few, 0, mask_reduce="any").data[1])
    assert (shown > 0).sum() >= 1 and (shown > 0).sum() >= (hidden > 0).sum()
    assert len(pio.to_json(fig, validate=False)) < 1_000_000  # was 4.9 MB at full resolution
    assert all(t.x is None and t.dx > 0 for t in fig.data)  # a start and a step: drawn as one image


def test_spectrogram_figure_is_capped_and_shows_a_tone_at_its_frequency():
    from probe.figures.clip import spectrogram_figure

    clip = _clip_with_two_tones()
    db = 20 * np.log10(np.abs(clip.stft) + 1e-9)
    data = {"times": GRID.frame_times(db.shape[1]), "freqs": GRID.bin_frequencies(), "db": db}
    fig = spectrogram_figure(data)
    z = _z(fig.data[0])
    assert z.shape[0] <= MAX_ROWS and z.shape[1] <= MAX_COLUMNS
    loudest = _axis(fig.data[0], "y")[np.argmax(z.mean(axis=1))]
    assert abs(loudest - 500) < 2 * SR / 512
    assert z.max() == pytest.approx(db.max(), abs=0.5)  # the loudest cell keeps its level (in whole dB)
    assert np.asarray(fig.data[0].z).dtype == np.int8 and fig.data[0].hovertemplate.count("%{z} dB") == 1  # one byte a cell, hover says dB
    assert fig.data[0].x is None and fig.data[0].dx == pytest.approx(2 * 160 / SR)  # two 10-ms frames per column
    full = spectrogram_figure(data, max_frames=None, max_bins=None)
    assert _z(full.data[0]).shape == db.shape


def test_attribution_figure_draws_relevance_where_it_was_planted():
    from probe.figures.attribution import attribution_figure

    clip = _clip_with_two_tones()
    F, T = clip.stft.shape
    times, freqs = GRID.frame_times(T), GRID.bin_frequencies()
    A = np.zeros((F, T))
    box = (times >= 2.0) & (times <= 3.0)
    band = (freqs >= 2800) & (freqs <= 3200)
    A[np.ix_(band, box)] = 1.0
    attr = NS(map=A, freqs=freqs, times=times, input_magnitude=np.abs(clip.stft), method="ig", target="class=x",
              completeness_error=0.001, reconstruction_error_db=None)
    fig = attribution_figure(attr, boxes=[{"onset": 2.0, "offset": 3.0, "fmin": 2800, "fmax": 3200, "label": "x"}])
    spec, rel = fig.data
    z = _z(rel)
    assert z.shape[0] <= MAX_ROWS and z.shape[1] <= MAX_COLUMNS and _z(spec).shape == z.shape
    hot = np.argwhere(z > 0.5)
    ys, xs = _axis(rel, "y")[hot[:, 0]], _axis(rel, "x")[hot[:, 1]]
    assert ys.min() >= 2800 - 32 and ys.max() <= 3200 + 32 and xs.min() >= 2.0 - 0.02 and xs.max() <= 3.0 + 0.02
    assert rel.zmin == -rel.zmax and rel.zmid == 0
    # the event box on both panels, each on its own axes, and its label once
    assert [(s.xref, s.yref) for s in fig.layout.shapes] == [("x", "y"), ("x2", "y2")]
    assert sum(a.text == "x" for a in fig.layout.annotations) == 1
    assert len(pio.to_json(fig, validate=False)) < 1_500_000
    assert np.asarray(spec.z).dtype == np.int8  # the dB underlay in whole dB (silence floored at -128 dB), one byte a cell


def test_matched_responses_are_capped_at_real_samples():
    from probe.figures.filters import matched_responses_plot

    f = np.linspace(0, 8000, 2049)
    centres = np.array([500.0, 1500.0, 3000.0])
    resp = np.exp(-0.5 * ((f[None] - centres[:, None]) / 100) ** 2)
    fr = NS(order_=np.arange(3), freqs_hz_=f, responses_=resp, name_="bank")
    match = NS(assignment_=np.arange(3), reference_responses_=resp, matched_cosine_=np.ones(3), reference="gauss")
    fig = matched_responses_plot(fr, match, n_show=3)
    # the pairs share one trace per kind (curves separated by gaps; the hover data name each point's filter)
    curves = [t for t in fig.data if t.customdata is not None]
    assert [t.name for t in curves] == ["learned", "matched gauss"]
    for tr in curves:
        x, cd = np.asarray(tr.x, float), np.asarray(tr.customdata, float)
        for i in range(3):
            xi = x[cd[:, 0] == i]
            assert len(xi) <= 400 and np.isin(xi.astype(np.float32), f.astype(np.float32)).all()
    # each learned curve still peaks at 0 dB (its band's top) at its centre (within the kept grid's spacing)
    x, y, cd = (np.asarray(v, float) for v in (curves[0].x, curves[0].y, curves[0].customdata))
    for band, c in zip(curves[0].meta["bands"], centres):
        m = (cd[:, 0] == band["filter"]) & np.isfinite(y)
        assert abs(x[m][np.argmax(y[m])] - c) <= 8000 / 399 and y[m].max() - band["offset"] > -0.5


# ---- the embedding map as SVG ----------------------------------------------------------------
def test_svg_map_has_the_same_points_and_a_click_names_its_own_cell():
    from apps.selection import picked_indices
    from probe.analyze.embeddings import clip_embeddings, select_points
    from probe.figures.embeddings import embedding_scatter

    g = TFGrid(8000, 256, 64)
    rng = np.random.default_rng(1)
    y = rng.standard_normal(16000).astype(np.float32)
    E = rng.standard_normal((4, 129, 251)).astype(np.float32)
    p = select_points(clip_embeddings(E, y, g), budget=4000, seed=0)
    coords = p.X[:, :2]
    gl = embedding_scatter(p, coords, color="energy")
    svg = embedding_scatter(p, coords, color="energy", webgl=False)
    assert {t.type for t in gl.data} == {"scattergl"} and {t.type for t in svg.data} == {"scatter"}
    assert len(p) == 4000 and sum(len(t.x) for t in svg.data) == 4000  # the budget holds
    np.testing.assert_array_equal(np.asarray(svg.data[0].x), np.asarray(gl.data[0].x))
    # a click event as Streamlit reports it: the point's position and its customdata (time, Hz, ...)
    tr = svg.data[0]
    for i in (0, 123, 3999):
        event = {"selection": {"points": [{"x": float(tr.x[i]), "y": float(tr.y[i]),
                                           "customdata": json.loads(json.dumps(list(tr.customdata[i]), default=float))}]}}
        got = picked_indices(event, coords, p)
        assert got.tolist() == [i]
        assert (p.row[i], p.frame[i]) == (p.row[got[0]], p.frame[got[0]])


# ---- the map draws a sample; a box or lasso still selects every point in its region ----------
def test_display_subset_caps_keeps_shares_and_is_deterministic():
    from probe.figures.embeddings import display_subset

    groups = np.repeat([3, 1, 2, 7], [2500, 1000, 499, 1])  # a one-point group must survive
    idx = display_subset(groups, 1500)
    assert len(idx) == 1500 and len(np.unique(idx)) == 1500 and (np.diff(idx) > 0).all()
    counts = {g: int((groups[idx] == g).sum()) for g in (1, 2, 3, 7)}
    assert counts[7] == 1 and abs(counts[3] - 2500 * 1500 / 4000) <= 1 and abs(counts[1] - 375) <= 1
    np.testing.assert_array_equal(idx, display_subset(groups, 1500))  # same seed, same points
    assert not np.array_equal(idx, display_subset(groups, 1500, seed=1))
    np.testing.assert_array_equal(display_subset(groups[:900], 1500), np.arange(900))  # under the cap: all
    with pytest.raises(ValueError, match="cap must be positive"):
        display_subset(groups, 0)


def test_a_lasso_selects_every_point_inside_drawn_or_not_and_each_names_its_cell():
    from apps.selection import cell_mask, region_indices
    from probe.figures.embeddings import display_subset

    # 4,000 points laid out on the map at (frame, row) of their own cell: the map position names the cell
    rows, frames = np.divmod(np.arange(4000), 100)  # 40 rows × 100 frames
    coords = np.stack([frames, rows], axis=1).astype(float)
    points = NS(row=rows, frame=frames)
    drawn = display_subset(rows % 2, 1500)
    # a lasso (a square as a polygon) over frames 10-20, rows 5-8
    lasso = {"x": [9.5, 20.5, 20.5, 9.5], "y": [4.5, 4.5, 8.5, 8.5]}
    got = region_indices({"selection": {"lasso": [lasso], "box": [], "points": []}}, coords)
    assert len(got) == 11 * 4 and not np.isin(got, drawn).all()  # undrawn points are selected too
    m = cell_mask(NS(shape=(40, 100)), points, got)
    expect = np.zeros((40, 100), bool)
    expect[5:9, 10:21] = True
    np.testing.assert_array_equal(m, expect)
    box = region_indices({"selection": {"box": [{"x": [20.5, 9.5], "y": [8.5, 4.5]}]}}, coords)  # any corner order
    np.testing.assert_array_equal(box, got)
    assert region_indices({"selection": {"points": [{"x": 1.0, "y": 1.0}], "box": [], "lasso": []}}, coords).size == 0


def test_mask_outputs_travel_as_whole_percent_and_keep_their_planted_values():
    from probe.figures.clip import outputs_figure

    t, f = np.arange(1000) * 0.008, np.linspace(0, 4000, 129)
    masks = np.full((2, 129, 1000), 0.25, np.float32)
    masks[0, 64:, :500] = 1.0  # source 1 owns the upper half of the first 4 s
    masks[1] = 1 - masks[0]
    fig = outputs_figure({"kind": "masks", "values": masks, "times": t, "freqs": f, "labels": ["low", "high"]})
    for tr, m in zip(fig.data, masks):
        z = np.asarray(tr.z)
        assert z.dtype == np.uint8 and z.shape[1] <= MAX_COLUMNS and tr.zmin == 0 and tr.zmax == 100
        assert "%{z} %" in tr.hovertemplate and tr.x is None and tr.dx > 0
        x = tr.x0 + tr.dx * np.arange(z.shape[1])
        y = tr.y0 + tr.dy * np.arange(z.shape[0])
        # every display block inside one planted region reads that region's value in percent
        top, early = y >= f[64] + tr.dy, x < 4.0 - tr.dx
        low, late = y < f[64] - tr.dy, x > 4.0 + tr.dx
        assert (z[np.ix_(top, early)] == round(100 * m[100, 0])).all()  # the planted block: 100 % / 0 %
        assert (z[np.ix_(low, late)] == round(100 * m[0, -1])).all()  # elsewhere: 25 % / 75 %
    assert fig.data[0].colorbar.title.text == "mask (%)"
