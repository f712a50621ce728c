"""One convention for every dB heat map: the colour scale, its direction and its range.

Every builder in :mod:`probe.figures` that colours decibels uses :data:`DB_COLORSCALE` (bright = loud)
over :data:`DB_RANGE` dB below the loudest cell (``zmax`` = the maximum, ``zmin`` = the maximum − 80 dB),
so a spectrogram, a separated source, a cluster's bins and an NMF basis read the same way in the
app, the CLI's figures and the HTML report.
"""

from __future__ import annotations

__all__ = ["DB_COLORSCALE", "DB_RANGE", "db_scale"]

#: plotly colour scale of every dB heat map: black (quiet) → yellow-white (loud), never reversed
DB_COLORSCALE = "Magma"
#: dB shown below the loudest cell; quieter cells take the darkest colour
DB_RANGE = 80.0


def db_scale(top: float = 0.0, *, db_range: float = DB_RANGE) -> dict:
    """``Heatmap`` keywords of the dB convention: ``colorscale``, ``zmin = top − db_range``, ``zmax = top``.

    Examples
    --------
    >>> db_scale()
    {'colorscale': 'Magma', 'zmin': -80.0, 'zmax': 0.0}
    >>> db_scale(-3.0, db_range=50)["zmin"]
    -53.0
    """
    return {"colorscale": DB_COLORSCALE, "zmin": float(top) - float(db_range), "zmax": float(top)}
