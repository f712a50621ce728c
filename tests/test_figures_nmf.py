"""NMF figures read back as the browser gets them: planted bases and activations land where they belong.

The NMF page used to draw three charts with 22 axes (subplot grids, heat maps placed by coordinate
arrays); it now draws two: the bases beside NMF's W with their matching matrix as panels of one
figure, and the activations against H as bands of one axis. These tests plant an NMF comparison
whose answer is known by construction (each NMF component a peak at a known bin, each model basis
one of them in shuffled order; activations that are known curves) and check every pair, label and
hover value.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np

from probe.figures.nmf import activations_vs_h, bases_overview, bases_side_by_side

F, R = 65, 5
FREQS = np.linspace(0, 4000, F)
PEAKS = np.array([40, 8, 55, 20, 30])  # NMF component r peaks at bin PEAKS[r]
ASSIGN = np.array([2, 4, 0, 1, 3])  # model basis k is matched to NMF component ASSIGN[k]


def _comparison(T=300):
    bins = np.arange(F)
    W = np.exp(-0.5 * ((bins[:, None] - PEAKS[None]) / 2.0) ** 2) + 1e-3  # (F, R)
    bases = W[:, ASSIGN].T * np.array([1.0, 2.0, 0.5, 3.0, 1.5])[:, None]  # model basis k = W[:, ASSIGN[k]], scaled
    cos = np.full((R, R), 0.2)
    cos[np.arange(R), ASSIGN] = [0.95, 0.9, 0.85, 0.8, 0.75]
    t = np.arange(T) * 0.01
    H = np.stack([np.sin(2 * np.pi * (r + 1) * t / t[-1]) ** 2 for r in range(R)]) * 5  # (R, T)
    acts = H[ASSIGN] * 3 - 1  # the model's unit k follows H[ASSIGN[k]], shifted and scaled
    corr = np.array([0.5, 0.9, 0.7, 0.3, 0.6])
    return NS(W_=W, H_=H, bases_=bases, cosine_=cos, assignment_=ASSIGN, matched_cosine_=cos.max(1), mean_cosine_=0.85,
              unmatched_=np.zeros(0, int), threshold=0.5, activations_=acts, act_corr_=np.eye(R),
              act_assignment_=ASSIGN, act_matched_corr_=corr, mean_act_corr_=corr.mean(), frame_times_=t)


def test_bases_side_by_side_puts_each_planted_pair_in_one_column_sorted_by_centroid():
    cmp = _comparison()
    fig = bases_side_by_side(cmp, FREQS)
    model, nmf, bars = fig.data
    # pairs sorted by their NMF component's centroid: components by peak bin 8, 20, 30, 40, 55
    order_r = np.argsort(PEAKS)
    rows = [int(np.nonzero(ASSIGN == r)[0][0]) for r in order_r]
    Lm, Ln = np.asarray(model.z), np.asarray(nmf.z)
    assert Lm.dtype == np.float32 and Lm.shape == (F, R) == Ln.shape
    np.testing.assert_array_equal(np.asarray(model.customdata)[0], rows)
    np.testing.assert_array_equal(np.asarray(nmf.customdata)[0], order_r)
    for j, r in enumerate(order_r):
        # both columns peak (0 dB re their own peak) at the planted bin, on the Hz axis placed by start and step
        assert np.argmax(Lm[:, j]) == np.argmax(Ln[:, j]) == PEAKS[r]
        assert abs(model.y0 + PEAKS[r] * model.dy - FREQS[PEAKS[r]]) < 1e-9 and Lm[PEAKS[r], j] == 0
    assert model.x is None and model.y is None and model.dx == 1 and nmf.y0 == model.y0
    np.testing.assert_allclose(bars.y, cmp.matched_cosine_[rows])
    # three axes pairs laid out by hand: heat maps side by side on one frequency range, the bars below
    lay = fig.layout
    assert (model.xaxis or "x", nmf.xaxis, bars.xaxis) == ("x", "x2", "x3") and lay.yaxis2.matches == "y"
    assert lay.xaxis.domain[1] < lay.xaxis2.domain[0] and lay.yaxis3.domain[1] < lay.yaxis.domain[0]
    assert [a.text for a in lay.annotations] == ["model bases", "matched NMF bases (W)"]


def test_activations_vs_h_draws_each_planted_pair_in_its_band():
    cmp = _comparison(T=1500)
    fig = activations_vs_h(cmp, n_show=5, max_points=600)
    model = [t for t in fig.data if t.name == "model activation"][0]
    h = [t for t in fig.data if t.name == "NMF H"][0]
    bands = model.meta["bands"]
    # best-correlated first: units by r 0.9, 0.7, 0.6, 0.5, 0.3
    assert [b["unit"] for b in bands] == [1, 2, 4, 0, 3]
    assert [b["component"] for b in bands] == [int(ASSIGN[b["unit"]]) for b in bands]
    offs = [b["offset"] for b in bands]
    assert np.all(np.diff(offs) < -1.0)  # each band spans 0..1 of its own: bands never overlap
    for trace, key, ref in ((model, "unit", lambda b: cmp.activations_[b["unit"]]),
                            (h, "component", lambda b: cmp.H_[b["component"]])):
        cd = np.asarray(trace.customdata, float)
        x, y = np.asarray(trace.x, float), np.asarray(trace.y, float)
        for b in bands:
            m = cd[:, 0] == b[key]
            assert 0 < m.sum() <= 600  # display resolution: at most max_points per curve
            v = ref(b)
            scaled = (v - v.min()) / np.ptp(v) if trace is model else v / v.max()
            # each point is the mean of its block of the planted curve, scaled to 0..1, drawn in its band
            k = int(np.ceil(len(v) / 600))
            blocks = scaled[: len(v) // k * k].reshape(-1, k).mean(1)
            np.testing.assert_allclose(cd[m, 1][: len(blocks)], blocks, atol=1e-5)
            np.testing.assert_allclose(y[m], cd[m, 1] + b["offset"], atol=1e-5)
            assert x[m].min() >= 0 and x[m].max() <= cmp.frame_times_[-1]
    labels = [t for t in fig.data if t.mode == "text"][0]
    assert list(labels.text) == [f"unit {b['unit']} ↔ H{b['component']}: r={b['r']:.2f}" for b in bands]
    assert not fig.layout.annotations and {t.xaxis or "x" for t in fig.data} == {"x"}  # one axis, no subplot grid


def test_bases_overview_is_one_chart_with_the_matching_matrix_beside_the_bases():
    cmp = _comparison()
    fig = bases_overview(cmp, FREQS)
    panels = {p["name"]: p for p in fig.layout.meta["panels"]}
    assert list(panels) == ["bases", "matrix"]
    assert panels["bases"]["box"][1] < panels["matrix"]["box"][0]
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [t.xaxis for t in heat] == ["x", "x2", "x4"]  # model, NMF, matrix
    # the matrix: columns in matched order, so the planted matching is its diagonal
    circles = [t for t in fig.data if t.name == "optimal matching"][0]
    assert list(circles.x) == list(circles.y) == list(range(R))
    np.testing.assert_allclose(np.diag(np.asarray(heat[2].z)), [0.95, 0.9, 0.85, 0.8, 0.75], atol=1e-6)
    assert "mean matched cosine 0.850" in fig.layout.title.text
