"""Figures relating a model to NMF: learned vs NMF bases, activations vs NMF activations.

Pure builders over :class:`probe.analyze.nmf.NMFComparison` results, returning
:class:`plotly.graph_objects.Figure` with Hz, seconds and dB on the axes.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError
from .filters import matching_matrix
from .style import db_scale

__all__ = ["bases_side_by_side", "activations_vs_h", "nmf_matching_matrix", "bases_overview"]


def _go():
    import plotly.graph_objects as go

    return go


def _db_columns(M, floor=-50.0):
    M = np.maximum(np.asarray(M, dtype=float), 0.0)
    peak = M.max(axis=0, keepdims=True)
    return np.maximum(20 * np.log10(np.maximum(M / np.where(peak > 0, peak, 1.0), 1e-6)), floor)


def bases_side_by_side(cmp, freqs_hz, *, max_components: int = 64, title: str | None = None):
    """Model bases next to their matched NMF bases, both in dB re their own peak.

    Columns are matched pairs, ordered by the NMF basis' spectral centroid, so a good match
    shows the same picture twice. The two images are placed by a start and a step (``x0``/``dx``,
    ``y0``/``dy`` when the bins are evenly spaced: drawn as one image each in a browser) on three
    axes laid out by hand (no subplot grid).

    Parameters
    ----------
    cmp : NMFComparison fitted with ``bases``
    freqs_hz : np.ndarray [shape=(F,)]  the spectrogram's bin frequencies
    max_components : int
        Pairs shown at most, spread over the sorted pairs.

    Returns
    -------
    plotly.graph_objects.Figure
        Traces ``model bases`` (x/y), ``NMF bases`` (x2/y2) and the matched cosine per pair (x3/y3);
        each heat map's ``customdata`` column ``j`` holds pair ``j``'s model basis / NMF component.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from probe.figures.nmf import bases_side_by_side
    >>> f = np.linspace(0, 4000, 9)
    >>> W = np.eye(9)[:, [2, 6]] + 0.01
    >>> cmp = SimpleNamespace(cosine_=np.eye(2), assignment_=np.array([1, 0]), W_=W, bases_=W[:, [1, 0]].T,
    ...                       matched_cosine_=np.ones(2), mean_cosine_=1.0)
    >>> fig = bases_side_by_side(cmp, f)
    >>> [int(v) for v in fig.data[0].customdata[0]]  # pairs by NMF centroid: model basis 1 (1 kHz) first
    [1, 0]
    """
    from .display import uniform_axes

    go = _go()
    if not hasattr(cmp, "cosine_"):
        raise AnalysisError("this NMFComparison was fitted without model bases; nothing to put side by side")
    f = np.asarray(freqs_hz, dtype=float)
    rows = np.nonzero(cmp.assignment_ >= 0)[0]
    W = cmp.W_
    cent = (W[:, cmp.assignment_[rows]] ** 2 * f[:, None]).sum(0) / np.maximum((W[:, cmp.assignment_[rows]] ** 2).sum(0), 1e-30)
    rows = rows[np.argsort(cent, kind="stable")]
    if rows.size > max_components:
        rows = rows[np.linspace(0, rows.size - 1, max_components).round().astype(int)]
    learned = _db_columns(cmp.bases_[rows].T).astype(np.float32)
    nmf = _db_columns(W[:, cmp.assignment_[rows]]).astype(np.float32)
    x = np.arange(rows.size)
    place = uniform_axes(x, f)
    ids = np.int16 if max(rows.max(initial=0), np.max(cmp.assignment_, initial=0)) < 2 ** 15 else np.int32
    traces = [
        go.Heatmap(z=learned, **place, **db_scale(0.0), name="model bases",
                   colorbar=dict(title=dict(text="dB re peak"), len=0.72, y=0.64, thickness=12),
                   customdata=np.broadcast_to(rows.astype(ids), learned.shape),
                   hovertemplate="pair %{x}: model basis #%{customdata}<br>%{y:.0f} Hz<br>%{z:.1f} dB<extra></extra>"),
        go.Heatmap(z=nmf, **place, **db_scale(0.0), name="NMF bases", showscale=False, xaxis="x2", yaxis="y2",
                   customdata=np.broadcast_to(np.asarray(cmp.assignment_)[rows].astype(ids), nmf.shape),
                   hovertemplate="pair %{x}: NMF component %{customdata}<br>%{y:.0f} Hz<br>%{z:.1f} dB<extra></extra>"),
        go.Bar(x=x, y=np.asarray(cmp.matched_cosine_)[rows], marker_color="#1f77b4", showlegend=False, name="cosine",
               xaxis="x3", yaxis="y3", customdata=rows,
               hovertemplate="pair %{x} (model #%{customdata}): %{y:.3f}<extra></extra>")]
    small = dict(size=10)
    pair_title = dict(text="pair (by NMF centroid)", font=small)
    top, split = [0.3, 1.0], (0.0, 0.47, 0.53, 0.94)
    layout = dict(
        xaxis=dict(domain=[split[0], split[1]], anchor="y", title=pair_title),
        yaxis=dict(domain=top, anchor="x", title=dict(text="frequency (Hz)")),
        xaxis2=dict(domain=[split[2], split[3]], anchor="y2", title=pair_title, matches="x"),
        yaxis2=dict(domain=top, anchor="x2", matches="y", showticklabels=False),
        xaxis3=dict(domain=[0.0, split[3]], anchor="y3", title=dict(text="matched pair", font=small), matches="x"),
        yaxis3=dict(domain=[0.0, 0.16], anchor="x3", title=dict(text="cosine", font=small), range=[0, 1.02]),
        annotations=[dict(text=t, x=(a + b) / 2, xref="paper", y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                          font=dict(size=12)) for t, a, b in (("model bases", split[0], split[1]),
                                                              ("matched NMF bases (W)", split[2], split[3]))],
        title=dict(text=title or f"Model bases vs NMF bases — mean matched cosine {cmp.mean_cosine_:.3f}"),
        height=620, width=900, template="plotly_white", margin=dict(l=60, r=40, t=80, b=50), hovermode="closest")
    return go.Figure(data=traces, layout=layout)


def activations_vs_h(cmp, *, n_show: int = 6, by: str = "activation", title: str | None = None,
                     max_points: int = 600):
    """Matched model activations and NMF activations over time (each scaled to its own range), in bands of one axis.

    Pair ``j`` (from the top) is drawn in the band ``[−1.3 j, −1.3 j + 1]`` of one y axis, the
    model's activation scaled to 0–1 over its range and H to 0–1 over its maximum, labelled with
    the unit, its NMF component and their correlation. One trace per kind holds every pair (a
    grid of subplots costs a browser ~10–25 ms per axis and title).

    Parameters
    ----------
    cmp : NMFComparison fitted with ``activations``
    n_show : int
        Pairs shown: the best-correlated one, the worst, and others spread between.
    by : {"activation", "basis"}
        Pairing: the optimal matching on activation correlation, or the basis matching.
    max_points : int
        Points per curve at most: longer curves show each block's mean (display only).

    Returns
    -------
    plotly.graph_objects.Figure
        The model and H traces' ``meta["bands"]`` lists each band's unit, component, r and offset;
        hover gives the unit / component and the curve's own scaled value.
    """
    from .display import to_display

    go = _go()
    if not hasattr(cmp, "act_corr_"):
        raise AnalysisError("this NMFComparison was fitted without activations; nothing to compare with H")
    if by == "basis":
        if not hasattr(cmp, "pair_corr_"):
            raise AnalysisError("pairing by basis needs bases and activations of the same count")
        assign, corr = cmp.assignment_, cmp.pair_corr_
    else:
        assign, corr = cmp.act_assignment_, cmp.act_matched_corr_
    ok = np.nonzero(assign >= 0)[0]
    ok = ok[np.argsort(-np.nan_to_num(corr[ok], nan=-2), kind="stable")]
    if ok.size > n_show:
        ok = ok[np.linspace(0, ok.size - 1, n_show).round().astype(int)]
    T = cmp.H_.shape[1]
    t = np.asarray(cmp.frame_times_ if cmp.frame_times_ is not None else np.arange(T), float)
    t_title = "time (s)" if cmp.frame_times_ is not None else "frame"
    pitch = 1.3
    curves = {"model": ([], [], []), "H": ([], [], [])}
    bands, tv, tt = [], [], []
    for j, k in enumerate(ok):
        a = np.asarray(cmp.activations_[k], float)
        h = np.asarray(cmp.H_[assign[k]], float)
        a_n = (a - a.min()) / max(np.ptp(a), 1e-30)
        h_n = h / max(h.max(), 1e-30)
        z, td, _ = to_display(np.stack([a_n, h_n]), t, max_columns=max_points, max_rows=None, how="mean")
        off = -j * pitch
        for kind, v, who in (("model", z[0], int(k)), ("H", z[1], int(assign[k]))):
            xs, ys, cd = curves[kind]
            xs += [td, [np.nan]]
            ys += [v + off, [np.nan]]
            cd += [np.column_stack([np.full(len(v), who), v]), np.full((1, 2), np.nan)]
        bands.append(dict(unit=int(k), component=int(assign[k]), r=float(corr[k]), offset=off))
        tv += [off, off + 1]
        tt += ["0", "1"]
    traces = []
    for kind, name, style, who in (("model", "model activation", dict(color="#1f77b4", width=1.2), "unit"),
                                   ("H", "NMF H", dict(color="#d62728", width=1.2, dash="dot"), "H")):
        xs, ys, cd = curves[kind]
        traces.append(go.Scatter(x=np.concatenate(xs).astype(np.float32) if xs else [],
                                 y=np.concatenate(ys).astype(np.float32) if ys else [], mode="lines", line=style,
                                 name=name, connectgaps=False,
                                 customdata=np.concatenate(cd).astype(np.float32) if cd else None,
                                 hovertemplate=who + " %{customdata[0]:.0f}<br>%{x:.2f}<br>%{customdata[1]:.2f}"
                                               "<extra>%{fullData.name}</extra>", meta=dict(bands=bands)))
    t_end = float(t[-1]) if len(t) else 1.0
    traces.append(go.Scatter(x=[t_end] * len(bands), y=[b["offset"] + 1.05 for b in bands],
                             text=[f"unit {b['unit']} ↔ H{b['component']}: r={b['r']:.2f}" for b in bands], mode="text",
                             textposition="top left", textfont=dict(size=10), hoverinfo="skip", showlegend=False))
    mean = float(np.nanmean(corr[assign >= 0])) if (assign >= 0).any() else float("nan")
    n = len(bands)
    layout = dict(title=dict(text=title or f"Model activations vs NMF activations — mean matched r {mean:.3f}"),
                  height=100 * n + 130, width=820, template="plotly_white", hovermode="closest",
                  xaxis=dict(title=dict(text=t_title), range=[float(t[0]) if len(t) else 0.0, t_end]),
                  yaxis=dict(tickvals=tv, ticktext=tt, tickfont=dict(size=9), zeroline=False, gridcolor="#f0f0f0",
                             range=[-(n - 1) * pitch - 0.08, 1.35], title=dict(text="scaled (each curve 0–1)")),
                  margin=dict(l=60, r=20, t=70, b=50), legend=dict(orientation="h", y=1.02, x=0.6, yanchor="bottom"))
    return go.Figure(data=traces, layout=layout)


def bases_overview(cmp, freqs_hz, *, max_components: int = 64, title: str | None = None, height: int = 620):
    """:func:`bases_side_by_side` and the bases' matching matrix as ONE figure (one chart in a page).

    Returns
    -------
    plotly.graph_objects.Figure
        ``layout.meta["panels"]``: ``bases`` (x/y, x2/y2, x3/y3), then ``matrix`` (x4/y4).
    """
    from .filters import side_by_side

    bases = bases_side_by_side(cmp, freqs_hz, max_components=max_components)
    bases.layout.title = None  # its two panel titles stay; the merged figure carries the title
    matrix = nmf_matching_matrix(cmp, kind="bases", title="cosine, model × NMF (circles: the matching)")
    matrix.update_layout(legend=dict(orientation="h", x=0, y=-0.25))
    matrix.update_xaxes(tickfont=dict(size=7))  # up to 40 component ids under a third of the width
    return side_by_side([bases, matrix], widths=[1.9, 1.1], gap=0.16, height=height, names=["bases", "matrix"],
                        title=title or f"Model bases vs NMF bases — mean matched cosine {cmp.mean_cosine_:.3f}")


def nmf_matching_matrix(cmp, *, kind: str = "bases", title: str | None = None):
    """Cosine (bases) or correlation (activations) between model and NMF, with the matching marked."""
    if kind == "bases":
        if not hasattr(cmp, "cosine_"):
            raise AnalysisError("fitted without model bases")
        C, a = cmp.cosine_, cmp.assignment_
        return matching_matrix(C, a, col_order=_matched_col_order(a, C.shape[1]), row_title="model basis",
                               col_title="NMF component", value_title="cosine",
                               title=title or f"Model bases × NMF bases — mean matched cosine {cmp.mean_cosine_:.3f}")
    if kind == "activations":
        if not hasattr(cmp, "act_corr_"):
            raise AnalysisError("fitted without activations")
        C, a = cmp.act_corr_, cmp.act_assignment_
        return matching_matrix(C, a, col_order=_matched_col_order(a, C.shape[1]), row_title="model unit",
                               col_title="NMF component", value_title="correlation", zmin=-1.0,
                               title=title or f"Activations × NMF H — mean matched r {cmp.mean_act_corr_:.3f}")
    raise AnalysisError(f"kind must be 'bases' or 'activations', given {kind!r}")


def _matched_col_order(assignment, n_cols):
    """Columns in the order of the rows they are matched to (unmatched columns last): the matching becomes the diagonal."""
    a = [int(c) for c in assignment if c >= 0]
    rest = [c for c in range(n_cols) if c not in set(a)]
    return np.array(a + rest, dtype=int)
