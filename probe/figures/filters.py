"""Figures for learned filterbanks: pure functions from analysis results to ``plotly`` figures.

Every builder takes results from :mod:`probe.analyze.filters` (or a
:class:`~probe.filterbank.FilterBank`) and returns a :class:`plotly.graph_objects.Figure` with
axes in physical units (ms, Hz, dB). Nothing here computes analysis of its own beyond
ordering and normalising for display.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError
from .display import uniform_axes
from .style import db_scale

__all__ = ["filter_gallery", "response_heatmap", "centre_frequency_plot", "octave_density_plot", "matching_matrix",
           "matched_responses_plot", "SCALE_COLOURS"]

SCALE_COLOURS = {"linear": "#7f7f7f", "mel": "#1f77b4", "erb": "#d62728", "log": "#2ca02c"}


def _go():
    import plotly.graph_objects as go

    return go


def _pick(order, max_n):
    """Up to ``max_n`` indices of ``order`` evenly spread over it (keeps the sort)."""
    order = np.asarray(order)
    if order.size <= max_n:
        return order
    return order[np.linspace(0, order.size - 1, max_n).round().astype(int)]


def _fmt_hz(hz) -> str:
    if hz is None or not np.isfinite(hz):
        return "–"
    return f"{hz / 1000:.2g} kHz" if hz >= 1000 else f"{hz:.0f} Hz"


def _band_label(a, b) -> str:
    """``125–250 Hz``, ``1–2 kHz``: short tick labels for octave bands."""
    if a >= 1000:
        return f"{a / 1000:g}–{b / 1000:g} kHz"
    if b >= 1000:
        return f"{a:.0f} Hz–{b / 1000:g} kHz"
    return f"{a:.0f}–{b:.0f} Hz"


def filter_gallery(bank, responses=None, *, max_filters: int = 32, n_cols: int = 8, title: str | None = None):
    """Grid of kernels: impulse responses (ms), profiles over Hz, or T-F patches.

    Parameters
    ----------
    bank : FilterBank
    responses : FilterResponses, optional
        Sorts panels by centre frequency and titles them with it (spectro-temporal patches:
        with their ridge orientation and coherence).
    max_filters : int
        Panels shown, spread evenly over the (sorted) bank.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = _go()
    n = bank.n_filters
    order = responses.order_ if responses is not None else np.arange(n)
    idx = _pick(order, max_filters)
    n_cols = max(1, min(n_cols, len(idx)))
    n_rows = int(np.ceil(len(idx) / n_cols))
    titles = []
    for i in idx:
        if responses is not None and responses.is_spectral_:
            titles.append(f"#{i} · {_fmt_hz(responses.centre_hz_[i])}")
        elif responses is not None and hasattr(responses, "orientation_deg_"):  # ridge angle and coherence
            titles.append(f"#{i} · {responses.orientation_deg_[i]:+.0f}° c={responses.coherence_[i]:.2f}")
        else:
            titles.append(f"#{i}")
    if bank.axis == "samples":
        K = bank.kernels
        t_ms = np.arange(K.shape[-1]) / bank.sample_rate * 1000.0
        x_title, y_title = "time (ms)", "amplitude"
    elif bank.axis == "frequency":
        K = bank.kernels
        t_ms = np.asarray(bank.freqs_hz, dtype=float)
        x_title, y_title = "frequency (Hz)", "weight"
    else:
        P = np.asarray(bank.weights, dtype=float)
        P = P.sum(1) if P.ndim == 4 else P
        vmax = float(np.abs(P).max()) or 1.0
        x_title, y_title = "frame", "bin"
    # the grid's axes, titles and traces are laid out here in one pass (what make_subplots + per-panel
    # update_xaxes/update_yaxes did, at a fraction of the cost: those calls are quadratic in the panels)
    hs, vs = 0.02, 0.25 / max(n_rows, 1) + 0.02
    w = (1.0 - (n_cols - 1) * hs) / n_cols
    h = (1.0 - (n_rows - 1) * vs) / n_rows
    layout, traces, notes = {}, [], []
    small = dict(size=10)
    for j, i in enumerate(idx):
        r, c = j // n_cols, j % n_cols
        k = "" if j == 0 else str(j + 1)
        x0, y1 = c * (w + hs), 1.0 - r * (h + vs)
        bottom = r == n_rows - 1
        xa = dict(domain=[max(0.0, x0), min(1.0, x0 + w)], anchor=f"y{k}", showticklabels=bottom)
        if bottom:
            xa.update(title=dict(text=x_title, font=small), tickfont=dict(size=8), nticks=3)
        ya = dict(domain=[max(0.0, y1 - h), min(1.0, y1)], anchor=f"x{k}", showticklabels=False, zeroline=True,
                  zerolinecolor="#ccc")
        if c == 0:
            ya.update(title=dict(text=y_title, font=small))
        layout[f"xaxis{k}"], layout[f"yaxis{k}"] = xa, ya
        notes.append(dict(text=titles[j], x=x0 + w / 2, y=y1, xref="paper", yref="paper", xanchor="center",
                          yanchor="bottom", showarrow=False, font=dict(size=9)))
        if bank.axis == "spectrotemporal":
            traces.append(go.Heatmap(z=P[i], zmin=-vmax, zmax=vmax, colorscale="RdBu_r", showscale=(j == 0),
                                     colorbar=dict(title="weight", len=0.5 if n_rows > 1 else 0.9) if j == 0 else None,
                                     xaxis=f"x{k}", yaxis=f"y{k}"))
        else:
            traces.append(go.Scatter(x=t_ms, y=K[i], mode="lines", line=dict(width=1, color="#1f77b4"),
                                     showlegend=False, xaxis=f"x{k}", yaxis=f"y{k}"))
    role = f"{bank.role} " if bank.role else ""
    layout.update(title=dict(text=title or f"{bank.name}: {role}kernels ({n} filters, {bank.sample_rate} Hz)"),
                  height=130 * n_rows + 110, width=130 * n_cols + 120, margin=dict(l=50, r=20, t=70, b=50),
                  template="plotly_white", annotations=notes)
    return go.Figure(data=traces, layout=layout)


def response_heatmap(fr, *, max_hz: float | None = None, log_freq: bool = False, title: str | None = None):
    """Magnitude responses sorted by centre frequency (dB re each filter's peak), plus the bank's mean response.

    Parameters
    ----------
    fr : FilterResponses (fitted)
    max_hz : float, optional
        Upper end of the frequency axis (default: the grid's end).
    log_freq : bool
        Logarithmic frequency axis.
    """
    from plotly.subplots import make_subplots

    go = _go()
    fr._check()
    f = fr.freqs_hz_
    keep = f <= (max_hz or f[-1])
    if log_freq:
        keep &= f > 0
    # decimate the frequency axis to ≤ 400 columns, every k-th one (evenly spaced: drawn as one image)
    cols = np.nonzero(keep)[0]
    if cols.size > 400:
        cols = cols[::int(np.ceil(cols.size / 400))]
    z = fr.responses_db_[fr.order_][:, cols]
    # colour range: down to the 2nd percentile (at least 20 dB, at most 60 dB): loosely tuned
    # filters with 15 dB of selectivity still show their structure
    zmin = float(np.clip(np.floor(np.percentile(z, 2) / 10) * 10, -60, -20))
    x_unit = "Hz" if fr.is_spectral_ else "bin offset"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.04)
    # the one dB convention (probe.figures.style: Magma, bright = loud, zmax = 0 dB re peak); only the range
    # adapts (20-60 dB, said in the colour bar) so loosely tuned filters keep their structure
    rng = -max(fr.db_floor, zmin)
    fig.add_trace(go.Heatmap(**uniform_axes(f[cols], np.arange(len(z))), z=z, **db_scale(0.0, db_range=rng),
                             colorbar=dict(title=dict(text=f"dB re each<br>filter's peak<br>(0 to −{rng:.0f})"),
                                           len=0.75, y=0.62),
                             hovertemplate="%{x:.0f} " + x_unit + "<br>rank %{y}<br>%{z:.1f} dB<extra></extra>"), row=1, col=1)
    if fr.is_spectral_:
        c = fr.centre_hz_[fr.order_]
        fig.add_trace(go.Scatter(x=c, y=np.arange(len(c)), mode="markers",
                                 marker=dict(size=4, color="#00c8ff", line=dict(width=0.5, color="#003040")),
                                 name="centre (−3 dB midpoint)", showlegend=True), row=1, col=1)
    fig.add_trace(go.Scatter(x=f[cols], y=fr.cumulative_db_[cols], mode="lines", line=dict(color="#333"),
                             name="mean power response", showlegend=True), row=2, col=1)
    fig.update_yaxes(title_text="filter (sorted by centre)", row=1, col=1)
    fig.update_yaxes(title_text="mean (dB)", range=[-40, 3], row=2, col=1)
    fig.update_xaxes(title_text=f"frequency ({x_unit})", type="log" if log_freq else "linear", row=2, col=1)
    fig.update_layout(title=title or f"{fr.name_}: magnitude responses ({fr.n_filters_} filters, {fr.sample_rate_} Hz)",
                      height=560, width=760, template="plotly_white", margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=-0.14, x=0))
    return fig


def centre_frequency_plot(fr, fit=None, *, log_y: bool = True, show_band: bool = True, title: str | None = None):
    """Sorted centre frequencies vs filter rank, with the best line on each scale (and its R²).

    Parameters
    ----------
    fr : FilterResponses (fitted)
    fit : ScaleFit, optional
        Computed from ``fr`` when missing.
    log_y : bool
        Logarithmic Hz axis (log spacing is then a straight line).
    show_band : bool
        Error bars spanning each filter's −3 dB band.
    """
    from ..analyze.filters import scale_fit

    go = _go()
    fr._check()
    if not fr.is_spectral_:
        raise AnalysisError(f"bank {fr.name_!r} has no absolute frequency axis to plot centres on")
    fit = fit or scale_fit(fr, sample_rate=fr.sample_rate_)
    order = [i for i in fr.order_ if np.isfinite(fr.centre_hz_[i])]
    c = fr.centre_hz_[order]
    rank = np.arange(len(c))
    err = dict(type="data", symmetric=False, array=fr.high_hz_[order] - c, arrayminus=c - fr.low_hz_[order],
               thickness=0.6, width=0, color="rgba(31,119,180,0.35)") if show_band else None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rank, y=c, mode="markers", marker=dict(size=5, color="#1f77b4"), error_y=err,
                             name="learned centres (bars: −3 dB band)",
                             customdata=np.array(order), hovertemplate="rank %{x}<br>filter #%{customdata}<br>%{y:.0f} Hz<extra></extra>"))
    for s, fitted in fit.fitted_hz_.items():
        best = " (best)" if s == fit.best_scale_ else ""
        fig.add_trace(go.Scatter(x=rank, y=fitted, mode="lines",
                                 line=dict(color=SCALE_COLOURS.get(s), width=3 if best else 1.5, dash=None if best else "dash"),
                                 name=f"{s}-spaced fit, R²={fit.r2_[s]:.3f}{best}"))
    fig.update_xaxes(title_text="filter rank (sorted by centre frequency)")
    fig.update_yaxes(title_text="centre frequency (Hz)", type="log" if log_y else "linear")
    fig.update_layout(title=title or f"{fr.name_}: centre frequencies vs rank — best fit: {fit.best_scale_}",
                      height=480, width=760, template="plotly_white", margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(x=0.01, y=0.99, bgcolor="rgba(255,255,255,0.8)"))
    return fig


def octave_density_plot(fit, *, sample_rate: float | None = None, title: str | None = None):
    """Filters per octave band, with what linear and ERB-rate spacing of the same count would give.

    Parameters
    ----------
    fit : ScaleFit (fitted)
    sample_rate : float, optional
        For the expected counts of a linearly / ERB-spaced bank over 0 Hz – Nyquist.
    """
    from ..analyze.filters import hz_to_erb_rate

    go = _go()
    e = fit.octave_edges_hz_
    labels = [_band_label(a, b) for a, b in zip(e[:-1], e[1:])]
    fig = go.Figure(go.Bar(x=labels, y=fit.filters_per_octave_, name="learned", marker_color="#1f77b4"))
    if sample_rate:
        nyq = sample_rate / 2.0
        n = len(fit.centres_hz_)
        lo, hi = np.minimum(e[:-1], nyq), np.minimum(e[1:], nyq)
        fig.add_trace(go.Scatter(x=labels, y=n * (hi - lo) / nyq, mode="markers+lines", name="linear spacing, 0–Nyquist",
                                 line=dict(color=SCALE_COLOURS["linear"], dash="dot")))
        er = hz_to_erb_rate
        fig.add_trace(go.Scatter(x=labels, y=n * (er(hi) - er(lo)) / er(nyq), mode="markers+lines",
                                 name="ERB-rate spacing, 0–Nyquist", line=dict(color=SCALE_COLOURS["erb"], dash="dot")))
    fig.update_xaxes(title_text="octave band")
    fig.update_yaxes(title_text="filters per octave")
    fig.update_layout(title=title or "Filters per octave", height=400, width=680, template="plotly_white",
                      margin=dict(l=60, r=20, t=60, b=60), legend=dict(orientation="h", x=0, y=1.1))
    return fig


def matching_matrix(cosine, assignment, *, row_order=None, col_order=None, row_title: str = "learned filter",
                    col_title: str = "reference filter", value_title: str = "cosine", title: str | None = None,
                    zmin: float = 0.0, zmax: float = 1.0):
    """Similarity heatmap with the one-to-one matching marked.

    Parameters
    ----------
    cosine : np.ndarray [shape=(n, m)]
    assignment : np.ndarray [shape=(n,)]  column matched to each row (−1 = none)
    row_order, col_order : np.ndarray, optional
        Display orders (e.g. learned filters by centre frequency); the matching is drawn accordingly.
    """
    go = _go()
    C = np.asarray(cosine, dtype=float)
    ro = np.arange(C.shape[0]) if row_order is None else np.asarray(row_order)
    co = np.arange(C.shape[1]) if col_order is None else np.asarray(col_order)
    col_pos = np.empty(C.shape[1], dtype=int)
    col_pos[co] = np.arange(len(co))
    Z = C[np.ix_(ro, co)]
    a = np.asarray(assignment)[ro]
    ok = a >= 0
    signed = zmin < 0  # correlations: a diverging scale with white at 0
    # not dB: a sequential blue scale (dark = similar), unlike the Magma of every dB heat map, and said so
    fig = go.Figure(go.Heatmap(z=Z, zmin=zmin, zmax=zmax, colorscale="RdBu_r" if signed else "Blues",
                               colorbar=dict(title=dict(text=f"{value_title}<br>({'diverging' if signed else 'sequential'},"
                                                             f"<br>not dB)")),
                               customdata=np.broadcast_to(ro[:, None], Z.shape),
                               hovertemplate=row_title + " #%{customdata}<br>" + col_title + " %{x}<br>%{z:.3f}<extra></extra>"))
    matched_vals = np.where(ok, C[ro, np.where(ok, a, 0)], np.nan)
    fig.add_trace(go.Scatter(x=col_pos[a[ok]], y=np.nonzero(ok)[0], mode="markers", name="optimal matching",
                             marker=dict(size=max(4, min(14, 300 / max(len(ro), 1))),
                                         color="black" if signed else "#ff7f0e", symbol="circle-open",
                                         line=dict(width=1.5)),
                             hovertemplate="matched %{y} ↔ %{x}<extra></extra>"))
    mean = float(np.nanmean(matched_vals)) if ok.any() else float("nan")
    fig.update_xaxes(title_text=col_title + (" (in matched order)" if col_order is not None else ""))
    fig.update_yaxes(title_text=row_title + (" (sorted)" if row_order is not None else ""))
    if col_order is not None and len(co) <= 40:  # show the real column ids, not display positions
        fig.update_xaxes(tickvals=list(range(len(co))), ticktext=[str(int(c)) for c in co])
    if row_order is not None and len(ro) <= 40:
        fig.update_yaxes(tickvals=list(range(len(ro))), ticktext=[str(int(r)) for r in ro])
    fig.update_layout(title=title or f"Matching matrix — mean matched {value_title} {mean:.3f}", height=560, width=640,
                      template="plotly_white", margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=-0.12, x=0))
    return fig


def matched_responses_plot(fr, match, *, n_show: int = 6, title: str | None = None):
    """A few learned responses over their matched reference responses (dB re peak), spread across frequency."""
    go = _go()
    order = [i for i in fr.order_ if match.assignment_[i] >= 0]
    idx = _pick(np.array(order), n_show)
    n = len(idx)
    f = np.asarray(fr.freqs_hz_)
    # at most 400 frequencies per curve (a panel is ~700 px wide): 12 curves at full resolution weighed
    # ~280 kB in the page for no visible difference
    cols = np.arange(len(f)) if len(f) <= 400 else np.unique(np.linspace(0, len(f) - 1, 400).round().astype(int))
    fx = f[cols].astype(np.float32)
    vs = 0.02
    h = (1.0 - (n - 1) * vs) / max(n, 1)
    bottom = str(n) if n > 1 else ""
    layout, traces, notes = {}, [], []
    # stacked panels on one shared frequency axis, laid out in one pass (make_subplots + per-row updates cost
    # seconds for six rows)
    for j, i in enumerate(idx):
        k = "" if j == 0 else str(j + 1)
        y1 = 1.0 - j * (h + vs)
        last = j == n - 1
        xa = dict(domain=[0.0, 1.0], anchor=f"y{k}", showticklabels=last)
        if not last:
            xa["matches"] = f"x{bottom}"
        else:
            xa["title"] = dict(text="frequency (Hz)")
        layout[f"xaxis{k}"] = xa
        layout[f"yaxis{k}"] = dict(domain=[max(0.0, y1 - h), min(1.0, y1)], anchor=f"x{k}", range=[-40, 3],
                                   title=dict(text="dB", font=dict(size=9)))
        ref = match.reference_responses_[match.assignment_[i]]
        for y, name, col in ((fr.responses_[i], "learned", "#1f77b4"), (ref, f"matched {match.reference}", "#d62728")):
            db = 20 * np.log10(np.maximum(y / max(y.max(), 1e-30), 1e-4))
            # the peak-normalised curve at display resolution: every kept point is a real sample
            traces.append(go.Scatter(x=fx, y=db[cols].astype(np.float32), mode="lines", line=dict(color=col, width=1.2), name=name,
                                     showlegend=(j == 0), xaxis=f"x{k}", yaxis=f"y{k}"))
        notes.append(dict(text=f"#{i}, cos={match.matched_cosine_[i]:.2f}", xref=f"x{k} domain", yref=f"y{k} domain",
                          x=0.99, y=0.1, showarrow=False, font=dict(size=10)))
    layout.update(title=dict(text=title or f"{fr.name_}: learned vs matched {match.reference} responses"),
                  height=110 * n + 120, width=760, template="plotly_white",
                  margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=1.02, x=0.6), annotations=notes)
    return go.Figure(data=traces, layout=layout)
