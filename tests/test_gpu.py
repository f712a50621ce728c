"""CUDA checks: run where a GPU exists (skipped elsewhere). Same guarantees as on the CPU."""

import numpy as np
import pytest
import torch

from probe import ModelSpec, TFGrid, capture
from tests._models import InplaceConv, TinyBLSTM, assert_unchanged, n_hooks, snapshot

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_grid_stft_on_cuda_matches_cpu(rng):
    g = TFGrid(8000, 256, 64)
    y = torch.from_numpy(rng.standard_normal((2, 8000)).astype(np.float32))
    S_cpu, S_gpu = g.stft(y), g.stft(y.cuda())
    assert S_gpu.is_cuda
    torch.testing.assert_close(S_gpu.cpu(), S_cpu, atol=1e-3, rtol=1e-4)
    back = g.istft(S_gpu, length=8000)
    assert ((back.cpu() - y) ** 2).sum() / (y ** 2).sum() < 1e-6


@pytest.mark.parametrize("make,kind,layout", [(TinyBLSTM, "logmag", "btf"), (InplaceConv, "waveform", "bcn")])
def test_capture_cuda_model_records_on_cpu(make, kind, layout, rng):
    torch.manual_seed(0)
    model = make().cuda().eval()
    spec = ModelSpec(model, input_kind=kind, grid=TFGrid(8000, 128, 32), input_layout=layout)
    snap = snapshot(model)
    y = rng.standard_normal(4000).astype(np.float32)
    x = spec.features(y)
    assert x.is_cuda  # features follow the model's device
    with torch.no_grad(), capture(spec, "*") as cache:
        out = spec.model(x)
    for rec in cache.values():
        assert rec.tensor.device.type == "cpu"
    first = next(iter(cache.values()))
    assert first.seconds_per_step is not None
    with torch.no_grad(), capture(spec, "*", device="cuda") as on_gpu:
        spec.model(x)
    assert next(iter(on_gpu.values())).tensor.is_cuda
    assert n_hooks(model) == 0
    assert_unchanged(model, snap)
    # the same model on the CPU gives the same records
    cpu_spec = ModelSpec(make().eval(), input_kind=kind, grid=TFGrid(8000, 128, 32), input_layout=layout)
    cpu_spec.model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    with torch.no_grad(), capture(cpu_spec, "*") as ref:
        cpu_spec.model(cpu_spec.features(y))
    for k in ref:
        torch.testing.assert_close(cache[k].tensor, ref[k].tensor, atol=2e-3, rtol=2e-3)
    del out


@pytest.mark.parametrize("make,kind,layout", [(TinyBLSTM, "logmag", "btf"), (InplaceConv, "waveform", "bcn")])
def test_attribution_on_cuda_matches_cpu(make, kind, layout, rng):
    from probe.attribution import attribute

    torch.manual_seed(0)
    cpu_model = make().eval()
    gpu_model = make().eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.cuda()
    grid = TFGrid(8000, 128, 32)
    specs = [ModelSpec(m, input_kind=kind, grid=grid, input_layout=layout) for m in (cpu_model, gpu_model)]
    y = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    target = lambda out: out.float().flatten(1)[:, ::3].sum(1)  # noqa: E731 - a non-constant scalar per item
    snap = snapshot(gpu_model)
    a_cpu = attribute(specs[0], y, target, method="ig", steps=32)
    a_gpu = attribute(specs[1], y, target, method="ig", steps=32)
    assert isinstance(a_gpu.map, np.ndarray) and a_gpu.map.shape == a_cpu.map.shape
    scale = np.abs(a_cpu.map).max()
    assert np.abs(a_gpu.map - a_cpu.map).max() <= 2e-2 * scale
    assert n_hooks(gpu_model) == 0
    assert_unchanged(gpu_model, snap)
