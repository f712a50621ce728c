"""Benchmark: cost of probe's T-F attribution pipeline, and chunked attribution of long audio.

``bench()`` returns

* ``attribution_overhead`` — median time of ``probe.attribute`` (IG, magnitude-STFT
  domain, targets, guards) over the median time of Captum's bare
  ``IntegratedGradients.attribute`` on the model's own input with the same steps,
  quadrature, internal batch size and a 10 s clip; runs interleaved, one process.
  ``attribution_overhead_waveform`` is the same for a small waveform CNN (whose T-F path
  adds an inverse STFT: probe integrates in the waveform domain and applies the inverse
  STFT's chain rule once; goal <= 1.3). ``attribution_overhead_detail`` has both, with
  CPU-time ratios (``cpu_ratio``: robust when the machine is shared).
* ``long_audio`` — chunked IG on minutes of audio, each length in a fresh subprocess:
  ``seconds_per_minute`` (at the longest length), ``peak_rss_mb`` (the child's max RSS),
  ``linearity`` (seconds-per-minute at the longest length over that at the shortest;
  1.0 = time linear in length), ``linear_fit_r2`` (time = slope × minutes) and the
  per-length rows. Each child warms up on a 12 s clip first.

The default run measures 0.5, 1 and 2 minutes; ``--full`` (or ``bench(full=True)``)
measures up to 10 minutes. Run: ``python -m probe.benchmarks.attribution [--quick|--full]`` or ``probe bench``.
The zoo studies behind docs/findings_attribution.md and the GPU check live in
``tests/benchmarks/bench_attribution.py`` (they need the zoo and the test models).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np



def _crnn_spec():
    """A CRNN of the zoo's shape (log-mel 64, conv 32/64/64 with frequency pooling, BiGRU 64) with random weights."""
    import torch
    import torch.nn as nn

    from probe.adapter import ModelSpec
    from probe.grid import TFGrid

    class CRNN(nn.Module):
        def __init__(self, n_mels=64, classes=8):
            super().__init__()
            blocks, c_in = [], 1
            for c, p in zip((32, 64, 64), (4, 4, 2)):
                blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d((p, 1))]
                c_in = c
            self.conv = nn.Sequential(*blocks)
            self.rnn = nn.GRU(64 * 2, 64, batch_first=True, bidirectional=True)
            self.head = nn.Linear(128, classes)

        def forward(self, x):  # (B, F, T)
            h = self.conv(x[:, None])
            b, c, f, t = h.shape
            h, _ = self.rnn(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
            return torch.sigmoid(self.head(h)).transpose(1, 2)

    torch.manual_seed(0)
    return ModelSpec(CRNN().eval(), input_kind="logmel", grid=TFGrid(16000, 1024, 320, n_mels=64),
                     output_kind="frame_probs", classes=[f"c{i}" for i in range(8)], name="bench_crnn")


def _wave_spec():
    import torch
    import torch.nn as nn

    from probe.adapter import ModelSpec
    from probe.grid import TFGrid

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 64, 400, stride=160, padding=200), nn.ReLU(), nn.Conv1d(64, 64, 5, padding=2),
                        nn.ReLU(), nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Conv1d(64, 8, 1), nn.Sigmoid())
    return ModelSpec(net.eval(), input_kind="waveform", grid=TFGrid(16000, 1024, 320), input_layout="bcn",
                     output_kind="frame_probs", classes=[f"c{i}" for i in range(8)], name="bench_wave")


def _clip(seconds, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    return (0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            ).astype(np.float32)


def _overhead(spec, seconds=10.0, steps=32, batch=8, repeats=5) -> dict:
    import captum.attr as ca
    import torch

    from probe.attribution import attribute

    y = _clip(seconds)
    x = spec.features(y).detach()
    # the bare call: Captum IG on the model's own input; "silence" there is log(eps) (spectral) or zeros (waveform)
    base = torch.full_like(x, float(np.log(spec.eps))) if spec.input_kind == "logmel" else torch.zeros_like(x)

    def bare():  # (on CUDA an eval-mode RNN needs cuDNN off for backward, in both pipelines)
        ig = ca.IntegratedGradients(lambda inp: spec.model(inp)[:, 0, :].mean(-1))
        with torch.backends.cudnn.flags(enabled=x.device.type != "cuda"):
            ig.attribute(x, baselines=base, n_steps=steps, method="gausslegendre", internal_batch_size=batch,
                         return_convergence_delta=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    def ours():
        # the same quadrature as the bare call (fixed steps, linear spacing): the overhead of the T-F domain alone
        attribute(spec, y, "class=c0", method="ig", steps=steps, spacing="linear", internal_batch_size=batch)
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    ours(), bare()  # warm-up
    t_b, t_o, c_b, c_o = [], [], [], []
    for i in range(repeats):
        for fn, acc, cpu in ((bare, t_b, c_b), (ours, t_o, c_o)) if i % 2 == 0 else ((ours, t_o, c_o), (bare, t_b, c_b)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            acc.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    mb, mo = statistics.median(t_b), statistics.median(t_o)
    # CPU time as well: on a shared machine wall time mostly measures the neighbours
    cb, co = statistics.median(c_b), statistics.median(c_o)
    return {"ratio": round(mo / mb, 4), "cpu_ratio": round(co / cb, 4) if cb > 0 else None, "probe_s": round(mo, 3),
            "captum_bare_s": round(mb, 3), "probe_cpu_s": round(co, 3), "captum_bare_cpu_s": round(cb, 3),
            "repeats": repeats, "steps": steps, "seconds": seconds}


def _child(minutes: float, steps: int) -> dict:
    """One long-audio measurement (run in a fresh process so RSS is its own)."""
    import resource

    import torch

    from probe.attribution import attribute

    torch.set_num_threads(1)
    spec = _crnn_spec()
    # warm-up: two chunks
    attribute(spec, _clip(12.0), "class=c0", method="ig", steps=steps, spacing="linear", chunk_seconds=10.0)
    y = _clip(minutes * 60.0, seed=1)
    t0 = time.perf_counter()
    a = attribute(spec, y, "class=c0", method="ig", steps=steps, spacing="linear", chunk_seconds=10.0,
                  overlap_seconds=2.0)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"minutes": minutes, "seconds": round(dt, 3), "seconds_per_minute": round(dt / minutes, 3),
            "peak_rss_mb": round(rss, 1), "chunks": a.info["chunks_n"], "map_shape": list(a.map.shape)}


def _long_audio(lengths, steps) -> dict:
    rows = []
    for m in lengths:
        r = subprocess.run([sys.executable, "-m", "probe.benchmarks.attribution", "--child", str(m), "--steps", str(steps)],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"long-audio child ({m} min) failed: {r.stderr[-2000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    spm = [r["seconds_per_minute"] for r in rows]
    L = np.array([r["minutes"] for r in rows])
    t = np.array([r["seconds"] for r in rows])
    slope = float(L @ t / (L @ L))  # time = slope * minutes, through the origin
    r2 = 1 - float(np.sum((t - slope * L) ** 2) / np.sum((t - t.mean()) ** 2)) if len(rows) > 1 else 1.0
    return {"seconds_per_minute": spm[-1], "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
            "linearity": round(spm[-1] / spm[0], 4), "linear_fit_r2": round(r2, 5),
            "method": f"ig, {steps} steps, 10 s chunks, 2 s overlap",
            "model": "bench_crnn (zoo CRNN shape, 16 kHz)", "rows": rows}


def bench(quick: bool = False, full: bool = False) -> dict:
    """Attribution overhead (10 s clip) and long-audio scaling; see the module docstring."""
    import torch

    torch.set_num_threads(1)
    reps = 3 if quick else 5
    crnn = _overhead(_crnn_spec(), repeats=reps)
    wave = _overhead(_wave_spec(), repeats=reps)
    lengths = (0.5, 1.0) if quick else ((1.0, 2.5, 5.0, 10.0) if full else (0.5, 1.0, 2.0))
    steps = 8 if quick else 16
    return {"attribution_overhead": crnn["ratio"], "attribution_overhead_waveform": wave["ratio"],
            "attribution_overhead_detail": {"crnn_logmel": crnn, "wave_cnn": wave},
            "long_audio": _long_audio(lengths, steps)}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="long audio up to 10 minutes")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=16, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(_child(a.child, a.steps)))
    else:
        print(json.dumps(bench(quick=a.quick, full=a.full), indent=1))
