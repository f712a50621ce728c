"""Figures of one clip going through a model: spectrogram, outputs over time, activations.

Pure functions from data (see :mod:`probe.pipelines`: :func:`~probe.pipelines.spectrogram`,
:func:`~probe.pipelines.model_outputs`, :func:`~probe.pipelines.capture_layer`) to
``plotly.graph_objects.Figure``; time in seconds and frequency in Hz on every axis.
"""

from __future__ import annotations

import numpy as np

from .display import MAX_COLUMNS, MAX_ROWS, to_display, uniform_axes, whole_db
from .style import db_scale

__all__ = ["spectrogram_figure", "outputs_figure", "activation_figure", "EVENT_COLOURS"]

#: colours of event boxes and class curves (plotly's qualitative "D3")
EVENT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")


#: a horizontal legend under the x axis title, clear of the figure's title
_LEGEND_BELOW = {"legend": dict(orientation="h", x=0, xanchor="left", y=-0.18, yanchor="top")}


def _go():
    import plotly.graph_objects as go

    return go


def spectrogram_figure(spec_data: dict, *, events=None, classes=None, title: str | None = None, height: int = 380,
                       log_freq: bool = False, max_frames: int | None = MAX_COLUMNS, max_bins: int | None = MAX_ROWS):
    """Log-magnitude spectrogram with seconds and Hz axes, optionally with event boxes.

    Parameters
    ----------
    spec_data : dict
        From :func:`probe.pipelines.spectrogram`: ``times``, ``freqs``, ``db [shape=(F, T)]``.
    events : list of dict, optional
        ``{"label", "onset", "offset", "fmin", "fmax"}`` boxes drawn over the image.
    classes : list of str, optional
        The model's classes: a box gets the colour of its class in :func:`outputs_figure`.
    log_freq : bool
        Logarithmic frequency axis (the 0 Hz row is dropped).
    max_frames, max_bins : int or None
        Columns / rows drawn at most (display resolution: each block shows its loudest cell,
        :func:`~probe.figures.display.to_display`); ``None`` draws every frame / bin.
    """
    go = _go()
    t, f, z = np.asarray(spec_data["times"]), np.asarray(spec_data["freqs"]), np.asarray(spec_data["db"])
    if log_freq:
        keep = f > 0
        f, z = f[keep], z[keep]
    if z.ndim == 2 and z.size:
        z, t, f = to_display(z, t, f, max_columns=max_frames, max_rows=max_bins, how="max")
    top = float(np.max(z)) if z.size else 0.0
    # whole dB, one byte a cell instead of four; cells more than 128 dB under the loudest (48 dB under the colour
    # scale's bottom: digital silence through a log's + eps) read that floor
    z, value = whole_db(z, floor=top - 128.0)
    fig = go.Figure(go.Heatmap(**uniform_axes(t, f), z=z, **db_scale(top),
                               colorbar=dict(title="dB", len=0.9, thickness=12),
                               hovertemplate=f"%{{x:.2f}} s<br>%{{y:.0f}} Hz<br>{value} dB<extra></extra>"))
    order = [str(c) for c in (classes or [])]
    labels: list = []
    for ev in events or []:
        lab = str(ev.get("label", "event"))
        first = lab not in labels
        if first:
            labels.append(lab)
        k = order.index(lab) if lab in order else len(order) + labels.index(lab)
        col = EVENT_COLOURS[k % len(EVENT_COLOURS)]
        f0 = float(ev["fmin"]) if ev.get("fmin") is not None else float(f[0])
        f1 = float(ev["fmax"]) if ev.get("fmax") is not None else float(f[-1])
        x0, x1 = float(ev["onset"]), float(ev["offset"])
        fig.add_trace(go.Scatter(x=[x0, x1, x1, x0, x0], y=[f0, f0, f1, f1, f0], mode="lines",
                                 line=dict(color=col, width=2), name=lab, legendgroup=lab, showlegend=first,
                                 hovertemplate=f"{lab}<br>{x0:.2f}–{x1:.2f} s<br>{f0:.0f}–{f1:.0f} Hz<extra></extra>"))
    fig.update_xaxes(title_text="time (s)", range=[float(t[0]), float(t[-1])] if len(t) > 1 else None)
    fig.update_yaxes(title_text="frequency (Hz)", type="log" if log_freq else "linear")
    fig.update_layout(title=title, height=height + (30 if labels else 0), template="plotly_white",
                      margin=dict(l=60, r=20, t=40 if title else 10, b=75 if labels else 45), **_LEGEND_BELOW)
    return fig


def outputs_figure(outputs: dict, *, title: str | None = None, height: int = 300, threshold: float | None = None):
    """A model's output over time: class probabilities per frame, or clip scores as bars.

    Parameters
    ----------
    outputs : dict
        From :func:`probe.pipelines.model_outputs`.
    threshold : float, optional
        Decision threshold drawn as a dashed line (detectors).

    Returns
    -------
    plotly.graph_objects.Figure or None
        Detectors: probabilities over seconds; clip scores: bars; separators: the
        spectrogram of every separated source (or every mask) on shared axes; ``None``
        for other kinds.
    """
    go = _go()
    kind = outputs.get("kind")
    if kind == "frame_probs" and "values" in outputs:
        V, t, labels = np.asarray(outputs["values"]), np.asarray(outputs["times"]), outputs["labels"]
        finite = V[np.isfinite(V)]
        # logits declared as frame_probs are drawn on their own scale, not cut off at [0, 1]
        probs = finite.size == 0 or (finite.min() >= -1e-3 and finite.max() <= 1 + 1e-3)
        name = "p" if probs else "score"
        fig = go.Figure()
        for i, lab in enumerate(labels):
            fig.add_trace(go.Scatter(x=t, y=V[i], mode="lines", name=str(lab),
                                     line=dict(width=1.5, color=EVENT_COLOURS[i % len(EVENT_COLOURS)]),
                                     hovertemplate=f"{lab}<br>%{{x:.2f}} s<br>{name}=%{{y:.2f}}<extra></extra>"))
        if threshold is not None and probs:
            fig.add_hline(y=float(threshold), line=dict(color="#999", dash="dash", width=1))
        fig.update_xaxes(title_text="time (s)")
        if probs:
            fig.update_yaxes(title_text="probability", range=[-0.02, 1.02])
        else:
            fig.update_yaxes(title_text="score (not a probability)")
    elif kind == "clip_scores" and "values" in outputs:
        fig = go.Figure(go.Bar(x=list(outputs["labels"]), y=np.asarray(outputs["values"]), marker_color="#1f77b4"))
        fig.update_yaxes(title_text="score")
    elif kind == "sources" and outputs.get("spectrograms"):
        return _stacked_heatmaps([(str(lab), d["times"], d["freqs"], d["db"]) for lab, d in
                                  zip(outputs["labels"], outputs["spectrograms"])], unit="dB", title=title,
                                 **db_scale(max(float(np.max(d["db"])) for d in outputs["spectrograms"])))
    elif kind == "masks" and "values" in outputs and outputs.get("freqs") is not None:
        return _stacked_heatmaps([(str(lab), outputs["times"], outputs["freqs"], m) for lab, m in
                                  zip(outputs["labels"], outputs["values"])], colorscale="Viridis", zmin=0.0,
                                 unit="mask", title=title)
    else:
        return None
    fig.update_layout(title=title, height=height + 30, template="plotly_white",
                      margin=dict(l=60, r=20, t=40 if title else 10, b=75), **_LEGEND_BELOW)
    return fig


def _stacked_heatmaps(panels, *, colorscale: str, unit: str, title=None, zmin=None, zmax=None, panel_height: int = 190):
    """One heatmap per (label, times, freqs, z) panel, stacked with shared seconds axis."""
    from plotly.subplots import make_subplots

    go = _go()
    n = len(panels)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.06 if n > 1 else 0.0,
                        subplot_titles=[p[0] for p in panels])
    lo = zmin if zmin is not None else min(float(np.min(p[3])) for p in panels)
    hi = zmax if zmax is not None else max(float(np.max(p[3])) for p in panels)
    percent = unit == "mask" and lo >= 0.0 and hi <= 1.0
    for i, (lab, t, f, z) in enumerate(panels, start=1):
        # display resolution: dB panels show each block's loudest cell, masks its mean
        z, t, f = to_display(np.asarray(z), t, f, max_columns=MAX_COLUMNS, max_rows=MAX_ROWS,
                             how="max" if unit == "dB" else "mean")
        scale, value, bar = dict(zmin=lo, zmax=hi), "%{z:.2f}", unit
        if unit == "dB":  # whole dB, one byte per cell
            z, value = whole_db(z, floor=hi - 128.0)  # as spectrogram_figure
            value += " dB"
        if percent:  # a mask in [0, 1] travels as whole percent, one byte per cell (a quarter of float32)
            z = np.round(np.clip(z, 0.0, 1.0) * 100).astype(np.uint8)
            scale, value, bar = dict(zmin=round(100 * lo), zmax=round(100 * hi)), "%{z} %", f"{unit} (%)"
        fig.add_trace(go.Heatmap(**uniform_axes(t, f), z=z, colorscale=colorscale, **scale, showscale=(i == 1),
                                 colorbar=dict(title=bar, thickness=12, len=0.9),
                                 hovertemplate=f"{lab}<br>%{{x:.2f}} s<br>%{{y:.0f}} Hz<br>{value}<extra></extra>"),
                      row=i, col=1)
        fig.update_yaxes(title_text="Hz", row=i, col=1)
    fig.update_xaxes(title_text="time (s)", row=n, col=1)
    fig.update_annotations(font_size=12)
    fig.update_layout(title=title, height=panel_height * n + 90, template="plotly_white",
                      margin=dict(l=60, r=20, t=60 if title else 30, b=45))
    return fig


def activation_figure(act, *, title: str | None = None, height: int = 420, normalise: bool = True):
    """A captured layer as a heatmap: rows (channels / bins) × seconds.

    Parameters
    ----------
    act : probe.pipelines.Activation
    normalise : bool
        Scale each row to its own maximum absolute value (shows when each unit is active,
        whatever its range).
    """
    go = _go()
    z = np.asarray(act.values, np.float64)
    if normalise:
        m = np.nanmax(np.abs(z), axis=1, keepdims=True)
        z = z / np.where(m > 0, m, 1.0)
    x = act.times if act.times is not None else np.arange(z.shape[1])
    if act.row_freqs is not None and len(act.row_freqs) == z.shape[0]:
        y, y_title = np.asarray(act.row_freqs), f"{act.row_label} (Hz)"
        hover = "%{x:.2f} s<br>%{y:.0f} Hz<br>VALUE<extra></extra>"
    else:
        y, y_title = np.arange(z.shape[0]), act.row_label
        hover = "%{x:.2f} s<br>row %{y}<br>VALUE<extra></extra>"
    # display resolution along time only (rows are units: averaging neighbours would mix them)
    z, x, _ = to_display(z, x, max_columns=MAX_COLUMNS, max_rows=None, how="mean")
    signed = bool(np.nanmin(z) < 0)
    bar, value = ("rel." if normalise else "value"), "%{z:.3f}"
    if normalise and np.isfinite(z).all():
        # each row re its own peak, in whole percent: one byte a cell, not four (a 512-unit layer was 1.4 MB)
        z = np.round(np.clip(z, -1.0, 1.0) * 100).astype(np.int8)
        bar, value = "% of the<br>row's peak", "%{z} % of the row's peak"
    fig = go.Figure(go.Heatmap(**uniform_axes(x, y), z=z, colorscale="RdBu_r" if signed else "Viridis",
                               zmid=0.0 if signed else None, colorbar=dict(title=bar, thickness=12),
                               hovertemplate=hover.replace("VALUE", value)))
    fig.update_xaxes(title_text="time (s)" if act.times is not None else "step")
    fig.update_yaxes(title_text=y_title)
    shape = "×".join(str(s) for s in act.shape)
    fig.update_layout(title=title or f"{act.name} ({act.module_type}, {shape}, axes {', '.join(act.axes)})",
                      height=height, template="plotly_white", margin=dict(l=60, r=20, t=40, b=45))
    return fig
