"""Figures relating a model to NMF: learned vs NMF bases, activations vs NMF activations.

Pure builders over :class:`probe.analyze.nmf.NMFComparison` results, returning
:class:`plotly.graph_objects.Figure` with Hz, seconds and dB on the axes.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError
from .filters import matching_matrix
from .style import db_scale

__all__ = ["bases_side_by_side", "activations_vs_h", "nmf_matching_matrix"]


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
    shows the same picture twice.

    Parameters
    ----------
    cmp : NMFComparison fitted with ``bases``
    freqs_hz : np.ndarray [shape=(F,)]  the spectrogram's bin frequencies
    """
    from plotly.subplots import make_subplots

    go = _go()
    if not hasattr(cmp, "cosine_"):
        raise AnalysisError("this NMFComparison was fitted without model bases; nothing to put side by side")
    f = np.asarray(freqs_hz, dtype=float)
    rows = np.nonzero(cmp.assignment_ >= 0)[0]
    W = cmp.W_
    cent = (W[:, cmp.assignment_[rows]] ** 2 * f[:, None]).sum(0) / np.maximum((W[:, cmp.assignment_[rows]] ** 2).sum(0), 1e-30)
    rows = rows[np.argsort(cent)]
    if rows.size > max_components:
        rows = rows[np.linspace(0, rows.size - 1, max_components).round().astype(int)]
    learned = _db_columns(cmp.bases_[rows].T)
    nmf = _db_columns(W[:, cmp.assignment_[rows]])
    x = np.arange(rows.size)
    fig = make_subplots(rows=2, cols=2, row_heights=[0.8, 0.2], horizontal_spacing=0.05, vertical_spacing=0.14,
                        specs=[[{}, {}], [{"colspan": 2}, None]],
                        subplot_titles=("model bases", "matched NMF bases (W)", "matched cosine per pair"))
    common = dict(**db_scale(0.0), x=x, y=f)
    fig.add_trace(go.Heatmap(z=learned, colorbar=dict(title="dB re peak", len=0.75, y=0.62),
                             customdata=np.broadcast_to(rows, learned.shape),
                             hovertemplate="model basis #%{customdata}<br>%{y:.0f} Hz<br>%{z:.1f} dB<extra></extra>", **common),
                  row=1, col=1)
    fig.add_trace(go.Heatmap(z=nmf, showscale=False, customdata=np.broadcast_to(cmp.assignment_[rows], nmf.shape),
                             hovertemplate="NMF component %{customdata}<br>%{y:.0f} Hz<br>%{z:.1f} dB<extra></extra>", **common),
                  row=1, col=2)
    fig.add_trace(go.Bar(x=x, y=cmp.matched_cosine_[rows], marker_color="#1f77b4", showlegend=False,
                         customdata=rows, hovertemplate="pair %{x} (model #%{customdata}): %{y:.3f}<extra></extra>"),
                  row=2, col=1)
    for c in (1, 2):
        fig.update_xaxes(title_text="matched pair (sorted by NMF centroid)", title_font=dict(size=10), row=1, col=c)
    fig.update_yaxes(title_text="frequency (Hz)", row=1, col=1)
    fig.update_yaxes(matches="y", showticklabels=False, row=1, col=2)
    fig.update_xaxes(title_text="matched pair", row=2, col=1)
    fig.update_yaxes(title_text="cosine", range=[0, 1.02], row=2, col=1)
    fig.update_layout(title=title or f"Model bases vs NMF bases — mean matched cosine {cmp.mean_cosine_:.3f}",
                      height=620, width=900, template="plotly_white", margin=dict(l=60, r=40, t=70, b=50))
    return fig


def activations_vs_h(cmp, *, n_show: int = 6, by: str = "activation", title: str | None = None):
    """Matched model activations and NMF activations over time (each scaled to its own max).

    Parameters
    ----------
    cmp : NMFComparison fitted with ``activations``
    n_show : int
        Pairs shown: the best-correlated one, the worst, and others spread between.
    by : {"activation", "basis"}
        Pairing: the optimal matching on activation correlation, or the basis matching.
    """
    from plotly.subplots import make_subplots

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
    ok = ok[np.argsort(-np.nan_to_num(corr[ok], nan=-2))]
    if ok.size > n_show:
        ok = ok[np.linspace(0, ok.size - 1, n_show).round().astype(int)]
    T = cmp.H_.shape[1]
    t = cmp.frame_times_ if cmp.frame_times_ is not None else np.arange(T)
    t_title = "time (s)" if cmp.frame_times_ is not None else "frame"
    fig = make_subplots(rows=len(ok), cols=1, shared_xaxes=True, vertical_spacing=0.03)
    for j, k in enumerate(ok):
        a = cmp.activations_[k]
        h = cmp.H_[assign[k]]
        a_n = (a - a.min()) / max(np.ptp(a), 1e-30)
        h_n = h / max(h.max(), 1e-30)
        fig.add_trace(go.Scatter(x=t, y=a_n, mode="lines", line=dict(color="#1f77b4", width=1.2), name="model activation",
                                 showlegend=(j == 0)), row=j + 1, col=1)
        fig.add_trace(go.Scatter(x=t, y=h_n, mode="lines", line=dict(color="#d62728", width=1.2, dash="dot"),
                                 name="NMF H", showlegend=(j == 0)), row=j + 1, col=1)
        fig.add_annotation(text=f"unit {k} ↔ H{assign[k]}: r={corr[k]:.2f}", xref="x domain", yref="y domain", x=0.99,
                           y=0.95, showarrow=False, font=dict(size=10), bgcolor="rgba(255,255,255,0.7)", row=j + 1, col=1)
        fig.update_yaxes(range=[-0.05, 1.1], title_text="scaled", title_font=dict(size=9), row=j + 1, col=1)
    fig.update_xaxes(title_text=t_title, row=len(ok), col=1)
    mean = float(np.nanmean(corr[assign >= 0])) if (assign >= 0).any() else float("nan")
    fig.update_layout(title=title or f"Model activations vs NMF activations — mean matched r {mean:.3f}",
                      height=100 * len(ok) + 130, width=820, template="plotly_white", margin=dict(l=60, r=20, t=70, b=50),
                      legend=dict(orientation="h", y=1.06, x=0.6))
    return fig


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
