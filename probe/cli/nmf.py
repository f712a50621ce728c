"""``probe nmf MODEL AUDIO``: how NMF-like a model is, measured against an NMF of the audio's spectrogram.

Fits NMF (``--beta``: frobenius, kl or is) with ``--components`` K on the magnitude
spectrogram of AUDIO on the model's grid, then matches the model's spectral bases (a
decoder's synthesis filters, a frequency-axis synthesis bank, or the first analysis bank)
with NMF's W, correlates the model's activations over time (the latent that feeds the
decoder, the rectified output of an analysis bank, or ``--layer NAME``) with NMF's H, and reports how NMF-like those activations are.
"""

from __future__ import annotations

from ..errors import AnalysisError

__all__ = ["add_parser", "run", "nmf_figures"]


def add_parser(subparsers):
    from ._common import add_audio_arg, add_figure_out_args, add_model_arg, add_time_args, describe

    p = subparsers.add_parser("nmf", help="compare a model's bases and activations with an NMF of the audio",
                              description=describe(__doc__))
    add_model_arg(p)
    add_audio_arg(p)
    p.add_argument("--components", "-k", type=int, default=None,
                   help="NMF rank K (default: number of model bases, at most 32)")
    p.add_argument("--beta", choices=("frobenius", "kl", "is"), default="frobenius", help="NMF loss (default frobenius)")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="layer whose output is the activations (default: the bases layer's latent)")
    p.add_argument("--bases-layer", metavar="NAME", default=None,
                   help="filter layer giving the spectral bases (default: the synthesis bank, else the first spectral bank)")
    p.add_argument("--max-iter", type=int, default=400, help="NMF iterations (default 400)")
    p.add_argument("--threshold", type=float, default=0.5, help="matched cosine below which a basis is 'unmatched'")
    add_figure_out_args(p)
    add_time_args(p)
    return p


def nmf_figures(res) -> dict:
    """``{name: figure}`` of an :class:`~probe.pipelines.NMFAnalysis`: bases and activations vs NMF."""
    from ..figures import nmf as fn

    cmp, figs = res.comparison, {}
    if hasattr(cmp, "cosine_"):
        figs["bases"] = fn.bases_side_by_side(cmp, res.freqs)
        figs["bases_matching"] = fn.nmf_matching_matrix(cmp, kind="bases")
    if hasattr(cmp, "act_corr_"):
        figs["activations"] = fn.activations_vs_h(cmp)
        figs["activations_matching"] = fn.nmf_matching_matrix(cmp, kind="activations")
    return figs


def run(args) -> dict:
    from ..figures.export import safe_name
    from ..pipelines import NMFOptions, analyse_nmf
    from ._common import apply_time_args, check_out, resolve_audio, resolve_model, write_figure_set, write_into

    if args.components is not None and args.components < 1:
        raise AnalysisError(f"--components must be positive, given {args.components}")
    check_out(args.out, args)
    spec = apply_time_args(resolve_model(args.model), args)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    options = NMFOptions(components=args.components, beta=args.beta, layer=args.layer, bases_layer=args.bases_layer,
                         max_iter=args.max_iter, threshold=args.threshold)
    res = analyse_nmf(spec, ex, options)
    out = res.to_json()
    if args.out:
        out["figures"] = write_into(args.out, lambda d: write_figure_set(nmf_figures(res), d, png=args.png,
                                                                         prefix=f"nmf_{safe_name(spec.name)}_"),
                                    kind="nmf", overwrite=args.overwrite)
    return out
