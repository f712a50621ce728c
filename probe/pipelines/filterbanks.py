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
    axis : {"samples", "bins"}, optional
        Force the named ``layers`` in, reading their kernels along waveform samples or the
        spec's frequency bins, even when the discovery does not call them banks.
    sample_rate : float, optional
        Rate (Hz) of a forced ``samples`` layer's taps (default: the rate its input runs at).
    """

    layers: tuple | None = None
    n_fft: int | None = None
    span: str = "full"
    threshold: float = 0.5
    axis: str | None = None
    sample_rate: float | None = None

    def __post_init__(self):
        from ..errors import SpecError

        if self.axis is not None and self.axis not in ("samples", "bins"):
            raise SpecError(f"axis must be 'samples' or 'bins', given {self.axis!r}")
        if self.axis is not None and not self.layers:
            raise SpecError("axis forces named layers in: give the layer too (CLI: --layer NAME --axis ...)")
        if self.sample_rate is not None and not self.sample_rate > 0:
            raise SpecError(f"sample rate must be positive, given {self.sample_rate}")
        if self.sample_rate is not None and self.axis != "samples":
            raise SpecError("a sample rate applies to a layer forced along samples (CLI: --layer NAME --axis samples "
                            "--rate HZ)")


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


def find_banks(spec, *, layers=None, axis: str | None = None, sample_rate: float | None = None, lock=None) -> dict:
    """``{layer: FilterBank}`` of the model (the discovery runs the model, hence the optional lock).

    ``layers`` / ``axis`` / ``sample_rate`` go to :func:`probe.filters`: named layers only, and
    with ``axis`` forced in even when the discovery does not call them banks. A named layer
    that is not a bank (and is not forced) raises :class:`~probe.errors.LayerNotFoundError`
    with the discovery's reason.

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 32, stride=16), torch.nn.ReLU(), torch.nn.Conv1d(8, 4, 3))
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> list(find_banks(spec))
    ['0']
    >>> find_banks(spec, layers=["2"], axis="samples")["2"].sample_rate  # its input runs at 16 kHz / 16
    1000
    """
    from ..analyze.bank_report import select_banks
    from ..errors import LayerNotFoundError
    from ..filterbank import discover, filters

    with locked(lock):
        if layers and axis is not None:
            return filters(spec, layers=list(layers), axis=axis, sample_rate=sample_rate)
        if not layers:
            return filters(spec)
        banks, why = discover(spec)
    modules = {n for n, _ in spec.model.named_modules() if n}
    for name in layers:
        if name not in banks and name in modules:
            raise LayerNotFoundError(f"layer {name!r} is not a filter bank: {why.get(name, 'it holds no kernels')}; "
                                     "force it in with axis='samples' or 'bins' (CLI: --layer NAME --axis samples|bins)")
    return select_banks(banks, layers)  # unknown names: suggestions among the filter layers


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
    >>> spec = ModelSpec(torch.nn.Sequential(torch.nn.Conv1d(1, 16, 64, stride=32)), input_kind="waveform",
    ...                  grid=TFGrid(16000), input_layout="bcn")
    >>> res = analyse_filters(spec)
    >>> list(res.banks), res.banks["0"].summary["n_filters"]
    (['0'], 16)
    """
    from ..analyze.bank_report import select_banks

    if banks is None:
        found = find_banks(spec, layers=options.layers, axis=options.axis, sample_rate=options.sample_rate, lock=lock)
    else:
        found = banks
    if not found:
        raise AnalysisError(f"model {spec.name!r} has no layer whose kernels lie on waveform samples or frequency bins "
                            f"(input kind {spec.input_kind!r})")
    found = select_banks(found, options.layers)
    return FilterAnalysis(model=spec.name, input_kind=spec.input_kind,
                          banks={name: analyse_bank(b, options) for name, b in found.items()})
