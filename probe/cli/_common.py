"""Helpers shared by CLI subcommands: resolving models and audio, writing outputs."""

from __future__ import annotations

from ..audio import AudioExample
from ..resolve import load as _load
from ..resolve import resolve_audio as _resolve_audio

__all__ = ["describe", "resolve_model", "resolve_audio", "add_model_arg", "add_audio_arg", "add_overwrite_arg",
           "add_figure_out_args", "check_out", "write_into", "add_time_args", "apply_time_args", "attribution_options",
           "steps_arg", "write_figure_set"]


def resolve_model(ref: str):
    """``zoo:NAME`` or a spec-file path → ModelSpec (eval mode, weights loaded)."""
    return _load(ref)


def resolve_audio(ref: str, sr: int | None = None, *, max_seconds: float | None = 3600.0) -> AudioExample:
    """A file path or ``example:NAME[:i]`` → AudioExample at ``sr``."""
    return _resolve_audio(ref, sr, max_seconds=max_seconds)


def add_model_arg(p):
    p.add_argument("model", metavar="MODEL", help="zoo:NAME, hf:FOLDER (Hugging Face), onnx:FILE or a path to a model spec .toml")


def add_audio_arg(p):
    p.add_argument("audio", metavar="AUDIO", help="audio file or example:NAME[:i]")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="refuse longer audio (default 3600)")


def add_overwrite_arg(p):
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that is not a probe output (only probe's own file names are "
                        "replaced; the folder's other files stay)")


def add_figure_out_args(p) -> None:
    """``--out DIR`` (figures as HTML), ``--overwrite`` and ``--png``: the options of a command that writes figures."""
    p.add_argument("--out", metavar="DIR", help="write figures here (HTML)")
    add_overwrite_arg(p)
    p.add_argument("--png", action="store_true", help="also write PNG figures (needs kaleido + Chromium)")


def describe(doc: str) -> str:
    r"""A command module's docstring's first paragraph, without the command prefix, for ``--help``.

    Examples
    --------
    >>> describe("``probe x MODEL``: what it does,\n   in two lines.\n\nMore.")
    'What it does, in two lines.'
    """
    text = " ".join(doc.split("\n\n")[0].split()).split(": ", 1)[-1]
    return text[:1].upper() + text[1:]


def check_out(out, args) -> None:
    """Refuse an output folder before any work (see :mod:`probe.outputs`)."""
    from ..outputs import check_output_dir

    if out:
        check_output_dir(out, overwrite=getattr(args, "overwrite", False))


def write_into(out, writer, *, kind: str, overwrite: bool = False):
    """Run ``writer(tmp_folder)`` and move what it wrote to ``out`` at once; paths it returns point into ``out``.

    A failure leaves ``out`` as it was (see :func:`probe.outputs.output_dir`).
    """
    from pathlib import Path

    from ..outputs import output_dir

    final = Path(out)
    with output_dir(final, kind=kind, overwrite=overwrite) as tmp:
        written = writer(tmp)

    def remap(v):
        if isinstance(v, dict):
            return {k: remap(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [remap(x) for x in v]
        if isinstance(v, (str, Path)) and str(v).startswith(str(tmp)):
            return str(final / Path(v).relative_to(tmp))
        return v

    return remap(written)


def steps_arg(value):
    """``--steps``: a positive integer or ``auto``."""
    from ..errors import SpecError

    if value is None or str(value).strip().lower() == "auto":
        return "auto" if value is not None else None
    try:
        n = int(value)
    except ValueError:
        raise SpecError(f"--steps must be a positive integer or auto, given {value!r}") from None
    if n < 1:
        raise SpecError(f"--steps must be a positive integer or auto, given {value!r}")
    return n


def attribution_options(args, **extra):
    """:class:`~probe.pipelines.AttributionOptions` from the flags given; the pipeline's defaults for the rest."""
    from ..pipelines import AttributionOptions

    given = {"target": getattr(args, "target", None), "method": getattr(args, "method", None),
             "steps": steps_arg(getattr(args, "steps", None)), **extra}
    return AttributionOptions(**{k: v for k, v in given.items() if v is not None})


def write_figure_set(figs: dict, out, *, png: bool = False, prefix: str = "") -> list:
    """Write ``{name: figure}`` into ``out`` as offline HTML (and PNG with ``png``); returns the paths."""
    from ..figures.export import write_figures

    return write_figures(figs, out, formats=("html", "png") if png else ("html",), prefix=prefix)


def add_time_args(p):
    """``--seconds-per-step`` and ``--time-offset``: override the inferred time axes of every record."""
    g = p.add_argument_group("time axes (override what the shape probe infers; see `probe inspect`)")
    g.add_argument("--seconds-per-step", type=float, default=None, metavar="S",
                   help="seconds between consecutive steps of every time axis")
    g.add_argument("--time-offset", type=float, default=None, metavar="S",
                   help="seconds of the centre of step 0 (e.g. half the analysis window)")


def apply_time_args(spec, args):
    """Put ``--seconds-per-step`` / ``--time-offset`` on ``spec`` (records then say ``time_source: given``)."""
    from ..adapter import _check_time

    sps, off = getattr(args, "seconds_per_step", None), getattr(args, "time_offset", None)
    if sps is None and off is None:
        return spec
    t = dict(spec.time or {})
    if sps is not None:
        t["seconds_per_step"] = sps
    if off is not None:
        t["offset"] = off
    t["source"] = "given"
    spec.time = _check_time(t)
    return spec
