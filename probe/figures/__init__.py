"""Pure plotly figure builders (data in, ``go.Figure`` out) and one way to write them: :func:`write_figures`."""


def write_figures(figs, out_dir, formats=("html",), **kwargs):
    """See :func:`probe.figures.export.write_figures`."""
    from .export import write_figures as _write

    return _write(figs, out_dir, formats, **kwargs)
