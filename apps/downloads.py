"""What the app's download buttons hand out, as bytes: maps, audio, embeddings, figures, reports.

Pure serialisers of what the pipelines returned (nothing is computed here); no streamlit.

Examples
--------
>>> import numpy as np
>>> csv = map_csv(np.ones((2, 3), np.float32), times=np.arange(3) * 0.5, freqs=np.array([0.0, 100.0]))
>>> csv.decode().splitlines()[:2]
['time_s,freq_hz,value', '0,0,1']
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["map_safetensors", "map_csv", "wav_bytes", "figure_html", "figure_png", "png_later", "points_table",
           "table_csv", "table_parquet", "file_stem"]

#: Chromium that kaleido drives to render PNGs (used when BROWSER_PATH is not set and this file exists)
CHROMIUM = "/usr/bin/chromium"


def file_stem(*parts) -> str:
    """A file name stem from parts (model, clip, what): letters, digits, ``-`` and ``_`` only."""
    import re

    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:120] or "probe"


def map_safetensors(tensors: dict, metadata: dict | None = None) -> bytes:
    """Arrays (name → array) as one safetensors file; ``metadata`` values become strings."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={str(k): str(v) for k, v in (metadata or {}).items()})


def map_csv(M, *, times, freqs, value: str = "value") -> bytes:
    """A ``(F, T)`` map as long CSV rows ``time_s,freq_hz,value`` (time-major)."""
    M = np.asarray(M)
    F, T = M.shape
    t = np.repeat(np.asarray(times, np.float64)[:T], F)
    f = np.tile(np.asarray(freqs, np.float64)[:F], T)
    buf = io.StringIO()
    buf.write(f"time_s,freq_hz,{value}\n")
    np.savetxt(buf, np.column_stack([t, f, M.T.reshape(-1)]), delimiter=",", fmt="%.6g")
    return buf.getvalue().encode()


def wav_bytes(y, sr: int) -> bytes:
    """Mono float audio as a 16-bit WAV (peak-normalised when it would clip)."""
    import soundfile as sf

    y = np.asarray(y, np.float32)
    peak = float(np.abs(y).max(initial=0.0))
    if peak > 1.0:
        y = y / peak
    buf = io.BytesIO()
    sf.write(buf, y, int(sr), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def figure_html(fig) -> bytes:
    """A plotly figure as one self-contained HTML file (plotly.js inlined: opens offline)."""
    return fig.to_html(full_html=True, include_plotlyjs=True, config={"displaylogo": False}).encode()


def figure_png(fig, *, scale: float = 2.0) -> bytes:
    """A plotly figure as PNG bytes (kaleido driving a headless Chromium, offline).

    Takes a few seconds (Chromium starts per call), so the app hands :func:`png_later` to its
    download buttons: the PNG is only rendered when someone clicks.
    """
    import os

    if not os.environ.get("BROWSER_PATH") and os.path.exists(CHROMIUM):
        os.environ["BROWSER_PATH"] = CHROMIUM
    return fig.to_image(format="png", scale=scale)


def png_later(fig, *, scale: float = 2.0):
    """A zero-argument callable returning :func:`figure_png` of a snapshot of ``fig`` — for Streamlit's
    ``download_button(data=callable)``, which calls it only when the button is clicked (nothing is rendered
    while the page loads).

    Examples
    --------
    >>> import plotly.graph_objects as go
    >>> fig = go.Figure(go.Scatter(y=[1, 2]))
    >>> make = png_later(fig)  # nothing rendered yet
    >>> make()[1:4] == b"PNG"  # rendered on the click
    True
    """
    import plotly.graph_objects as go

    snapshot = fig.to_dict()
    return lambda: figure_png(go.Figure(snapshot), scale=scale)


def points_table(res, coords=None) -> dict:
    """Columns of an embedding analysis: time, frequency, map coordinates, cluster, known labels, the vectors."""
    p = res.points
    xy = np.asarray(res.coords if coords is None else coords)
    cols = {"time_s": np.asarray(p.time, np.float64), "freq_hz": np.asarray(p.freq, np.float64),
            "energy_db": np.asarray(p.energy_db, np.float64), "map_x": xy[:, 0], "map_y": xy[:, 1],
            "cluster": np.asarray(res.clusters.labels_) + 1}
    if p.source is not None:
        names = p.source_names or []
        cols["source"] = np.array([names[i] if 0 <= i < len(names) else str(i) for i in np.asarray(p.source)])
    if p.label is not None:
        names = p.class_names or []
        cols["label"] = np.array([names[i] if 0 <= i < len(names) else "" for i in np.asarray(p.label)])
    X = np.asarray(p.X, np.float32)
    for j in range(X.shape[1]):
        cols[f"e{j}"] = X[:, j]
    return {k: v for k, v in cols.items() if v is not None}


def table_csv(cols: dict) -> bytes:
    """Columns (name → 1-D array) as CSV."""
    names = list(cols)
    n = len(next(iter(cols.values())))
    buf = io.StringIO()
    buf.write(",".join(names) + "\n")
    arrays = [np.asarray(cols[k]) for k in names]
    for i in range(n):
        buf.write(",".join(f"{a[i]:.6g}" if a.dtype.kind == "f" else str(a[i]) for a in arrays) + "\n")
    return buf.getvalue().encode()


def table_parquet(cols: dict) -> bytes:
    """Columns as a Parquet file (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({k: np.asarray(v) for k, v in cols.items()}), buf)
    return buf.getvalue()
