"""``probe filters MODEL``: learned filterbanks in filterbank terms.

For every layer whose kernels lie on waveform samples or frequency bins: centre frequencies,
−3 dB bandwidths, the frequency scale the centres follow (R² for linear / mel / ERB / log)
and the mean matched cosine with a mel, gammatone and constant-Q bank of the same size.
``--out DIR`` writes the figures (HTML; PNG too with ``--png``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from ..errors import AnalysisError, LayerNotFoundError

__all__ = ["add_parser", "run", "analyse_bank", "select_banks", "write_figures"]


def _describe() -> str:
    """The module docstring's first paragraph, without the command prefix, for ``--help``."""
    text = " ".join(__doc__.split("\n\n")[0].split()).split(": ", 1)[-1]
    return text[:1].upper() + text[1:]


def add_parser(subparsers):
    from ._common import add_model_arg

    p = subparsers.add_parser("filters", help="relate learned filters to mel / ERB / gammatone filterbanks",
                              description=_describe())
    add_model_arg(p)
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="analyse only this filter layer (repeatable; default: every filter layer)")
    p.add_argument("--n-fft", type=int, default=None, help="FFT size for waveform kernels (default: ≥2048 and ≥8× kernel)")
    p.add_argument("--span", choices=("full", "bank"), default="full",
                   help="reference banks over 0 Hz–Nyquist (full) or over the learned centres' range (bank)")
    p.add_argument("--threshold", type=float, default=0.5, help="matched cosine below which a learned filter is 'unmatched'")
    p.add_argument("--out", metavar="DIR", help="write figures here (HTML)")
    p.add_argument("--png", action="store_true", help="also write PNG figures (needs kaleido + Chromium)")
    return p


def select_banks(banks: dict, layers) -> dict:
    """Keep the banks named in ``layers``; unknown names raise :class:`LayerNotFoundError` with suggestions."""
    if not layers:
        return banks
    out = {}
    for name in layers:
        if name not in banks:
            close = difflib.get_close_matches(name, list(banks), n=3, cutoff=0.4)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
                f"filter layers: {', '.join(banks) if banks else 'none'}"
            raise LayerNotFoundError(f"no filter layer named {name!r}; {hint}")
        out[name] = banks[name]
    return out


def analyse_bank(bank, *, n_fft=None, span: str = "full", threshold: float = 0.5) -> tuple[dict, dict]:
    """One bank → (JSON summary, fitted objects for figures)."""
    from ..analyze.filters import compare_references, filter_responses, scale_fit

    fr = filter_responses(bank, n_fft=n_fft)
    summary = fr.summary()
    objs = {"responses": fr}
    layer = {"name": bank.name, "n_filters": fr.n_filters_, "sample_rate": fr.sample_rate_, "axis": bank.axis,
             "role": bank.role, "module_type": bank.module_type, "labels": summary["labels"]}
    if fr.is_spectral_ and np.isfinite(fr.centre_hz_).sum() >= 3:
        fit = scale_fit(fr, sample_rate=fr.sample_rate_)
        refs = compare_references(fr, span=span, threshold=threshold)
        objs.update(fit=fit, refs=refs)
        if bank.axis == "samples":  # the same references realised as FIRs as short as the learned kernels
            short = compare_references(fr, span=span, threshold=threshold, taps="bank")
            layer["reference_match_same_length"] = {k: round(m.mean_cosine_, 4) for k, m in short.items()}
        layer.update({
            "centre_hz": summary["centre_hz"], "bandwidth_hz": summary["bandwidth_hz"], "q": summary["q"],
            "median_q": summary["median_q"], "median_bandwidth_hz": summary["median_bandwidth_hz"],
            "median_selectivity_db": summary["median_selectivity_db"], "n_taps": fr.n_taps_,
            "scale_fit": {k: round(v, 4) for k, v in fit.r2_.items()}, "best_scale": fit.best_scale_,
            "filters_per_octave": {f"{a:.0f}-{b:.0f}": int(c) for a, b, c in
                                   zip(fit.octave_edges_hz_[:-1], fit.octave_edges_hz_[1:], fit.filters_per_octave_)},
            "low_share": round(fit.low_share_, 4), "low_share_linear": fit.low_share_linear_,
            "reference_match": {k: round(m.mean_cosine_, 4) for k, m in refs.items()},
            "reference_span": span,
            "unmatched": {k: int(m.unmatched_.size) for k, m in refs.items()},
        })
    elif fr.is_spectral_:
        layer.update({"centre_hz": summary["centre_hz"], "bandwidth_hz": summary["bandwidth_hz"], "scale_fit": None,
                      "best_scale": None, "reference_match": None,
                      "note": "fewer than 3 live filters with a centre frequency: no scale fit"})
    else:
        layer.update({"centre_hz": None, "bandwidth_hz": None, "scale_fit": None, "best_scale": None,
                      "reference_match": None, "orientation_deg": summary.get("orientation_deg"),
                      "coherence": summary.get("coherence"),
                      "note": "spectro-temporal patches without an absolute frequency axis: orientation only"})
    return layer, objs


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "layer"


def write_figures(bank, objs: dict, out: Path, *, png: bool = False) -> list[str]:
    """Write the figures of one bank into ``out``; returns the paths written."""
    from ..figures import filters as ff

    out.mkdir(parents=True, exist_ok=True)
    fr = objs["responses"]
    figs = {"gallery": ff.filter_gallery(bank, fr)}
    if fr.is_spectral_:
        figs["responses"] = ff.response_heatmap(fr)
    if "fit" in objs:
        figs["centres"] = ff.centre_frequency_plot(fr, objs["fit"])
        figs["octaves"] = ff.octave_density_plot(objs["fit"], sample_rate=fr.sample_rate_)
        for ref, m in objs["refs"].items():
            figs[f"match_{ref}"] = ff.matching_matrix(
                m.cosine_, m.assignment_, row_order=fr.order_, col_title=f"{ref} filter",
                title=f"{bank.name} × {ref} bank — mean matched cosine {m.mean_cosine_:.3f}")
        best = max(objs["refs"], key=lambda r: objs["refs"][r].mean_cosine_)
        figs[f"pairs_{best}"] = ff.matched_responses_plot(fr, objs["refs"][best])
    written = []
    for key, fig in figs.items():
        stem = out / f"filters_{_safe(bank.name)}_{key}"
        fig.write_html(str(stem) + ".html", include_plotlyjs="directory")
        written.append(str(stem) + ".html")
        if png:
            written.append(_write_png(fig, str(stem) + ".png"))
    return written


def _write_png(fig, path: str) -> str:
    import os

    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    try:
        fig.write_image(path)
    except Exception as exc:  # kaleido / Chromium missing or broken: a user-facing, one-line error
        raise AnalysisError(f"cannot write PNG {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                            "(PNG export needs kaleido and Chromium; set BROWSER_PATH)") from None
    return path


def run(args) -> dict:
    from ..filterbank import filters
    from ._common import resolve_model

    spec = resolve_model(args.model)
    banks = filters(spec)
    if not banks:
        raise AnalysisError(f"model {args.model!r} has no layer whose kernels lie on waveform samples or frequency bins "
                            f"(input kind {spec.input_kind!r})")
    banks = select_banks(banks, args.layer)
    layers, figures = [], []
    for name, bank in banks.items():
        layer, objs = analyse_bank(bank, n_fft=args.n_fft, span=args.span, threshold=args.threshold)
        layers.append(layer)
        if args.out:
            figures += write_figures(bank, objs, Path(args.out), png=args.png)
    out = {"model": spec.name, "input_kind": spec.input_kind, "layers": layers}
    if args.out:
        out["figures"] = figures
    return out
