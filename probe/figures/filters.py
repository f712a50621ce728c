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
           "matched_responses_plot", "responses_and_spacing", "matching_overview", "side_by_side", "SCALE_COLOURS"]

SCALE_COLOURS = {"linear": "#7f7f7f", "mel": "#1f77b4", "erb": "#d62728", "log": "#2ca02c"}
#: above this many filters a per-filter marker or error bar becomes one line or one shaded band: a browser makes
#: one SVG element per marker and per error bar (a 256-filter bank: ~750 elements, most of a page's drawing time)
MANY_POINTS = 64


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


def _layout_key(ref: str) -> str:
    """``x3`` → ``xaxis3``."""
    return ref[0] + "axis" + ref[1:]


def _ref(name: str) -> str:
    """``xaxis3`` → ``x3``."""
    return name[0] + name[5:]


def side_by_side(panels, *, widths=None, gap: float = 0.07, title: str | None = None, height: int | None = None,
                 width: int | None = None, names=None):
    """Figures placed side by side as panels of ONE figure (one chart in a page, not several).

    A browser page pays ~0.1 s per chart beyond drawing it (mounting, sizing, the figure's own
    layout pass) and ~10–25 ms per extra axis, so a page with two or three related charts draws
    sooner as one figure of panels. Each panel keeps its traces, axes (domains, titles, ticks,
    ranges, matching), annotations, colour bars (moved to the panel's right edge) and its own
    legend, placed in its box as in its figure; its title becomes a panel title above it.

    Parameters
    ----------
    panels : list of plotly.graph_objects.Figure or list of such lists
        Each figure with any number of axes (``xaxis``, ``yaxis2``, ...) in its own ``[0, 1]``
        paper space. A list in place of a figure stacks its figures in that column (top first).
    widths : list of float, optional
        Relative column widths (default equal).
    gap : float
        Paper-width fraction between columns (room for a colour bar and the next y title).
    title, height, width : optional
        The figure's title and size (height: the tallest column's by default).
    names : list of str, optional
        A name per panel (in the order top to bottom, left to right) for ``layout.meta``.

    Returns
    -------
    plotly.graph_objects.Figure
        Axes renumbered panel after panel; every trace's ``meta`` is kept;
        ``layout.meta["panels"]`` lists each panel's name, title, axes and paper box ``[x0, x1, y0, y1]``.

    Examples
    --------
    >>> import plotly.graph_objects as go
    >>> a = go.Figure(go.Scatter(x=[0, 1], y=[1, 2]), layout=dict(title=dict(text="a")))
    >>> b = go.Figure(go.Bar(x=["p", "q"], y=[3, 4]), layout=dict(title=dict(text="b")))
    >>> fig = side_by_side([a, b], widths=[2, 1])
    >>> [(t.xaxis, t.yaxis) for t in fig.data]
    [('x', 'y'), ('x2', 'y2')]
    >>> [p["axes"] for p in fig.layout.meta["panels"]]
    [['xaxis', 'yaxis'], ['xaxis2', 'yaxis2']]
    """
    columns = [list(p) if isinstance(p, (list, tuple)) else [p] for p in panels]
    w = np.asarray(widths if widths is not None else [1.0] * len(columns), float)
    usable = 1.0 - gap * (len(columns) - 1)
    boxes, figs, x = [], [], 0.0
    vgap = 0.2  # room for the upper panel's x title and the lower one's title
    for col, wi in zip(columns, w / w.sum() * usable):
        hs = np.asarray([f.layout.height or 450 for f in col], float)
        top = 1.0
        for f, h in zip(col, hs / hs.sum() * (1.0 - vgap * (len(col) - 1))):
            boxes.append((x, x + wi, top - h, top))
            figs.append(f)
            top -= h + vgap
        x += wi + gap
    tall = max(sum(f.layout.height or 450 for f in col) for col in columns)
    return _merge(figs, boxes, title=title, height=height or tall, width=width, panel_names=names)


def _merge(figs, boxes, *, title=None, height=None, width=None, panel_names=None):
    """``figs`` drawn in paper boxes ``(x0, x1, y0, y1)`` of one figure (see :func:`side_by_side`)."""
    go = _go()
    traces, layout, notes, info, counters = [], {}, [], [], {"x": 0, "y": 0}
    bar_at_edge = False
    for p, (fig, (a, b, c, d)) in enumerate(zip(figs, boxes)):
        lay = fig.layout.to_plotly_json()
        names = sorted((k for k in lay if k[:5] in ("xaxis", "yaxis")), key=lambda k: (k[0], int(k[5:] or 1)))
        for k in ("xaxis", "yaxis"):  # a figure without explicit axes still draws on x/y
            if k not in names:
                names.append(k)
        rename = {}
        for n in names:
            counters[n[0]] += 1
            rename[_ref(n)] = n[0] + ("" if counters[n[0]] == 1 else str(counters[n[0]]))

        def squeeze(v, axis):
            lo, hi = (a, b) if axis == "x" else (c, d)
            return float(min(max(lo + float(v) * (hi - lo), 0.0), 1.0))  # rounding must not leave [0, 1]

        for n in names:
            ax = dict(lay.get(n, {}))
            lo, hi = ax.get("domain", [0.0, 1.0])
            ax["domain"] = [round(squeeze(lo, n[0]), 6), round(squeeze(hi, n[0]), 6)]
            for ref in ("anchor", "matches", "overlaying", "scaleanchor"):
                if ax.get(ref) in rename:
                    ax[ref] = rename[ax[ref]]
            ax.setdefault("anchor", rename["y" if n[0] == "x" else "x"])  # plotly's default: the first other axis
            layout[_layout_key(rename[_ref(n)])] = ax
        for t in fig.data:
            t = t.to_plotly_json()  # a plain copy: the figure below validates every trace once
            own_y = t.get("yaxis") or "y"
            t.update(xaxis=rename.get(t.get("xaxis") or "x"), yaxis=rename.get(own_y, own_y))
            if t["type"] in ("heatmap", "contour") and t.get("showscale") is not False:
                lo, hi = lay.get(_layout_key(own_y), {}).get("domain", [0.0, 1.0])
                bar = dict(t.get("colorbar", {}))
                bar.update(x=b + 0.005, xanchor="left", thickness=10, len=(hi - lo) * (d - c) * 0.95,
                           y=squeeze((lo + hi) / 2, "y"), yanchor="middle")
                bar["title"] = {**bar.get("title", {}), "font": {"size": 10}}
                t["colorbar"] = bar
                bar_at_edge |= b >= 0.95  # the last column's colour bar stands in the right margin
            if t.get("showlegend") is not False:
                t["legend"] = f"legend{p + 1}" if p else "legend"
            traces.append(t)
        leg = dict(lay.get("legend", {}))  # the panel's own legend, placed in its box as it was in its figure
        leg.setdefault("x", 0.01)
        leg.setdefault("y", 0.99)
        for k, axis in (("xanchor", "x"), ("yanchor", "y")):  # plotly's "auto", fixed in the panel's own coordinates
            if leg.get(k, "auto") == "auto":
                v = leg[axis]
                leg[k] = ("right" if v > 2 / 3 else "left" if v < 1 / 3 else "center") if axis == "x" else \
                    ("top" if v > 2 / 3 else "bottom" if v < 1 / 3 else "middle")
        leg.update(x=squeeze(leg["x"], "x") if 0 <= leg["x"] <= 1 else a + leg["x"] * (b - a),
                   y=c + leg["y"] * (d - c), font=dict(size=10), bgcolor="rgba(255,255,255,0.8)")
        layout["legend" + (str(p + 1) if p else "")] = leg
        for note in lay.get("annotations", ()):  # on an axis: renamed; on the paper: squeezed into the box
            note = dict(note)
            for key, axis in (("xref", "x"), ("yref", "y")):
                ref = note.get(key, "paper")
                if ref == "paper":
                    note[axis] = squeeze(note.get(axis, 0.5), axis)
                else:  # "x2" or "x2 domain"
                    head, _, tail = ref.partition(" ")
                    note[key] = rename.get(head, head) + (f" {tail}" if tail else "")
            notes.append(note)
        head = (lay.get("title") or {}).get("text")
        if head:
            notes.append(dict(text=head, x=(a + b) / 2, xref="paper", y=d + 0.01, yref="paper", yanchor="bottom",
                              xanchor="center", showarrow=False, font=dict(size=12)))
        info.append(dict(name=panel_names[p] if panel_names else str(p), title=head, axes=[_layout_key(rename[_ref(n)]) for n in names],
                         box=[float(a), float(b), float(c), float(d)]))
    layout.update(annotations=notes, template="plotly_white", height=height, hovermode="closest",
                  # margins with room for the tick labels and titles plotly's automargin reserves: a push of
                  # even 3 px beyond them makes plotly.js draw the whole figure a second time (measured in
                  # Chromium: the responses chart 0.25-0.6 s with the redraw, 0.09-0.16 s without)
                  margin=dict(l=72, r=100 if bar_at_edge else 50, t=110 if title else 70, b=116),
                  meta=dict(panels=info))
    if title:
        layout["title"] = dict(text=title)
    if width:
        layout["width"] = width
    return go.Figure(data=traces, layout=layout)


def filter_gallery(bank, responses=None, *, max_filters: int = 32, n_cols: int = 8, title: str | None = None):
    """Kernels side by side in one chart: impulse responses (ms), profiles over Hz, or T-F patches.

    Every kernel gets a cell of one shared axis (row by row, ``n_cols`` per row), labelled above it;
    one axis and a few traces draw in a fraction of the time a grid of subplots takes in a browser
    (each subplot's axes and title cost ~10–25 ms there).

    Parameters
    ----------
    bank : FilterBank
    responses : FilterResponses, optional
        Sorts the cells by centre frequency and labels them with it (spectro-temporal patches:
        with their ridge orientation and coherence).
    max_filters : int
        Cells shown, spread evenly over the (sorted) bank.
    n_cols : int
        Cells per row.

    Returns
    -------
    plotly.graph_objects.Figure
        Waveform or frequency kernels: each kernel scaled by its largest magnitude to fill its cell
        (its sign kept), drawn as one trace; hover gives the filter, the time or frequency and the
        kernel's own value. Spectro-temporal kernels: one heat map of all patches on one colour
        scale (gaps between patches are empty). The trace's ``meta`` holds each cell's filter
        index, offsets and scale.

    Notes
    -----
    The x axis ticks each column's first and last sample in the kernel's own unit (ms or Hz).

    Examples
    --------
    >>> import numpy as np
    >>> from probe.filterbank import FilterBank
    >>> from probe.figures.filters import filter_gallery
    >>> t = np.arange(64) / 16000
    >>> k = np.stack([np.sin(2 * np.pi * f * t) * np.hanning(64) for f in (500, 1000, 2000)])
    >>> fig = filter_gallery(FilterBank("demo", k[:, None], "samples", 16000))
    >>> kernels = [t for t in fig.data if t.name == "kernels"][0]
    >>> [c["filter"] for c in kernels.meta["cells"]]
    [0, 1, 2]
    """
    go = _go()
    n = bank.n_filters
    order = responses.order_ if responses is not None else np.arange(n)
    idx = [int(i) for i in _pick(order, max_filters)]
    n_cols = max(1, min(n_cols, len(idx)))
    n_rows = int(np.ceil(len(idx) / n_cols))
    labels = []
    for i in idx:
        if responses is not None and responses.is_spectral_:
            labels.append(f"#{i} · {_fmt_hz(responses.centre_hz_[i])}")
        elif responses is not None and hasattr(responses, "orientation_deg_"):  # ridge angle and coherence
            labels.append(f"#{i} · {responses.orientation_deg_[i]:+.0f}° c={responses.coherence_[i]:.2f}")
        else:
            labels.append(f"#{i}")
    role = f"{bank.role} " if bank.role else ""
    head = title or f"{bank.name}: {role}kernels ({n} filters, {bank.sample_rate} Hz)"
    small = dict(size=10)
    if bank.axis == "spectrotemporal":
        return _patch_mosaic(go, bank, idx, labels, n_cols, n_rows, head)
    K = np.asarray(bank.kernels, dtype=float)
    if bank.axis == "samples":
        u = np.arange(K.shape[-1]) / bank.sample_rate * 1000.0
        x_title, unit, fmt = "time (ms)", "ms", (lambda v: f"{v:.3g}")
        hover = "%{customdata[1]:.3g} ms"
    else:
        u = np.asarray(bank.freqs_hz, dtype=float)
        x_title, unit, fmt = "frequency (Hz)", "Hz", (lambda v: f"{v / 1000:.3g}k" if v >= 1000 else f"{v:.0f}")
        hover = "%{customdata[1]:.0f} Hz"
    span = float(u[-1] - u[0]) or 1.0
    gap = 0.2 * span
    pitch = 3.0  # a cell's height in y units: the kernel in [−1, 1], then its label
    xs, ys, cd, frame_x, frame_y, zero_x, zero_y, cells = [], [], [], [], [], [], [], []
    for j, i in enumerate(idx):
        r, c = j // n_cols, j % n_cols
        dx, dy = c * (span + gap) - u[0], -r * pitch
        k = K[i]
        scale = float(np.abs(k).max()) or 1.0
        xs += [u + dx, [np.nan]]
        ys += [k / scale + dy, [np.nan]]
        cd += [np.column_stack([np.full(len(k), i), u, k]), np.full((1, 3), np.nan)]
        a, b = u[0] + dx, u[-1] + dx
        frame_x += [a, b, b, a, a, None]
        frame_y += [dy - 1.1, dy - 1.1, dy + 1.1, dy + 1.1, dy - 1.1, None]
        zero_x += [a, b, None]
        zero_y += [dy, dy, None]
        cells.append(dict(filter=i, row=r, col=c, x_offset=float(dx), y_offset=float(dy), scale=scale))
    traces = [
        go.Scatter(x=frame_x, y=frame_y, mode="lines", line=dict(width=0.6, color="#d9d9d9"), hoverinfo="skip",
                   showlegend=False),
        go.Scatter(x=zero_x, y=zero_y, mode="lines", line=dict(width=0.6, color="#bbbbbb"), hoverinfo="skip",
                   showlegend=False),
        go.Scatter(x=np.concatenate(xs).astype(np.float32), y=np.concatenate(ys).astype(np.float32), mode="lines",
                   line=dict(width=1, color="#1f77b4"), name="kernels", showlegend=False, connectgaps=False,
                   customdata=np.concatenate(cd).astype(np.float32),
                   hovertemplate="filter #%{customdata[0]:.0f}<br>" + hover + "<br>%{customdata[2]:.4g}<extra></extra>",
                   meta=dict(cells=cells)),
        go.Scatter(x=[c["x_offset"] + u[0] + span / 2 for c in cells], y=[c["y_offset"] + 1.15 for c in cells],
                   text=labels, mode="text", textposition="top center", textfont=dict(size=9), hoverinfo="skip",
                   showlegend=False)]
    # the last row's cells carry the ticks: each column's first and last sample in its own unit
    tv, tt = [], []
    for c in range(n_cols):
        dx = c * (span + gap)
        tv += [dx, dx + span]
        tt += [fmt(u[0]), fmt(u[-1])]
    xaxis = dict(tickvals=tv, ticktext=tt, tickfont=dict(size=8), tickangle=0, showgrid=False, zeroline=False,
                 range=[-0.3 * gap, n_cols * (span + gap) - 0.7 * gap],
                 title=dict(text=f"{x_title}: each cell {fmt(u[0])}–{fmt(u[-1])} {unit}", font=small))
    yaxis = dict(showticklabels=False, showgrid=False, zeroline=False,
                 range=[-(n_rows - 1) * pitch - 1.3, 1.1 + 0.9],
                 title=dict(text=("amplitude" if bank.axis == "samples" else "weight") + " (each kernel ÷ its peak |·|)",
                            font=small))
    layout = dict(title=dict(text=head), height=110 * n_rows + 130, width=130 * n_cols + 120,
                  margin=dict(l=50, r=20, t=70, b=50), template="plotly_white", xaxis=xaxis, yaxis=yaxis,
                  hovermode="closest")
    return go.Figure(data=traces, layout=layout)


def _patch_mosaic(go, bank, idx, labels, n_cols, n_rows, head):
    """Spectro-temporal kernels as one heat map: patches tiled row by row, one blank cell between them."""
    P = np.asarray(bank.weights, dtype=float)
    P = P.sum(1) if P.ndim == 4 else P
    vmax = float(np.abs(P[idx]).max()) or 1.0
    h, w = P.shape[-2:]
    gx, gy = 1, max(1, int(np.ceil(0.3 * h)))  # room above each patch for its label
    H, W = n_rows * (h + gy), n_cols * (w + gx) - gx
    Z = np.full((H, W), np.nan, dtype=np.float32)
    text = np.full((H, W), "", dtype=object)
    cells = []
    fr_, bn_ = np.meshgrid(np.arange(w), np.arange(h))
    for j, i in enumerate(idx):
        r, c = j // n_cols, j % n_cols
        y0, x0 = (n_rows - 1 - r) * (h + gy), c * (w + gx)
        Z[y0:y0 + h, x0:x0 + w] = P[i]
        text[y0:y0 + h, x0:x0 + w] = np.char.add(np.char.add(f"filter #{i}<br>frame ", fr_.astype(str)),
                                                 np.char.add("<br>bin ", bn_.astype(str)))
        cells.append(dict(filter=i, row=r, col=c, x_offset=x0, y_offset=y0, scale=1.0))
    traces = [go.Heatmap(z=Z, x0=0, dx=1, y0=0, dy=1, zmin=-vmax, zmax=vmax, colorscale="RdBu_r", text=text,
                         hovertemplate="%{text}<br>weight %{z:.3g}<extra></extra>", hoverongaps=False,
                         colorbar=dict(title="weight", len=0.9), meta=dict(cells=cells, patch_shape=[h, w])),
              go.Scatter(x=[c["x_offset"] + (w - 1) / 2 for c in cells], y=[c["y_offset"] + h - 0.5 for c in cells],
                         text=labels, mode="text", textposition="top center", textfont=dict(size=9),
                         hoverinfo="skip", showlegend=False)]
    axis = dict(showticklabels=False, showgrid=False, zeroline=False)
    layout = dict(title=dict(text=head), height=110 * n_rows + 130, width=130 * n_cols + 160,
                  margin=dict(l=50, r=20, t=70, b=50), template="plotly_white", hovermode="closest",
                  xaxis=dict(axis, title=dict(text=f"frame (each patch {w} frames)", font=dict(size=10)),
                             range=[-0.5, W - 0.5]),
                  yaxis=dict(axis, title=dict(text=f"bin (each patch {h} bins)", font=dict(size=10)),
                             range=[-0.5, H - 0.5]))
    return go.Figure(data=traces, layout=layout)


def response_heatmap(fr, *, max_hz: float | None = None, log_freq: bool = False, title: str | None = None,
                     max_columns: int = 400):
    """Magnitude responses sorted by centre frequency (dB re each filter's peak), plus the bank's mean response.

    Parameters
    ----------
    fr : FilterResponses (fitted)
    max_hz : float, optional
        Upper end of the frequency axis (default: the grid's end).
    log_freq : bool
        Logarithmic frequency axis.
    max_columns : int
        Frequencies drawn at most (every k-th grid frequency: evenly spaced, drawn as one image).
    """
    go = _go()
    fr._check()
    f = fr.freqs_hz_
    keep = f <= (max_hz or f[-1])
    if log_freq:
        keep &= f > 0
    # decimate the frequency axis to ≤ max_columns columns, every k-th one (evenly spaced: drawn as one image)
    cols = np.nonzero(keep)[0]
    if cols.size > max_columns:
        cols = cols[::int(np.ceil(cols.size / max_columns))]
    z = np.asarray(fr.responses_db_[fr.order_][:, cols], np.float64)
    # colour range: down to the 2nd percentile (at least 20 dB, at most 60 dB): loosely tuned
    # filters with 15 dB of selectivity still show their structure
    zmin = float(np.clip(np.floor(np.percentile(z, 2) / 10) * 10, -60, -20))
    # whole dB, one byte per cell (dB re each filter's peak lie in [-db_floor, 0], a floor above -127 dB): a
    # quarter of float32's bytes for the page's largest image, and a colour step of 1 dB out of 20-60
    z = np.round(np.clip(z, -127.0, 0.0)).astype(np.int8)
    x_unit = "Hz" if fr.is_spectral_ else "bin offset"
    # two stacked panels on one frequency axis, laid out in one pass (make_subplots + update_* calls cost more
    # than drawing them): responses on x/y (top 78 %), the bank's mean on x2/y2 below
    # the one dB convention (probe.figures.style: Magma, bright = loud, zmax = 0 dB re peak); only the range
    # adapts (20-60 dB, said in the colour bar) so loosely tuned filters keep their structure
    rng = -max(fr.db_floor, zmin)
    traces = [go.Heatmap(**uniform_axes(f[cols], np.arange(len(z))), z=z, **db_scale(0.0, db_range=rng),
                         colorbar=dict(title=dict(text=f"dB re each<br>filter's peak<br>(0 to −{rng:.0f})"),
                                       len=0.75, y=0.62),
                         hovertemplate="%{x:.0f} " + x_unit + "<br>rank %{y}<br>%{z} dB<extra></extra>")]
    if fr.is_spectral_:
        c = fr.centre_hz_[fr.order_]
        many = len(c) > MANY_POINTS  # one line through the rows' centres instead of a marker per row
        traces.append(go.Scatter(x=c, y=np.arange(len(c)), mode="lines" if many else "markers",
                                 marker=dict(size=4, color="#00c8ff", line=dict(width=0.5, color="#003040")),
                                 line=dict(width=1.5, color="#00c8ff"), connectgaps=False,
                                 name="centre (−3 dB midpoint)", showlegend=True))
    traces.append(go.Scatter(x=f[cols], y=fr.cumulative_db_[cols], mode="lines", line=dict(color="#333"),
                             name="mean power response", showlegend=True, xaxis="x2", yaxis="y2"))
    layout = dict(
        xaxis=dict(domain=[0.0, 1.0], anchor="y", matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.2516, 1.0], anchor="x", title=dict(text="filter (sorted by centre)")),
        xaxis2=dict(domain=[0.0, 1.0], anchor="y2", title=dict(text=f"frequency ({x_unit})"),
                    type="log" if log_freq else "linear"),
        yaxis2=dict(domain=[0.0, 0.2116], anchor="x2", title=dict(text="mean (dB)"), range=[-40, 3]),
        title=dict(text=title or f"{fr.name_}: magnitude responses ({fr.n_filters_} filters, {fr.sample_rate_} Hz)"),
        height=560, width=760, template="plotly_white", margin=dict(l=60, r=20, t=60, b=50),
        legend=dict(orientation="h", y=-0.14, x=0))
    fig = go.Figure(data=traces, layout=layout)
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
    many = len(c) > MANY_POINTS  # a big bank: the band as one shaded area, the centres as one line (see MANY_POINTS)
    err = dict(type="data", symmetric=False, array=fr.high_hz_[order] - c, arrayminus=c - fr.low_hz_[order],
               thickness=0.6, width=0, color="rgba(31,119,180,0.35)") if show_band and not many else None
    fig = go.Figure()
    if show_band and many:
        fig.add_trace(go.Scatter(x=rank, y=fr.low_hz_[order], mode="lines", line=dict(width=0), hoverinfo="skip",
                                 showlegend=False))
        fig.add_trace(go.Scatter(x=rank, y=fr.high_hz_[order], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(31,119,180,0.25)", name="−3 dB band", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=rank, y=c, mode="lines" if many else "markers", marker=dict(size=5, color="#1f77b4"),
                             line=dict(width=2, color="#1f77b4"), error_y=err,
                             name="learned centres" + ("" if many or not show_band else " (bars: −3 dB band)"),
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
                      # bottom right: centres rise with rank, so the corner below the curve is the empty one
                      legend=dict(x=0.99, xanchor="right", y=0.01, yanchor="bottom", bgcolor="rgba(255,255,255,0.8)"))
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


def _small_int(v):
    """The smallest integer dtype holding ``v`` (figure JSON carries arrays as typed bytes)."""
    top = int(np.max(np.abs(v))) if np.size(v) else 0
    if np.size(v) and int(np.min(v)) >= 0 and top < 2 ** 8:
        return np.uint8
    return np.int16 if top < 2 ** 15 else np.int32


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
    Z = C[np.ix_(ro, co)].astype(np.float32)  # float32 and small integers: a 256 × 256 matrix weighed 1 MB as float64
    a = np.asarray(assignment)[ro]
    ok = a >= 0
    signed = zmin < 0  # correlations: a diverging scale with white at 0
    # not dB: a sequential blue scale (dark = similar), unlike the Magma of every dB heat map, and said so
    fig = go.Figure(go.Heatmap(z=Z, zmin=zmin, zmax=zmax, colorscale="RdBu_r" if signed else "Blues",
                               # two title lines: a third ran over the bar's top tick label at the app's width
                               colorbar=dict(title=dict(text=f"{value_title}<br>(not dB)")),
                               customdata=np.broadcast_to(ro[:, None].astype(_small_int(ro)), Z.shape),
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
    """A few learned responses over their matched reference responses (dB re peak), spread across frequency.

    The pairs are stacked in one chart on one frequency axis: pair ``j`` (from the top) is drawn
    ``j × 50`` dB lower, each band spanning 0 to −40 dB of its own (grid lines every 10 dB) and
    labelled with the learned filter and its cosine. One trace per kind (learned, matched) holds
    every pair; hover gives the filter, the frequency and the curve's own dB.

    Returns
    -------
    plotly.graph_objects.Figure
        The learned and matched traces' ``meta`` holds each band's filter index and dB offset.
    """
    go = _go()
    order = [i for i in fr.order_ if match.assignment_[i] >= 0]
    idx = [int(i) for i in _pick(np.array(order), n_show)]
    n = len(idx)
    f = np.asarray(fr.freqs_hz_)
    # at most 400 frequencies per curve (a panel is ~700 px wide): 12 curves at full resolution weighed
    # ~280 kB in the page for no visible difference
    cols = np.arange(len(f)) if len(f) <= 400 else np.unique(np.linspace(0, len(f) - 1, 400).round().astype(int))
    fx = f[cols].astype(np.float32)
    pitch, floor = 50.0, -40.0  # one pair per 50 dB of the shared y axis, each shown from 0 to −40 dB
    curves = {"learned": ([], [], []), "matched": ([], [], [])}
    bands, tv, tt = [], [], []
    for j, i in enumerate(idx):
        off = -j * pitch
        ref = match.reference_responses_[match.assignment_[i]]
        for y, kind in ((fr.responses_[i], "learned"), (ref, "matched")):
            db = 20 * np.log10(np.maximum(y / max(y.max(), 1e-30), 1e-4))[cols]
            xs, ys, cd = curves[kind]
            # the peak-normalised curve at display resolution: every kept point is a real sample; below −40 dB
            # the curve leaves its band (as off a panel's edge): drawn down to the floor, then broken
            below = db < floor
            near = below & ~(np.r_[below[1:], True] & np.r_[True, below[:-1]])
            shown = np.where(below, np.where(near, floor, np.nan), db)
            xs += [fx, [np.nan]]
            ys += [shown + off, [np.nan]]
            cd += [np.column_stack([np.full(len(db), i), db]), np.full((1, 2), np.nan)]
        bands.append(dict(filter=i, offset=off, cosine=float(match.matched_cosine_[i])))
        tv += [off, off - 10, off - 20, off - 30, off + floor]
        tt += ["0 dB", "", "−20", "", "−40"]
    hover = "filter #%{customdata[0]:.0f}<br>%{x:.0f} Hz<br>%{customdata[1]:.1f} dB<extra>%{fullData.name}</extra>"
    traces = []
    for kind, name, col in (("learned", "learned", "#1f77b4"), ("matched", f"matched {match.reference}", "#d62728")):
        xs, ys, cd = curves[kind]
        traces.append(go.Scatter(x=np.concatenate(xs).astype(np.float32), y=np.concatenate(ys).astype(np.float32),
                                 mode="lines", line=dict(color=col, width=1.2), name=name, connectgaps=False,
                                 customdata=np.concatenate(cd).astype(np.float32), hovertemplate=hover,
                                 meta=dict(bands=bands)))
    # band separators and labels: one trace each, not one layout item per pair
    sep_x, sep_y = [], []
    for b in bands[1:]:
        sep_x += [float(fx[0]), float(fx[-1]), None]
        sep_y += [b["offset"] + (pitch + floor) / 2] * 2 + [None]
    traces.append(go.Scatter(x=sep_x, y=sep_y, mode="lines", line=dict(color="#cccccc", width=0.8),
                             hoverinfo="skip", showlegend=False))
    traces.append(go.Scatter(x=[float(fx[-1])] * n, y=[b["offset"] - 30 for b in bands],
                             text=[f"#{b['filter']}, cos={b['cosine']:.2f}" for b in bands], mode="text",
                             textposition="middle left", textfont=dict(size=10), hoverinfo="skip", showlegend=False))
    layout = dict(title=dict(text=title or f"{fr.name_}: learned vs matched {match.reference} responses"),
                  height=110 * n + 120, width=760, template="plotly_white", hovermode="closest",
                  xaxis=dict(title=dict(text="frequency (Hz)"), range=[float(fx[0]), float(fx[-1])]),
                  yaxis=dict(tickvals=tv, ticktext=tt, tickfont=dict(size=9), gridcolor="#f0f0f0", zeroline=False,
                             range=[-(n - 1) * pitch + floor - 3, 5], title=dict(text="dB re each curve's peak")),
                  margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=1.02, x=0.6))
    return go.Figure(data=traces, layout=layout)


def responses_and_spacing(fr, fit=None, *, sample_rate: float | None = None, title: str | None = None,
                          height: int = 820):
    """One chart of the bank's frequency layout: responses (left); centres vs rank over filters per octave (right).

    :func:`response_heatmap`, :func:`centre_frequency_plot` and :func:`octave_density_plot` as
    panels of one figure (:func:`side_by_side`): the same traces, axes and hover, one chart in a page
    instead of three. Without ``fit`` only the responses are drawn.

    Parameters
    ----------
    fr : FilterResponses (fitted, with an absolute frequency axis for the right column)
    fit : ScaleFit, optional
    sample_rate : float, optional
        For the octave panel's linear and ERB-rate expectations.

    Returns
    -------
    plotly.graph_objects.Figure
        ``layout.meta["panels"]``: ``responses``, then ``centres`` and ``octaves`` (their axes and boxes).

    Examples
    --------
    >>> import numpy as np
    >>> from probe.analyze.filters import filter_responses, scale_fit
    >>> from probe.filterbank import FilterBank
    >>> from probe.figures.filters import responses_and_spacing
    >>> t = np.arange(64) / 16000
    >>> k = np.stack([np.sin(2 * np.pi * f * t) * np.hanning(64) for f in (500, 1000, 2000, 4000)])
    >>> fr = filter_responses(FilterBank("demo", k[:, None], "samples", 16000))
    >>> fig = responses_and_spacing(fr, scale_fit(fr, sample_rate=16000), sample_rate=16000)
    >>> [p["name"] for p in fig.layout.meta["panels"]]
    ['responses', 'centres', 'octaves']
    """
    heat = response_heatmap(fr, max_columns=300)  # a panel of ~half the page's width
    if fit is None:
        return heat
    right = [centre_frequency_plot(fr, fit, title=f"centre frequency vs rank — best fit: {fit.best_scale_}"),
             octave_density_plot(fit, sample_rate=sample_rate)]
    right[1].update_layout(height=330, legend=dict(orientation="v", x=0.01, y=0.99))
    return side_by_side([heat, right], widths=[1.2, 1.0], gap=0.2, height=height, names=["responses", "centres", "octaves"],
                        title=title or f"{fr.name_}: {fr.n_filters_} filters, {fr.sample_rate_} Hz — responses and spacing")


def matching_overview(fr, match, *, n_show: int = 6, title: str | None = None, height: int = 660):
    """One chart of a reference matching: the cosine matrix (left), learned vs matched responses (right).

    :func:`matching_matrix` (rows: learned filters by centre, columns: the reference bank in matched
    order, circles: the one-to-one matching) and :func:`matched_responses_plot` as panels of one
    figure (:func:`side_by_side`).

    Parameters
    ----------
    fr : FilterResponses (fitted)
    match : ReferenceMatch (fitted)
        ``cosine_``, ``assignment_``, ``matched_cosine_``, ``reference``, ``reference_responses_``.
    n_show : int
        Pairs in the right panel.

    Returns
    -------
    plotly.graph_objects.Figure
        ``layout.meta["panels"]``: ``matrix`` then ``pairs``.
    """
    ref = match.reference
    matrix = matching_matrix(match.cosine_, match.assignment_, row_order=fr.order_, col_title=f"{ref} filter",
                             title=f"cosine, learned × {ref} (circles: the matching)")
    pairs = matched_responses_plot(fr, match, n_show=n_show, title=f"learned vs matched {ref} responses")
    matrix.update_layout(legend=dict(orientation="h", x=0, y=-0.17))
    pairs.update_layout(legend=dict(orientation="h", x=0, y=-0.17))  # under the x titles at the page's width
    return side_by_side([matrix, pairs], widths=[1.0, 1.15], gap=0.2, height=height, names=["matrix", "pairs"],
                        title=title or f"{fr.name_} × {ref}: mean matched cosine {match.mean_cosine_:.3f}")
