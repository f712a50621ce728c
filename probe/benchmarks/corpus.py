"""``probe bench --only corpus``: clips/s of the corpus engines beside a bare batched forward loop.

All figures come from one process, measured side by side on the same synthetic clips:

* ``bare``: read each clip (soundfile), stack a batch, ``spec.features`` and the model's
  forward under ``no_grad`` — the floor any engine pays;
* ``inprocess``: :func:`~probe.corpus.run_corpus` with capture, unit statistics and Parquet
  output, without concepts and without the random-init model (the engine's own cost);
* ``ray_1`` / ``ray_2``: the Ray Data engine with one and two single-threaded actors on a
  local Ray (``ray.init`` excluded; actor start-up and model loading included);
* ``inprocess_concepts``: the same with every acoustic concept (librosa, pYIN included), on
  a quarter of the clips, so its cost is visible on its own.

``bare`` and ``inprocess`` are medians of ``repeats`` interleaved runs (the machines these run on are
shared and noisy); the Ray runs are single. The in-process engine and the bare loop run with one torch thread, the core count of one
Ray actor. Time-vs-clips linearity (R²) and the peak of traced Python allocations
(``tracemalloc``: numpy and pyarrow buffers, not torch's allocator) come from in-process runs at
a quarter, half and all of the clips.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

__all__ = ["bench", "bench_corpus"]


def _write_clips(folder: Path, n: int, seconds: float, sr: int) -> list:
    import soundfile as sf

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        y = 0.01 * rng.standard_normal(len(t))
        for _ in range(6):
            a = int(rng.uniform(0, seconds - 1) * sr)
            b = a + int(rng.uniform(0.2, 1.0) * sr)
            y[a:b] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(100, 4000) * t[a:b])
        p = folder / f"clip{i:04d}.wav"
        sf.write(p, y.astype(np.float32), sr)
        paths.append(p)
    return paths


def _bare_loop(spec, paths, batch_size: int) -> float:
    import soundfile as sf
    import torch

    t0 = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        ys = np.stack([sf.read(p, dtype="float32")[0] for p in paths[i:i + batch_size]])
        with torch.no_grad():
            spec.model(spec.features(ys))
    return time.perf_counter() - t0


def bench_corpus(*, model: str = "zoo:crnn_sed", layers=("conv.2", "rnn"), n_clips: int = 200,
                 seconds: float = 10.0, batch_size: int = 8, ray: bool = True, repeats: int = 3) -> dict:
    """Measure the corpus engines (see the module docstring); returns clips/s and the goal ratios."""
    import torch

    from ..resolve import load
    from ..corpus.run import run_corpus
    from ..corpus.worker import RunOptions

    from ..errors import SpecError

    try:
        spec = load(model)
    except SpecError:  # no zoo installed: the same-shaped CRNN the capture benchmark uses (random weights)
        from .capture import _crnn_spec

        spec = model = _crnn_spec()
        layers = ("conv.8", "gru")
    sr = spec.sample_rate
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-corpus-"))
    threads = torch.get_num_threads()
    out: dict = {"model": model if isinstance(model, str) else spec.name, "layers": list(layers), "clips": n_clips, "seconds_per_clip": seconds,
                 "batch_size": batch_size, "torch_threads": 1}
    try:
        torch.set_num_threads(1)
        paths = _write_clips(tmp / "clips", n_clips, seconds, sr)
        opts = RunOptions(layers=tuple(layers), concepts=(), random_init=False, batch_size=batch_size)
        _bare_loop(spec, paths[:batch_size], batch_size)  # warm-up
        bare, inproc = [], []
        for r in range(repeats):  # interleaved, alternating order: the machine's load drifts
            for which in (("bare", "inproc") if r % 2 == 0 else ("inproc", "bare")):
                if which == "bare":
                    bare.append(_bare_loop(spec, paths, batch_size))
                else:
                    t0 = time.perf_counter()
                    run_corpus(model, tmp / "clips", tmp / f"inproc{r}", options=opts)
                    inproc.append(time.perf_counter() - t0)
        rates = {"bare": n_clips / statistics.median(bare), "inprocess": n_clips / statistics.median(inproc)}
        out["repeats"] = repeats
        # linearity and memory: a quarter, half and all of the clips
        sizes, times, peaks = [], [], []
        for frac in (0.25, 0.5, 1.0):
            k = max(2, int(round(frac * n_clips)))
            sub = tmp / f"sub{k}"
            sub.mkdir()
            for p in paths[:k]:
                (sub / p.name).symlink_to(p)
            tracemalloc.start()
            t0 = time.perf_counter()
            run_corpus(model, sub, tmp / f"lin{k}", options=opts)
            times.append(time.perf_counter() - t0)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
            tracemalloc.stop()
            sizes.append(k)
        slope, icpt = np.polyfit(sizes, times, 1)
        pred = slope * np.asarray(sizes) + icpt
        r2 = 1 - np.sum((np.asarray(times) - pred) ** 2) / max(np.sum((np.asarray(times) - np.mean(times)) ** 2), 1e-12)
        out["linearity"] = {"clips": sizes, "seconds": [round(x, 3) for x in times], "r2": round(float(r2), 4),
                            "fixed_seconds": round(float(icpt), 3)}
        rates["inprocess_marginal"] = 1.0 / slope if slope > 0 else float("nan")  # without start-up (model, axes)
        out["peak_traced_mib"] = {str(k): round(p, 1) for k, p in zip(sizes, peaks)}
        # what the concepts cost, on a quarter of the clips
        k = sizes[0]
        t0 = time.perf_counter()
        run_corpus(model, tmp / f"sub{k}", tmp / "concepts", options=dataclasses.replace(opts, concepts=RunOptions().concepts))
        rates["inprocess_concepts"] = k / (time.perf_counter() - t0)
        if ray:
            try:
                import ray as _ray
            except ImportError:
                out["ray"] = "skipped: ray[data] not installed"
            else:
                if not _ray.is_initialized():
                    _ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                for w in (1, 2):
                    t0 = time.perf_counter()
                    run_corpus(model, tmp / "clips", tmp / f"ray{w}", options=dataclasses.replace(opts, engine="ray", workers=w))
                    rates[f"ray_{w}"] = n_clips / (time.perf_counter() - t0)
        out["clips_per_second"] = {k: round(v, 3) for k, v in rates.items()}
        goals = {"inprocess_over_bare": round(rates["inprocess"] / rates["bare"], 3),
                 "inprocess_marginal_over_bare": round(rates["inprocess_marginal"] / rates["bare"], 3)}
        if "ray_1" in rates:
            goals["inprocess_over_ray1"] = round(rates["inprocess"] / rates["ray_1"], 3)
            goals["ray_scaling_efficiency_1_to_2"] = round(rates["ray_2"] / (2 * rates["ray_1"]), 3)
        out["ratios"] = goals
        out["goals"] = {"inprocess_over_bare": ">= 0.8", "inprocess_over_ray1": "<= 1.25 (Ray within 1.25x)",
                        "ray_scaling_efficiency_1_to_2": ">= 0.8", "linearity_r2": ">= 0.99"}
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bench(quick: bool = False) -> dict:
    """Section ``corpus`` of ``probe bench``: 200 ten-second clips (``quick``: 24 two-second clips)."""
    if quick:
        return {"corpus": bench_corpus(n_clips=24, seconds=2.0)}
    return {"corpus": bench_corpus()}
