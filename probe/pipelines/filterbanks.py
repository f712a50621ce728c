"""Learned filter banks in filterbank terms: the filters pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import AnalysisError
from ._base import Result, jsonable, locked

__all__ = ["FilterOptions", "BankAnalysis", "FilterAnalysis", "analyse_filters", "find_banks"]


@dataclass(frozen=True)
class FilterOptions:
    """Options of :func:`analyse_filters` (the only place their defaults live).

    Attributes
    ----------
    layers : tuple of str, optional
        Filter layers to analyse (default: every one the discovery finds).
    n_fft : int, optional
        FFT size for waveform kernels (default: ≥ 2048 and ≥ 8× the kernel).
    span : {"full", "bank"}
        Reference banks over 0 Hz – Nyquist (a textbook bank), or over the learned centres' range
        (compares shape and spacing only).
    threshold : float
        Matched cosine below which a learned filter counts as unmatched.
    """

    layers: tuple | None = None
    n_fft: int | None = None
    span: str = "full"
    threshold: float = 0.5


@dataclass
class BankAnalysis(Result):
    """One bank: the :class:`~probe.FilterBank`, its ``summary`` (JSON) and the fitted objects for figures."""

    bank: object
    summary: dict
    responses: object
    fit: object = None
    refs: dict | None = None
    best_reference: str | None = None
    note: str | None = None

    def to_json(self) -> dict:
        return jsonable(self.summary)


@dataclass
class FilterAnalysis(Result):
    """Every analysed bank of one model, in discovery order."""

    model: str
    input_kind: str
    banks: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "input_kind": self.input_kind,
                "layers": [b.to_json() for b in self.banks.values()], "warnings": list(self.warnings)}


def find_banks(spec, *, lock=None) -> dict:
    """``{layer: FilterBank}`` of the model (the discovery runs the model, hence the optional lock)."""
    from ..filterbank import filters

    with locked(lock):
        return filters(spec)


def analyse_bank(bank, options: FilterOptions = FilterOptions()) -> BankAnalysis:
    """Responses, scale fit and reference matches of one bank."""
    from ..analyze.bank_report import best_reference, describe_bank

    summary, objs = describe_bank(bank, n_fft=options.n_fft, span=options.span, threshold=options.threshold)
    refs = objs.get("refs")
    return BankAnalysis(bank=bank, summary=summary, responses=objs["responses"], fit=objs.get("fit"), refs=refs,
                        best_reference=best_reference(refs), note=summary.get("note"))


def analyse_filters(spec, options: FilterOptions = FilterOptions(), *, banks: dict | None = None,
                    lock=None) -> FilterAnalysis:
    """Find the model's filter banks and describe each in filterbank terms.

    Parameters
    ----------
    spec : ModelSpec
    options : FilterOptions
    banks : dict, optional
        Banks found earlier by :func:`find_banks` (skips the discovery).
    lock : context manager, optional
        Held while the discovery runs the model.

    Returns
    -------
    FilterAnalysis
        ``banks``: layer → :class:`BankAnalysis`.

    Raises
    ------
    AnalysisError
        The model has no layer whose kernels lie on waveform samples or frequency bins.
    LayerNotFoundError
        A name in ``options.layers`` that is not a filter layer.

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> torch.manual_seed(0) and None
    >>> spec = ModelSpec(torch.nn.Conv1d(1, 16, 64, stride=32), input_kind="waveform", grid=TFGrid(16000),
    ...                  input_layout="bcn")
    >>> res = analyse_filters(spec)
    >>> list(res.banks), res.banks[""].summary["n_filters"]
    ([''], 16)
    """
    from ..analyze.bank_report import select_banks

    found = find_banks(spec, lock=lock) if banks is None else banks
    if not found:
        raise AnalysisError(f"model {spec.name!r} has no layer whose kernels lie on waveform samples or frequency bins "
                            f"(input kind {spec.input_kind!r})")
    found = select_banks(found, options.layers)
    return FilterAnalysis(model=spec.name, input_kind=spec.input_kind,
                          banks={name: analyse_bank(b, options) for name, b in found.items()})
