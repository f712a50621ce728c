"""Every gallery model's time axes, offsets, axis names and filter banks, against answers known by construction."""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest
import torch

from probe import capture
from probe._shapes import time_probe
from probe.filterbank import effective_kernels, filters
from tests.gallery import ENTRIES, event_signal, spec_of

NAMES = sorted(ENTRIES)


@functools.lru_cache(maxsize=None)
def _spec(name):
    """One spec per gallery model for this module: its shape probe runs once (nothing here changes the model)."""
    return spec_of(name)


def _captured(name):
    e = ENTRIES[name]
    spec = _spec(name)
    y = np.random.default_rng(0).standard_normal(int(2.0 * e.sample_rate)).astype(np.float32) * 0.1
    with torch.no_grad(), capture(spec, list(e.layers)) as cache:
        spec.model(spec.features(y))
    return spec, cache


@pytest.mark.parametrize("name", NAMES)
def test_seconds_offsets_and_axes(name):
    e = ENTRIES[name]
    _, cache = _captured(name)
    for layer, ex in e.layers.items():
        rec = cache[layer]
        want = float(ex.seconds_per_step)
        assert rec.seconds_per_step == pytest.approx(want, rel=1e-9, abs=0), (layer, rec.seconds_per_step, ex)
        # the analytic frame centre, within half a sample
        assert abs(rec.time_offset - float(ex.offset)) <= 0.5 / e.sample_rate * (1 + 1e-9), (layer, rec.time_offset, ex)
        assert tuple(rec.axes) == ex.axes, (layer, rec.axes)
        assert rec.time_source == "inferred"
        t = rec.times()
        assert t[0] == pytest.approx(rec.time_offset) and t[1] - t[0] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_filter_banks_found_exactly_where_they_are(name):
    e = ENTRIES[name]
    banks = filters(_spec(name))
    assert {k: b.axis for k, b in banks.items()} == e.banks


def test_hops_are_exact_rationals_not_rounded():
    # hop 441 at 44.1 kHz and hop 160 at 16 kHz: exactly 10 ms, found by bisection of the length steps
    for name in ("stft441_44100_c", "stft160_16000_c", "stft256_22050_nc"):
        r = time_probe(_spec(name)).results[("stft", 0, "out", 0)]
        assert r.method == "exact"
        hop = ENTRIES[name].input["hop_length"]
        assert r.hop == Fraction(hop) and r.seconds_per_step == Fraction(hop, ENTRIES[name].sample_rate)


def test_probe_starts_from_the_minimum_accepted_length():
    assert time_probe(_spec("window_embedder")).min_steps == 25600  # a 1.6 s window at 16 kHz
    assert time_probe(_spec("conv_stack")).min_steps == 400          # the receptive field
    assert time_probe(_spec("valid_same")).min_steps == 400 + 4 * 160  # five front frames for the valid conv


def test_no_frequency_label_on_widths_that_merely_equal_n_mels():
    _, cache = _captured("mel_lstm")
    spec = _spec("mel_lstm")
    y = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    with torch.no_grad(), capture(spec, "lstm") as c:
        spec.model(spec.features(y))
    assert c["lstm"].axes == ["batch", "time", "channel"]
    assert "mel" not in c["lstm/1/0"].axes and c["lstm/1/0"].axes[1] == "batch"  # h_n: [layers*dirs, batch, hidden]
    # a spectral conv that does keep the mel axis is labelled so
    _, cc = _captured("mel_crnn")
    assert cc["conv1"].axes[2] == "mel"


@pytest.mark.parametrize("name,layer,stored", [
    ("stft160_16000_c", "stft", lambda m: m.stft.weight[:, 0]),
    ("conv_stack", "conv.0", lambda m: m.conv[0].weight[:, 0]),
    ("framed_conv2d", "conv", lambda m: m.conv.weight[:, 0, :, 0]),
    ("window_embedder", "conv", lambda m: m.conv.weight[:, 0]),
    ("sincnet", "sinc", lambda m: m.sinc.kernels()),
])
def test_effective_kernels_equal_the_kernels_applied(name, layer, stored):
    spec = _spec(name)
    K, meta = effective_kernels(spec, layer)
    W = stored(spec.model).detach().numpy()
    assert K.shape == W.shape
    np.testing.assert_allclose(K, W, rtol=1e-4, atol=1e-6 * np.abs(W).max())


def test_framed_and_parametric_banks_use_effective_kernels():
    banks = filters(_spec("framed_conv2d"))
    assert banks["conv"].extra.get("effective") and banks["conv"].weights.shape == (8, 512)
    assert banks["conv"].stride == 512


def test_sinc_band_edges_recovered():
    from probe.analyze.filters import filter_responses

    bank = filters(_spec("sincnet"))["sinc"]
    fr = filter_responses(bank, n_fft=8192)
    edges = np.array(ENTRIES["sincnet"].extra["edges"])
    # −3 dB edges of a 251-tap Hamming-windowed sinc lie within ~70 Hz of the nominal edges
    np.testing.assert_allclose(fr.low_hz_, edges[:, 0], atol=70)
    np.testing.assert_allclose(fr.high_hz_, edges[:, 1], atol=70)


def test_transformer_mlp_is_no_filter_bank_and_forcing_works():
    spec = _spec("fbank_transformer")
    from probe.errors import LayerNotFoundError

    with pytest.raises(LayerNotFoundError, match="not a filter bank.*input is not the frequency axis"):
        filters(spec, layers=["block.mlp.2"])
    forced = filters(spec, layers=["block.mlp.0"], axis="bins")  # out width 64 = n_mels: read as synthesis on demand
    assert forced["block.mlp.0"].axis == "frequency" and forced["block.mlp.0"].role == "synthesis"


def test_forcing_a_deep_layer_along_samples_takes_its_input_rate():
    spec = _spec("conv_stack")
    bank = filters(spec, layers="conv.3", axis="samples")["conv.3"]
    assert bank.sample_rate == 16000 // 20  # conv.3 sees conv.2's outputs, 20 samples apart
    assert bank.weights.shape == (8, 8, 3)


@pytest.mark.parametrize("name,layer,hop_s", [("window_embedder", "embed", 0.1), ("stft441_44100_c_hann", "stft", 0.01)])
def test_an_event_lands_within_one_frame_of_its_time(name, layer, hop_s):
    at = 3.0
    spec = _spec(name)
    y = event_signal(name, at, seconds=6.0, kind="burst" if name == "window_embedder" else "click")
    with torch.no_grad(), capture(spec, layer) as cache:
        spec.model(spec.features(y))
    rec = cache[layer]
    x = rec.numpy()
    v = np.moveaxis(x, rec.time_axis, 0).reshape(x.shape[rec.time_axis], -1)
    change = np.linalg.norm(v - np.median(v, axis=0), axis=1)  # how far each frame is from silence
    active = change > 0.5 * change.max()
    t = rec.times()
    assert abs(t[active].mean() - at) <= hop_s, (t[active], at)
    if name == "window_embedder":  # the frames that hold the event, counted from 0, sit 0.8 s earlier
        assert abs((t[active] - rec.time_offset).mean() - at) > 0.7


def test_hop_does_not_depend_on_the_spec_grid():
    # the case: a 160-sample hop at 16 kHz used to read 0.01025 s unless [input] hop matched it
    from probe import ModelSpec, TFGrid
    from tests.gallery import build

    for grid_hop in (128, 256, 441):
        spec = ModelSpec(build("stft160_16000_c"), input_kind="waveform", grid=TFGrid(16000, 1024, grid_hop),
                         input_layout="bcn")
        r = time_probe(spec).results[("stft", 0, "out", 0)]
        assert r.seconds_per_step == Fraction(1, 100) and r.method == "exact"
