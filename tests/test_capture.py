import re
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

from probe import ModelSpec, TFGrid, capture
from probe.hooks import capture_audio
from probe.errors import CaptureError, LayerNotFoundError, SpecError
from tests._models import InplaceConv, TinyBLSTM, assert_unchanged, n_hooks, snapshot


@pytest.fixture
def blstm_spec():
    torch.manual_seed(0)
    return ModelSpec(TinyBLSTM(), input_kind="logmag", grid=TFGrid(8000, 128, 32), input_layout="btf",
                     output_kind="tf_embeddings")


@pytest.fixture
def wave_spec():
    torch.manual_seed(0)
    return ModelSpec(InplaceConv(), input_kind="waveform", grid=TFGrid(8000, 128, 32), input_layout="bcn")


def test_axes_and_seconds_inferred(blstm_spec, rng):
    y = rng.standard_normal(8000).astype(np.float32)
    with capture(blstm_spec, "*") as cache:
        blstm_spec.forward(y)
    rec = cache["blstm"]
    assert rec.shape == (1, 251, 32) and rec.axes == ["batch", "time", "channel"]
    assert rec.seconds_per_step == pytest.approx(32 / 8000)
    assert rec.times()[-1] == pytest.approx(250 * 0.004)
    # LSTM (out, (h, c)): the state parts are captured too, without a time axis
    assert cache["blstm/1/0"].shape == (4, 1, 16) and cache["blstm/1/0"].time_axis is None
    assert cache["norm"].axes == ["batch", "time", "freq"]


def test_waveform_layers_seconds_per_step(wave_spec, rng):
    with capture(wave_spec, ["front", "mix"]) as cache:
        wave_spec.forward(rng.standard_normal(4000).astype(np.float32))
    assert cache["front"].seconds_per_step == pytest.approx(16 / 8000)
    assert cache["front"].axes == ["batch", "channel", "time"]


def test_selectors(blstm_spec, rng):
    m = blstm_spec.model
    from probe.hooks import select_layers

    assert select_layers(m, "bl*") == ["blstm"]
    assert select_layers(m, ["embed", "norm"]) == ["norm", "embed"]
    assert select_layers(m, re.compile("^(act|embed)$")) == ["embed", "act"]
    assert select_layers(m, "re:^n") == ["norm"]
    assert select_layers(m, nn.Linear) == ["embed"]
    assert select_layers(m, lambda n, mod: isinstance(mod, nn.LSTM)) == ["blstm"]
    with pytest.raises(LayerNotFoundError, match="no layer named 'blstn'.*did you mean 'blstm'"):
        select_layers(m, "blstn")
    with pytest.raises(LayerNotFoundError, match="no module of type"):
        select_layers(m, nn.Conv2d)


def test_inplace_activation_and_repeated_calls(wave_spec, rng):
    y = rng.standard_normal(4000).astype(np.float32)
    with capture(wave_spec, ["front", "mix"]) as cache:
        wave_spec.forward(y)
    # front's output is rewritten by ReLU(inplace=True); the record must keep the pre-ReLU values
    with torch.no_grad():
        expected = wave_spec.model.front(wave_spec.features(y))
    assert (cache["front"].tensor < 0).any()
    torch.testing.assert_close(cache["front"].tensor, expected)
    assert "mix" in cache and "mix@1" in cache and cache["mix@1"].call == 1
    assert not torch.equal(cache["mix"].tensor, cache["mix@1"].tensor)


def test_functional_inplace_is_detected_not_silently_wrong(rng):
    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            h = self.lin(x)
            h.mul_(0)  # in-place op outside any module
            return h

    m = Sneaky()
    with pytest.raises(CaptureError, match="modified in place"):
        with torch.no_grad(), capture(m, "lin"):
            m(torch.randn(2, 4))
    with torch.no_grad(), capture(m, "lin", copy=True) as cache:
        m(torch.ones(2, 4))
    assert cache["lin"].tensor.abs().sum() > 0
    assert n_hooks(m) == 0


def test_gradients_via_tensor_hooks(blstm_spec, rng):
    x = blstm_spec.features(rng.standard_normal(4000).astype(np.float32))
    with capture(blstm_spec, ["embed"], grads=True, inputs=True) as cache:
        out = blstm_spec.model(x)
        out.sum().backward()
    rec = cache["embed"]
    assert rec.grad is not None and rec.grad.shape == rec.tensor.shape
    assert rec.inputs[0].shape == (1, x.shape[1], 32)
    assert all(len(m._backward_hooks) == 0 for m in blstm_spec.model.modules())
    blstm_spec.model.zero_grad()


def test_reducers_and_dtype(blstm_spec, rng):
    y = rng.standard_normal(8000).astype(np.float32)
    with capture(blstm_spec, "blstm", reduce="mean") as c1:
        blstm_spec.forward(y)
    with capture(blstm_spec, "blstm") as full:
        blstm_spec.forward(y)
    torch.testing.assert_close(c1["blstm"].tensor, full["blstm"].tensor.mean(1, keepdim=True))
    with capture(blstm_spec, "blstm", every=5, dtype=torch.float16) as c2:
        blstm_spec.forward(y)
    assert c2["blstm"].tensor.dtype == torch.float16 and c2["blstm"].shape[1] == 51
    assert c2["blstm"].seconds_per_step == pytest.approx(5 * 0.004)
    with capture(blstm_spec, "blstm", max_steps=10) as c3:
        blstm_spec.forward(y)
    assert c3["blstm"].shape[1] == 10


def test_stream_to_disk(blstm_spec, rng, tmp_path):
    y = rng.standard_normal(4000).astype(np.float32)
    with capture(blstm_spec, ["embed", "norm"], stream_to=tmp_path / "s") as cache:
        out = blstm_spec.forward(y)
    assert cache["embed"].tensor is None and cache["embed"].path.is_file()
    assert cache["embed"].load().shape == (1, 126, 65 * 4)
    assert len(list((tmp_path / "s").glob("*.safetensors"))) == 2
    del out


def test_hooks_removed_on_exception_and_model_unchanged(wave_spec, rng):
    model = wave_spec.model
    model.train()  # BatchNorm/Dropout in train mode: the capture must not flip the flags
    model.front.weight.requires_grad_(False)
    snap = snapshot(model)
    y = rng.standard_normal(4000).astype(np.float32)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(wave_spec, "*"):
            raise RuntimeError("boom")
    assert n_hooks(model) == 0
    with torch.no_grad():
        x = wave_spec.features(y)
    # a forward in train mode updates BN statistics itself; compare after capture-only work
    with capture(wave_spec, "*", reduce="mean"):
        pass
    assert_unchanged(model, snap)
    assert n_hooks(model) == 0
    del x


def test_thousand_captures_some_raising_leave_no_hooks(blstm_spec, rng):
    model = blstm_spec.model
    snap = snapshot(model)
    x = blstm_spec.features(rng.standard_normal(600).astype(np.float32))
    raised = 0
    for i in range(1000):
        try:
            with torch.no_grad(), capture(blstm_spec, ["embed", "act"] if i % 2 else "*") as cache:
                model(x)
                if i % 3 == 0:
                    raise ValueError(i)
        except ValueError:
            raised += 1
        assert len(cache) >= 2
    assert raised == 334
    assert n_hooks(model) == 0
    assert_unchanged(model, snap)


def test_nested_captures_are_independent(blstm_spec, rng):
    x = blstm_spec.features(rng.standard_normal(600).astype(np.float32))
    with capture(blstm_spec, "embed") as outer:
        with capture(blstm_spec, "norm") as inner:
            blstm_spec.model(x)
        assert n_hooks(blstm_spec.model) == 1
        blstm_spec.model(x)
    assert list(inner) == ["norm"] and list(outer) == ["embed", "embed@1"]
    assert n_hooks(blstm_spec.model) == 0


def test_threads_sharing_a_model_never_see_each_other(blstm_spec, rng):
    model = blstm_spec.model
    inputs = [blstm_spec.features(rng.standard_normal(600 + 64 * i).astype(np.float32)) for i in range(4)]
    results, errors = {}, []
    barrier = threading.Barrier(4)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(15):
                with torch.no_grad(), capture(blstm_spec, ["embed"]) as cache:
                    model(inputs[i])
                assert list(cache) == ["embed"], list(cache)
                assert cache["embed"].shape[1] == inputs[i].shape[1]
            results[i] = cache["embed"].shape
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    assert len({s[1] for s in results.values()}) == 4
    assert n_hooks(model) == 0


def test_torchscript_refused_with_advice(rng):
    scripted = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    with pytest.raises(CaptureError, match="TorchScript.*eager nn.Module"):
        capture(scripted, "*")


def test_chunked_capture_matches_whole_for_framewise_layers(rng):
    torch.manual_seed(0)

    class Framewise(nn.Module):  # no temporal context → chunking must be exact
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(65, 8)

        def forward(self, x):
            return self.lin(x)

    spec = ModelSpec(Framewise(), input_kind="logmag", grid=TFGrid(8000, 128, 32), input_layout="btf")
    y = rng.standard_normal(8000 * 3).astype(np.float32)
    whole = capture_audio(spec, y, "lin")
    chunked = capture_audio(spec, y, "lin", chunk_seconds=1.0, overlap_seconds=0.05)
    a, b = whole["lin"].tensor, chunked["lin"].tensor
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---- time offsets and overrides --------------------------------------------------------------
def test_records_carry_frame_centre_offsets(wave_spec, rng):
    # InplaceConv's front: 32 taps every 16 samples, no padding → step k covers samples 16k … 16k+31
    with capture(wave_spec, "front") as cache:
        wave_spec.forward(rng.standard_normal(4000).astype(np.float32))
    rec = cache["front"]
    assert rec.time_offset == pytest.approx(15.5 / 8000) and rec.time_source == "inferred"
    np.testing.assert_allclose(rec.times()[:3], (15.5 + 16 * np.arange(3)) / 8000)
    assert rec.describe()["time_offset"] == rec.time_offset


def test_spec_time_table_and_capture_arguments_override(tmp_path, rng):
    from probe.adapter import load_spec
    from tests.gallery import write_spec_folder

    toml = write_spec_folder("stft160_16000_c", tmp_path, time={"seconds_per_step": 0.02, "offset": 0.3})
    spec = load_spec(toml)
    y = rng.standard_normal(8000).astype(np.float32)
    with torch.no_grad(), capture(spec, "stft") as cache:
        spec.model(spec.features(y))
    rec = cache["stft"]
    assert (rec.seconds_per_step, rec.time_offset, rec.time_source) == (0.02, 0.3, "spec")
    assert spec.to_dict()["time"] == {"seconds_per_step": 0.02, "offset": 0.3}
    with torch.no_grad(), capture(spec, "stft", seconds_per_step={"stft": 0.01}, time_offset=0.0) as cache:
        spec.model(spec.features(y))
    rec = cache["stft"]
    assert (rec.seconds_per_step, rec.time_offset, rec.time_source) == (0.01, 0.0, "given")


def test_bad_time_table_is_a_spec_error():
    from probe.adapter import _check_time

    with pytest.raises(SpecError, match=r"\[time\] has unknown keys \['hop'\]"):
        _check_time({"hop": 3})
    with pytest.raises(SpecError, match="seconds_per_step must be positive, given -1"):
        _check_time({"seconds_per_step": -1})
    with pytest.raises(SpecError, match=r"\[time.layers.'enc'\] offset must be a number, given 'x'"):
        _check_time({"layers": {"enc": {"offset": "x"}}})


def test_chunks_fall_on_every_layers_frame_boundaries(rng):
    # conv stack with a 320-sample hop: a 0.995 s chunk (15920 samples, not a multiple of 320) is cut
    # back to 15680 so that chunked frames equal the whole-signal ones
    from tests.gallery import spec_of

    spec = spec_of("conv_stack")
    y = rng.standard_normal(16000 * 3).astype(np.float32) * 0.1
    whole = capture_audio(spec, y, "conv.6")
    chunked = capture_audio(spec, y, "conv.6", chunk_seconds=0.995, overlap_seconds=0.05)
    a, b = whole["conv.6"].tensor, chunked["conv.6"].tensor
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert chunked["conv.6"].time_offset == whole["conv.6"].time_offset == pytest.approx(199.5 / 16000)
