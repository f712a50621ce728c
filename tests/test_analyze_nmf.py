"""NMF relation on spectrograms built as V = W H with known W and H."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe import ModelSpec, TFGrid
from probe.analyze.filters import cosine_matrix, match_bases
from probe.analyze.nmf import (
    NMFComparison,
    NMFLikeness,
    bank_bases,
    compare_nmf,
    correlation_matrix,
    decoder_bases,
    fit_nmf,
    hoyer_sparsity,
    magnitude_spectrogram,
    nmf_likeness,
    resample_activations,
)
from probe.errors import AnalysisError
from probe.filterbank import FilterBank, filters

SR = 8000
GRID = TFGrid(SR, n_fft=256, hop_length=64)
F = GRID.n_freqs  # 129 bins
PITCH_BINS = (5.0, 6.5, 8.0, 11.0, 13.5, 17.0)  # no pitch an integer multiple of another: NMF is unique


def harmonic_bases(pitches=PITCH_BINS, n_bins=F):
    """One column per note: harmonics at multiples of the pitch (in bins), 1/h amplitudes, unit L2 norm."""
    f = np.arange(n_bins)
    W = np.zeros((n_bins, len(pitches)))
    for k, p in enumerate(pitches):
        for h in range(1, int(n_bins / p) + 1):
            W[:, k] += np.exp(-0.5 * ((f - h * p) / 0.8) ** 2) / h
    return W / np.linalg.norm(W, axis=0)


def sparse_activations(K, T, rng, n_events=5):
    """Each note struck a few times with an exponential decay."""
    H = np.zeros((K, T))
    for k in range(K):
        for _ in range(n_events):
            on, d = rng.integers(0, T - 40), rng.integers(12, 40)
            H[k, on:on + d] += rng.uniform(0.5, 2.0) * np.exp(-np.arange(d) / 12.0)
    return H


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    W = harmonic_bases()
    H = sparse_activations(W.shape[1], 300, rng)
    return W, H, W @ H


def _nmf_to_truth(W_true, W_nmf):
    """Which NMF component is each true basis (independent Hungarian on cosine)."""
    a, m = match_bases(cosine_matrix(W_true.T, W_nmf.T))
    assert np.all(m > 0.99), "NMF itself failed to recover the planted bases"
    return a


class Decoder(torch.nn.Module):
    """Magnitude in (b, F, T) → linear encoder → ReLU → linear decoder whose weight columns are the bases."""

    def __init__(self, K):
        super().__init__()
        self.encoder = torch.nn.Linear(F, K)
        self.decoder = torch.nn.Linear(K, F, bias=False)

    def forward(self, x):
        z = torch.relu(self.encoder(x.transpose(1, 2)))
        return self.decoder(z).transpose(1, 2)


def test_decoder_bases_matched_to_nmf_recover_the_permutation(planted):
    W, H, V = planted
    rng = np.random.default_rng(1)
    K = W.shape[1]
    perm = rng.permutation(K)
    net = Decoder(K)
    with torch.no_grad():  # decoder column j is true basis perm[j] plus 3 % noise
        net.decoder.weight.copy_(torch.tensor(W[:, perm] + 0.03 * W.max() * rng.random((F, K)), dtype=torch.float32))
    spec = ModelSpec(net, input_kind="stft", grid=GRID)
    banks = filters(spec)
    assert banks["decoder"].role == "synthesis" and banks["decoder"].axis == "frequency"
    bases = bank_bases(banks["decoder"], GRID.bin_frequencies())
    assert bases.shape == (K, F)
    cmp = NMFComparison().fit(V, bases=bases)
    assert cmp.W_.shape == (F, K) and cmp.H_.shape == (K, V.shape[1])
    truth = _nmf_to_truth(W, cmp.W_)
    np.testing.assert_array_equal(cmp.assignment_, truth[perm])
    assert cmp.mean_cosine_ >= 0.95 and cmp.unmatched_.size == 0
    d = cmp.to_dict()
    assert d["bases"]["permutation"] == truth[perm].tolist() and d["bases"]["mean_matched_cosine"] >= 0.95


def test_activations_correlate_with_h_after_resampling(planted):
    W, H, V = planted
    rng = np.random.default_rng(2)
    K, T = H.shape
    perm = rng.permutation(K)
    # the model's units run at twice the frame rate, with a gain and an offset each and 5 % noise
    t_frames = np.arange(T) * GRID.seconds_per_frame
    t_units = np.arange(2 * T) * GRID.seconds_per_frame / 2
    A = np.stack([np.interp(t_units, t_frames, H[p]) for p in perm])
    A = A * rng.uniform(0.5, 3, (K, 1)) + rng.uniform(-1, 1, (K, 1)) + 0.05 * H.max() * rng.standard_normal(A.shape)
    cmp = compare_nmf(V, activations=A, activation_times=t_units, frame_times=t_frames)
    truth = _nmf_to_truth(W, cmp.W_)
    np.testing.assert_array_equal(cmp.act_assignment_, truth[perm])
    assert cmp.mean_act_corr_ >= 0.9 and np.all(cmp.act_matched_corr_ >= 0.9)
    assert cmp.activations_.shape == (K, T)


def test_pairs_along_basis_matching(planted):
    W, H, V = planted
    cmp = NMFComparison().fit(V, bases=W.T, activations=H)
    assert cmp.mean_pair_corr_ > 0.99 and cmp.mean_cosine_ > 0.99
    np.testing.assert_array_equal(cmp.assignment_, cmp.act_assignment_)


def test_nmf_likeness_separates_nmf_codes_from_dense_signed_ones(planted):
    W, H, V = planted
    good = nmf_likeness(H, V)
    assert good.nonneg_share_ == 1.0 and good.rel_error_ < 1e-3
    np.testing.assert_allclose(good.W_, W, atol=1e-3)  # the non-negative decoder found is the planted one
    rng = np.random.default_rng(3)
    bad = NMFLikeness(nmf_reference=False).fit(rng.standard_normal(H.shape), V)
    assert 0.4 < bad.nonneg_share_ < 0.6 and bad.rel_error_ > 0.8 and bad.hoyer_ < good.hoyer_
    assert bad.nmf_rel_error_ is None and good.nmf_rel_error_ < 0.05
    # many more units than frames: the NNLS works on the raw rows
    wide = NMFLikeness(nmf_reference=False).fit(np.abs(rng.standard_normal((40, 30))), V[:, :30])
    assert 0 <= wide.rel_error_ < 1
    assert set(good.to_dict()) == {"nonneg_share", "hoyer", "hoyer_frames", "rel_error", "nmf_rel_error"}


def test_hoyer_sparsity_extremes():
    assert hoyer_sparsity(np.eye(10)[3]) == pytest.approx(1.0)
    assert hoyer_sparsity(np.ones(10)) == pytest.approx(0.0)
    np.testing.assert_allclose(hoyer_sparsity(np.stack([np.eye(4)[0], np.ones(4)]), axis=1), [1.0, 0.0], atol=1e-12)
    with pytest.raises(AnalysisError, match="at least 2 values"):
        hoyer_sparsity(np.ones(1))


@pytest.mark.parametrize("beta", ["frobenius", "kl", "is"])
def test_beta_losses_factorise_a_spectrogram_of_audio(beta):
    rng = np.random.default_rng(4)
    t = np.arange(SR) / SR
    notes = [np.sin(2 * np.pi * f0 * t) * (np.sin(2 * np.pi * r * t) > 0) for f0, r in ((440, 1.5), (1250, 2.5))]
    y = (notes[0] + notes[1] + 0.001 * rng.standard_normal(SR)).astype(np.float32)
    W, H, rel = fit_nmf(magnitude_spectrogram(y, grid=GRID), 2, beta_loss=beta, max_iter=200)
    assert W.shape == (F, 2) and H.shape == (2, GRID.n_frames(SR)) and np.all(W >= 0) and np.all(H >= 0)
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 1.0)
    peaks = sorted(GRID.bin_frequencies()[W.argmax(0)])
    assert abs(peaks[0] - 440) < 40 and abs(peaks[1] - 1250) < 40
    assert np.isfinite(rel) and (rel < 0.5 or beta == "is")  # IS tolerates overshoot in quiet cells


def test_waveform_and_spectrogram_inputs_agree():
    y = np.random.default_rng(5).standard_normal(SR // 2).astype(np.float32)
    a = NMFComparison(4, max_iter=50).fit(y=y, grid=GRID)
    b = NMFComparison(4, max_iter=50).fit(GRID.magnitude(y).numpy())
    np.testing.assert_allclose(a.W_, b.W_, atol=1e-6)
    np.testing.assert_allclose(a.frame_times_, GRID.frame_times(a.H_.shape[1]))


def test_bank_bases_of_waveform_kernels_and_nonlinear_decoders():
    t = np.arange(64) / SR
    k = np.stack([np.hanning(64) * np.cos(2 * np.pi * f0 * t) for f0 in (500, 1500, 3000)])
    B = bank_bases(FilterBank("enc", k[:, None], "samples", SR), GRID.bin_frequencies())
    assert B.shape == (3, F)
    np.testing.assert_allclose(GRID.bin_frequencies()[B.argmax(1)], [500, 1500, 3000], atol=SR / 256)
    lin = torch.nn.Linear(3, F, bias=False)
    np.testing.assert_allclose(decoder_bases(lin, 3), lin.weight.detach().numpy().T, atol=1e-6)
    dec = torch.nn.Sequential(torch.nn.Linear(3, F), torch.nn.Softplus())
    D = decoder_bases(dec, 3, scale=2.0)
    z = torch.zeros(1, 3)
    z[0, 1] = 2.0
    with torch.no_grad():
        np.testing.assert_allclose(D[1], (dec(z) - dec(torch.zeros(1, 3)))[0].numpy(), atol=1e-6)
    with pytest.raises(AnalysisError, match="spectro-temporal"):
        bank_bases(FilterBank("c", np.ones((2, 1, 3, 3)), "spectrotemporal", SR), GRID.bin_frequencies())


def test_resample_and_correlation_helpers():
    A = np.arange(10.0)[None]
    np.testing.assert_allclose(resample_activations(A, 10), A)
    up = resample_activations(A, 20)
    assert up.shape == (1, 20) and up[0, 0] == 0 and up[0, -1] == 9
    C = correlation_matrix(np.stack([np.arange(5.0), np.ones(5)]), np.stack([-np.arange(5.0)]))
    np.testing.assert_allclose(C[:, 0], [-1.0, 0.0])


def test_errors_name_the_bad_value(planted):
    _, H, V = planted
    with pytest.raises(AnalysisError, match="unknown NMF loss 'bogus'"):
        fit_nmf(V, 2, beta_loss="bogus")
    with pytest.raises(AnalysisError, match="non-negative spectrogram"):
        magnitude_spectrogram(S=np.log(V + 1e-3))
    with pytest.raises(AnalysisError, match="n_components must lie in"):
        fit_nmf(V, 1000)
    with pytest.raises(AnalysisError, match=r"bases must be \(n_bases, F=129\)"):
        NMFComparison(2).fit(V, bases=np.ones((2, 10)))
    with pytest.raises(AnalysisError, match="exactly one of y"):
        magnitude_spectrogram()
    with pytest.raises(AnalysisError, match="needs a TFGrid"):
        magnitude_spectrogram(np.zeros(100, np.float32))


def test_nmf_figures_build_with_units(planted):
    import plotly.graph_objects as go

    from probe.figures import nmf as fn

    W, H, V = planted
    cmp = NMFComparison().fit(V, bases=W.T, activations=H, frame_times=GRID.frame_times(V.shape[1]))
    figs = [fn.bases_side_by_side(cmp, GRID.bin_frequencies()), fn.activations_vs_h(cmp, n_show=3),
            fn.activations_vs_h(cmp, by="basis"), fn.nmf_matching_matrix(cmp), fn.nmf_matching_matrix(cmp, kind="activations")]
    assert all(isinstance(f, go.Figure) for f in figs)
    text = " ".join(str(f) for f in figs)
    for unit in ("frequency (Hz)", "time (s)", "dB re peak", "cosine", "correlation"):
        assert unit in text
    with pytest.raises(AnalysisError, match="without activations"):
        fn.activations_vs_h(NMFComparison(2, max_iter=20).fit(V))


def test_resampling_averages_a_dense_oscillating_activation():
    # a unit whose output still oscillates at its 1 kHz carrier, sampled every 1 ms vs 8 ms frames
    t_units = np.arange(8000) / 1000.0
    env = (np.sin(2 * np.pi * 0.5 * t_units) > 0).astype(float)
    A = (env * np.maximum(np.sin(2 * np.pi * 333.3 * t_units), 0))[None]
    frames = np.arange(1000) * 0.008
    smooth = resample_activations(A, 1000, times=t_units, target_times=frames)
    raw = resample_activations(A, 1000, times=t_units, target_times=frames, antialias=False)
    target = np.interp(frames, t_units, env)[None]
    assert correlation_matrix(smooth, target)[0, 0] > 0.9 > correlation_matrix(raw, target)[0, 0]
