"""Figures for embedding maps: pure functions from analysis results to ``go.Figure``.

* :func:`embedding_scatter` — the 2-D map (WebGL, or SVG for a few thousand points), coloured by any colouring, with the
  origin of every point (seconds, Hz, dB, source, cluster) on hover;
* :func:`cluster_mask_figure` — one cluster's mask over the mixture spectrogram, next to
  the masked spectrogram (what "listen to a cluster" plays);
* :func:`scores_vs_separation` — reference-free clusterability scores against per-mixture
  SI-SDR improvement, with Spearman's ρ in each panel's title.

Nothing here computes analysis results or imports streamlit.
"""

from __future__ import annotations

import numpy as np

from .display import MAX_ROWS
from .style import DB_COLORSCALE, db_scale

__all__ = ["embedding_scatter", "cluster_mask_figure", "scores_vs_separation", "display_subset", "PALETTE"]

#: categorical colours (Okabe–Ito, colour-blind safe), then plotly's defaults
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]
_CONTINUOUS = {"time": "Viridis", "freq": "Plasma", "energy": "Inferno"}


def _hover_data(points, colouring: dict):
    """customdata columns and template: time, Hz, dB, source, cluster, class (those known)."""
    n = len(points)
    cols = [points.time, points.freq, points.energy_db]
    tmpl = "t = %{customdata[0]:.3f} s"
    if points.kind == "tf":
        tmpl += "<br>f = %{customdata[1]:.0f} Hz"
    tmpl += "<br>%{customdata[2]:.1f} dB"
    extra = []
    for key, title in (("source", "source"), ("cluster", "cluster"), ("class", "class"), ("clip", "clip")):
        if key in colouring:
            c = colouring[key]
            names = np.asarray(c["names"], dtype=object)
            vals = np.asarray(c["values"])
            extra.append(names[np.clip(vals, 0, len(names) - 1)] if len(names) else vals.astype(str))
            tmpl += f"<br>{title}: %{{customdata[{3 + len(extra) - 1}]}}"
    data = np.empty((n, 3 + len(extra)), dtype=object)
    for j, col in enumerate(cols + extra):
        data[:, j] = col
    return data, tmpl + "<extra></extra>"


def display_subset(groups, cap: int, *, seed: int = 0) -> np.ndarray:
    """Indices of at most ``cap`` points to draw, stratified by ``groups`` (each keeps its share), deterministic.

    A map of a few thousand points costs the browser a DOM node (SVG) per point; drawing a
    stratified sample keeps every cluster's (or source's) share and shape while the figure stays
    light. The analysis (clustering, masks, downloads) keeps every point: this is display only.

    Parameters
    ----------
    groups : array [shape=(n,)]
        A label per point (e.g. its cluster); every group present keeps at least one point.
    cap : int
        Points drawn at most (all of them when ``n <= cap``).
    seed : int
        The same seed gives the same points.

    Returns
    -------
    ndarray of int, sorted, [shape=(min(n, cap),)]

    Examples
    --------
    >>> g = np.repeat([0, 1], [3000, 1000])
    >>> idx = display_subset(g, 400)
    >>> len(idx), int((g[idx] == 1).sum())
    (400, 100)
    """
    groups = np.asarray(groups)
    n = len(groups)
    cap = int(cap)
    if cap < 1:
        raise ValueError(f"cap must be positive, given cap={cap}")
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    values, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    quota = np.maximum(1, np.floor(counts * cap / n)).astype(int)
    # hand the remainder to the groups with the largest fractional shares (ties: the first group)
    rest = cap - int(quota.sum())
    if rest > 0:
        frac = counts * cap / n - np.floor(counts * cap / n)
        quota[np.argsort(-frac, kind="stable")[:rest]] += 1
    while quota.sum() > cap:  # many one-point groups: trim the largest quota
        quota[int(np.argmax(quota))] -= 1
    quota = np.minimum(quota, counts)
    picked = [rng.choice(np.flatnonzero(inverse == j), size=int(q), replace=False) for j, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked)).astype(int)


def embedding_scatter(points, coords, *, color: str = "cluster", clusters=None, title: str | None = None,
                      marker_size: float = 4.0, opacity: float = 0.75, axis_names=("dim 1", "dim 2"),
                      max_categories: int = 16, webgl: bool = True):
    """2-D map of embedding points, one trace per category (or one coloured trace).

    Parameters
    ----------
    points : EmbeddingPoints
    coords : array [shape=(n, 2)]
        From :class:`~probe.analyze.embeddings.EmbeddingMap` (``embedding_``) or a preview.
    color : str
        Any key of :func:`~probe.analyze.embeddings.colourings`: ``cluster``, ``source``,
        ``class``, ``clip`` (categorical) or ``time``, ``freq``, ``energy`` (continuous).
    clusters : EmbeddingClusters or array [shape=(n,)], optional
        Needed for ``color="cluster"`` and for the cluster shown on hover.
    max_categories : int
        Beyond this many categories, colour by index on a continuous scale.
    webgl : bool
        Draw with WebGL (``Scattergl``: fast for tens of thousands of points where the browser
        has a GPU) or as SVG (``Scatter``: for a few thousand points it draws in about half the
        time of starting WebGL, and in a browser without a GPU far sooner). Clicks, hover and
        box/lasso selection work the same way on both.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> from probe.analyze.embeddings import clip_embeddings, select_points
    >>> from probe.grid import TFGrid
    >>> g = TFGrid(8000, 256, 64)
    >>> y = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    >>> E = np.random.default_rng(0).standard_normal((4, 129, 126)).astype(np.float32)
    >>> p = select_points(clip_embeddings(E, y, g), budget=200)
    >>> fig = embedding_scatter(p, p.X[:, :2], color="energy")
    >>> fig.data[0].type
    'scattergl'
    """
    import plotly.graph_objects as go

    from ..analyze.embeddings import colourings
    from ..errors import AnalysisError

    coords = np.asarray(coords, float)  # checked in float64, sent as float32 (half the bytes; ~7 digits on screen)
    if coords.shape != (len(points), 2):
        raise AnalysisError(f"coords must be (n, 2) with n={len(points)}, given coords.shape={coords.shape}")
    cols = colourings(points, clusters=clusters)
    if color not in cols:
        raise AnalysisError(f"cannot colour by {color!r} here; available: {', '.join(sorted(cols))}")
    c = cols[color]
    custom, tmpl = _hover_data(points, cols)
    fig = go.Figure()
    Trace = go.Scattergl if webgl else go.Scatter
    values = np.asarray(c["values"])
    if c["kind"] == "categorical" and len(c["names"]) <= max_categories:
        for j, name in enumerate(c["names"]):
            m = values == j
            if not m.any():
                continue
            fig.add_trace(Trace(x=coords[m, 0].astype(np.float32), y=coords[m, 1].astype(np.float32), mode="markers", name=f"{name} ({int(m.sum())})",
                                       marker=dict(size=marker_size, color=PALETTE[j % len(PALETTE)], opacity=opacity),
                                       customdata=custom[m], hovertemplate=tmpl))
    else:
        unit = c["names"] if isinstance(c["names"], str) else color
        fig.add_trace(Trace(x=coords[:, 0].astype(np.float32), y=coords[:, 1].astype(np.float32), mode="markers",
                                   name=color,
                                   marker=dict(size=marker_size, color=values.astype(float), opacity=opacity,
                                               colorscale=_CONTINUOUS.get(color, "Viridis"), showscale=True,
                                               colorbar=dict(title=dict(text=unit))),
                                   customdata=custom, hovertemplate=tmpl))
    kind = "T-F bins" if points.kind == "tf" else "frames"
    meta = points.meta or {}
    default = f"{meta.get('model') or 'embeddings'}{' · ' + str(meta['layer']) if meta.get('layer') else ''}: " \
              f"{len(points)} {kind}, coloured by {color}"
    fig.update_layout(title=dict(text=title or default), template="plotly_white", width=720, height=560,
                      legend=dict(itemsizing="constant", title=dict(text=color)),
                      xaxis=dict(title=dict(text=axis_names[0]), zeroline=False, showticklabels=False),
                      yaxis=dict(title=dict(text=axis_names[1]), zeroline=False, showticklabels=False,
                                 scaleanchor="x", scaleratio=1))
    return fig


def _level_scale():
    """The dB colour scale (:data:`~probe.figures.style.DB_COLORSCALE`) over levels 1-255 of a byte map; 0 is transparent."""
    from plotly.colors import get_colorscale

    stops = get_colorscale(DB_COLORSCALE)
    return [[0.0, "rgba(0,0,0,0)"], [0.5 / 255, "rgba(0,0,0,0)"]] + \
        [[1 / 255 + v * 254 / 255, c] for v, c in stops]


def cluster_mask_figure(clip, masks, cluster: int = 0, *, db_range: float = 80.0, title: str | None = None,
                        max_frames: int = 400, max_bins: int | None = MAX_ROWS, name: str | None = None,
                        mask_reduce: str = "majority"):
    """One cluster's mask over the mixture spectrogram (left) and the masked spectrogram (right).

    Parameters
    ----------
    clip : ClipEmbeddings
        Gives the mixture STFT and its grid (seconds and Hz axes).
    masks : array [shape=(k, n_freqs, n_frames)]
        From :meth:`EmbeddingClusters.masks`.
    cluster : int
        Which mask to show: the row of ``masks`` (from 0). Titles number clusters from 1, as every
        page and command does (row 0 is cluster 1, the loudest).
    name : str, optional
        The cluster's name (e.g. ``"high"`` from the ground truth), shown beside its number.
    db_range : float
        Dynamic range of the spectrogram colour scale below its peak.
    max_frames, max_bins : int
        Columns / rows drawn at most per panel (display resolution, :func:`~probe.figures.display.to_display`):
        a block of cells shows its loudest cell's level and is in the cluster when most of its
        cells are. The energy share in the title is computed on the full-resolution mask.
    mask_reduce : {"majority", "any"}
        A display block is in the mask when most of its cells are, or when any is (for a few
        picked cells, which a majority would hide).

    Returns
    -------
    plotly.graph_objects.Figure
        Left: the mixture in greys with the cluster's bins tinted in its colour (a 0/1 overlay);
        right: the cluster's bins only, on the dB scale. Both share the frequency axis.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> from probe.grid import TFGrid
    >>> g = TFGrid(8000, 256, 64)
    >>> X = np.asarray(g.stft(np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)))
    >>> masks = np.stack([np.abs(X) > 1.0, np.abs(X) <= 1.0]).astype(np.float32)
    >>> fig = cluster_mask_figure(NS(stft=X, grid=g, name="tone"), masks, 0)
    >>> [t.type for t in fig.data], fig.layout.xaxis.title.text
    (['heatmap', 'heatmap', 'heatmap'], 'time (s)')
    """
    import plotly.graph_objects as go

    from ..errors import AnalysisError
    from .display import to_display, uniform_axes, whole_db

    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != clip.stft.shape:
        raise AnalysisError(f"masks must be (k, {clip.stft.shape[0]}, {clip.stft.shape[1]}), given {masks.shape}")
    if not 0 <= cluster < masks.shape[0]:
        raise AnalysisError(f"cluster={cluster} out of range for {masks.shape[0]} masks")
    mag = np.abs(np.asarray(clip.stft))
    power = mag.astype(np.float64) ** 2
    share = float((power * masks[cluster]).sum() / max(power.sum(), 1e-20))
    t_all = clip.grid.frame_times(clip.stft.shape[1])
    f_all = clip.grid.bin_frequencies()
    # display resolution: the loudest cell of each block, and the block in the cluster when most of it is
    S, t, f = to_display(mag, t_all, f_all, max_columns=max_frames, max_rows=max_bins, how="max")
    if mask_reduce not in ("majority", "any"):
        raise AnalysisError(f"mask_reduce must be 'majority' or 'any', given {mask_reduce!r}")
    inside = to_display(masks[cluster] > 0.5, max_columns=max_frames, max_rows=max_bins,
                        how="majority" if mask_reduce == "majority" else "max")[0] > 0.5
    db = 20 * np.log10(S.astype(np.float64) + 1e-10)
    db = (db - float(db.max())).astype(np.float32)  # dB re the loudest bin, as every dB heat map (probe.figures.style)
    top, lo = 0.0, -float(db_range)
    colour = PALETTE[cluster % len(PALETTE)]
    label = f"cluster {cluster + 1}" + (f" ({name})" if name and name != f"cluster {cluster + 1}" else "")
    grey, value = whole_db(db, floor=-128.0)  # whole dB, one byte a cell (silence reads -128 dB)
    hover = f"%{{x:.3f}} s, %{{y:.0f}} Hz: {value} dB<extra></extra>"
    cells = uniform_axes(t, f)  # a start and a step: plotly.js draws the map as one image (see uniform_axes)
    level = np.where(inside, 1 + np.round(254 * np.clip((db - lo) / (top - lo), 0, 1)), 0).astype(np.uint8)
    data = [
        # left: every bin shaded by level (white = silent) in greys ...
        go.Heatmap(**cells, z=grey, zmin=lo, zmax=top, colorscale="Greys", showscale=False, hovertemplate=hover,
                   xaxis="x", yaxis="y"),
        # ... with the cluster's bins drawn over them, white (silent) to its colour (loud): one byte per cell,
        # 0 = not in the cluster (transparent), 1-255 = the level; hover reads the grey map's dB underneath
        go.Heatmap(**cells, z=level, zmin=0, zmax=255, showscale=False, hoverinfo="skip", xaxis="x", yaxis="y",
                   colorscale=[[0, "rgba(255,255,255,0)"], [0.5 / 255, "rgba(255,255,255,0)"], [1 / 255, "#ffffff"],
                               [1, colour]]),
        # right: only the cluster's bins, on the dB scale with a colour bar: the same one byte per cell (0 =
        # not in the cluster, transparent; 1-255 = the level on the dB colour scale) instead of a float map;
        # hover names the cell (its dB is the left panel's, at the same place)
        go.Heatmap(**cells, z=level, zmin=0, zmax=255, colorscale=_level_scale(), xaxis="x2", yaxis="y2",
                   colorbar=dict(title=dict(text="dB re max"), tickvals=[1 + 254 * k / 4 for k in range(5)],
                                 ticktext=[f"{lo + (top - lo) * k / 4:.0f}" for k in range(5)]),
                   hovertemplate="%{x:.3f} s, %{y:.0f} Hz: in the cluster<br>(its dB: the left panel)<extra></extra>"),
    ]
    gap = 0.04
    half = (1 - gap) / 2
    titles = (f"mixture: {label} bins in colour, the rest grey",
              f"masked mixture, what {label} plays ({100 * share:.0f}% of energy)")
    annotations = [dict(text=txt, x=x0 + half / 2, y=1.0, xref="paper", yref="paper", xanchor="center",
                        yanchor="bottom", showarrow=False, font=dict(size=13))
                   for txt, x0 in zip(titles, (0.0, half + gap))]
    layout = dict(title=dict(text=title or f"{clip.name}: {label} of {masks.shape[0]}"), template="plotly_white",
                  width=1000, height=420, plot_bgcolor="#ffffff", annotations=annotations,
                  xaxis=dict(domain=[0.0, half], anchor="y", title=dict(text="time (s)")),
                  xaxis2=dict(domain=[half + gap, 1.0], anchor="y2", title=dict(text="time (s)")),
                  yaxis=dict(domain=[0.0, 1.0], anchor="x", title=dict(text="frequency (Hz)")),
                  yaxis2=dict(domain=[0.0, 1.0], anchor="x2", matches="y", showticklabels=False))
    return go.Figure(data=data, layout=layout)


def scores_vs_separation(rows, *, scores=("silhouette", "gmm_ll_gain", "bic_gain", "kmeans_ratio"),
                         target: str = "si_sdri", title: str | None = None):
    """Each clusterability score against per-mixture separation quality, Spearman's ρ in the titles.

    Parameters
    ----------
    rows : list of dict
        One per mixture, holding ``target`` and the ``scores`` keys (and optionally ``name``).
    scores : sequence of str
    target : str
        E.g. ``si_sdri`` (dB) from ``model_zoo.metrics.separation_scores``.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> rows = [{"silhouette": s, "si_sdri": 10 * s} for s in np.linspace(0, 1, 8)]
    >>> fig = scores_vs_separation(rows, scores=("silhouette",))
    >>> "ρ = 1.00" in fig.layout.annotations[0].text
    True
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from scipy.stats import spearmanr

    ys = np.array([r[target] for r in rows], float)
    titles = []
    for s in scores:
        x = np.array([r.get(s, np.nan) for r in rows], float)
        ok = np.isfinite(x) & np.isfinite(ys)
        rho = spearmanr(x[ok], ys[ok]).statistic if ok.sum() > 2 else np.nan
        titles.append(f"{s}: ρ = {rho:.2f}")
    fig = make_subplots(rows=1, cols=len(scores), shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.03)
    names = [str(r.get("name", i)) for i, r in enumerate(rows)]
    for j, s in enumerate(scores, start=1):
        x = np.array([r.get(s, np.nan) for r in rows], float)
        fig.add_trace(go.Scatter(x=x, y=ys, mode="markers", text=names, showlegend=False,
                                 marker=dict(size=6, color=PALETTE[0], opacity=0.7),
                                 hovertemplate=f"%{{text}}<br>{s} = %{{x:.3f}}<br>{target} = %{{y:.2f}} dB<extra></extra>"),
                      1, j)
        fig.update_xaxes(title_text=s, row=1, col=j)
    fig.update_yaxes(title_text=f"{target} (dB)", row=1, col=1)
    fig.update_layout(title=dict(text=title or f"reference-free clusterability vs {target} ({len(rows)} mixtures)"),
                      template="plotly_white", width=300 * len(scores) + 80, height=380)
    return fig
