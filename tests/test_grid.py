import librosa
import numpy as np
import pytest
import torch

from probe import TFGrid
from probe.errors import SpecError


@pytest.mark.parametrize("n_fft,hop,win", [(256, 64, None), (512, 128, 400), (1024, 320, None)])
def test_stft_matches_librosa(n_fft, hop, win, rng):
    g = TFGrid(16000, n_fft, hop, win_length=win)
    y = rng.standard_normal(8000).astype(np.float32)
    ours = g.stft(torch.from_numpy(y)).numpy()
    ref = librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, center=True, pad_mode="constant")
    assert ours.shape == ref.shape == (g.n_freqs, g.n_frames(len(y)))
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-3)


def test_istft_reconstructs(rng):
    g = TFGrid(8000, 256, 64)
    y = torch.from_numpy(rng.standard_normal((2, 12345)).astype(np.float32))
    back = g.istft(g.stft(y), length=y.shape[-1])
    err = 10 * np.log10(((back - y) ** 2).sum().item() / (y ** 2).sum().item())
    assert err < -60


def test_conversions():
    g = TFGrid(8000, 256, 64)
    assert g.n_freqs == 129 and g.seconds_per_frame == 0.008
    assert g.frames_to_seconds(125) == pytest.approx(1.0)
    assert g.seconds_to_frames(1.0) == 125
    assert g.bin_frequencies()[-1] == 4000.0 and g.hz_to_bin(1000) == 32
    np.testing.assert_allclose(g.frame_times(3), [0, 0.008, 0.016])
    nc = TFGrid(8000, 256, 64, center=False)
    assert nc.frames_to_seconds(0) == pytest.approx(128 / 8000)


def test_mel_axis_and_logmel_differentiable():
    g = TFGrid(16000, 512, 160, n_mels=40)
    mf = g.mel_frequencies()
    assert mf.shape == (40,) and np.all(np.diff(mf) > 0) and mf[-1] < 8000
    y = torch.randn(16000, requires_grad=True)
    out = g.logmel(y)
    assert out.shape == (40, 101)
    out.sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    ref = librosa.feature.melspectrogram(y=y.detach().numpy(), sr=16000, n_fft=512, hop_length=160, n_mels=40,
                                         center=True, pad_mode="constant", power=2.0)
    np.testing.assert_allclose(torch.exp(out).detach().numpy() - 1e-6, ref, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("kw,msg", [({"sample_rate": 0}, "sample_rate"), ({"sample_rate": 8000, "n_fft": 1}, "n_fft"),
                                    ({"sample_rate": 8000, "window": "kaiser"}, "unknown window"),
                                    ({"sample_rate": 8000, "n_fft": 256, "win_length": 300}, "win_length")])
def test_bad_grids(kw, msg):
    with pytest.raises(SpecError, match=msg):
        TFGrid(**kw)


def test_no_mels_is_explicit():
    with pytest.raises(SpecError, match="no mel bands"):
        TFGrid(8000).mel_frequencies()
