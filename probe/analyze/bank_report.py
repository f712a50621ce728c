"""One filter bank described in filterbank terms: responses, scale fit, reference matches, as numbers.

:func:`describe_bank` runs the analyzers of :mod:`probe.analyze.filters` on one
:class:`~probe.FilterBank` and returns both a JSON-able summary and the fitted objects the
figures draw; :func:`best_reference` names the reference bank the learned one matches best;
:func:`select_banks` keeps the banks a user named.
"""

from __future__ import annotations

import difflib

import numpy as np

from ..errors import LayerNotFoundError

__all__ = ["describe_bank", "best_reference", "select_banks"]


def select_banks(banks: dict, layers) -> dict:
    """Keep the banks named in ``layers`` (all when empty); unknown names raise with suggestions.

    Raises
    ------
    LayerNotFoundError
        A name that is not a filter layer (the message lists close matches).
    """
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


def best_reference(refs: dict) -> str | None:
    """The reference bank (key of ``refs``) with the highest mean matched cosine; ``None`` for no references.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> best_reference({"mel": NS(mean_cosine_=0.8), "cqt": NS(mean_cosine_=0.6)})
    'mel'
    """
    if not refs:
        return None
    return max(refs, key=lambda r: refs[r].mean_cosine_)


def describe_bank(bank, *, n_fft=None, span: str = "full", threshold: float = 0.5) -> tuple[dict, dict]:
    """One bank → ``(summary, objects)``.

    Parameters
    ----------
    bank : FilterBank
    n_fft : int, optional
        FFT size for waveform kernels (default: ≥ 2048 and ≥ 8× the kernel).
    span : {"full", "bank"}
        Reference banks over 0 Hz – Nyquist, or over the learned centres' range.
    threshold : float
        Matched cosine below which a learned filter counts as unmatched.

    Returns
    -------
    summary : dict
        JSON-able: name, size, centres, bandwidths, Q, scale fit (R² per scale), best scale,
        filters per octave, reference match (mean matched cosine per reference bank), or a
        ``note`` when the bank has no absolute frequency axis / too few live filters.
    objects : dict
        ``responses`` (FilterResponses) and, with ≥ 3 centre frequencies, ``fit`` (ScaleFit)
        and ``refs`` ({"mel", "gammatone", "cqt"} → ReferenceMatch).
    """
    from .filters import compare_references, filter_responses, scale_fit

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
            "best_reference": best_reference(refs),
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
