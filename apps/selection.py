"""Points picked on the embedding map → the cells they came from → a mask on the clip's STFT → audio.

Glue between a plotly selection and what the library already computed: an
:class:`~probe.analyze.embeddings.EmbeddingPoints` knows each point's cell (``row``,
``frame``) on the clip's embedding grid, :meth:`ClipEmbeddings.to_stft_grid` paints cells
onto the STFT grid, and :meth:`TFGrid.istft` resynthesises the masked mixture with its own
phase — the same resynthesis the cluster players use. Nothing here imports streamlit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["subset_points", "filter_mask", "picked_indices", "region_indices", "cell_mask", "resynthesise",
           "masked_mixture"]


def subset_points(points, keep):
    """The points where ``keep`` is true (every per-point array sliced; clips and names kept)."""
    keep = np.asarray(keep, bool)
    n = len(points)
    changes = {}
    for f in dataclasses.fields(points):
        v = getattr(points, f.name)
        if isinstance(v, np.ndarray) and v.shape[:1] == (n,):
            changes[f.name] = v[keep]
    return dataclasses.replace(points, **changes)


def filter_mask(points, *, time=None, freq=None, category=None, allowed=None) -> np.ndarray:
    """Points inside a time span (s), a frequency band (Hz) and, for ``category`` values, in ``allowed``.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> p = NS(time=np.array([0.1, 0.5, 0.9]), freq=np.array([100.0, 2000.0, 300.0]))
    >>> filter_mask(p, time=(0.0, 0.6), freq=(0, 1000)).tolist()
    [True, False, False]
    """
    keep = np.ones(len(points.time), bool)
    if time is not None:
        keep &= (points.time >= time[0]) & (points.time <= time[1])
    if freq is not None and np.isfinite(points.freq).any():
        keep &= (points.freq >= freq[0]) & (points.freq <= freq[1])
    if category is not None and allowed is not None:
        keep &= np.isin(np.asarray(category), np.asarray(list(allowed)))
    return keep


def _event_points(selection) -> list:
    try:
        return list(selection["selection"]["points"])
    except (KeyError, TypeError):
        try:
            return list(selection.selection.points)
        except AttributeError:
            return []


def picked_indices(selection, coords, points=None) -> np.ndarray:
    """Indices (into ``coords`` / ``points``) of the points a plotly selection event names.

    Each selected point carries its hover data (``customdata``: seconds, Hz, …), which names
    its cell exactly; without it, the nearest position on the map is taken (ambiguous where
    identical embeddings share a position).
    """
    pts = _event_points(selection)
    if not pts or not len(coords):
        return np.zeros(0, int)
    if points is not None and all(isinstance(p.get("customdata"), (list, tuple)) and len(p["customdata"]) >= 2
                                  for p in pts):
        t = np.round(np.asarray(points.time, np.float64), 6)
        f = np.round(np.nan_to_num(np.asarray(points.freq, np.float64), nan=-1.0), 3)
        where: dict = {}
        for i, key in enumerate(zip(t.tolist(), f.tolist())):
            where.setdefault(key, []).append(i)
        xy_all = np.asarray(coords, float)
        out = []
        for p in pts:
            ft = p["customdata"][1]
            # rounded exactly as the table above (np.round and round() differ on ties)
            key = (float(np.round(float(p["customdata"][0]), 6)),
                   -1.0 if ft is None or not np.isfinite(float(ft)) else float(np.round(float(ft), 3)))
            cands = where.get(key, [])
            if len(cands) == 1 or (cands and not ("x" in p and "y" in p)):
                out.append(cands[0])
            elif cands:  # several cells at the same (time, Hz): the one at the clicked position
                q = np.array([p["x"], p["y"]], float)
                out.append(cands[int(np.argmin(((xy_all[cands] - q) ** 2).sum(-1)))])
        if out:
            return np.unique(np.array(out, int))
    xy = np.array([[p["x"], p["y"]] for p in pts if "x" in p and "y" in p], float)
    if not len(xy):
        return np.zeros(0, int)
    coords = np.asarray(coords, float)
    idx = np.array([int(np.argmin(((coords - q) ** 2).sum(-1))) for q in xy])
    return np.unique(idx)


def _inside_polygon(xy, px, py) -> np.ndarray:
    """Even-odd rule: which of the points ``xy [shape=(n, 2)]`` lie inside the polygon (px, py)."""
    x, y = xy[:, 0][:, None], xy[:, 1][:, None]
    x0, y0 = np.asarray(px, float)[None], np.asarray(py, float)[None]
    x1, y1 = np.roll(x0, -1, axis=1), np.roll(y0, -1, axis=1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((crosses & (x < xc)).sum(axis=1) % 2) == 1


def region_indices(selection, coords) -> np.ndarray:
    """Indices of every point of ``coords`` inside the selection's boxes and lassos (drawn on the map or not).

    A map may draw only a sample of its points (:func:`probe.figures.embeddings.display_subset`);
    a box or lasso still selects every point in its region. Empty when the event has no region
    (a click).

    Examples
    --------
    >>> coords = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    >>> region_indices({"selection": {"box": [{"x": [-1, 2], "y": [-1, 2]}]}}, coords).tolist()
    [0, 1]
    >>> lasso = {"x": [0.5, 6, 6, 0.5], "y": [0.5, 0.5, 6, 6]}
    >>> region_indices({"selection": {"lasso": [lasso]}}, coords).tolist()
    [1, 2]
    """
    try:
        sel = selection["selection"]
    except (KeyError, TypeError):
        sel = getattr(selection, "selection", None)
    if sel is None:
        return np.zeros(0, int)
    xy = np.asarray(coords, float)
    inside = np.zeros(len(xy), bool)

    def regions(name):
        try:
            return list(sel[name] or [])
        except (KeyError, TypeError):
            return list(getattr(sel, name, None) or [])

    for b in regions("box"):
        (xa, xb), (ya, yb) = sorted(map(float, b["x"]))[:2], sorted(map(float, b["y"]))[:2]
        inside |= (xy[:, 0] >= xa) & (xy[:, 0] <= xb) & (xy[:, 1] >= ya) & (xy[:, 1] <= yb)
    for poly in regions("lasso"):
        if len(poly.get("x", ())) >= 3:
            inside |= _inside_polygon(xy, poly["x"], poly["y"])
    return np.flatnonzero(inside)


def cell_mask(clip, points, idx, *, spread: int = 0) -> np.ndarray:
    """Boolean ``(F, T)`` mask on the clip's embedding grid: the picked points' cells, grown by ``spread`` cells.

    ``spread=k`` gives a clicked point's T-F neighbourhood ((2k+1)² cells); for frame
    embeddings (one row) a cell is the whole frame.
    """
    F, T = clip.shape
    m = np.zeros((F, T), bool)
    rows = np.asarray(points.row)[idx].astype(int)
    frames = np.asarray(points.frame)[idx].astype(int)
    for r, t in zip(rows, frames):
        m[max(0, r - spread):r + spread + 1, max(0, t - spread):t + spread + 1] = True
    return m


def resynthesise(clip, mask) -> tuple:
    """``(audio, stft_mask)``: the mixture's STFT under the cells of ``mask``, back to audio with its phase."""
    m = clip.to_stft_grid(np.asarray(mask, np.float32))
    y = clip.grid.istft(m * clip.stft, length=len(clip.y))
    return np.asarray(y, np.float32), m


def masked_mixture(grid, y, masks) -> np.ndarray | None:
    """``(S, n)`` audio of masks ``(S, n_freqs, n_frames)`` on the clip's STFT (mixture phase); ``None`` off that grid."""
    import torch

    masks = np.asarray(masks, np.float32)
    X = grid.stft(torch.as_tensor(np.asarray(y, np.float32)))
    if masks.ndim != 3 or tuple(masks.shape[1:]) != tuple(X.shape):
        return None
    out = grid.istft(torch.as_tensor(masks) * X[None], length=len(y))
    return np.asarray(out, np.float32)
