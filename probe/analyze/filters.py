"""What a learned filterbank is, in filterbank terms: responses, centres, bandwidths, scale, references.

A :class:`~probe.filterbank.FilterBank` (from :func:`probe.filterbank.filters`) holds raw kernels.
This module turns them into the quantities a signal-processing reader asks for first:

* :class:`FilterResponses` — the magnitude response of every filter (a zero-padded rFFT at the
  layer's sample rate for waveform kernels; the profile over ``freqs_hz`` for kernels on
  frequency bins), and per filter its peak frequency, spectral centroid, −3 dB band around
  the peak, centre, bandwidth, Q, peak gain and a band-pass / low-pass / high-pass /
  broadband label. Spectro-temporal (Conv2d) kernels get their T-F patch, dominant
  orientation and modulation peak instead.
* :class:`ScaleFit` — how well the sorted centres follow linear, mel, ERB-rate or log
  spacing (R² of the scale-transformed centres regressed on filter rank), and the number
  of filters per octave.
* :class:`ReferenceMatch` — cosine similarity of the learned magnitude responses with a
  reference bank of the same size and sample rate (mel triangles, gammatones, a
  constant-Q bank) on the same frequency grid, with the optimal one-to-one matching.

Every estimator has a function twin (:func:`filter_responses`, :func:`scale_fit`,
:func:`match_reference`) for one-off use.

Examples
--------
>>> import numpy as np
>>> from scipy.signal import firwin
>>> from probe.filterbank import FilterBank
>>> taps = np.stack([firwin(129, [f - 200, f + 200], fs=16000, pass_zero=False) for f in (500, 1500, 3000)])
>>> fr = filter_responses(FilterBank("enc", taps, "samples", 16000))
>>> np.round(fr.centre_hz_, -1).tolist(), fr.labels_
([500.0, 1500.0, 3000.0], ['band-pass', 'band-pass', 'band-pass'])
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import AnalysisError

__all__ = [
    "SCALES", "REFERENCES", "LABELS",
    "FilterResponses", "filter_responses", "frequency_response",
    "ScaleFit", "scale_fit", "hz_to_scale", "scale_to_hz", "hz_to_erb_rate", "erb_rate_to_hz", "erb_bandwidth",
    "octave_density",
    "ReferenceMatch", "match_reference", "compare_references", "reference_bank", "truncate_responses",
    "cosine_matrix", "match_bases", "patch_orientation",
]

#: frequency scales the centre-frequency fit compares
SCALES = ("linear", "mel", "erb", "log")
#: reference banks :func:`reference_bank` builds
REFERENCES = ("mel", "gammatone", "cqt")
#: per-filter shape labels
LABELS = ("band-pass", "low-pass", "high-pass", "multi-band", "broadband", "dead", "spectrotemporal")


# ---- frequency scales -----------------------------------------------------------------------
def hz_to_erb_rate(hz):
    """Glasberg & Moore (1990) ERB-rate (ERB number): ``21.4 log10(1 + 0.00437 f)``."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(hz, dtype=float))


def erb_rate_to_hz(erb):
    """Inverse of :func:`hz_to_erb_rate`."""
    return (10.0 ** (np.asarray(erb, dtype=float) / 21.4) - 1.0) / 0.00437


def erb_bandwidth(hz):
    """Equivalent rectangular bandwidth in Hz at ``hz``: ``24.7 (4.37 f / 1000 + 1)``."""
    return 24.7 * (4.37e-3 * np.asarray(hz, dtype=float) + 1.0)


def hz_to_scale(hz, scale: str, *, htk: bool = False, log_floor_hz: float = 1.0):
    """Map Hz onto ``scale`` (one of :data:`SCALES`).

    ``mel`` is :func:`librosa.hz_to_mel` (Slaney's mel unless ``htk``), ``erb`` the
    Glasberg–Moore ERB-rate, ``log`` the natural log of Hz clipped at ``log_floor_hz``.
    """
    hz = np.asarray(hz, dtype=float)
    if scale == "linear":
        return hz
    if scale == "mel":
        import librosa

        return np.asarray(librosa.hz_to_mel(hz, htk=htk), dtype=float)
    if scale == "erb":
        return hz_to_erb_rate(hz)
    if scale == "log":
        return np.log(np.maximum(hz, log_floor_hz))
    raise AnalysisError(f"unknown frequency scale {scale!r}; known: {', '.join(SCALES)}")


def scale_to_hz(values, scale: str, *, htk: bool = False):
    """Inverse of :func:`hz_to_scale`."""
    v = np.asarray(values, dtype=float)
    if scale == "linear":
        return v
    if scale == "mel":
        import librosa

        return np.asarray(librosa.mel_to_hz(v, htk=htk), dtype=float)
    if scale == "erb":
        return erb_rate_to_hz(v)
    if scale == "log":
        return np.exp(v)
    raise AnalysisError(f"unknown frequency scale {scale!r}; known: {', '.join(SCALES)}")


# ---- responses --------------------------------------------------------------------------------
def _default_n_fft(n_taps: int, min_n_fft: int, oversample: int) -> int:
    need = max(int(min_n_fft), int(oversample) * int(n_taps), 2)
    return 1 << int(np.ceil(np.log2(need)))


def frequency_response(kernels, sample_rate: float, *, n_fft: int | None = None, min_n_fft: int = 2048,
                       oversample: int = 8):
    """Magnitude responses of FIR kernels by a zero-padded rFFT.

    Parameters
    ----------
    kernels : np.ndarray [shape=(n_filters, n_taps) or (n_filters, in_channels, n_taps)]
        Impulse responses at ``sample_rate``. Several input channels are combined as the
        root sum of squares of their magnitude responses (the energy the filter passes
        from all channels).
    sample_rate : float
    n_fft : int, optional
        FFT size; by default the next power of two ≥ ``max(min_n_fft, oversample * n_taps)``,
        so even a 16-tap kernel is sampled finely enough to place its −3 dB points.

    Returns
    -------
    freqs_hz : np.ndarray [shape=(1 + n_fft // 2,)]
    magnitude : np.ndarray [shape=(n_filters, 1 + n_fft // 2)]
    """
    k = np.asarray(kernels, dtype=float)
    if k.ndim == 2:
        k = k[:, None, :]
    if k.ndim != 3 or k.shape[-1] < 1 or k.shape[0] < 1:
        raise AnalysisError(f"kernels must be (n_filters, n_taps) or (n_filters, in_channels, n_taps), given shape {np.shape(kernels)}")
    n_fft = int(n_fft) if n_fft else _default_n_fft(k.shape[-1], min_n_fft, oversample)
    if n_fft < k.shape[-1]:
        raise AnalysisError(f"n_fft={n_fft} is shorter than the kernels ({k.shape[-1]} taps)")
    H = np.fft.rfft(k, n=n_fft, axis=-1)
    mag = np.sqrt((np.abs(H) ** 2).sum(axis=1))
    return np.fft.rfftfreq(n_fft, 1.0 / float(sample_rate)), mag


def _band(mag_db: np.ndarray, k: int, drop: float):
    """−``drop`` dB crossings either side of index ``k``: (lo_index_float, hi_index_float, has_lo, has_hi)."""
    thr = mag_db[k] - drop
    left = np.nonzero(mag_db[: k + 1] < thr)[0]
    if left.size:
        i = left[-1]
        lo = i + (thr - mag_db[i]) / (mag_db[i + 1] - mag_db[i])
        has_lo = True
    else:
        lo, has_lo = 0.0, False
    right = np.nonzero(mag_db[k:] < thr)[0]
    if right.size:
        j = k + right[0]
        hi = j - 1 + (mag_db[j - 1] - thr) / (mag_db[j - 1] - mag_db[j])
        has_hi = True
    else:
        hi, has_hi = float(len(mag_db) - 1), False
    return lo, hi, has_lo, has_hi


def _parabolic_peak(mag_db: np.ndarray, k: int) -> float:
    """Sub-bin peak position from a parabola through the peak bin and its neighbours (in dB)."""
    if 0 < k < len(mag_db) - 1:
        a, b, c = mag_db[k - 1], mag_db[k], mag_db[k + 1]
        den = a - 2 * b + c
        if den < 0:
            return k + 0.5 * (a - c) / den
    return float(k)


def _secondary_peak(mag_db: np.ndarray, lo: int, hi: int) -> float:
    """Highest interior local maximum of ``mag_db`` outside indices ``lo..hi`` (dB, −inf if none).

    The grid's end points count as maxima when the response rises towards them.
    """
    d = mag_db
    is_max = np.zeros(len(d), dtype=bool)
    if len(d) >= 3:
        is_max[1:-1] = (d[1:-1] >= d[:-2]) & (d[1:-1] > d[2:])
    if len(d) >= 2:
        is_max[0], is_max[-1] = d[0] > d[1], d[-1] > d[-2]
    is_max[max(lo, 0):hi + 1] = False
    return float(d[is_max].max()) if is_max.any() else -np.inf


def patch_orientation(patches):
    """Dominant orientation of spectro-temporal patches from the structure tensor.

    Parameters
    ----------
    patches : np.ndarray [shape=(n, k_f, k_t)]
        Kernels with frequency (bins, low to high) on axis 1 and time (frames) on axis 2.

    Returns
    -------
    orientation_deg : np.ndarray [shape=(n,)]
        Angle of the ridges (the direction along which the kernel is constant) in the
        (frame, bin) plane, in ``(-90, 90]``: 0 = horizontal ridges (steady tones, harmonics),
        ±90 = vertical ridges (onsets, clicks), positive = rising sweeps. Units are bins per
        frame, so the angle depends on the grid.
    coherence : np.ndarray [shape=(n,)]
        ``(λ1 − λ2) / (λ1 + λ2)`` of the structure tensor: 1 for a perfectly oriented patch,
        0 for an isotropic one (or a constant / 1-pixel-wide one).
    """
    P = np.asarray(patches, dtype=float)
    if P.ndim != 3:
        raise AnalysisError(f"patches must be (n, k_f, k_t), given shape {P.shape}")
    n = P.shape[0]
    ori, coh = np.zeros(n), np.zeros(n)
    if P.shape[1] < 2 and P.shape[2] < 2:
        return ori, coh
    gf = np.gradient(P, axis=1) if P.shape[1] > 1 else np.zeros_like(P)
    gt = np.gradient(P, axis=2) if P.shape[2] > 1 else np.zeros_like(P)
    jtt, jff, jtf = (gt * gt).sum((1, 2)), (gf * gf).sum((1, 2)), (gt * gf).sum((1, 2))
    grad_angle = 0.5 * np.arctan2(2 * jtf, jtt - jff)  # direction of the dominant gradient, (t, f) plane
    ridge = np.degrees(grad_angle) + 90.0
    ridge = np.where(ridge > 90.0, ridge - 180.0, ridge)
    tr = jtt + jff
    coh = np.where(tr > 0, np.sqrt((jtt - jff) ** 2 + 4 * jtf ** 2) / np.where(tr > 0, tr, 1), 0.0)
    return ridge, coh


def _modulation_peak(patches, n_pad: int = 32):
    """Spectral (cycles/bin) and temporal (cycles/frame) modulation at the 2-D FFT peak, DC excluded."""
    P = np.asarray(patches, dtype=float)
    nf, nt = max(n_pad, P.shape[1]), max(n_pad, P.shape[2])
    F = np.abs(np.fft.fft2(P - P.mean((1, 2), keepdims=True), s=(nf, nt)))
    F[:, 0, 0] = 0
    flat = F.reshape(len(P), -1).argmax(1)
    i, j = np.unravel_index(flat, (nf, nt))
    sf = np.fft.fftfreq(nf)[i]
    st = np.fft.fftfreq(nt)[j]
    flip = sf < 0  # the 2-D spectrum of a real patch is point-symmetric; report the upper half plane
    return np.where(flip, -sf, sf), np.where(flip, -st, st)


class FilterResponses:
    """Frequency responses and band descriptors of every filter in a bank.

    Parameters
    ----------
    n_fft : int, optional
        FFT size for waveform kernels; default: next power of two ≥ ``max(min_n_fft,
        oversample * n_taps)``. Ignored for kernels on frequency bins.
    min_n_fft, oversample : int
        Defaults that keep the rFFT bins ≤ ``sample_rate / 2048`` and ≥ 8 bins per
        kernel main lobe, enough to place −3 dB points well inside one bin.
    drop_db : float
        Level below the peak that defines the band edges (3 dB: half power).
    multiband_db : float
        A secondary lobe within this many dB of the peak makes the filter "multi-band".
    sign : {"abs", "positive"}
        How a signed profile over frequency bins (``axis="frequency"``) becomes a magnitude:
        its absolute value, or only its positive (excitatory) part. Waveform kernels always
        use the rFFT magnitude.
    db_floor : float
        Floor of :attr:`responses_db_`.

    Attributes
    ----------
    name_ : str
    axis_ : str
    sample_rate_ : int
    n_filters_ : int
    freqs_hz_ : np.ndarray [shape=(F,)]
        Frequency grid of the responses (rFFT bins, or the bank's ``freqs_hz``).
    responses_ : np.ndarray [shape=(n_filters, F)]
        Linear magnitude responses.
    responses_db_ : np.ndarray [shape=(n_filters, F)]
        The same in dB relative to each filter's own peak (peak = 0 dB), floored at ``db_floor``.
    peak_hz_, centroid_hz_, centre_hz_, low_hz_, high_hz_, bandwidth_hz_, q_, peak_gain_db_ : np.ndarray [shape=(n_filters,)]
        Peak frequency (parabolic interpolation in dB), power-weighted spectral centroid,
        centre = midpoint of the −``drop_db`` band around the peak (the right centre for
        flat-topped filters, whose peak can sit anywhere in the pass band), band edges
        (the grid's end when the response never drops that far), bandwidth
        ``high − low``, ``Q = peak / bandwidth`` and peak gain ``20 log10 max |H|``.
        NaN for dead filters and for patches that do not span the frequency axis.
    labels_ : list of str
        One of :data:`LABELS`: band-pass (both edges found), low-pass (no lower edge),
        high-pass (no upper edge), multi-band (another lobe, separated from the main band by
        a dip below −``drop_db``, comes back within ``multiband_db`` of the peak), broadband
        (no edge at all), dead (all-zero kernel), spectrotemporal (a small Conv2d patch with
        no absolute frequency).
    secondary_peak_db_ : np.ndarray [shape=(n_filters,)]
        Highest local maximum outside the main −``drop_db`` band, in dB re the peak
        (−inf when there is none): how far a filter is from a single pass band.
    selectivity_db_ : np.ndarray [shape=(n_filters,)]
        Peak minus the median level over the whole grid (dB): ~60 dB for a gammatone,
        ~10 dB for a short, loosely tuned kernel.
    order_ : np.ndarray [shape=(n_filters,)]
        Filter indices sorted by ``centre_hz_`` (NaNs last); all other arrays are in
        channel order, so index ``k`` is the model's channel ``k``.
    cumulative_db_ : np.ndarray [shape=(F,)]
        The bank's mean power response ``mean_k |H_k|^2`` in dB relative to its maximum:
        which frequencies the bank as a whole passes.
    is_spectral_ : bool
        Whether the responses have an absolute frequency axis.
    patches_ : np.ndarray [shape=(n_filters, k_f, k_t)], only for ``axis="spectrotemporal"``
        Kernels summed over input channels, frequency on axis 1.
    orientation_deg_, coherence_ : np.ndarray, only for spectro-temporal banks
        See :func:`patch_orientation`.
    modulation_ : np.ndarray [shape=(n_filters, 2)], only for spectro-temporal banks
        (cycles/bin, cycles/frame) at the peak of each patch's 2-D spectrum.

    Examples
    --------
    >>> import numpy as np
    >>> from probe.filterbank import FilterBank
    >>> t = np.arange(256) / 8000
    >>> taps = np.hanning(256) * np.cos(2 * np.pi * 1000 * t)
    >>> fr = FilterResponses().fit(FilterBank("f", taps[None], "samples", 8000))
    >>> round(float(fr.peak_hz_[0])), fr.labels_[0]
    (1000, 'band-pass')
    """

    def __init__(self, *, n_fft: int | None = None, min_n_fft: int = 2048, oversample: int = 8, drop_db: float = 3.0,
                 multiband_db: float = 3.0, sign: str = "abs", db_floor: float = -80.0):
        self.n_fft = n_fft
        self.min_n_fft = min_n_fft
        self.oversample = oversample
        self.drop_db = drop_db
        self.multiband_db = multiband_db
        self.sign = sign
        self.db_floor = db_floor

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, bank) -> "FilterResponses":
        """Compute responses and descriptors of ``bank`` (a :class:`~probe.filterbank.FilterBank`)."""
        if self.sign not in ("abs", "positive"):
            raise AnalysisError(f"sign must be 'abs' or 'positive', given {self.sign!r}")
        if not hasattr(bank, "weights") or not hasattr(bank, "axis"):
            raise AnalysisError(f"need a FilterBank (probe.filterbank.filters(spec)[name]), given {type(bank).__name__}")
        W = np.asarray(bank.weights)
        if W.ndim < 2 or W.shape[0] < 1 or W.size == 0:
            raise AnalysisError(f"bank {bank.name!r} has no filters: weights shape {W.shape}")
        self.name_ = str(bank.name)
        self.axis_ = bank.axis
        self.role_ = getattr(bank, "role", "analysis")
        self.sample_rate_ = int(bank.sample_rate)
        self.n_filters_ = int(W.shape[0])
        self.is_spectral_ = True
        freqs_bank = None if bank.freqs_hz is None else np.asarray(bank.freqs_hz, dtype=float)

        self.n_taps_ = int(W.shape[-1]) if bank.axis == "samples" else None
        if bank.axis == "samples":
            self.freqs_hz_, mag = frequency_response(W, self.sample_rate_, n_fft=self.n_fft, min_n_fft=self.min_n_fft,
                                                     oversample=self.oversample)
        elif bank.axis == "frequency":
            prof = W.astype(float)
            if prof.ndim == 3:  # (n, bins, taps): energy of the frequency profile over the temporal taps
                prof = np.sqrt((prof ** 2).sum(-1)) if self.sign == "abs" else np.maximum(prof, 0).sum(-1)
            mag = np.abs(prof) if self.sign == "abs" else np.maximum(prof, 0.0)
            self.freqs_hz_ = self._bank_freqs(freqs_bank, mag.shape[1])
        else:  # spectrotemporal (n, in, k_f, k_t)
            P = W.astype(float)
            P = P.sum(1) if P.ndim == 4 else P
            self.patches_ = P
            self.orientation_deg_, self.coherence_ = patch_orientation(P)
            sf, st = _modulation_peak(P)
            self.modulation_ = np.stack([sf, st], axis=1)
            if freqs_bank is not None and P.shape[1] == len(freqs_bank):  # a kernel spanning the whole frequency axis
                mag = np.sqrt((P ** 2).sum(-1))
                self.freqs_hz_ = freqs_bank
            else:
                self.is_spectral_ = False
                self.freqs_hz_ = np.arange(P.shape[1], dtype=float)  # relative bins; no absolute frequency
                mag = np.sqrt((P ** 2).sum(-1))
        self.responses_ = mag
        self._describe(mag)
        return self

    @staticmethod
    def _bank_freqs(freqs, n_bins):
        if freqs is None or len(freqs) != n_bins:
            raise AnalysisError(f"a frequency-axis bank needs freqs_hz with one entry per bin ({n_bins}), "
                                f"given {None if freqs is None else len(freqs)}")
        return freqs

    def _describe(self, mag: np.ndarray) -> None:
        n, F = mag.shape
        f = self.freqs_hz_
        idx = np.arange(F, dtype=float)
        peak_mag = mag.max(axis=1)
        alive = peak_mag > 1e-12 * max(float(peak_mag.max()), 1e-30)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = mag / np.where(alive, peak_mag, 1.0)[:, None]
            db = 20 * np.log10(np.maximum(rel, 1e-12))
        self.responses_db_ = np.maximum(db, self.db_floor)
        nan = np.full(n, np.nan)
        peak, lo, hi, cen = nan.copy(), nan.copy(), nan.copy(), nan.copy()
        second = nan.copy()
        labels = []
        for i in range(n):
            if not alive[i]:
                labels.append("dead")
                continue
            if not self.is_spectral_:
                labels.append("spectrotemporal")
                continue
            k = int(np.argmax(mag[i]))
            peak[i] = np.interp(_parabolic_peak(db[i], k), idx, f)
            a, b, has_lo, has_hi = _band(db[i], k, self.drop_db)
            lo[i], hi[i] = np.interp(a, idx, f), np.interp(b, idx, f)
            cen[i] = 0.5 * (lo[i] + hi[i])
            second[i] = _secondary_peak(db[i], int(np.floor(a)), int(np.ceil(b)))
            if not (has_lo or has_hi):
                labels.append("broadband")
            elif second[i] >= -self.multiband_db:
                labels.append("multi-band")
            else:
                labels.append("band-pass" if has_lo and has_hi else "low-pass" if has_hi else "high-pass")
        power = mag ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            centroid = (power * f[None]).sum(1) / power.sum(1)
        self.peak_hz_, self.low_hz_, self.high_hz_, self.centre_hz_ = peak, lo, hi, cen
        self.centroid_hz_ = np.where(alive & self.is_spectral_, centroid, np.nan)
        self.bandwidth_hz_ = hi - lo
        with np.errstate(divide="ignore", invalid="ignore"):
            self.q_ = np.where(self.bandwidth_hz_ > 0, peak / self.bandwidth_hz_, np.nan)
            self.peak_gain_db_ = np.where(alive, 20 * np.log10(np.maximum(peak_mag, 1e-30)), np.nan)
        self.labels_ = labels
        self.secondary_peak_db_ = second
        self.selectivity_db_ = np.where(np.isfinite(peak), -np.median(db, axis=1), np.nan) if F else nan
        self.order_ = np.argsort(np.where(np.isnan(cen), np.inf, cen), kind="stable")
        mean_power = power[alive].mean(0) if alive.any() else np.zeros(F)
        with np.errstate(divide="ignore"):
            self.cumulative_db_ = np.maximum(10 * np.log10(np.maximum(mean_power / max(mean_power.max(), 1e-30), 1e-12)),
                                             self.db_floor)

    # -- conveniences ----------------------------------------------------------------------
    def _check(self):
        if not hasattr(self, "responses_"):
            raise AnalysisError("this FilterResponses is not fitted yet; call fit(bank) first")

    def sorted_centres(self) -> np.ndarray:
        """Centre frequencies of the live filters, ascending (Hz)."""
        self._check()
        c = self.centre_hz_[self.order_]
        return c[~np.isnan(c)]

    def label_counts(self) -> dict:
        self._check()
        return {lab: int(sum(1 for x in self.labels_ if x == lab)) for lab in LABELS if lab in self.labels_}

    def summary(self) -> dict:
        """JSON-able per-bank summary (medians over live band filters)."""
        self._check()
        out = {"name": self.name_, "axis": self.axis_, "role": self.role_, "n_filters": self.n_filters_,
               "sample_rate": self.sample_rate_, "labels": self.label_counts()}
        if self.is_spectral_:
            out.update({
                "centre_hz": _round_list(self.centre_hz_), "bandwidth_hz": _round_list(self.bandwidth_hz_),
                "peak_hz": _round_list(self.peak_hz_), "q": _round_list(self.q_, 3),
                "median_q": _nanmedian(self.q_), "median_bandwidth_hz": _nanmedian(self.bandwidth_hz_),
                "median_selectivity_db": _nanmedian(self.selectivity_db_),
            })
        if hasattr(self, "orientation_deg_"):
            out["orientation_deg"] = _round_list(self.orientation_deg_, 1)
            out["coherence"] = _round_list(self.coherence_, 3)
        return out


def _round_list(x, nd=1):
    return [None if not np.isfinite(v) else round(float(v), nd) for v in np.asarray(x, dtype=float)]


def _nanmedian(x):
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def filter_responses(bank, **kwargs) -> FilterResponses:
    """Function twin of :class:`FilterResponses`: ``FilterResponses(**kwargs).fit(bank)``."""
    return FilterResponses(**kwargs).fit(bank)


# ---- scale fit -------------------------------------------------------------------------------
def octave_density(centres_hz, *, ref_hz: float = 1000.0, fmax: float | None = None):
    """Filters per octave band, bands anchored at ``ref_hz`` (… 250–500, 500–1000, 1000–2000 …).

    Returns
    -------
    edges_hz : np.ndarray [shape=(n_bands + 1,)]
    counts : np.ndarray [shape=(n_bands,)]
        Filters whose centre falls in each band (centres below the lowest edge go to the first band).
    """
    c = np.asarray(centres_hz, dtype=float)
    c = c[np.isfinite(c)]
    if c.size == 0:
        raise AnalysisError("no finite centre frequencies to count")
    lo = max(float(c.min()), ref_hz / 64)
    hi = max(float(c.max()), fmax or 0.0)
    k0 = int(np.floor(np.log2(lo / ref_hz)))
    k1 = int(np.ceil(np.log2(hi / ref_hz))) if hi > lo else k0 + 1
    k1 = max(k1, k0 + 1)
    edges = ref_hz * 2.0 ** np.arange(k0, k1 + 1)
    counts, _ = np.histogram(np.clip(c, edges[0], edges[-1]), bins=edges)
    return edges, counts


class ScaleFit:
    """How well a bank's sorted centre frequencies follow linear, mel, ERB-rate and log spacing.

    For each scale ``s`` the sorted centres ``c_(1) ≤ … ≤ c_(n)`` are mapped to ``s(c)`` and
    regressed on the rank ``r = 0 … n-1``; a bank spaced uniformly on ``s`` gives a straight
    line and ``R² = 1``. This compares *spacing*, independent of the band the bank covers.

    Parameters
    ----------
    scales : sequence of str
        Subset of :data:`SCALES`.
    htk : bool
        HTK mel instead of librosa's default Slaney mel (linear below 1 kHz).
    low_hz : float
        Boundary of the "low-frequency" share reported in :attr:`low_share_`.
    extra_scales : dict of str → callable, optional
        More candidate scales, each a monotone map from Hz (array) to scale values, e.g. a
        data set's cumulative power spectrum (a bank that spends its filters where the
        energy is, is uniform on that scale). Their fitted curves are not mapped back to Hz.

    Attributes
    ----------
    centres_hz_ : np.ndarray [shape=(n,)]  sorted finite centres
    r2_ : dict scale → float
    best_scale_ : str  scale with the highest R²
    fitted_hz_ : dict scale → np.ndarray [shape=(n,)]  the regression line mapped back to Hz
    octave_edges_hz_, filters_per_octave_ : np.ndarray  see :func:`octave_density`
    low_share_ : float  share of centres below ``low_hz``
    low_share_linear_ : float or None  share a linearly spaced bank up to Nyquist would have
        (``low_hz / nyquist``), when ``sample_rate`` is given

    Examples
    --------
    >>> c = erb_rate_to_hz(np.linspace(hz_to_erb_rate(100), hz_to_erb_rate(7000), 32))
    >>> ScaleFit().fit(c).best_scale_
    'erb'
    """

    def __init__(self, *, scales=SCALES, htk: bool = False, low_hz: float = 1000.0, extra_scales: dict | None = None):
        self.scales = scales
        self.htk = htk
        self.low_hz = low_hz
        self.extra_scales = extra_scales

    def fit(self, centres_hz, *, sample_rate: float | None = None) -> "ScaleFit":
        c = np.asarray(getattr(centres_hz, "centre_hz_", centres_hz), dtype=float)
        if sample_rate is None and hasattr(centres_hz, "sample_rate_"):
            sample_rate = centres_hz.sample_rate_
        c = np.sort(c[np.isfinite(c)])
        if c.size < 3:
            raise AnalysisError(f"a scale fit needs at least 3 finite centre frequencies, given {c.size}")
        unknown = [s for s in self.scales if s not in SCALES]
        if unknown:
            raise AnalysisError(f"unknown scale(s) {unknown}; known: {', '.join(SCALES)}")
        rank = np.arange(c.size, dtype=float)
        self.centres_hz_ = c
        self.r2_, self.fitted_hz_, self.slope_ = {}, {}, {}
        for s in self.scales:
            v = hz_to_scale(c, s, htk=self.htk)
            slope, icpt = np.polyfit(rank, v, 1)
            fit = slope * rank + icpt
            ss_tot = float(((v - v.mean()) ** 2).sum())
            self.r2_[s] = 1.0 - float(((v - fit) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
            self.fitted_hz_[s] = scale_to_hz(fit, s, htk=self.htk)
            self.slope_[s] = float(slope)
        for s, fn in (self.extra_scales or {}).items():
            v = np.asarray(fn(c), dtype=float)
            if v.shape != c.shape or not np.all(np.isfinite(v)):
                raise AnalysisError(f"extra scale {s!r} must map the {c.size} centres to as many finite values")
            slope, icpt = np.polyfit(rank, v, 1)
            ss_tot = float(((v - v.mean()) ** 2).sum())
            self.r2_[s] = 1.0 - float(((v - (slope * rank + icpt)) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
            self.slope_[s] = float(slope)
        self.best_scale_ = max(self.r2_, key=self.r2_.get)
        nyq = None if sample_rate is None else sample_rate / 2.0
        self.octave_edges_hz_, self.filters_per_octave_ = octave_density(c, fmax=nyq)
        self.low_share_ = float((c < self.low_hz).mean())
        self.low_share_linear_ = None if nyq is None else float(min(self.low_hz / nyq, 1.0))
        return self

    def to_dict(self) -> dict:
        return {"r2": {k: round(v, 4) for k, v in self.r2_.items()}, "best_scale": self.best_scale_,
                "octave_edges_hz": [round(float(e), 2) for e in self.octave_edges_hz_],
                "filters_per_octave": [int(x) for x in self.filters_per_octave_],
                "low_hz": self.low_hz, "low_share": round(self.low_share_, 4),
                "low_share_linear": None if self.low_share_linear_ is None else round(self.low_share_linear_, 4)}


def scale_fit(centres_hz, **kwargs) -> ScaleFit:
    """Function twin of :class:`ScaleFit`; ``centres_hz`` may be a fitted :class:`FilterResponses`."""
    sr = kwargs.pop("sample_rate", None)
    return ScaleFit(**kwargs).fit(centres_hz, sample_rate=sr)


# ---- reference banks -------------------------------------------------------------------------
def _is_rfft_grid(freqs: np.ndarray, sample_rate: float) -> bool:
    F = len(freqs)
    return F >= 2 and np.allclose(freqs, np.linspace(0, sample_rate / 2.0, F), rtol=0, atol=1e-6 * sample_rate)


def _hann_lobe(x):
    """Magnitude of a (continuous) Hann window's transform at ``x`` cycles per window length, 1 at 0."""
    return np.abs(np.sinc(x) + 0.5 * np.sinc(x - 1) + 0.5 * np.sinc(x + 1))


def reference_bank(kind: str, n_filters: int, sample_rate: float, freqs_hz, *, fmin: float = 0.0,
                   fmax: float | None = None, centre_range=None, htk: bool = False):
    """Magnitude responses of a classic filterbank on an arbitrary frequency grid.

    Parameters
    ----------
    kind : {"mel", "gammatone", "cqt"}
        ``mel``: :func:`librosa.filters.mel` triangles (no area normalisation), band edges
        ``fmin``–``fmax``; ``gammatone``: 4th-order gammatones from
        :func:`scipy.signal.gammatone` (IIR, exact, no truncation), centres uniformly spaced on
        the ERB-rate scale strictly inside ``max(fmin, 20 Hz)``–``min(fmax, 0.98·Nyquist)``,
        responses by :func:`scipy.signal.freqz`; ``cqt``: a constant-Q bank of Hann-windowed
        sinusoids with log-spaced centres from ``max(fmin, 32.7 Hz)`` to half a step below
        ``fmax``, window length ``Q·sr/fc`` with ``Q = 1 / (2**(1/bpo) - 1)`` (librosa's
        convention), whose analytic Hann-lobe response is used.
    n_filters : int
    sample_rate : float
    freqs_hz : np.ndarray [shape=(F,)]
        Grid to evaluate on (the learned bank's grid, so cosines compare like with like).
    centre_range : (float, float), optional
        Put the lowest and highest reference centres exactly here (spaced on the reference's
        own scale in between) instead of deriving them from ``fmin``/``fmax``: compares filter
        *shapes and spacing* over the band a learned bank actually covers.

    Returns
    -------
    responses : np.ndarray [shape=(n_filters, F)]  linear magnitude, peak ≈ 1
    centres_hz : np.ndarray [shape=(n_filters,)]
    """
    f = np.asarray(freqs_hz, dtype=float)
    n = int(n_filters)
    if n < 1:
        raise AnalysisError(f"n_filters must be positive, given {n_filters}")
    nyq = sample_rate / 2.0
    fmax = float(fmax or nyq)
    if not 0 <= fmin < fmax <= nyq:
        raise AnalysisError(f"need 0 <= fmin < fmax <= Nyquist ({nyq} Hz), given fmin={fmin}, fmax={fmax}")
    if centre_range is not None:
        c_lo, c_hi = (float(x) for x in centre_range)
        if not 0 < c_lo <= c_hi < nyq:
            raise AnalysisError(f"centre_range must lie inside (0, Nyquist={nyq}) Hz and be ascending, given {centre_range}")

    def spaced(lo, hi, scale):
        if n == 1:
            return scale_to_hz(0.5 * (hz_to_scale(lo, scale) + hz_to_scale(hi, scale)), scale)
        return scale_to_hz(np.linspace(hz_to_scale(lo, scale, htk=htk), hz_to_scale(hi, scale, htk=htk), n), scale, htk=htk)

    if kind == "mel":
        import librosa

        if centre_range is not None:  # edges one mel step outside the wanted first/last centre
            m_lo, m_hi = librosa.hz_to_mel(c_lo, htk=htk), librosa.hz_to_mel(c_hi, htk=htk)
            step = (m_hi - m_lo) / max(n - 1, 1) if n > 1 else max(m_lo, 1.0) * 0.1
            fmin = float(max(librosa.mel_to_hz(m_lo - step, htk=htk), 0.0))
            fmax = float(min(librosa.mel_to_hz(m_hi + step, htk=htk), nyq))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty low bands on coarse grids are expected, they get cosine 0
            if _is_rfft_grid(f, sample_rate):
                R = librosa.filters.mel(sr=sample_rate, n_fft=2 * (len(f) - 1), n_mels=n, fmin=fmin, fmax=fmax,
                                        htk=htk, norm=None)
            else:
                n_fft = 1 << 14
                fine = np.linspace(0, nyq, n_fft // 2 + 1)
                M = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n, fmin=fmin, fmax=fmax, htk=htk, norm=None)
                R = np.stack([np.interp(f, fine, m) for m in M])
        centres = librosa.mel_frequencies(n_mels=n + 2, fmin=fmin, fmax=fmax, htk=htk)[1:-1]
        return np.asarray(R, dtype=float), np.asarray(centres, dtype=float)
    if kind == "gammatone":
        from scipy.signal import freqz, gammatone

        if centre_range is not None:
            centres = np.atleast_1d(spaced(c_lo, c_hi, "erb"))
        else:
            lo_e, hi_e = hz_to_erb_rate(max(fmin, 20.0)), hz_to_erb_rate(min(fmax, 0.98 * nyq))
            centres = erb_rate_to_hz(np.linspace(lo_e, hi_e, n + 2)[1:-1])
        R = np.empty((n, f.size))
        for i, fc in enumerate(centres):
            b, a = gammatone(float(fc), "iir", fs=float(sample_rate))
            _, h = freqz(b, a, worN=f, fs=float(sample_rate))
            R[i] = np.abs(h)
        R /= np.maximum(R.max(axis=1, keepdims=True), 1e-30)
        return R, centres
    if kind == "cqt":
        if centre_range is not None:
            centres = np.atleast_1d(spaced(c_lo, c_hi, "log"))
            bpo = (n - 1) / np.log2(c_hi / c_lo) if n > 1 and c_hi > c_lo else 12.0
        else:
            lo = max(fmin, 32.70319566)
            bpo = (n - 0.5) / np.log2(fmax / lo) if n > 1 else 1.0
            centres = lo * 2.0 ** (np.arange(n) / bpo) if n > 1 else np.array([np.sqrt(lo * fmax)])
        Q = 1.0 / (2.0 ** (1.0 / bpo) - 1.0)
        L = Q * sample_rate / centres  # window length in samples
        x_pos = (f[None, :] - centres[:, None]) * L[:, None] / sample_rate
        x_neg = (f[None, :] + centres[:, None]) * L[:, None] / sample_rate
        R = _hann_lobe(x_pos) + _hann_lobe(x_neg)  # a real filter: its mirror image at −fc
        R /= np.maximum(R.max(axis=1, keepdims=True), 1e-30)
        return R, centres
    raise AnalysisError(f"unknown reference bank {kind!r}; known: {', '.join(REFERENCES)}")


def truncate_responses(responses, n_taps: int):
    """Magnitude responses of the ``n_taps``-long linear-phase FIRs closest (least squares) to ``responses``.

    ``responses (n, F)`` are magnitudes on a full rFFT grid (0 Hz to Nyquist, ``F = 1 + n_fft/2``).
    The zero-phase impulse response of each is cut to its central ``n_taps`` samples
    (rectangular truncation is the least-squares optimum for a fixed length), and its
    magnitude response is returned on the same grid: what a filter as short as a learned
    kernel can do when it tries to be this reference filter.
    """
    R = np.asarray(responses, dtype=float)
    n_fft = 2 * (R.shape[1] - 1)
    L = int(n_taps)
    if not 1 <= L <= n_fft:
        raise AnalysisError(f"n_taps must lie in [1, n_fft={n_fft}], given {n_taps}")
    h = np.fft.irfft(R, n=n_fft, axis=1)
    h = np.roll(h, L // 2, axis=1)[:, :L]  # centre the zero-phase response in the window
    return np.abs(np.fft.rfft(h, n=n_fft, axis=1))


# ---- matching ---------------------------------------------------------------------------------
def cosine_matrix(A, B) -> np.ndarray:
    """Cosine similarity of the rows of ``A`` (n, F) with the rows of ``B`` (m, F) → (n, m); zero rows give 0."""
    A = np.asarray(A, dtype=float)
    B = np.asarray(B, dtype=float)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise AnalysisError(f"cosine needs (n, F) and (m, F) with the same F, given {A.shape} and {B.shape}")
    na = np.linalg.norm(A, axis=1, keepdims=True)
    nb = np.linalg.norm(B, axis=1, keepdims=True)
    return (A / np.where(na > 0, na, 1)) @ (B / np.where(nb > 0, nb, 1)).T


def match_bases(C) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching that maximises the summed similarity ``C`` (n, m).

    Uses :func:`scipy.optimize.linear_sum_assignment` (Hungarian algorithm). NaNs count as −1.

    Returns
    -------
    assignment : np.ndarray [shape=(n,), dtype=int]
        Column matched to each row, −1 for rows left over when ``n > m``.
    matched : np.ndarray [shape=(n,)]
        ``C[i, assignment[i]]``, NaN for unmatched rows.
    """
    from scipy.optimize import linear_sum_assignment

    C = np.asarray(C, dtype=float)
    rows, cols = linear_sum_assignment(np.nan_to_num(C, nan=-1.0), maximize=True)
    assignment = np.full(C.shape[0], -1, dtype=int)
    assignment[rows] = cols
    matched = np.full(C.shape[0], np.nan)
    matched[rows] = C[rows, cols]
    return assignment, matched


class ReferenceMatch:
    """Cosine similarity of a learned bank with a classic bank of the same size, one-to-one matched.

    Parameters
    ----------
    reference : {"mel", "gammatone", "cqt"}
        See :func:`reference_bank`.
    threshold : float
        Learned filters whose matched cosine is below this are reported in :attr:`unmatched_`.
    fmin, fmax : float
        Band of the reference bank (default 0 Hz – Nyquist).
    htk : bool
        HTK mel for the mel reference.
    span : {"full", "bank"}
        ``full``: the reference covers ``fmin``–``fmax`` as a textbook bank of that size would;
        ``bank``: its first and last centres sit on the learned bank's lowest and highest
        centre, so only filter shape and spacing are compared.
    taps : None, int or "bank"
        Compare with reference filters realised as FIRs of this length (``"bank"``: the
        learned kernels' length) instead of ideal ones; see :func:`truncate_responses`.
        A 2 ms kernel cannot be a 40 Hz-wide mel band; this asks whether it is the closest
        thing a 2 ms filter can be. Waveform banks only.

    Attributes
    ----------
    reference_responses_ : np.ndarray [shape=(n, F)]
    reference_centres_hz_ : np.ndarray [shape=(n,)]
    cosine_ : np.ndarray [shape=(n_learned, n)]  cosine of magnitude responses (learned × reference)
    assignment_ : np.ndarray [shape=(n_learned,)]  reference filter matched to each learned one
    matched_cosine_ : np.ndarray [shape=(n_learned,)]
    mean_cosine_ : float  mean of the matched cosines
    unmatched_ : np.ndarray  learned filter indices with matched cosine < threshold
    best_cosine_ : np.ndarray [shape=(n_learned,)]  best cosine with any reference filter (matching not enforced)
    """

    def __init__(self, reference: str = "mel", *, threshold: float = 0.5, fmin: float = 0.0, fmax: float | None = None,
                 htk: bool = False, span: str = "full", taps=None):
        self.reference = reference
        self.threshold = threshold
        self.fmin = fmin
        self.fmax = fmax
        self.htk = htk
        self.span = span
        self.taps = taps

    def fit(self, responses) -> "ReferenceMatch":
        """Compare a fitted :class:`FilterResponses` (or a bank, fitted with defaults) with the reference."""
        fr = responses if isinstance(responses, FilterResponses) else filter_responses(responses)
        fr._check()
        if not fr.is_spectral_:
            raise AnalysisError(f"bank {fr.name_!r} holds spectro-temporal patches without an absolute frequency axis; "
                                "a reference filterbank comparison needs responses over Hz")
        if self.span not in ("full", "bank"):
            raise AnalysisError(f"span must be 'full' or 'bank', given {self.span!r}")
        crange = None
        if self.span == "bank":
            c = fr.sorted_centres()
            c = c[(c > 0) & (c < fr.sample_rate_ / 2.0)]
            if c.size == 0:
                raise AnalysisError(f"bank {fr.name_!r} has no centre frequency inside (0, Nyquist) to span")
            crange = (float(c[0]), float(c[-1]))
        R, centres = reference_bank(self.reference, fr.n_filters_, fr.sample_rate_, fr.freqs_hz_, fmin=self.fmin,
                                    fmax=self.fmax, centre_range=crange, htk=self.htk)
        if self.taps is not None:
            if fr.axis_ != "samples":
                raise AnalysisError(f"taps= needs a waveform bank (FIR kernels); {fr.name_!r} has axis {fr.axis_!r}")
            R = truncate_responses(R, fr.n_taps_ if self.taps == "bank" else int(self.taps))
        self.reference_responses_, self.reference_centres_hz_ = R, centres
        self.cosine_ = cosine_matrix(fr.responses_, R)
        self.assignment_, self.matched_cosine_ = match_bases(self.cosine_)
        self.mean_cosine_ = float(np.nanmean(self.matched_cosine_))
        self.best_cosine_ = self.cosine_.max(axis=1)
        self.unmatched_ = np.nonzero(~(self.matched_cosine_ >= self.threshold))[0]
        return self

    def to_dict(self) -> dict:
        return {"reference": self.reference, "span": self.span, "taps": self.taps, "mean_cosine": round(self.mean_cosine_, 4),
                "median_cosine": round(float(np.nanmedian(self.matched_cosine_)), 4),
                "n_unmatched": int(self.unmatched_.size), "threshold": self.threshold,
                "unmatched": [int(i) for i in self.unmatched_]}


def match_reference(responses, reference: str = "mel", **kwargs) -> ReferenceMatch:
    """Function twin of :class:`ReferenceMatch`."""
    return ReferenceMatch(reference, **kwargs).fit(responses)


def compare_references(responses, references=REFERENCES, **kwargs) -> dict:
    """:class:`ReferenceMatch` against several references → ``{name: fitted ReferenceMatch}``."""
    fr = responses if isinstance(responses, FilterResponses) else filter_responses(responses)
    return {r: ReferenceMatch(r, **kwargs).fit(fr) for r in references}
