"""Heat maps at display resolution: block-reduce a (rows, columns) image before it goes into a figure.

A figure in the app or a report is at most ~1000 px wide and a few hundred px tall, but a
clip's spectrogram, attribution map or cluster mask can hold 250,000 cells or more. Every
cell travels to the browser (4 bytes as float32, base64-encoded in the figure's JSON) and is
decoded and drawn there, so a full-resolution map costs seconds per page for pixels nobody
can see. :func:`to_display` reduces blocks of neighbouring cells to one (the block's mean,
maximum or majority), keeps the block's centre time and frequency as its coordinates, and
returns float32. Downloads (CSV, safetensors) keep the full resolution; hover on a reduced map
reads the block's value.

Nothing here imports plotly or streamlit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_display", "whole_db", "uniform_axes", "block_factor", "MAX_COLUMNS", "MAX_ROWS"]

#: columns (time frames) drawn at most by default: ~1.5 px each across a full-width plot area
MAX_COLUMNS = 600
#: rows (frequency bins) drawn at most by default: ~1.3 px each in a 260-px-high panel
MAX_ROWS = 200


def block_factor(n: int, limit: int | None) -> int:
    """Cells per block along an axis of ``n`` cells so at most ``limit`` blocks remain (1 = untouched).

    Examples
    --------
    >>> block_factor(501, 600), block_factor(1001, 600), block_factor(257, 200)
    (1, 2, 2)
    """
    if not limit or n <= limit:
        return 1
    return int(np.ceil(n / int(limit)))


def _reduce_axis(z, k: int, axis: int, how: str):
    """Reduce blocks of ``k`` cells along ``axis``; a short last block is reduced over the cells it has."""
    if k == 1:
        return z
    n = z.shape[axis]
    m = int(np.ceil(n / k))
    pad = m * k - n
    if pad:  # NaN padding is ignored by the nan-reductions below
        widths = [(0, 0)] * z.ndim
        widths[axis] = (0, pad)
        z = np.pad(z.astype(np.float64, copy=False), widths, constant_values=np.nan)
    shape = list(z.shape)
    shape[axis:axis + 1] = [m, k]
    blocks = z.reshape(shape)
    with np.errstate(invalid="ignore"), _quiet():
        if how == "max":
            return np.nanmax(blocks, axis=axis + 1)
        return np.nanmean(blocks, axis=axis + 1)


class _quiet:
    """Silence numpy's "All-NaN slice" / "Mean of empty slice" warnings (an all-NaN block stays NaN)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def _uniform_step(v, rtol: float = 1e-3):
    """The spacing of evenly spaced coordinates ``v``, or ``None``."""
    v = np.asarray(v, np.float64)
    if v.ndim != 1 or len(v) < 2:
        return None
    d = v[1] - v[0]
    if d == 0 or not np.all(np.abs(np.diff(v) - d) <= rtol * abs(d)):
        return None
    return float(d)


def _centres(v, k: int):
    v = np.asarray(v, np.float64)
    if k == 1:
        return v
    m = int(np.ceil(len(v) / k))
    d = _uniform_step(v)
    if d is not None:  # evenly spaced blocks, the last (short) one too: the grid stays uniform (see uniform_axes)
        return v[0] + (k - 1) / 2 * d + np.arange(m) * k * d
    out = np.empty(m)
    for i in range(m):  # m ≤ a few hundred: one mean per block
        out[i] = v[i * k:(i + 1) * k].mean()
    return out


def to_display(z, x=None, y=None, *, max_columns: int | None = MAX_COLUMNS, max_rows: int | None = MAX_ROWS,
               how: str = "mean"):
    """An image reduced to at most ``max_rows`` × ``max_columns`` cells, as float32, with its block centres.

    Parameters
    ----------
    z : array [shape=(rows, columns)]
        E.g. dB over (frequency, time), a relevance map or a 0/1 mask. NaN cells are left out of
        their block's value (a block of NaN only stays NaN).
    x, y : array [shape=(columns,)], [shape=(rows,)], optional
        The columns' and rows' coordinates (seconds, Hz); each block gets the mean of its cells'
        (evenly spaced coordinates stay evenly spaced: a short last block sits one block step
        after the one before it).
    max_columns, max_rows : int or None
        At most this many columns / rows (``None``: that axis is untouched).
    how : {"mean", "max", "majority"}
        ``mean`` for relevance and levels, ``max`` for dB images (a one-bin tone stays as loud as
        it is), ``majority`` for 0/1 masks (1 where more than half of the block is 1).

    Returns
    -------
    (z, x, y)
        ``z`` float32 [shape=(≤ max_rows, ≤ max_columns)]; ``x``, ``y`` float64 (``None`` where not given).

    Examples
    --------
    >>> z = np.zeros((257, 1001)); z[100, :] = 1.0  # a one-bin tone at 3125 Hz
    >>> d, x, y = to_display(z, np.arange(1001) * 0.01, np.arange(257) * 31.25, how="max")
    >>> d.shape, d.dtype.name, float(d.max()), float(y[50])
    ((129, 501), 'float32', 1.0, 3140.625)
    """
    if how not in ("mean", "max", "majority"):
        raise ValueError(f"how must be 'mean', 'max' or 'majority', given how={how!r}")
    z = np.asarray(z)
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (rows, columns), given z.shape={z.shape}")
    kr, kc = block_factor(z.shape[0], max_rows), block_factor(z.shape[1], max_columns)
    red = "max" if how == "max" else "mean"
    out = _reduce_axis(_reduce_axis(z, kr, 0, red), kc, 1, red)
    if how == "majority" and (kr > 1 or kc > 1):
        out = (out > 0.5).astype(np.float64)
    xd = None if x is None else _centres(x, kc)
    yd = None if y is None else _centres(y, kr)
    return np.asarray(out, np.float32), xd, yd


def whole_db(z, *, floor: float | None = None):
    """dB cells rounded to whole dB in the smallest integer type that holds them, and their hover format.

    A dB image travels as float32 (4 bytes a cell, base64 in the figure's JSON): a clip's
    129 × 501 spectrogram is 345 kB, which the browser receives, copies and parses on every
    visit. Whole dB in one byte (``int8`` when every cell lies in −128…127 dB, else ``int16``)
    is a quarter of that, and a step of 1 dB is far below what an 80-dB colour scale shows.
    Nothing is clipped unless ``floor`` is given, so hover reads each cell's own value; an image
    with NaN cells stays float32 (an integer cannot say "no value").

    Parameters
    ----------
    z : array
        dB values.
    floor : float, optional
        Cells below it are raised to it (their hover reads the floor). The figures pass
        "128 dB under the loudest cell" (48 dB under an 80-dB colour scale's bottom): that keeps
        one byte a cell where the ``+ eps`` of a log puts digital silence at −200 dB. ``int16``
        cells of small negative values are mostly 0xFF bytes, whose base64 is mostly "/", which
        plotly's JSON writes as the six characters ``\\u002f``: an int16 map travelled at twice
        float32's size.

    Returns
    -------
    (z, value_format)
        ``value_format`` is the hover template's value: ``"%{z}"`` for whole dB, ``"%{z:.1f}"``
        for float32.

    Examples
    --------
    >>> z, fmt = whole_db(np.array([[-80.4, -3.6], [0.0, -127.9]]))
    >>> z.dtype.name, z.tolist(), fmt
    ('int8', [[-80, -4], [0, -128]], '%{z}')
    >>> whole_db(np.array([[-200.0, 20.0]]))[0].dtype.name, whole_db(np.array([[-200.0, 0.0]]), floor=-128)[0].tolist()
    ('int16', [[-128, 0]])
    >>> whole_db(np.array([[np.nan, 1.0]]))[1]
    '%{z:.1f}'
    """
    z = np.asarray(z, np.float64)
    if z.size == 0 or not np.isfinite(z).all():
        return z.astype(np.float32), "%{z:.1f}"
    if floor is not None:
        z = np.maximum(z, float(floor))
    r = np.round(z)
    for dtype in (np.int8, np.int16):
        info = np.iinfo(dtype)
        if r.min() >= info.min and r.max() <= info.max:
            return r.astype(dtype), "%{z}"
    return z.astype(np.float32), "%{z:.1f}"


def uniform_axes(x=None, y=None) -> dict:
    """``Heatmap`` keywords placing the cells: ``x0``/``dx`` (``y0``/``dy``) for evenly spaced coordinates, else ``x`` (``y``).

    plotly.js draws a heat map whose cells are given by a start and a step as one image; with
    coordinate arrays it places every cell on its own, several times slower in the browser
    (a 129 × 251 three-panel figure: ~0.15 s against ~0.55 s). The cells and hover read the same.

    Examples
    --------
    >>> uniform_axes(np.arange(5) * 0.5, np.array([0.0, 1.0, 3.0]))
    {'x0': 0.0, 'dx': 0.5, 'y': array([0., 1., 3.])}
    """
    out: dict = {}
    for name, v in (("x", x), ("y", y)):
        if v is None:
            continue
        d = _uniform_step(v)
        if d is None:
            out[name] = np.asarray(v)
        else:
            out[f"{name}0"], out[f"d{name}"] = float(np.asarray(v, np.float64)[0]), d
    return out
