"""``probe nmf MODEL AUDIO``: how NMF-like a model is, measured against an NMF of the audio's spectrogram.

Fits NMF (``--beta``: frobenius, kl or is) with ``--components`` K on the magnitude
spectrogram of AUDIO on the model's grid, then matches the model's spectral bases (a
decoder's synthesis filters, a frequency-axis synthesis bank, or the first analysis bank)
with NMF's W, correlates the model's activations over time (the latent that feeds the
decoder, the rectified output of an analysis bank, or ``--layer NAME``) with NMF's H, and reports how NMF-like those activations are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AnalysisError, LayerNotFoundError

__all__ = ["add_parser", "run", "activation_matrix", "pick_bases_bank"]

#: most activation units analysed; above it the highest-variance units are kept
MAX_UNITS = 512
#: cap of the default NMF rank
DEFAULT_MAX_COMPONENTS = 32


def _describe() -> str:
    """The module docstring's first paragraph, without the command prefix, for ``--help``."""
    text = " ".join(__doc__.split("\n\n")[0].split()).split(": ", 1)[-1]
    return text[:1].upper() + text[1:]


def add_parser(subparsers):
    from ._common import add_audio_arg, add_model_arg

    p = subparsers.add_parser("nmf", help="compare a model's bases and activations with an NMF of the audio",
                              description=_describe())
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
    p.add_argument("--out", metavar="DIR", help="write figures here (HTML)")
    p.add_argument("--png", action="store_true", help="also write PNG figures (needs kaleido + Chromium)")
    return p


def pick_bases_bank(banks: dict, name: str | None):
    """The bank whose filters serve as spectral bases: ``name``, else the last synthesis bank, else the first spectral one."""
    from .filters import select_banks

    if name:
        return select_banks(banks, [name])[name]
    spectral = {k: b for k, b in banks.items() if b.axis in ("samples", "frequency")}
    synth = [b for b in spectral.values() if b.role == "synthesis"]
    if synth:
        return synth[-1]
    return next(iter(spectral.values()), None)


def activation_matrix(x, *, time_axis: int | None = None, batch_axis: int | None = 0, sum_batch: bool = False) -> np.ndarray:
    """A captured tensor → ``(units, frames)``: time moved last, batch squeezed (or summed), the rest flattened.

    Parameters
    ----------
    x : tensor or array
    time_axis : int, optional
        Default: the last axis (the convolutional convention ``(batch, channel, time)``).
    batch_axis : int or None
        Axis of the batch; a batch of 1 is squeezed, a larger one is summed when ``sum_batch``
        (e.g. per-source latents of a masking separator add up to the mixture's latent).
    """
    a = np.asarray(x.detach().cpu().float().numpy() if hasattr(x, "detach") else x, dtype=float)
    if a.ndim < 2:
        raise AnalysisError(f"activations need a time axis and at least one unit, given shape {a.shape}")
    t = (a.ndim - 1) if time_axis is None else int(time_axis) % a.ndim
    a = np.moveaxis(a, t, -1)
    if batch_axis is not None and a.ndim >= 3:
        b = int(batch_axis) % a.ndim
        b = b - 1 if b > t else b  # axes after the time axis moved one step left
        if a.shape[b] == 1:
            a = a.squeeze(b)
        elif sum_batch:
            a = a.sum(b)
    return a.reshape(-1, a.shape[-1])


def _top_variance(A: np.ndarray, k: int):
    if A.shape[0] <= k:
        return A, None
    keep = np.sort(np.argsort(-A.var(axis=1))[:k])
    return A[keep], keep


def _capture_activations(spec, y, *, layer: str | None, bank):
    """Activations ``(units, frames)`` and seconds per frame, from ``layer``'s output or the bank's latent."""
    import torch

    from ..hooks import capture, select_layers

    if layer is not None:
        select_layers(spec.model, layer)  # raises LayerNotFoundError with suggestions
        name, want_input = layer, False
    elif bank is not None:
        name, want_input = bank.name, bank.role == "synthesis"
        if not want_input:
            name = _nonlinearity_after(spec.model, bank.name) or name
    else:
        raise AnalysisError("the model has no spectral filter bank to take bases from; name an activation layer with --layer")
    with torch.no_grad(), capture(spec, layers=[name], inputs=want_input) as cache:
        spec.model(spec.features(y))
    if name not in cache:
        raise LayerNotFoundError(f"layer {name!r} did not run during the forward pass")
    rec = cache[name]
    if want_input:
        if not rec.inputs:
            raise AnalysisError(f"layer {name!r} recorded no tensor input")
        x = rec.inputs[0]
        # a synthesis bank's input: ConvTranspose1d (batch·sources, K, T), Linear (batch, T, K);
        # the sources' latents add up to the mixture's
        if bank.axis == "samples":
            A = activation_matrix(x, time_axis=-1, batch_axis=0, sum_batch=True)
            sps = bank.stride / bank.sample_rate
        else:
            A = activation_matrix(x, time_axis=-2 if x.ndim >= 3 else 0, batch_axis=0 if x.ndim >= 3 else None,
                                  sum_batch=True)
            sps = spec.grid.seconds_per_frame
        return A, sps, f"{name} (input)"
    x = rec.tensor
    tax = rec.time_axis if rec.time_axis is not None else x.ndim - 1
    bax = rec.axes.index("batch") if rec.axes and "batch" in rec.axes else 0
    if bax == tax:
        bax = None
    return activation_matrix(x, time_axis=tax, batch_axis=bax, sum_batch=True), rec.seconds_per_step, name


def _nonlinearity_after(model, name: str) -> str | None:
    """The elementwise activation module registered right after ``name`` (ReLU, Softplus, …), if any.

    An analysis bank's raw output oscillates at the filter's centre frequency; the envelope
    NMF's H describes is what comes out of the rectifier that follows it.
    """
    import torch.nn as nn

    names = [n for n, _ in model.named_modules() if n]
    mods = dict(model.named_modules())
    if name not in names or names.index(name) + 1 >= len(names):
        return None
    nxt = names[names.index(name) + 1]
    acts = (nn.ReLU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softmax,
            nn.Hardtanh, nn.ReLU6)
    return nxt if isinstance(mods[nxt], acts) else None


def run(args) -> dict:
    from ..analyze.nmf import NMFComparison, bank_bases, magnitude_spectrogram, nmf_likeness
    from ..filterbank import filters
    from ._common import resolve_audio, resolve_model

    spec = resolve_model(args.model)
    ex = resolve_audio(args.audio, spec.sample_rate, max_seconds=args.max_seconds)
    grid = spec.grid
    S = magnitude_spectrogram(ex.y, grid=grid)
    frame_times = grid.frame_times(S.shape[1])
    freqs = grid.bin_frequencies()

    banks = filters(spec)
    bank = pick_bases_bank(banks, args.bases_layer)
    bases = bank_bases(bank, freqs) if bank is not None else None

    A, sps, act_name = _capture_activations(spec, ex.y, layer=args.layer, bank=bank)
    A, kept = _top_variance(A, MAX_UNITS)
    act_times = np.arange(A.shape[1]) * sps if sps else None
    tgt_times = frame_times if sps else None
    if args.components is not None and args.components < 1:
        raise AnalysisError(f"--components must be positive, given {args.components}")

    # default rank: as many components as bases, capped at 32 — a rank close to the number of bins
    # factorises anything (the bases become single bins) and says nothing about the model
    k = args.components or min(bases.shape[0] if bases is not None else A.shape[0], DEFAULT_MAX_COMPONENTS)
    cmp = NMFComparison(k,
                        beta_loss=args.beta, max_iter=args.max_iter, threshold=args.threshold)
    same_units = bases is not None and A.shape[0] == bases.shape[0] and args.layer is None
    cmp.fit(S, bases=bases, activations=A, activation_times=act_times, frame_times=tgt_times)
    cmp.frame_times_ = frame_times
    like = nmf_likeness(A, S, times=act_times, frame_times=tgt_times, beta_loss=args.beta, nmf_reference=False)
    like_d = like.to_dict()
    like_d["nmf_rel_error"] = round(cmp.nmf_rel_error_, 4)
    like_d["nmf_rank"] = int(cmp.W_.shape[1])

    out = {"model": spec.name, "audio": ex.name, "duration_s": round(ex.duration, 3),
           "grid": {"sample_rate": grid.sample_rate, "n_fft": grid.n_fft, "hop_length": grid.hop_length},
           "bases_layer": None if bank is None else bank.name, "n_bases": None if bases is None else int(bases.shape[0]),
           "activations_layer": act_name, "n_units": int(A.shape[0]),
           "units_kept": None if kept is None else f"{len(kept)} highest-variance units",
           "nmf": cmp.to_dict(), "nmf_likeness": like_d}
    if not same_units and "activations" in out["nmf"]:
        out["nmf"]["activations"].pop("mean_corr_along_basis_matching", None)
    if args.out:
        out["figures"] = _write_figures(cmp, freqs, Path(args.out), png=args.png, stem=_stem(spec.name))
    return out


def _stem(name) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)) or "model"


def _write_figures(cmp, freqs, out: Path, *, png: bool, stem: str) -> list[str]:
    from ..figures import nmf as fn
    from .filters import _write_png

    out.mkdir(parents=True, exist_ok=True)
    figs = {}
    if hasattr(cmp, "cosine_"):
        figs["bases"] = fn.bases_side_by_side(cmp, freqs)
        figs["bases_matching"] = fn.nmf_matching_matrix(cmp, kind="bases")
    if hasattr(cmp, "act_corr_"):
        figs["activations"] = fn.activations_vs_h(cmp)
        figs["activations_matching"] = fn.nmf_matching_matrix(cmp, kind="activations")
    written = []
    for key, fig in figs.items():
        path = out / f"nmf_{stem}_{key}"
        fig.write_html(str(path) + ".html", include_plotlyjs="directory")
        written.append(str(path) + ".html")
        if png:
            written.append(_write_png(fig, str(path) + ".png"))
    return written
