"""``probe filters MODEL``: learned filterbanks in filterbank terms.

For every layer whose kernels lie on waveform samples or frequency bins: centre frequencies,
−3 dB bandwidths, the frequency scale the centres follow (R² for linear / mel / ERB / log)
and the mean matched cosine with a mel, gammatone and constant-Q bank of the same size.
``--out DIR`` writes the figures (HTML; PNG too with ``--png``).
"""

from __future__ import annotations

__all__ = ["add_parser", "run", "bank_figures"]


def add_parser(subparsers):
    from ._common import add_figure_out_args, add_model_arg, add_time_args, describe

    p = subparsers.add_parser("filters", help="relate learned filters to mel / ERB / gammatone filterbanks",
                              description=describe(__doc__))
    add_model_arg(p)
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="analyse only this filter layer (repeatable; default: every filter layer); with --axis, "
                        "force it in even when the discovery does not call it a bank")
    p.add_argument("--axis", choices=("samples", "bins"), default=None,
                   help="read the --layer kernels along waveform samples or the spec's frequency bins (forces them in)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="rate of a forced --axis samples layer's taps (default: the rate its input runs at)")
    p.add_argument("--n-fft", type=int, default=None, help="FFT size for waveform kernels (default: ≥2048 and ≥8× kernel)")
    p.add_argument("--span", choices=("full", "bank"), default="full",
                   help="reference banks over 0 Hz–Nyquist (full) or over the learned centres' range (bank)")
    p.add_argument("--threshold", type=float, default=0.5, help="matched cosine below which a learned filter is 'unmatched'")
    add_figure_out_args(p)
    add_time_args(p)
    return p


def bank_figures(analysis) -> dict:
    """``{name: figure}`` of one :class:`~probe.pipelines.BankAnalysis`: gallery, responses, centres, matches."""
    from ..figures import filters as ff

    bank, fr = analysis.bank, analysis.responses
    figs = {"gallery": ff.filter_gallery(bank, fr)}
    if fr.is_spectral_:
        figs["responses"] = ff.response_heatmap(fr)
    if analysis.fit is not None:
        figs["centres"] = ff.centre_frequency_plot(fr, analysis.fit)
        figs["octaves"] = ff.octave_density_plot(analysis.fit, sample_rate=fr.sample_rate_)
        for ref, m in analysis.refs.items():
            figs[f"match_{ref}"] = ff.matching_matrix(
                m.cosine_, m.assignment_, row_order=fr.order_, col_title=f"{ref} filter",
                title=f"{bank.name} × {ref} bank — mean matched cosine {m.mean_cosine_:.3f}")
        best = analysis.best_reference
        figs[f"pairs_{best}"] = ff.matched_responses_plot(fr, analysis.refs[best])
    return figs


def run(args) -> dict:
    from ..figures.export import safe_name
    from ..pipelines import FilterOptions, analyse_filters
    from ._common import apply_time_args, check_out, resolve_model, write_figure_set, write_into

    options = FilterOptions(layers=tuple(args.layer) if args.layer else None, n_fft=args.n_fft, span=args.span,
                            threshold=args.threshold, axis=args.axis, sample_rate=args.rate)
    check_out(args.out, args)
    spec = apply_time_args(resolve_model(args.model), args)
    res = analyse_filters(spec, options)
    out = res.to_json()
    if args.out:
        def write(d):
            written = []
            for name, bank in res.banks.items():
                written += write_figure_set(bank_figures(bank), d, png=args.png, prefix=f"filters_{safe_name(name)}_")
            return written

        out["figures"] = write_into(args.out, write, kind="filters", overwrite=args.overwrite)
    return out
