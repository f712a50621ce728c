"""How NMF-like a model is, measured against an NMF of the clip's spectrogram: the NMF pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnalysisError
from ._base import Result, jsonable, locked

__all__ = ["NMFOptions", "NMFAnalysis", "analyse_nmf", "MAX_UNITS", "DEFAULT_MAX_COMPONENTS"]

#: most activation units analysed; above it the highest-variance units are kept
MAX_UNITS = 512
#: cap of the default NMF rank
DEFAULT_MAX_COMPONENTS = 32


@dataclass(frozen=True)
class NMFOptions:
    """Options of :func:`analyse_nmf` (the only place their defaults live).

    Attributes
    ----------
    components : int, optional
        NMF rank K. Default: as many as the model has bases, at most
        :data:`DEFAULT_MAX_COMPONENTS` — a rank close to the number of bins factorises
        anything (the bases become single bins) and says nothing about the model.
    beta : {"frobenius", "kl", "is"}
        NMF loss.
    layer : str, optional
        Layer whose output is the activations (default: the bases layer's latent).
    bases_layer : str, optional
        Filter layer giving the spectral bases (default: the synthesis bank, else the first
        spectral bank).
    max_iter : int
    threshold : float
        Matched cosine below which a basis counts as unmatched.
    """

    components: int | None = None
    beta: str = "frobenius"
    layer: str | None = None
    bases_layer: str | None = None
    max_iter: int = 400
    threshold: float = 0.5

    def __post_init__(self):
        if self.components is not None and int(self.components) < 1:
            raise AnalysisError(f"components must be positive, given {self.components}")


@dataclass
class NMFAnalysis(Result):
    """The fitted :class:`~probe.analyze.nmf.NMFComparison` with what it compared.

    Attributes
    ----------
    comparison : NMFComparison
        Fitted; ``W_``, ``H_``, ``cosine_`` (bases), ``act_corr_`` (activations).
    likeness : dict
        :func:`~probe.analyze.nmf.nmf_likeness` of the activations, with the NMF's relative
        error and rank.
    freqs : np.ndarray [shape=(F,)]
    bases_layer, activations_layer : str or None
    n_bases, n_units : int or None
    units_kept : str or None
    activation_time : dict or None
        ``seconds_per_step`` and ``time_offset`` of the activations: column ``k`` is at
        ``time_offset + k * seconds_per_step`` s (``None`` values when the step is unknown).
    """

    model: str
    audio: str
    duration: float
    grid: dict
    comparison: object
    likeness: dict
    freqs: np.ndarray
    bases_layer: str | None
    n_bases: int | None
    activations_layer: str
    n_units: int
    units_kept: str | None
    same_units: bool
    activation_time: dict | None = None

    def to_json(self) -> dict:
        nmf = self.comparison.to_dict()
        if not self.same_units and "activations" in nmf:
            nmf["activations"].pop("mean_corr_along_basis_matching", None)
        return jsonable({"model": self.model, "audio": self.audio, "duration_s": round(self.duration, 3),
                         "grid": self.grid, "bases_layer": self.bases_layer, "n_bases": self.n_bases,
                         "activations_layer": self.activations_layer, "n_units": self.n_units,
                         "units_kept": self.units_kept, "activation_time": self.activation_time, "nmf": nmf, "nmf_likeness": self.likeness,
                         "warnings": list(self.warnings)})


def analyse_nmf(spec, example, options: NMFOptions = NMFOptions(), *, lock=None) -> NMFAnalysis:
    """Fit NMF to the clip's magnitude spectrogram and compare its W and H with the model's bases and activations.

    Parameters
    ----------
    spec : ModelSpec
    example : AudioExample
        At ``spec.sample_rate``.
    options : NMFOptions
    lock : context manager, optional
        Held while the model runs (filter discovery and capture).

    Returns
    -------
    NMFAnalysis

    Raises
    ------
    AnalysisError
        No spectral bank to take bases from and no ``layer`` named.
    LayerNotFoundError
        Unknown ``layer`` / ``bases_layer``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> from probe.audio import AudioExample
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 64, stride=32), torch.nn.ReLU())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000, 256, 64), input_layout="bcn")
    >>> y = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
    >>> res = analyse_nmf(spec, AudioExample(y=y, sr=8000, name="noise"), NMFOptions(max_iter=50))
    >>> res.bases_layer, res.n_bases, res.comparison.W_.shape[1]
    ('0', 8, 8)
    """
    from ..analyze.model_nmf import capture_activations, pick_bases_bank, top_variance
    from ..analyze.nmf import NMFComparison, bank_bases, magnitude_spectrogram, nmf_likeness
    from ..filterbank import filters

    o = options
    grid = spec.grid
    y = example.y if hasattr(example, "y") else np.asarray(example, np.float32)
    S = magnitude_spectrogram(y, grid=grid)
    frame_times = grid.frame_times(S.shape[1])
    freqs = grid.bin_frequencies()
    with locked(lock):
        banks = filters(spec)
        bank = pick_bases_bank(banks, o.bases_layer)
        A, sps, act_offset, act_name = capture_activations(spec, y, layer=o.layer, bank=bank)
    bases = bank_bases(bank, freqs) if bank is not None else None
    A, kept = top_variance(A, MAX_UNITS)
    act_times = act_offset + np.arange(A.shape[1]) * sps if sps else None  # Record.times(): offset + k·step
    tgt_times = frame_times if sps else None
    k = o.components or min(bases.shape[0] if bases is not None else A.shape[0], DEFAULT_MAX_COMPONENTS)
    cmp = NMFComparison(int(k), beta_loss=o.beta, max_iter=o.max_iter, threshold=o.threshold)
    cmp.fit(S, bases=bases, activations=A, activation_times=act_times, frame_times=tgt_times)
    cmp.frame_times_ = frame_times
    like = nmf_likeness(A, S, times=act_times, frame_times=tgt_times, beta_loss=o.beta, nmf_reference=False).to_dict()
    like["nmf_rel_error"] = round(cmp.nmf_rel_error_, 4)
    like["nmf_rank"] = int(cmp.W_.shape[1])
    warnings = []
    if bank is None:
        warnings.append("the model has no spectral filter bank: activations compared with H only")
    return NMFAnalysis(
        model=spec.name, audio=getattr(example, "name", "clip"), duration=len(y) / grid.sample_rate,
        grid={"sample_rate": grid.sample_rate, "n_fft": grid.n_fft, "hop_length": grid.hop_length}, comparison=cmp,
        likeness=like, freqs=freqs, bases_layer=None if bank is None else bank.name,
        n_bases=None if bases is None else int(bases.shape[0]), activations_layer=act_name, n_units=int(A.shape[0]),
        units_kept=None if kept is None else f"{len(kept)} highest-variance units",
        same_units=bases is not None and A.shape[0] == bases.shape[0] and o.layer is None, warnings=warnings,
        activation_time={"seconds_per_step": sps, "time_offset": act_offset if sps else None})
