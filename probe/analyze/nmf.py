"""Relate a model's spectral bases and activations to a non-negative matrix factorisation.

NMF explains a magnitude spectrogram ``V (F, T)`` as ``W (F, K) @ H (K, T)``: ``K`` spectral
bases switched on and off over time. Many audio networks are NMF in disguise — a decoder
whose synthesis filters are spectral templates, an unfolded-NMF layer, an autoencoder whose
latent is a non-negative "spectrogram". This module asks how far that goes:

* :class:`NMFComparison` fits :class:`sklearn.decomposition.NMF` (Frobenius,
  Kullback–Leibler or Itakura–Saito loss) on the magnitude spectrogram of given audio and
  compares (a) the model's spectral bases with NMF's ``W`` — cosine matrix plus optimal
  one-to-one matching — and (b) the model's activations over time with NMF's ``H`` —
  Pearson correlation of matched pairs after resampling to the STFT frame rate.
* :func:`nmf_likeness` measures how NMF-like a layer's activations ``A (K, T)`` are: share of
  non-negative values, Hoyer sparsity, and the relative error of the best non-negative
  linear reconstruction ``V ≈ W A`` with ``W ≥ 0`` (row-wise NNLS).
* :func:`bank_bases` / :func:`decoder_bases` read spectral bases off a model: magnitude
  responses of waveform filters interpolated to the STFT bins, frequency-axis synthesis
  banks (``Linear`` to bins), or the spectra a nonlinear decoder produces for each latent unit.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> W = np.abs(rng.standard_normal((64, 3))) ** 4; H = np.abs(rng.standard_normal((3, 200))) ** 4
>>> cmp = NMFComparison(n_components=3).fit(W @ H, bases=W.T[[2, 0, 1]])
>>> cmp.assignment_.tolist(), cmp.mean_cosine_ > 0.95
([2, 0, 1], True)
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import AnalysisError
from .filters import cosine_matrix, frequency_response, match_bases

__all__ = ["BETA_LOSSES", "NMFComparison", "compare_nmf", "fit_nmf", "magnitude_spectrogram", "bank_bases",
           "decoder_bases", "resample_activations", "correlation_matrix", "hoyer_sparsity", "nmf_likeness",
           "NMFLikeness"]

#: accepted names of NMF losses → sklearn's ``beta_loss``
BETA_LOSSES = {"frobenius": "frobenius", "fro": "frobenius", "kl": "kullback-leibler",
               "kullback-leibler": "kullback-leibler", "is": "itakura-saito", "itakura-saito": "itakura-saito"}


# ---- inputs -------------------------------------------------------------------------------
def magnitude_spectrogram(y=None, *, S=None, grid=None) -> np.ndarray:
    """Waveform or spectrogram in, non-negative magnitude spectrogram ``(F, T)`` out.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], optional
        Audio at ``grid.sample_rate``; its ``|STFT|`` on ``grid`` is returned.
    S : np.ndarray [shape=(F, T)], optional
        A magnitude spectrogram, returned as float64 after checks.
    grid : TFGrid
        Needed with ``y``.
    """
    if (y is None) == (S is None):
        raise AnalysisError("give exactly one of y (audio, with grid) or S (magnitude spectrogram)")
    if y is not None:
        if grid is None:
            raise AnalysisError("a waveform needs a TFGrid to become a spectrogram: pass grid=")
        from ..audio import validate_audio

        y = validate_audio(np.asarray(y) if not hasattr(y, "detach") else y, sr=grid.sample_rate)
        S = grid.magnitude(y).numpy()
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or min(S.shape) < 2:
        raise AnalysisError(f"a spectrogram must be (F, T) with F, T >= 2, given shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise AnalysisError("the spectrogram holds NaN or Inf")
    if (S < 0).any():
        raise AnalysisError(f"NMF needs a non-negative spectrogram; min value {S.min():.3g} (pass |STFT|, not a log)")
    return S


def _one_thread():
    """Run BLAS single-threaded: on spectrogram-sized problems (10²–10³ rows) NMF's many small
    products gain nothing from threads and, on a shared machine, lose up to 50× to oversubscription."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _beta(beta_loss: str) -> str:
    key = str(beta_loss).lower()
    if key not in BETA_LOSSES:
        raise AnalysisError(f"unknown NMF loss {beta_loss!r}; known: frobenius, kl, is (or their sklearn names)")
    return BETA_LOSSES[key]


def fit_nmf(S, n_components: int, *, beta_loss: str = "frobenius", max_iter: int = 500, tol: float = 1e-4,
            random_state: int = 0, init: str | None = None, eps: float | None = None):
    """NMF of a magnitude spectrogram with :class:`sklearn.decomposition.NMF`.

    Parameters
    ----------
    S : np.ndarray [shape=(F, T)]  non-negative
    n_components : int
    beta_loss : {"frobenius", "kl", "is"}
        ``kl`` and ``is`` use the multiplicative-update solver (sklearn's coordinate descent
        only does Frobenius). Itakura–Saito diverges on zeros and is scale invariant (a
        near-silent cell weighs as much as a loud one), so ``eps`` (default ``1e-3 · max S``,
        a −60 dB floor) is added to the data for it.
    init : str, optional
        Default ``"nndsvda"`` (``"nndsvdar"`` for Itakura–Saito, which the flat fill of
        ``nndsvda`` sends to a poor local optimum): deterministic, and (unlike ``"nndsvd"``)
        leaves no exact zeros that multiplicative updates could never move.

    Returns
    -------
    W : np.ndarray [shape=(F, K)]  bases with unit L2 norm per column
    H : np.ndarray [shape=(K, T)]  activations (scaled so ``W @ H`` is unchanged)
    rel_err : float
        ``||S - W H||_F / ||S||_F`` (for Itakura–Saito, which tolerates overshoot in quiet
        cells, this Euclidean error can exceed 1 even when the bases are right).
    """
    from sklearn.decomposition import NMF

    S = np.asarray(S, dtype=float)
    k = int(n_components)
    if k < 1 or k > min(S.shape):
        raise AnalysisError(f"n_components must lie in [1, min(F, T) = {min(S.shape)}], given {n_components}")
    beta = _beta(beta_loss)
    X = S
    if beta == "itakura-saito":
        X = S + (eps if eps is not None else 1e-3 * max(float(S.max()), 1e-12))
    elif not (S > 0).any():
        raise AnalysisError("the spectrogram is all zeros; there is nothing to factorise")
    model = NMF(n_components=k, beta_loss=beta, solver="cd" if beta == "frobenius" else "mu", init=init or ("nndsvdar" if beta == "itakura-saito" else "nndsvda"),
                max_iter=int(max_iter), tol=tol, random_state=random_state)
    with warnings.catch_warnings(), _one_thread():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the iteration cap is a budget, not an error
        W = model.fit_transform(X)
    H = model.components_
    norms = np.linalg.norm(W, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    W, H = W / norms, H * norms[:, None]
    rel = float(np.linalg.norm(X - W @ H) / max(np.linalg.norm(X), 1e-30))
    return W, H, rel


# ---- bases from a model ----------------------------------------------------------------------
def bank_bases(bank, freqs_hz, *, sign: str = "abs", n_fft: int | None = None) -> np.ndarray:
    """Spectral bases of a :class:`~probe.filterbank.FilterBank` on the STFT bins ``freqs_hz``.

    * ``axis="samples"`` (a waveform encoder or a ConvTranspose1d decoder): the magnitude of
      each kernel's zero-padded rFFT, linearly interpolated to ``freqs_hz``.
    * ``axis="frequency"`` (a ``Linear`` from latents to bins, unfolded-NMF bases, an encoder's
      weights over bins): each profile, made non-negative by ``sign`` (``"abs"`` or
      ``"positive"``) and interpolated from the bank's ``freqs_hz`` onto ``freqs_hz``.

    Returns
    -------
    np.ndarray [shape=(n_filters, len(freqs_hz))]
    """
    f = np.asarray(freqs_hz, dtype=float)
    if sign not in ("abs", "positive"):
        raise AnalysisError(f"sign must be 'abs' or 'positive', given {sign!r}")
    if bank.axis == "samples":
        fb, mag = frequency_response(bank.weights, bank.sample_rate, n_fft=n_fft)
    elif bank.axis == "frequency":
        prof = np.asarray(bank.weights, dtype=float)
        if prof.ndim == 3:
            prof = prof.sum(-1)
        mag = np.abs(prof) if sign == "abs" else np.maximum(prof, 0.0)
        if bank.freqs_hz is None or len(bank.freqs_hz) != mag.shape[1]:
            raise AnalysisError(f"bank {bank.name!r} has no frequency grid matching its {mag.shape[1]} bins")
        fb = np.asarray(bank.freqs_hz, dtype=float)
    else:
        raise AnalysisError(f"bank {bank.name!r} holds spectro-temporal patches; NMF bases need a filter over Hz "
                            "(a waveform kernel or a frequency-axis profile)")
    if fb.shape == f.shape and np.allclose(fb, f):
        return mag
    return np.stack([np.interp(f, fb, m) for m in mag])


def decoder_bases(decoder, n_latent: int, *, scale: float = 1.0, baseline=None) -> np.ndarray:
    """Spectra a (possibly nonlinear) decoder makes for each latent unit alone.

    Decodes ``scale · e_k`` for every unit vector ``e_k`` and subtracts the decoding of
    ``baseline`` (default zeros): the latent-to-spectrum map of unit ``k``.

    Parameters
    ----------
    decoder : callable
        Maps a ``(B, n_latent)`` float tensor (torch) or array to ``(B, F)`` spectra.
    n_latent : int

    Returns
    -------
    np.ndarray [shape=(n_latent, F)]
    """
    import torch

    Z = torch.eye(int(n_latent)) * float(scale)
    z0 = torch.zeros(1, int(n_latent)) if baseline is None else torch.as_tensor(baseline, dtype=torch.float32).reshape(1, -1)
    with torch.no_grad():
        out = decoder(torch.cat([z0, z0 + Z]))
    out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    out = np.asarray(out, dtype=float).reshape(int(n_latent) + 1, -1)
    return out[1:] - out[:1]


# ---- activations ------------------------------------------------------------------------------
def resample_activations(A, n_frames: int, *, times=None, target_times=None, antialias: bool = True) -> np.ndarray:
    """Resample activations ``A (K, T_a)`` onto ``n_frames`` frames.

    With ``times`` (seconds of each column of ``A``) and ``target_times`` (seconds of each
    target frame) the resampling is by time; otherwise both are assumed to span the same
    clip uniformly. Values beyond either end are held.

    When ``A`` is denser than the target (a waveform encoder's 1 ms steps against 8 ms STFT
    hops) and ``antialias`` is set, each row is first averaged over one target step (a
    moving average), so the result is the activity *during* each frame rather than a point
    sample of a signal that may still oscillate at its filter's carrier.
    """
    A = np.asarray(A, dtype=float)
    if A.ndim != 2:
        raise AnalysisError(f"activations must be (K, T), given shape {A.shape}")
    n = int(n_frames)
    if times is None or target_times is None:
        if A.shape[1] == n:
            return A.copy()
        src = (np.arange(A.shape[1]) + 0.5) / A.shape[1]
        dst = (np.arange(n) + 0.5) / n
    else:
        src, dst = np.asarray(times, dtype=float), np.asarray(target_times, dtype=float)
        if src.shape != (A.shape[1],) or dst.shape != (n,):
            raise AnalysisError(f"times must have one entry per column: given {src.shape} for A {A.shape}, "
                                f"{dst.shape} for {n} target frames")
    if A.shape[1] == 1:
        return np.repeat(A, n, axis=1)
    if antialias and n >= 2 and A.shape[1] >= 2:
        ratio = (np.median(np.diff(dst)) / np.median(np.diff(src))) if np.all(np.diff(src) > 0) else 1.0
        w = int(round(ratio))
        if w >= 2:
            from scipy.ndimage import uniform_filter1d

            A = uniform_filter1d(A, size=w, axis=1, mode="nearest")
    return np.stack([np.interp(dst, src, a) for a in A])


def correlation_matrix(A, B) -> np.ndarray:
    """Pearson correlation of the rows of ``A`` (n, T) with the rows of ``B`` (m, T); constant rows give 0."""
    A = np.asarray(A, dtype=float)
    B = np.asarray(B, dtype=float)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise AnalysisError(f"correlation needs (n, T) and (m, T) with the same T, given {A.shape} and {B.shape}")
    return cosine_matrix(A - A.mean(1, keepdims=True), B - B.mean(1, keepdims=True))


def hoyer_sparsity(x, axis=None):
    """Hoyer (2004) sparsity ``(√n − ||x||₁/||x||₂) / (√n − 1)``: 0 for a flat vector, 1 for a single spike.

    ``axis=None`` treats the whole array as one vector; an int gives one value per slice.
    All-zero slices give NaN.
    """
    x = np.abs(np.asarray(x, dtype=float))
    n = x.size if axis is None else x.shape[axis]
    if n < 2:
        raise AnalysisError(f"Hoyer sparsity needs at least 2 values, given {n}")
    l1 = x.sum(axis=axis)
    l2 = np.sqrt((x ** 2).sum(axis=axis))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.sqrt(n) - l1 / l2) / (np.sqrt(n) - 1)


def _nonneg_lstsq_rows(V, A):
    """``min_{W ≥ 0} ||V - W A||_F`` row by row with NNLS; ``V (F, T)``, ``A (K, T)`` → ``W (F, K)``.

    The rows are independent problems sharing the design matrix ``Aᵀ``. (Reducing them to
    ``K`` equations through the Cholesky factor of ``A Aᵀ`` was tried and is slower: the
    active-set solver needs more iterations on the worse-conditioned reduced matrix.)
    """
    from scipy.optimize import nnls

    M = np.ascontiguousarray(A.T)
    W = np.empty((V.shape[0], A.shape[0]))
    for f in range(V.shape[0]):
        W[f], _ = nnls(M, V[f], maxiter=50 * max(A.shape[0], 10))
    return W


class NMFLikeness:
    """How NMF-like a layer's activations are.

    Parameters
    ----------
    nonneg_tol : float
        Values ≥ ``-nonneg_tol · max|A|`` count as non-negative (float noise around a ReLU).
    max_frames : int
        Frames used for the reconstruction (evenly subsampled), which bounds the NNLS cost.

    Attributes
    ----------
    nonneg_share_ : float  share of non-negative activation values
    hoyer_ : float  Hoyer sparsity of the whole activation matrix
    hoyer_frames_ : float  mean Hoyer sparsity across units, frame by frame (how few units are on at a time)
    rel_error_ : float  ``||V − W A||_F / ||V||_F`` with the best ``W ≥ 0`` (A resampled to V's frames)
    W_ : np.ndarray [shape=(F, K)]  that best non-negative decoder
    nmf_rel_error_ : float or None  error of a rank-``K`` NMF of ``V`` (what an actual NMF reaches), when computed
    """

    def __init__(self, *, nonneg_tol: float = 1e-6, max_frames: int = 2000, nmf_reference: bool = True,
                 beta_loss: str = "frobenius", random_state: int = 0):
        self.nonneg_tol = nonneg_tol
        self.max_frames = max_frames
        self.nmf_reference = nmf_reference
        self.beta_loss = beta_loss
        self.random_state = random_state

    def fit(self, activations, S, *, times=None, frame_times=None) -> "NMFLikeness":
        A = np.asarray(activations, dtype=float)
        if A.ndim != 2 or A.shape[1] < 2:
            raise AnalysisError(f"activations must be (K, T) with T >= 2, given shape {A.shape}")
        if not np.all(np.isfinite(A)):
            raise AnalysisError("the activations hold NaN or Inf")
        V = magnitude_spectrogram(S=S)
        amax = float(np.abs(A).max()) if A.size else 0.0
        self.nonneg_share_ = float((A >= -self.nonneg_tol * amax).mean())
        self.hoyer_ = float(hoyer_sparsity(A))
        per_frame = hoyer_sparsity(A, axis=0) if A.shape[0] >= 2 else np.full(A.shape[1], np.nan)
        self.hoyer_frames_ = float(np.nanmean(per_frame)) if np.isfinite(per_frame).any() else float("nan")
        Ar = resample_activations(A, V.shape[1], times=times, target_times=frame_times)
        if V.shape[1] > self.max_frames:
            keep = np.linspace(0, V.shape[1] - 1, self.max_frames).round().astype(int)
            V, Ar = V[:, keep], Ar[:, keep]
        with _one_thread():
            self.W_ = _nonneg_lstsq_rows(V, Ar)
        self.rel_error_ = float(np.linalg.norm(V - self.W_ @ Ar) / max(np.linalg.norm(V), 1e-30))
        self.nmf_rel_error_ = None
        if self.nmf_reference:
            k = min(A.shape[0], *V.shape)
            self.nmf_rel_error_ = fit_nmf(V, k, beta_loss=self.beta_loss, random_state=self.random_state, max_iter=300)[2]
        return self

    def to_dict(self) -> dict:
        return {"nonneg_share": round(self.nonneg_share_, 4), "hoyer": round(self.hoyer_, 4),
                "hoyer_frames": None if not np.isfinite(self.hoyer_frames_) else round(self.hoyer_frames_, 4),
                "rel_error": round(self.rel_error_, 4),
                "nmf_rel_error": None if self.nmf_rel_error_ is None else round(self.nmf_rel_error_, 4)}


def nmf_likeness(activations, S, **kwargs) -> NMFLikeness:
    """Function twin of :class:`NMFLikeness`; ``times``/``frame_times`` go to ``fit``."""
    fit_kw = {k: kwargs.pop(k) for k in ("times", "frame_times") if k in kwargs}
    return NMFLikeness(**kwargs).fit(activations, S, **fit_kw)


# ---- the comparison ---------------------------------------------------------------------------
class NMFComparison:
    """Fit NMF on a magnitude spectrogram and relate a model's bases and activations to it.

    Parameters
    ----------
    n_components : int, optional
        NMF rank ``K``; default: the number of model bases (or activation rows), else 8.
    beta_loss : {"frobenius", "kl", "is"}
    max_iter, tol, random_state : NMF solver settings (see :func:`fit_nmf`).
    threshold : float
        Matched pairs with cosine below this count as unmatched.

    Attributes
    ----------
    W_ : np.ndarray [shape=(F, K)]  NMF bases (unit L2 norm)
    H_ : np.ndarray [shape=(K, T)]  NMF activations
    nmf_rel_error_ : float
    cosine_ : np.ndarray [shape=(n_bases, K)]  cosine of model bases with NMF bases (if ``bases`` given)
    assignment_ : np.ndarray [shape=(n_bases,)]  NMF component matched to each model basis (−1: none)
    matched_cosine_, mean_cosine_, unmatched_ : per-basis matched cosines, their mean, indices below threshold
    act_corr_ : np.ndarray [shape=(n_act, K)]  Pearson correlation of model activations with ``H_`` rows
        (activations resampled to the spectrogram's frames)
    act_assignment_, act_matched_corr_, mean_act_corr_ : optimal one-to-one matching on ``act_corr_``
    pair_corr_, mean_pair_corr_ : correlation along the *basis* matching (activation ``k`` vs
        ``H_[assignment_[k]]``), when bases and activations are both given and have the same count

    Examples
    --------
    See the module docstring.
    """

    def __init__(self, n_components: int | None = None, *, beta_loss: str = "frobenius", max_iter: int = 500,
                 tol: float = 1e-4, random_state: int = 0, threshold: float = 0.5):
        self.n_components = n_components
        self.beta_loss = beta_loss
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.threshold = threshold

    def fit(self, S=None, *, y=None, grid=None, bases=None, activations=None, activation_times=None,
            frame_times=None) -> "NMFComparison":
        """Factorise and compare.

        Parameters
        ----------
        S : np.ndarray [shape=(F, T)], optional
            Magnitude spectrogram; or give ``y`` and ``grid``.
        bases : np.ndarray [shape=(n_bases, F)], optional
            Model bases on the same F bins (see :func:`bank_bases`, :func:`decoder_bases`).
        activations : np.ndarray [shape=(n_act, T_a)], optional
            Model activations over time (a captured layer, channels × frames).
        activation_times, frame_times : np.ndarray, optional
            Seconds of the activation columns and of the spectrogram frames (else both are
            taken to span the clip uniformly).
        """
        V = magnitude_spectrogram(y, S=S, grid=grid) if y is not None else magnitude_spectrogram(S=S)
        if frame_times is None and grid is not None:
            frame_times = grid.frame_times(V.shape[1])
        B = None if bases is None else np.asarray(bases, dtype=float)
        if B is not None and (B.ndim != 2 or B.shape[1] != V.shape[0]):
            raise AnalysisError(f"bases must be (n_bases, F={V.shape[0]}) on the spectrogram's bins, given shape {B.shape}")
        A = None if activations is None else np.asarray(activations, dtype=float)
        if A is not None and (A.ndim != 2 or A.shape[1] < 2):
            raise AnalysisError(f"activations must be (n_units, T) with T >= 2, given shape {A.shape}")
        k = self.n_components or (B.shape[0] if B is not None else A.shape[0] if A is not None else 8)
        k = int(min(k, *V.shape))
        self.W_, self.H_, self.nmf_rel_error_ = fit_nmf(V, k, beta_loss=self.beta_loss, max_iter=self.max_iter,
                                                        tol=self.tol, random_state=self.random_state)
        self.spectrogram_ = V
        self.frame_times_ = None if frame_times is None else np.asarray(frame_times, dtype=float)
        if B is not None:
            self.bases_ = B
            self.cosine_ = cosine_matrix(B, self.W_.T)
            self.assignment_, self.matched_cosine_ = match_bases(self.cosine_)
            self.mean_cosine_ = float(np.nanmean(self.matched_cosine_))
            self.unmatched_ = np.nonzero(~(self.matched_cosine_ >= self.threshold))[0]
        if A is not None:
            Ar = resample_activations(A, V.shape[1], times=activation_times, target_times=frame_times)
            self.activations_ = Ar
            self.act_corr_ = correlation_matrix(Ar, self.H_)
            self.act_assignment_, self.act_matched_corr_ = match_bases(self.act_corr_)
            self.mean_act_corr_ = float(np.nanmean(self.act_matched_corr_))
            if B is not None and A.shape[0] == B.shape[0]:
                pc = np.full(A.shape[0], np.nan)
                ok = self.assignment_ >= 0
                pc[ok] = self.act_corr_[np.nonzero(ok)[0], self.assignment_[ok]]
                self.pair_corr_ = pc
                self.mean_pair_corr_ = float(np.nanmean(pc))
        return self

    def to_dict(self) -> dict:
        out = {"n_components": int(self.W_.shape[1]), "beta_loss": _beta(self.beta_loss),
               "nmf_rel_error": round(self.nmf_rel_error_, 4)}
        if hasattr(self, "cosine_"):
            out["bases"] = {"mean_matched_cosine": round(self.mean_cosine_, 4),
                            "permutation": [int(i) for i in self.assignment_],
                            "matched_cosine": [None if not np.isfinite(c) else round(float(c), 4) for c in self.matched_cosine_],
                            "n_unmatched": int(self.unmatched_.size), "threshold": self.threshold}
        if hasattr(self, "act_corr_"):
            out["activations"] = {"mean_matched_corr": round(self.mean_act_corr_, 4),
                                  "permutation": [int(i) for i in self.act_assignment_],
                                  "matched_corr": [None if not np.isfinite(c) else round(float(c), 4) for c in self.act_matched_corr_]}
            if hasattr(self, "pair_corr_"):
                out["activations"]["mean_corr_along_basis_matching"] = round(self.mean_pair_corr_, 4)
        return out


def compare_nmf(S=None, **kwargs) -> NMFComparison:
    """Function twin of :class:`NMFComparison`: estimator keywords and ``fit`` keywords in one call."""
    fit_keys = ("y", "grid", "bases", "activations", "activation_times", "frame_times")
    fit_kw = {k: kwargs.pop(k) for k in fit_keys if k in kwargs}
    return NMFComparison(**kwargs).fit(S, **fit_kw)
