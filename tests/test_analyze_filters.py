"""Filter responses, scale fit and reference matching on banks whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.signal import firwin

from probe.analyze.filters import (
    SCALES,
    FilterResponses,
    ReferenceMatch,
    ScaleFit,
    compare_references,
    erb_bandwidth,
    erb_rate_to_hz,
    filter_responses,
    frequency_response,
    hz_to_erb_rate,
    hz_to_scale,
    match_reference,
    octave_density,
    patch_orientation,
    reference_bank,
    scale_fit,
    scale_to_hz,
    truncate_responses,
)
from probe.errors import AnalysisError
from probe.filterbank import FilterBank

SR = 16000


# ---- constructed banks ------------------------------------------------------------------------
def gammatone_kernels(centres, n_taps=1024, sr=SR, order=4):
    """Gammatones ``t^(n-1) exp(-2π b t) cos(2π fc t)`` with ``b = 1.019 ERB(fc)``."""
    t = np.arange(n_taps) / sr
    b = 1.019 * erb_bandwidth(centres)
    k = np.stack([t ** (order - 1) * np.exp(-2 * np.pi * bb * t) * np.cos(2 * np.pi * fc * t) for fc, bb in zip(centres, b)])
    return k / np.abs(k).max(axis=1, keepdims=True), b


def gammatone_bandwidth_3db(b, order=4):
    """Analytic −3 dB bandwidth of a gammatone: |H| ∝ (1 + ((f - fc)/b)²)^(-n/2) → 2 b sqrt(2^(1/n) - 1)."""
    return 2 * b * np.sqrt(2 ** (1 / order) - 1)


def exact_band_edges(h, sr, guess_lo, guess_hi, centre):
    """−3 dB edges of an FIR by root-finding on its exact DTFT (direct sum, no FFT): the slow reference."""
    n = np.arange(len(h))

    def mag_db(f):
        return 20 * np.log10(abs(np.sum(h * np.exp(-2j * np.pi * f * n / sr))))

    peak = max(mag_db(f) for f in np.linspace(guess_lo, guess_hi, 400))

    def g(f):
        return mag_db(f) - (peak - 3.0)

    lo = brentq(g, guess_lo - 400, centre)
    hi = brentq(g, centre, guess_hi + 400)
    return lo, hi


def erb_centres(n, lo=200.0, hi=6000.0):
    return erb_rate_to_hz(np.linspace(hz_to_erb_rate(lo), hz_to_erb_rate(hi), n))


# ---- responses ----------------------------------------------------------------------------------
def test_gammatone_bank_centres_bandwidths_and_erb_scale():
    rng = np.random.default_rng(0)
    centres = erb_centres(24)
    kernels, b = gammatone_kernels(centres)
    perm = rng.permutation(len(centres))
    bank = FilterBank("front", kernels[perm][:, None, :], "samples", SR)
    fr = FilterResponses().fit(bank)
    bin_hz = fr.freqs_hz_[1] - fr.freqs_hz_[0]
    assert len(fr.freqs_hz_) >= 2048 // 2 + 1
    assert np.all(np.abs(fr.centre_hz_ - centres[perm]) < bin_hz)
    assert np.all(np.abs(fr.peak_hz_ - centres[perm]) < bin_hz)
    np.testing.assert_allclose(fr.bandwidth_hz_, gammatone_bandwidth_3db(b[perm]), rtol=0.10)
    assert fr.labels_ == ["band-pass"] * 24
    # order_ sorts the shuffled channels back into centre order
    np.testing.assert_array_equal(perm[fr.order_], np.arange(24))
    np.testing.assert_allclose(fr.q_, fr.peak_hz_ / fr.bandwidth_hz_)
    fit = ScaleFit().fit(fr)
    assert fit.best_scale_ == "erb"
    assert fit.r2_["erb"] > 0.999
    assert fit.r2_["linear"] < fit.r2_["mel"] < fit.r2_["erb"]


def test_sinc_bank_linear_spacing_edges_from_exact_dtft():
    lows = np.linspace(400.0, 6000.0, 16)
    width = 500.0
    kernels = np.stack([firwin(769, [lo, lo + width], fs=SR, pass_zero=False, window="blackman") for lo in lows])
    fr = filter_responses(FilterBank("sinc", kernels, "samples", SR))
    bin_hz = fr.freqs_hz_[1] - fr.freqs_hz_[0]
    for i, lo in enumerate(lows[:: 5]):
        k = i * 5
        e_lo, e_hi = exact_band_edges(kernels[k], SR, lo, lo + width, lo + width / 2)
        assert abs(fr.low_hz_[k] - e_lo) < bin_hz and abs(fr.high_hz_[k] - e_hi) < bin_hz
        assert abs(fr.centre_hz_[k] - 0.5 * (e_lo + e_hi)) < bin_hz
        assert abs(fr.bandwidth_hz_[k] / (e_hi - e_lo) - 1) < 0.10
    assert np.all(np.abs(fr.centre_hz_ - (lows + width / 2)) < bin_hz)  # symmetric transition bands
    assert set(fr.labels_) == {"band-pass"}
    fit = scale_fit(fr, sample_rate=SR)
    assert fit.best_scale_ == "linear" and fit.r2_["linear"] > 0.9999


def test_multichannel_kernels_combine_as_root_sum_of_squares():
    t = np.arange(128) / SR
    a = np.hanning(128) * np.cos(2 * np.pi * 1000 * t)
    b = np.hanning(128) * np.cos(2 * np.pi * 3000 * t)
    f, mag = frequency_response(np.stack([np.stack([a, b])]), SR, n_fft=4096)
    _, ma = frequency_response(a[None], SR, n_fft=4096)
    _, mb = frequency_response(b[None], SR, n_fft=4096)
    np.testing.assert_allclose(mag[0], np.sqrt(ma[0] ** 2 + mb[0] ** 2))
    assert f[-1] == SR / 2


def test_labels_lowpass_highpass_broadband_dead():
    taps = 257
    k = np.stack([firwin(taps, 1000, fs=SR), firwin(taps, 5000, fs=SR, pass_zero=False),
                  np.eye(taps)[taps // 2], np.zeros(taps),
                  firwin(taps, [2000, 3000], fs=SR, pass_zero=False)])
    fr = filter_responses(FilterBank("mix", k, "samples", SR))
    assert fr.labels_ == ["low-pass", "high-pass", "broadband", "dead", "band-pass"]
    bin_hz = fr.freqs_hz_[1]
    assert fr.low_hz_[0] == 0 and abs(fr.centre_hz_[0] - fr.high_hz_[0] / 2) < 1e-9
    assert 850 < fr.high_hz_[0] < 1000  # −3 dB lies inside firwin's −6 dB cutoff
    assert fr.high_hz_[1] == SR / 2 and 5000 < fr.low_hz_[1] < 5150
    assert np.isnan(fr.centre_hz_[3]) and np.isnan(fr.q_[3])
    assert fr.order_[-1] == 3  # dead filters sort last
    assert abs(fr.centre_hz_[4] - 2500) < bin_hz
    assert fr.label_counts() == {"band-pass": 1, "low-pass": 1, "high-pass": 1, "broadband": 1, "dead": 1}
    assert np.all(fr.secondary_peak_db_[[0, 1, 4]] < -40)  # firwin's sidelobes


def test_multiband_label_secondary_peak_and_selectivity():
    freqs = np.linspace(0, SR / 2, 1025)
    one = np.exp(-0.5 * ((freqs - 1000) / 80) ** 2)
    two = one + 0.8 * np.exp(-0.5 * ((freqs - 4000) / 80) ** 2)  # a second lobe at 20 log10(0.8) = −1.9 dB
    weak = one + 0.1 * np.exp(-0.5 * ((freqs - 4000) / 80) ** 2)  # −20 dB
    fr = filter_responses(FilterBank("fb", np.stack([one, two, weak]) + 1e-6, "frequency", SR, freqs_hz=freqs))
    assert fr.labels_ == ["band-pass", "multi-band", "band-pass"]
    np.testing.assert_allclose(fr.secondary_peak_db_[1:], [20 * np.log10(0.8), -20.0], atol=0.05)
    assert fr.secondary_peak_db_[0] < -100  # only the 1e-6 floor outside the lobe
    np.testing.assert_allclose(fr.centre_hz_, 1000, atol=freqs[1])  # the centre stays on the main lobe
    assert fr.selectivity_db_[0] > 100 and fr.selectivity_db_[1] > 100
    assert FilterResponses(multiband_db=1.0).fit(FilterBank("fb", two[None], "frequency", SR, freqs_hz=freqs)).labels_ == ["band-pass"]


def test_frequency_axis_bank_gaussian_profiles():
    freqs = np.linspace(0, SR / 2, 513)
    centres = np.array([300.0, 1200.0, 2500.0, 5000.0])
    sigma = np.array([60.0, 100.0, 150.0, 300.0])
    prof = np.exp(-0.5 * ((freqs[None] - centres[:, None]) / sigma[:, None]) ** 2)
    fr = filter_responses(FilterBank("lin", -prof, "frequency", SR, freqs_hz=freqs))  # sign="abs" ignores the sign
    np.testing.assert_allclose(fr.centre_hz_, centres, atol=freqs[1] / 2)
    # |H| = exp(-Δ²/2σ²) reaches −3 dB at Δ = σ sqrt(0.3 ln 10)
    np.testing.assert_allclose(fr.bandwidth_hz_, 2 * sigma * np.sqrt(0.3 * np.log(10)), rtol=0.02)
    assert FilterResponses(sign="positive").fit(FilterBank("lin", -prof, "frequency", SR, freqs_hz=freqs)).labels_ == ["dead"] * 4
    with pytest.raises(AnalysisError, match="freqs_hz with one entry per bin"):
        filter_responses(FilterBank("lin", prof, "frequency", SR, freqs_hz=freqs[:10]))


def test_spectrotemporal_orientation():
    f, t = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    patches = np.stack([np.cos(2 * np.pi * f / 4),          # stripes along time: steady tones → 0°
                        np.cos(2 * np.pi * t / 4),          # stripes along frequency: onsets → ±90°
                        np.cos(2 * np.pi * (f - t) / 5),    # ridges f = t + c: rising sweep → +45°
                        np.cos(2 * np.pi * (f + t) / 5)])   # falling sweep → −45°
    ori, coh = patch_orientation(patches)
    assert abs(ori[0]) < 1 and abs(abs(ori[1]) - 90) < 1
    assert abs(ori[2] - 45) < 1 and abs(ori[3] + 45) < 1
    assert np.all(coh > 0.8)  # np.gradient edge effects on a 9×9 patch
    bank = FilterBank("conv", patches[:, None], "spectrotemporal", SR, freqs_hz=np.linspace(0, 8000, 257))
    fr = filter_responses(bank)
    assert not fr.is_spectral_ and fr.labels_ == ["spectrotemporal"] * 4
    assert fr.patches_.shape == (4, 9, 9)
    np.testing.assert_allclose(fr.modulation_[0], [0.25, 0.0], atol=1 / 32)
    np.testing.assert_allclose(fr.modulation_[1], [0.0, 0.25], atol=1 / 32)
    with pytest.raises(AnalysisError, match="spectro-temporal"):
        match_reference(fr, "mel")


def test_filterbank_from_model_roundtrip():
    import torch

    from probe import ModelSpec, TFGrid
    from probe.filterbank import filters

    centres = erb_centres(8, 300, 5000)
    k, _ = gammatone_kernels(centres, n_taps=512)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 512, stride=128, bias=False), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(k[:, None], dtype=torch.float32))
    spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(SR), input_layout="bcn")
    fr = filter_responses(filters(spec)["0"])
    assert np.all(np.abs(fr.peak_hz_ - centres) < fr.freqs_hz_[1])


# ---- scale fit --------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_scale_fit_recovers_the_spacing_scale(scale):
    centres = scale_to_hz(np.linspace(hz_to_scale(100, scale), hz_to_scale(7000, scale), 40), scale)
    fit = ScaleFit().fit(centres, sample_rate=SR)
    assert fit.best_scale_ == scale
    assert fit.r2_[scale] > 0.99999
    np.testing.assert_allclose(fit.fitted_hz_[scale], centres, rtol=1e-6)


def test_extra_scale_from_a_power_spectrum():
    # a "data" scale: the cumulative power of a spectrum with most energy low; centres at its quantiles fit it exactly
    freqs = np.linspace(0, SR / 2, 1025)
    power = np.exp(-freqs / 700.0)
    cdf = np.cumsum(power) / power.sum()
    centres = np.interp(np.linspace(0.05, 0.95, 30), cdf, freqs)
    fit = ScaleFit(extra_scales={"data": lambda f: np.interp(f, freqs, cdf)}).fit(centres)
    assert fit.best_scale_ == "data" and fit.r2_["data"] > 0.9999 and "data" not in fit.fitted_hz_
    with pytest.raises(AnalysisError, match="extra scale 'bad'"):
        ScaleFit(extra_scales={"bad": lambda f: np.full(3, np.nan)}).fit(centres)


def test_octave_density_and_low_share():
    centres = np.array([100, 150, 300, 600, 900, 1500, 3000, 6000.0])
    edges, counts = octave_density(centres, fmax=8000)
    np.testing.assert_allclose(edges, [62.5, 125, 250, 500, 1000, 2000, 4000, 8000])
    assert counts.tolist() == [1, 1, 1, 2, 1, 1, 1]
    fit = scale_fit(centres, sample_rate=SR)
    assert fit.low_share_ == 5 / 8 and fit.low_share_linear_ == 1000 / 8000
    assert fit.to_dict()["filters_per_octave"] == counts.tolist()


def test_scale_helpers_roundtrip_and_erb_formula():
    hz = np.array([50.0, 440.0, 1000.0, 7000.0])
    for s in SCALES:
        np.testing.assert_allclose(scale_to_hz(hz_to_scale(hz, s), s), hz, rtol=1e-9)
    # Glasberg & Moore: ERB(1 kHz) = 132.6 Hz, ERB-rate(1 kHz) ≈ 15.6
    assert abs(erb_bandwidth(1000.0) - 132.639) < 1e-3
    assert abs(hz_to_erb_rate(1000.0) - 15.62) < 0.01


# ---- references -------------------------------------------------------------------------------
def test_reference_gammatone_matches_a_gammatone_bank_and_flags_noise():
    rng = np.random.default_rng(1)
    centres = erb_centres(20, 150, 6000)
    k, _ = gammatone_kernels(centres)
    perm = rng.permutation(20)
    fr = filter_responses(FilterBank("g", k[perm], "samples", SR))
    m = match_reference(fr, "gammatone", span="bank")
    # the reference spans the learned centres on the ERB scale: the same 20 gammatones, matched rank to rank
    assert np.all(m.matched_cosine_ > 0.99)
    np.testing.assert_array_equal(m.assignment_, perm)
    np.testing.assert_allclose(m.reference_centres_hz_, centres, rtol=0.01)
    full = match_reference(fr, "gammatone")
    assert full.to_dict()["span"] == "full" and full.mean_cosine_ < m.mean_cosine_
    # four white-noise kernels among them are the ones left unmatched
    noise = rng.standard_normal((4, k.shape[1])) * np.hanning(k.shape[1])
    kernels = np.concatenate([k, noise])
    perm = rng.permutation(len(kernels))
    m = match_reference(filter_responses(FilterBank("g", kernels[perm], "samples", SR)), "gammatone", threshold=0.5)
    assert set(m.unmatched_.tolist()) == set(np.nonzero(perm >= 20)[0].tolist())
    assert np.all(m.matched_cosine_[perm < 20] > 0.75)


def test_reference_mel_recovers_a_shuffled_mel_bank():
    import librosa

    rng = np.random.default_rng(2)
    M = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=32, norm=None)
    perm = rng.permutation(32)
    freqs = np.linspace(0, SR / 2, 513)
    bank = FilterBank("mel_like", M[perm] + 0.01 * rng.random((32, 513)), "frequency", SR, freqs_hz=freqs)
    refs = compare_references(bank)
    m = refs["mel"]
    np.testing.assert_array_equal(m.assignment_, perm)
    assert m.mean_cosine_ > 0.98
    assert refs["mel"].mean_cosine_ > refs["gammatone"].mean_cosine_ and refs["mel"].mean_cosine_ > refs["cqt"].mean_cosine_
    assert m.cosine_.shape == (32, 32) and m.reference_responses_.shape == (32, 513)


def test_same_length_references_for_short_kernels():
    freqs = np.linspace(0, SR / 2, 2049)
    R, _ = reference_bank("gammatone", 8, SR, freqs)
    np.testing.assert_allclose(truncate_responses(R, 4096), R, atol=1e-9)  # full length: nothing lost
    short = truncate_responses(R, 16)
    # 16 taps at 16 kHz: −3 dB main lobe ≈ 0.89·16000/16 ≈ 890 Hz wide (less for lobes folded at 0 Hz)
    width = [(s_ >= s_.max() / np.sqrt(2)).sum() * freqs[1] for s_ in short]
    assert min(width) > 400 and np.median(width) > 700
    # a bank of 16-tap truncated gammatones matches the 16-tap references far better than the ideal ones
    h = np.fft.irfft(R, n=4096, axis=1)
    kernels = np.roll(h, 8, axis=1)[:, :16]
    fr = filter_responses(FilterBank("short", kernels, "samples", SR))
    assert fr.n_taps_ == 16
    ideal = match_reference(fr, "gammatone")
    same = match_reference(fr, "gammatone", taps="bank")
    assert same.mean_cosine_ > 0.99 > ideal.mean_cosine_ + 0.2
    assert same.to_dict()["taps"] == "bank"
    with pytest.raises(AnalysisError, match="n_taps must lie in"):
        truncate_responses(R, 0)
    with pytest.raises(AnalysisError, match="taps= needs a waveform bank"):
        match_reference(FilterBank("f", R, "frequency", SR, freqs_hz=freqs), "mel", taps=16)


@pytest.mark.parametrize("kind", ["mel", "gammatone", "cqt"])
def test_reference_bank_shapes_centres_and_peaks(kind):
    freqs = np.linspace(0, SR / 2, 1025)
    R, c = reference_bank(kind, 24, SR, freqs)
    assert R.shape == (24, 1025) and np.all(np.diff(c) > 0) and c[-1] < SR / 2
    peaks = freqs[R.argmax(1)]
    np.testing.assert_allclose(peaks[c > 200], c[c > 200], rtol=0.1, atol=2 * freqs[1])
    mel_grid = np.linspace(50, 7000, 64)  # a non-uniform or partial grid works too (interpolated)
    assert reference_bank(kind, 8, SR, mel_grid)[0].shape == (8, 64)


# ---- contract and errors --------------------------------------------------------------------
def test_estimator_contract_and_function_twin():
    est = FilterResponses(n_fft=4096, drop_db=3.0)
    assert not any(k.endswith("_") for k in vars(est))
    k, _ = gammatone_kernels(erb_centres(6))
    bank = FilterBank("g", k, "samples", SR)
    assert est.fit(bank) is est
    twin = filter_responses(bank, n_fft=4096)
    np.testing.assert_array_equal(est.centre_hz_, twin.centre_hz_)
    assert len(est.freqs_hz_) == 2049
    assert set(est.summary()) >= {"centre_hz", "bandwidth_hz", "q", "labels"}
    assert ScaleFit().fit(est).best_scale_ == scale_fit(twin).best_scale_
    assert isinstance(compare_references(est, ("mel",))["mel"], ReferenceMatch)


def test_errors_name_the_bad_value():
    with pytest.raises(AnalysisError, match="not fitted"):
        FilterResponses().sorted_centres()
    with pytest.raises(AnalysisError, match="unknown frequency scale 'bark'"):
        hz_to_scale(100, "bark")
    with pytest.raises(AnalysisError, match="unknown reference bank 'bark'"):
        reference_bank("bark", 4, SR, np.linspace(0, 8000, 10))
    with pytest.raises(AnalysisError, match="at least 3 finite centre"):
        ScaleFit().fit([100.0, np.nan])
    with pytest.raises(AnalysisError, match="sign must be"):
        FilterResponses(sign="neg").fit(FilterBank("g", np.ones((2, 4)), "samples", SR))
    with pytest.raises(AnalysisError, match="n_fft=8 is shorter"):
        frequency_response(np.ones((1, 16)), SR, n_fft=8)
    with pytest.raises(AnalysisError, match="span must be"):
        ReferenceMatch(span="half").fit(FilterBank("g", gammatone_kernels(erb_centres(4))[0], "samples", SR))


# ---- figures (built, not rendered) ---------------------------------------------------------------
def test_figures_build_with_units():
    import plotly.graph_objects as go

    from probe.figures import filters as ff

    k, _ = gammatone_kernels(erb_centres(12), n_taps=512)
    bank = FilterBank("g", k[:, None], "samples", SR)
    fr = filter_responses(bank)
    fit = scale_fit(fr, sample_rate=SR)
    m = match_reference(fr, "mel")
    figs = [ff.filter_gallery(bank, fr, max_filters=8), ff.response_heatmap(fr), ff.centre_frequency_plot(fr, fit),
            ff.octave_density_plot(fit, sample_rate=SR), ff.matching_matrix(m.cosine_, m.assignment_, row_order=fr.order_),
            ff.matched_responses_plot(fr, m, n_show=3)]
    assert all(isinstance(f, go.Figure) for f in figs)
    text = " ".join(str(f.layout) for f in figs)
    for unit in ("time (ms)", "frequency (Hz)", "dB", "centre frequency (Hz)", "filters per octave", "cosine"):
        assert unit in text
    names = " ".join(t.name or "" for t in figs[2].data)
    assert "erb-spaced fit" in names and "(best)" in names
    P = np.random.default_rng(0).standard_normal((5, 1, 3, 3))
    g = ff.filter_gallery(FilterBank("c", P, "spectrotemporal", SR, freqs_hz=np.linspace(0, 8000, 64)))
    heat = [t for t in g.data if isinstance(t, go.Heatmap)]  # the 5 patches tiled in one heat map
    assert len(heat) == 1 and [c["filter"] for c in heat[0].meta["cells"]] == [0, 1, 2, 3, 4]
