"""Figures for T-F attributions: pure functions from results to ``plotly`` figures.

Builders take an :class:`~probe.attribution.Attribution` or the dicts returned by
:mod:`probe.analyze.faithfulness` and return a :class:`plotly.graph_objects.Figure` with
axes in seconds and Hz. Relevance is drawn with a diverging scale centred on zero and a
symmetric range, so red always means "raises the target" and blue "lowers it".
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError
from .display import MAX_COLUMNS, MAX_ROWS, to_display, uniform_axes, whole_db
from .style import DB_COLORSCALE, db_scale

__all__ = ["attribution_figure", "target_track_figure", "deletion_figure", "randomisation_figure", "DIVERGING"]

#: colour scale for relevance: blue (lowers the target) – white (0) – red (raises it)
DIVERGING = "RdBu_r"
_SPEC = DB_COLORSCALE  # the spectrogram over a map: the one dB convention (probe.figures.style)


def _go():
    import plotly.graph_objects as go

    return go


def _decimate(M, times, max_frames):
    """Average blocks of frames so at most ``max_frames`` columns are drawn (display only)."""
    Mb, tb, _ = to_display(M, times, max_columns=max_frames, max_rows=None, how="mean")
    return Mb, tb


def _decimate_rows(M, freqs, max_bins):
    """Average blocks of frequency rows (display only)."""
    Mb, _, fb = to_display(M, None, freqs, max_columns=None, max_rows=max_bins, how="mean")
    return Mb, fb


def _symmetric_range(A, percentile):
    lim = float(np.percentile(np.abs(A), percentile)) if A.size else 1.0
    return lim if lim > 0 else float(np.abs(A).max() or 1.0)


def _box_shapes(fig, boxes, rows, times, freqs, mel_rows=(), mel_freqs=None):
    """Event boxes on every panel; on a mel panel (``mel_rows``) the Hz edges become band positions.

    Shapes and labels are collected as plain dicts and added in one layout update (one
    ``add_shape`` per box and panel re-validated the whole layout each time).
    """
    shapes, notes = [], []
    for b in boxes or []:
        f0 = b.get("fmin") if b.get("fmin") is not None else float(freqs[0])
        f1 = b.get("fmax") if b.get("fmax") is not None else float(freqs[-1])
        for r in rows:
            y0, y1 = f0, f1
            if r in mel_rows:
                idx = np.arange(len(mel_freqs))
                y0, y1 = (float(np.interp(v, mel_freqs, idx)) for v in (f0, f1))
            sfx = "" if r == 1 else str(r)
            shapes.append(dict(type="rect", x0=b["onset"], x1=b["offset"], y0=y0, y1=y1, xref=f"x{sfx}", yref=f"y{sfx}",
                               line=dict(color="#2ca02c", width=2), fillcolor="rgba(0,0,0,0)"))
        if b.get("label"):
            sfx = "" if rows[0] == 1 else str(rows[0])
            notes.append(dict(x=b["onset"], y=f1, text=str(b["label"]), showarrow=False, xanchor="left",
                              yanchor="bottom", font=dict(color="#2ca02c", size=11), xref=f"x{sfx}", yref=f"y{sfx}"))
    if shapes or notes:
        fig.update_layout(shapes=list(fig.layout.shapes) + shapes, annotations=list(fig.layout.annotations) + notes)


def attribution_figure(attr, *, boxes=None, mel: bool = False, show_spectrogram: bool = True,
                       max_frames: int | None = MAX_COLUMNS, max_bins: int | None = MAX_ROWS, percentile: float = 99.5,
                       fmax: float | None = None, title: str | None = None, width: int = 900):
    """The clip's spectrogram and the relevance map over it, on shared seconds/Hz axes.

    Parameters
    ----------
    attr : Attribution
    boxes : list of dict, optional
        Event boxes ``{"onset", "offset", "fmin", "fmax", "label"}`` drawn on both panels.
    mel : bool
        Draw the relevance folded onto mel bands (:meth:`Attribution.mel_view`), one row
        per band, labelled with the bands' centre frequencies.
    show_spectrogram : bool
        Add the spectrogram panel (dB, greys) above the relevance.
    max_frames, max_bins : int or None
        Columns / rows drawn at most (display resolution, :func:`~probe.figures.display.to_display`):
        blocks of frames / bins are averaged in the relevance map, and the spectrogram shows each
        block's loudest cell. Downloads keep every bin. ``None`` draws every frame / bin.
    percentile : float
        The colour range is ``±percentile(|relevance|)``, symmetric around 0.
    fmax : float, optional
        Upper frequency shown (Hz).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from plotly.subplots import make_subplots

    go = _go()
    A = np.asarray(attr.map, np.float64)
    freqs = np.asarray(attr.freqs, float)
    mel_freqs = None
    if mel:  # rows are mel bands, drawn evenly spaced and labelled in Hz
        A, mel_freqs = attr.mel_view()
        A = np.asarray(A, np.float64)
        freqs = np.arange(A.shape[0], dtype=float)
    A, times = _decimate(A, attr.times, max_frames)
    if not mel:
        A, freqs = _decimate_rows(A, freqs, max_bins)
    lim = _symmetric_range(A, percentile)  # of the drawn (block-averaged) values, so the colours use their range
    rows = 2 if show_spectrogram else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=(["spectrogram (dB)"] if show_spectrogram else [])
                        + [f"relevance · {attr.method} · {attr.target}" + (" · mel view" if mel else "")])
    if show_spectrogram:
        S, st, sf = to_display(np.asarray(attr.input_magnitude), attr.times, attr.freqs, max_columns=max_frames,
                               max_rows=max_bins, how="max")
        S = 20 * np.log10(S.astype(np.float64) + 1e-9)
        S = S - float(S.max())  # dB re the loudest bin, as every dB heat map (probe.figures.style)
        S, value = whole_db(S, floor=-128.0)  # one byte a cell instead of four (silence reads -128 dB)
        fig.add_trace(go.Heatmap(**uniform_axes(st, sf), z=S, **db_scale(0.0),
                                 colorbar=dict(title="dB re max", len=0.45, y=0.78), name="|X|",
                                 hovertemplate=f"%{{x:.3f}} s<br>%{{y:.0f}} Hz<br>{value} dB<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(**uniform_axes(times, freqs), z=A.astype(np.float32), colorscale=DIVERGING, zmid=0.0, zmin=-lim, zmax=lim,
                             colorbar=dict(title="relevance", len=0.45, y=0.22 if show_spectrogram else 0.5),
                             name="relevance", hovertemplate="%{x:.3f} s<br>%{y:.0f} Hz<br>%{z:.3g}<extra></extra>"),
                  row=rows, col=1)
    _box_shapes(fig, boxes, list(range(1, rows + 1)), attr.times, attr.freqs, mel_rows=(rows,) if mel else (),
                mel_freqs=mel_freqs)
    for r in range(1, rows + 1):
        if mel and r == rows:
            ticks = np.unique(np.linspace(0, len(mel_freqs) - 1, 8).round().astype(int))
            fig.update_yaxes(title_text="mel band centre (Hz)", tickmode="array", tickvals=ticks.tolist(),
                             ticktext=[f"{mel_freqs[t]:.0f}" for t in ticks], row=r, col=1)
        else:
            fig.update_yaxes(title_text="frequency (Hz)", range=[0, fmax or float(attr.freqs[-1])], row=r, col=1)
    fig.update_xaxes(title_text="time (s)", row=rows, col=1)
    sub = []
    if attr.completeness_error is not None:
        sub.append(f"completeness error {attr.completeness_error:.2%}")
    if attr.reconstruction_error_db is not None:
        sub.append(f"iSTFT error {attr.reconstruction_error_db:.0f} dB")
    fig.update_layout(title=title or ("attribution" + (" — " + ", ".join(sub) if sub else "")),
                      height=300 * rows + 80, width=width, margin=dict(l=70, r=20, t=70, b=50))
    return fig


def target_track_figure(attr=None, *, times=None, values=None, span=None, label: str | None = None,
                        title: str | None = None):
    """The target's per-frame quantity over time (class probability, source energy), span shaded.

    Pass an :class:`~probe.attribution.Attribution` (its ``track``) or ``times`` and ``values``.
    """
    go = _go()
    if attr is not None:
        if attr.track is None:
            raise AnalysisError("this attribution has no target track (chunked runs and callables keep none)")
        times, values = attr.track
        span = span if span is not None else getattr(attr.target, "t", None)
        label = label or str(attr.target)
    if times is None or values is None:
        raise AnalysisError("target_track_figure needs an attribution or times and values")
    fig = go.Figure(go.Scatter(x=np.asarray(times), y=np.asarray(values), mode="lines", name=label or "target",
                               line=dict(color="#d62728")))
    if span is not None:
        fig.add_vrect(x0=span[0], x1=span[1], fillcolor="#2ca02c", opacity=0.15, line_width=0,
                      annotation_text="explained span", annotation_position="top left")
    fig.update_layout(title=title or f"target over time · {label or ''}", xaxis_title="time (s)",
                      yaxis_title="value", height=300, width=900, margin=dict(l=70, r=20, t=60, b=50))
    return fig


def deletion_figure(result, *, title: str | None = None):
    """Deletion and insertion curves, attribution order vs random order (from :func:`deletion_test`)."""
    go = _go()
    curves = result.get("curves") if isinstance(result, dict) else None
    if not curves or "deletion" not in curves:
        raise AnalysisError("deletion_figure needs the dict returned by deletion_test (with 'curves')")
    if result.get("auc") is None:  # the test withheld its figures (non-finite map, nothing to explain): say why
        fig = go.Figure()
        fig.add_annotation(text="deletion test unavailable: " + str(result.get("reason", "no figures")), x=0.5, y=0.5,
                           xref="paper", yref="paper", showarrow=False, width=700)
        fig.update_layout(title=title or "deletion / insertion of T-F bins", height=200, width=760,
                          xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white")
        return fig
    styles = {"deletion": ("#d62728", "solid", f"deletion, attribution order (AUC {result['auc']:.3f})"),
              "deletion_random": ("#d62728", "dash", f"deletion, random order (AUC {result['auc_random']:.3f})"),
              "insertion": ("#1f77b4", "solid", f"insertion, attribution order (AUC {result.get('insertion_auc', float('nan')):.3f})"),
              "insertion_random": ("#1f77b4", "dash",
                                   f"insertion, random order (AUC {result.get('insertion_auc_random', float('nan')):.3f})")}
    fig = go.Figure()
    for key, (colour, dash, name) in styles.items():
        c = curves.get(key)
        if c is None:
            continue
        fig.add_trace(go.Scatter(x=100 * np.asarray(c["fractions"]), y=c["normalized"], mode="lines+markers", name=name,
                                 line=dict(color=colour, dash=dash), marker=dict(size=4)))
    fig.add_vline(x=10, line=dict(color="#7f7f7f", dash="dot"))
    # the label sits above the plot area (curves start at 1 = the top edge), at the line's foot
    fig.add_annotation(x=10, xref="x", y=1.0, yref="paper", yanchor="bottom", xanchor="left", showarrow=False,
                       text=f"10 %: drop {result['drop_at_10']:.2f} vs {result['drop_at_10_random']:.2f} random",
                       font=dict(color="#555"))
    fig.update_layout(title=dict(text=title or "deletion / insertion of T-F bins", y=0.97, yanchor="top"),
                      xaxis_title="bins changed (% of all)",
                      yaxis_title="(target - f(b)) / (f(x) - f(b))", height=460, width=760,
                      legend=dict(orientation="h", x=0.0, y=-0.2, yanchor="top"),  # below the plot, never over a curve
                      margin=dict(l=70, r=20, t=80, b=120))
    return fig


def randomisation_figure(result, *, max_maps: int = 5, title: str | None = None):
    """Model-parameter randomisation test: maps after each cascade step, and similarity to the trained map."""
    from plotly.subplots import make_subplots

    go = _go()
    layers = list(result["layers"])
    maps = result.get("maps")
    x = list(range(len(layers)))
    if maps:
        idx = np.unique(np.linspace(0, len(maps) - 1, min(max_maps, len(maps))).round().astype(int))
        n = len(idx)
        fig = make_subplots(rows=2, cols=n, row_heights=[0.5, 0.5], vertical_spacing=0.18,
                            specs=[[{} for _ in range(n)], [{"colspan": n}] + [None] * (n - 1)],
                            subplot_titles=[("trained" if i == 0 else f"random down to<br>{layers[i]}") for i in idx] + [""])
        fig.update_annotations(font_size=12)  # two-line panel titles, side by side
        for j, i in enumerate(idx):
            M = np.asarray(maps[i], np.float64)
            M, _ = _decimate(M, np.arange(M.shape[-1]), 300)
            lim = _symmetric_range(M, 99.5)
            fig.add_trace(go.Heatmap(z=M / lim, colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1, showscale=j == n - 1,
                                     colorbar=dict(title="rel. / max", len=0.4, y=0.8)), row=1, col=j + 1)
            fig.update_xaxes(showticklabels=False, row=1, col=j + 1)
            fig.update_yaxes(showticklabels=False, row=1, col=j + 1)
        row = 2
    else:
        fig = make_subplots(rows=1, cols=1)
        row = 1
    for key, colour, dash in (("spearman", "#d62728", "solid"), ("spearman_abs", "#ff7f0e", "dash"),
                              ("ssim", "#1f77b4", "solid"), ("ssim_rank", "#17becf", "dash")):
        if key not in result:
            continue
        v = [np.nan if vv is None else vv for vv in result.get(key, [])]
        fig.add_trace(go.Scatter(x=x, y=v, mode="lines+markers", name=key.replace("_", " "),
                                 line=dict(color=colour, dash=dash)), row=row, col=1)
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=layers, title_text="randomised down to layer", row=row, col=1)
    fig.update_yaxes(title_text="similarity to trained", range=[-0.3, 1.05], row=row, col=1)
    fig.update_layout(title=title or f"randomisation test ({result.get('mode', 'cascade')}) · {result.get('method', '')}",
                      height=640 if maps else 360, width=900, margin=dict(l=70, r=20, t=100 if maps else 70, b=60),
                      legend=dict(x=1.02, y=0.0, xanchor="left", yanchor="bottom"))
    return fig
