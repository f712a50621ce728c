"""Figures for embedding maps: pure functions from analysis results to ``go.Figure``.

* :func:`embedding_scatter` — the 2-D map (WebGL), coloured by any colouring, with the
  origin of every point (seconds, Hz, dB, source, cluster) on hover;
* :func:`cluster_mask_figure` — one cluster's mask over the mixture spectrogram, next to
  the masked spectrogram (what "listen to a cluster" plays);
* :func:`scores_vs_separation` — reference-free clusterability scores against per-mixture
  SI-SDR improvement, with Spearman's ρ in each panel's title.

Nothing here computes analysis results or imports streamlit.
"""

from __future__ import annotations

import numpy as np

from .style import db_scale

__all__ = ["embedding_scatter", "cluster_mask_figure", "scores_vs_separation", "PALETTE"]

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


def embedding_scatter(points, coords, *, color: str = "cluster", clusters=None, title: str | None = None,
                      marker_size: float = 4.0, opacity: float = 0.75, axis_names=("dim 1", "dim 2"),
                      max_categories: int = 16):
    """2-D map of embedding points, one WebGL trace per category (or one coloured trace).

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

    coords = np.asarray(coords, float)
    if coords.shape != (len(points), 2):
        raise AnalysisError(f"coords must be (n, 2) with n={len(points)}, given coords.shape={coords.shape}")
    cols = colourings(points, clusters=clusters)
    if color not in cols:
        raise AnalysisError(f"cannot colour by {color!r} here; available: {', '.join(sorted(cols))}")
    c = cols[color]
    custom, tmpl = _hover_data(points, cols)
    fig = go.Figure()
    values = np.asarray(c["values"])
    if c["kind"] == "categorical" and len(c["names"]) <= max_categories:
        for j, name in enumerate(c["names"]):
            m = values == j
            if not m.any():
                continue
            fig.add_trace(go.Scattergl(x=coords[m, 0], y=coords[m, 1], mode="markers", name=f"{name} ({int(m.sum())})",
                                       marker=dict(size=marker_size, color=PALETTE[j % len(PALETTE)], opacity=opacity),
                                       customdata=custom[m], hovertemplate=tmpl))
    else:
        unit = c["names"] if isinstance(c["names"], str) else color
        fig.add_trace(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", name=color,
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


def cluster_mask_figure(clip, masks, cluster: int = 0, *, db_range: float = 80.0, title: str | None = None,
                        max_frames: int = 1200, name: str | None = None):
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
    max_frames : int
        Frames beyond this are decimated for drawing (the figure stays light).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..errors import AnalysisError

    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != clip.stft.shape:
        raise AnalysisError(f"masks must be (k, {clip.stft.shape[0]}, {clip.stft.shape[1]}), given {masks.shape}")
    if not 0 <= cluster < masks.shape[0]:
        raise AnalysisError(f"cluster={cluster} out of range for {masks.shape[0]} masks")
    step = max(1, int(np.ceil(clip.stft.shape[1] / max_frames)))
    S = np.abs(clip.stft[:, ::step])
    M = masks[cluster][:, ::step]
    db = 20 * np.log10(S + 1e-10)
    db = db - float(db.max())  # dB re the loudest bin, as every dB heat map (probe.figures.style)
    top = 0.0
    lo = top - db_range
    t = clip.grid.frame_times(clip.stft.shape[1])[::step]
    f = clip.grid.bin_frequencies()
    share = float((np.abs(clip.stft) ** 2 * masks[cluster]).sum() / max((np.abs(clip.stft) ** 2).sum(), 1e-20))
    colour = PALETTE[cluster % len(PALETTE)]
    inside = M > 0.5
    label = f"cluster {cluster + 1}" + (f" ({name})" if name and name != f"cluster {cluster + 1}" else "")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(f"mixture: {label} bins in colour, the rest grey",
                                        f"masked mixture, what {label} plays ({100 * share:.0f}% of energy)"))
    hover = "%{x:.3f} s, %{y:.0f} Hz: %{z:.1f} dB<extra></extra>"
    # left: every bin shaded by level (white = silent), hue by membership
    fig.add_trace(go.Heatmap(x=t, y=f, z=np.where(inside, np.nan, db), zmin=lo, zmax=top, colorscale="Greys",
                             showscale=False, hovertemplate=hover), 1, 1)
    fig.add_trace(go.Heatmap(x=t, y=f, z=np.where(inside, db, np.nan), zmin=lo, zmax=top,
                             colorscale=[[0, "#ffffff"], [1, colour]], showscale=False, hovertemplate=hover), 1, 1)
    # right: only the cluster's bins, on a white-to-dark scale with a colour bar
    fig.add_trace(go.Heatmap(x=t, y=f, z=np.where(inside, db, np.nan), **db_scale(top, db_range=db_range),
                             colorbar=dict(title=dict(text="dB re max")), hovertemplate=hover), 1, 2)
    fig.update_xaxes(title_text="time (s)")
    fig.update_yaxes(title_text="frequency (Hz)", row=1, col=1)
    fig.update_annotations(font_size=13)
    fig.update_layout(title=dict(text=title or f"{clip.name}: {label} of {masks.shape[0]}"),
                      template="plotly_white", width=1000, height=420, plot_bgcolor="#ffffff")
    return fig


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
