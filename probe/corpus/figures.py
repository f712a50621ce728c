"""Pure plotly builders for corpus analyses (no I/O; the faces write or show them)."""

from __future__ import annotations

import numpy as np

__all__ = ["probe_figure", "cka_figure", "map_figure", "dissection_figure"]


def probe_figure(result: dict):
    """Probe score per layer beside its baselines: control task, random-init model, chance.

    Examples
    --------
    >>> fig = probe_figure({"label": "label", "layers": [
    ...     {"layer": "a", "metric": "balanced_accuracy", "score": 0.9, "control": 0.5, "random_init": 0.55, "chance": 0.5}]})
    >>> [t.name for t in fig.data]
    ['trained', 'random-init', 'control task', 'chance']
    """
    import plotly.graph_objects as go

    rows = result["layers"]
    x = [r["layer"] for r in rows]
    metric = rows[0]["metric"] if rows else "score"
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[r["score"] for r in rows], mode="lines+markers", name="trained",
                             line=dict(width=3)))
    if any("random_init" in r for r in rows):
        fig.add_trace(go.Scatter(x=x, y=[r.get("random_init") for r in rows], mode="lines+markers", name="random-init"))
    if any("control" in r for r in rows):
        fig.add_trace(go.Scatter(x=x, y=[r.get("control") for r in rows], mode="lines+markers", name="control task"))
    fig.add_trace(go.Scatter(x=x, y=[r["chance"] for r in rows], mode="lines", name="chance",
                             line=dict(dash="dash", color="grey")))
    fig.update_layout(title=f"Linear probe for {result['label']!r} per layer", xaxis_title="layer",
                      yaxis_title=metric.replace("_", " "), template="plotly_white", width=720, height=420)
    return fig


def cka_figure(result: dict):
    """Linear CKA between each layer and the concept tracks, trained vs random-init."""
    import plotly.graph_objects as go

    rows = [r for r in result["layers"] if r.get("cka") is not None]
    x = [r["layer"] for r in rows]
    fig = go.Figure([go.Bar(x=x, y=[r["cka"] for r in rows], name="trained")])
    if any(r.get("cka_random") is not None for r in rows):
        fig.add_trace(go.Bar(x=x, y=[r.get("cka_random") for r in rows], name="random-init"))
    fig.update_layout(title="Linear CKA: layer vs acoustic concept tracks", xaxis_title="layer", yaxis_title="CKA",
                      barmode="group", template="plotly_white", width=720, height=420)
    return fig


def map_figure(result: dict, *, color: str = "label"):
    """Scatter of the corpus map, one point per clip, coloured by label or cluster."""
    import plotly.graph_objects as go

    xy = np.asarray(result["coords"])
    values = result["labels"] if color == "label" else result["clusters"]
    values = ["(none)" if v is None else str(v) for v in values]
    fig = go.Figure()
    for v in sorted(set(values)):
        sel = [i for i, w in enumerate(values) if w == v]
        fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=v,
                                 text=[result["clip_ids"][i] for i in sel], hovertemplate="%{text}<extra></extra>"))
    score = ""
    if result.get("ari") is not None:
        score = f" — clusters vs labels: ARI {result['ari']:.2f}, NMI {result['nmi']:.2f}"
    fig.update_layout(title=f"{result['layer']} ({result['variant']}, {result['projection'].upper()}){score}",
                      xaxis_title="dim 1", yaxis_title="dim 2", template="plotly_white", width=720, height=560,
                      legend_title=color)
    return fig


def dissection_figure(result: dict, layer: str):
    """Heat map of unit × concept scores for one layer; labelled units are marked on the axis."""
    import plotly.graph_objects as go

    pairs = [r for r in result["pairs"] if r["layer"] == layer]
    units = sorted({r["unit"] for r in pairs})
    concepts = sorted({r["concept"] for r in pairs})
    Z = np.full((len(units), len(concepts)), np.nan)
    passes = np.zeros_like(Z, dtype=bool)
    ui = {u: i for i, u in enumerate(units)}
    ci = {c: j for j, c in enumerate(concepts)}
    for r in pairs:
        Z[ui[r["unit"]], ci[r["concept"]]] = r["score"]
        passes[ui[r["unit"]], ci[r["concept"]]] = r["passes"]
    labels = {u["unit"]: u["label"] for u in result["units"] if u["layer"] == layer and u["label"]}
    ylab = [f"{u} → {labels[u]}" if u in labels else str(u) for u in units]
    text = np.where(passes, "✓", "")
    fig = go.Figure(go.Heatmap(z=Z, x=concepts, y=ylab, colorscale="RdBu", zmid=0, text=text,
                               texttemplate="%{text}", colorbar=dict(title="score")))
    fig.update_layout(title=f"Dissection of {layer}: correlation / IoU per unit and concept (✓ beats both nulls)",
                      xaxis_title="concept", yaxis_title="unit", template="plotly_white",
                      width=max(600, 60 * len(concepts) + 200), height=max(400, 22 * len(units) + 160))
    return fig
