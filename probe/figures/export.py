"""Write figures to disk, offline: one function for every face that saves figures.

HTML files load plotly.js from a ``plotly.min.js`` written once into the same folder from
the installed plotly package (never from a CDN), so a folder of figures opens with no
network. PNG goes through kaleido (Chromium; ``BROWSER_PATH`` defaults to
``/usr/bin/chromium``). Every file is written to a temporary name beside its target and
renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AnalysisError

__all__ = ["write_figures", "safe_name", "FORMATS"]

#: formats :func:`write_figures` understands
FORMATS = ("html", "png", "svg", "pdf", "json")


def safe_name(name) -> str:
    """``name`` with every character but letters, digits, ``-`` and ``_`` replaced by ``_``.

    Examples
    --------
    >>> safe_name("encoder.conv 1/a")
    'encoder_conv_1_a'
    """
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)) or "figure"


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def _write_one(fig, path: Path, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if fmt == "html":
            # "directory": a <script src="plotly.min.js"> beside the file; the bundle itself is written below
            fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True, config={"displaylogo": False})
        elif fmt == "json":
            tmp.write_text(fig.to_json(), encoding="utf-8")
        else:
            os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
            try:
                fig.write_image(str(tmp), format=fmt)
            except Exception as exc:  # kaleido / Chromium missing or broken: a user-facing, one-line error
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise AnalysisError(f"cannot write {fmt.upper()} {path}: {type(exc).__name__}: {first} "
                                    "(image export needs kaleido and Chromium; set BROWSER_PATH)") from None
        _replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_plotlyjs(folder: Path) -> Path:
    """``plotly.min.js`` from the installed plotly package, once per folder."""
    from plotly.offline import get_plotlyjs

    path = folder / "plotly.min.js"
    if not path.is_file():
        tmp = folder / ".plotly.min.js.tmp"
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        _replace(tmp, path)
    return path


def write_figures(figs: dict, out_dir, formats=("html",), *, prefix: str = "") -> list:
    """Write every figure of ``figs`` into ``out_dir`` in each of ``formats``.

    Parameters
    ----------
    figs : dict
        ``{name: plotly Figure}``; ``None`` values are skipped. Names become file stems
        (made safe with :func:`safe_name`, after ``prefix``).
    out_dir : path
        Created when missing.
    formats : sequence of str
        Any of :data:`FORMATS`. HTML files share one ``plotly.min.js`` in ``out_dir``.
    prefix : str
        Put before every stem.

    Returns
    -------
    list of str
        The paths written, in order (``plotly.min.js`` not included).

    Raises
    ------
    AnalysisError
        An unknown format, or image export without kaleido / Chromium.

    Examples
    --------
    >>> import tempfile, plotly.graph_objects as go
    >>> d = tempfile.mkdtemp()
    >>> paths = write_figures({"line": go.Figure(go.Scatter(y=[1, 2]))}, d)
    >>> [Path(p).name for p in paths], (Path(d) / "plotly.min.js").is_file()
    (['line.html'], True)
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise AnalysisError(f"unknown figure format(s) {bad}; known: {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "html" in formats and any(f is not None for f in figs.values()):
        _write_plotlyjs(out)
    written = []
    for name, fig in figs.items():
        if fig is None:
            continue
        for fmt in formats:
            path = out / f"{safe_name(prefix + str(name))}.{fmt}"
            _write_one(fig, path, fmt)
            written.append(str(path))
    return written
