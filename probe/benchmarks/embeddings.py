"""Benchmark: a 4 s, 8 kHz mixture's per-T-F embeddings (D = 20) → 2-D UMAP map with trustworthiness.

Goal: ≤ 5 s warm on 2 cores with trustworthiness ≥ 0.9. Timed: building the clip (STFT,
pooled energies), silent-bin removal and the stratified 4000-point draw, exact kNN, UMAP
(200 epochs) and the trustworthiness score. The model's forward pass is not included (it
is the model's cost, not the map's) and is reported separately when the zoo's
deep-clustering checkpoint is used.

Embeddings: the zoo's ``dc_blstm`` on test mixture 0 when its checkpoint is installed,
otherwise synthetic deep-clustering-like embeddings of a two-source mixture (unit vectors
that encode the dominant source plus a smooth drift with frequency and time, as trained
embeddings show, plus noise).

``cold`` is the same pipeline as the first map of a fresh Python process (imports not
counted, reported apart), once as stock umap-learn runs (no on-disk cache for its kernels:
every one compiles) and once with the cache :func:`~probe.analyze.embeddings.enable_jit_cache`
writes already filled by an earlier process.

On a shared machine wall time includes waiting for a core; ``warm_cpu_seconds`` (process CPU
time: umap runs on one thread, numpy's BLAS on up to two) is the load-insensitive companion,
and ``load_average`` says how busy the machine was.

Run: ``python -m probe.benchmarks.embeddings`` (prints JSON) or through ``probe bench --json``. The zoo
findings (docs/findings_embeddings.md) live in ``tests/benchmarks/bench_embeddings.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SR, SECONDS, D = 8000, 4.0, 20


def synthetic_example(seed: int = 0):
    """Two sources in overlapping bands: a vibrato harmonic stack and gated noise bursts shaped by a formant."""
    from probe.audio import AudioExample

    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SR)) / SR
    f0 = 180 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    a = sum(0.4 / h * np.sin(h * phase) for h in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t) ** 2)
    noise = rng.standard_normal(len(t))
    from scipy.signal import butter, sosfilt

    b = sosfilt(butter(4, [900, 2600], btype="band", fs=SR, output="sos"), noise) * ((t % 0.8) < 0.5) * 0.6
    S = np.stack([a, b]).astype(np.float32)
    return AudioExample(y=S.sum(0), sr=SR, name="bench-synthetic", sources=S, source_names=["harmonic", "noise"])


def synthetic_embeddings(ex, grid, seed: int = 0):
    """(D, F, T) unit vectors: a source direction, a smooth drift with frequency and time, 5 % noise."""
    import torch

    rng = np.random.default_rng(seed)
    P = np.abs(grid.stft(torch.as_tensor(ex.sources)).numpy()) ** 2
    share = P[0] / (P.sum(0) + 1e-12)  # soft dominance in [0, 1]
    F, T = share.shape
    f = np.linspace(0, 1, F)[:, None] * np.ones((1, T))
    tt = np.ones((F, 1)) * np.linspace(0, 1, T)[None, :]
    basis = rng.standard_normal((6, D))
    E = (np.tanh(4 * (share - 0.5))[..., None] * basis[0] + 0.35 * np.sin(np.pi * f)[..., None] * basis[1]
         + 0.35 * np.cos(np.pi * f)[..., None] * basis[2] + 0.2 * np.sin(2 * np.pi * tt)[..., None] * basis[3]
         + 0.05 * rng.standard_normal((F, T, D)))
    E /= np.linalg.norm(E, axis=-1, keepdims=True)
    return E.transpose(2, 0, 1).astype(np.float32)


def _inputs():
    """(embeddings (D, F, T), example, grid, source description, forward seconds or None)."""
    from probe.grid import TFGrid

    try:  # the zoo's deep-clustering model, through probe's zoo entry points, when it is installed and trained
        import torch

        from probe.resolve import load, load_example

        torch.set_num_threads(2)
        spec = load("zoo:dc_blstm")
        ex = load_example("dc_blstm", 0)
        t0 = time.perf_counter()
        with torch.no_grad():
            E = spec.forward(ex.y, kind="tf_embeddings")[0].numpy()
        return E, ex, spec.grid, "zoo:dc_blstm on example:dc_blstm:0", time.perf_counter() - t0
    except Exception as exc:  # fall back to synthetic embeddings, but say why
        print(f"bench_embeddings: dc_blstm unavailable ({exc}); using synthetic embeddings", file=sys.stderr)
    grid = TFGrid(SR, n_fft=256, hop_length=64)
    ex = synthetic_example()
    return synthetic_embeddings(ex, grid), ex, grid, "synthetic DC-like embeddings", None


def pipeline(E, ex, grid, *, budget: int = 4000) -> dict:
    """Embedding tensor → points → UMAP map + trustworthiness; seconds of each stage."""
    from probe.analyze.embeddings import EmbeddingMap, clip_embeddings, select_points

    c0 = time.process_time()
    t0 = time.perf_counter()
    clip = clip_embeddings(E, ex, grid)
    pts = select_points(clip, budget=budget, seed=0)
    t1 = time.perf_counter()
    m = EmbeddingMap("umap", cache_size=0).fit(pts)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "cpu_seconds": time.process_time() - c0, "select_seconds": t1 - t0, "map_seconds": t2 - t1, "trustworthiness": m.trustworthiness_,
            "n_points": len(pts), "n_bins": int(np.prod(clip.shape)), "metric": m.metric_}


def _cold_child() -> None:
    """Entry of the fresh process: imports, then one pipeline run, JSON on stdout."""
    t0 = time.perf_counter()
    import umap  # noqa: F401  (import cost is reported apart from the map)

    from probe.analyze.embeddings import enable_jit_cache

    if os.environ.get("PROBE_BENCH_JIT_CACHE") == "1":
        enable_jit_cache(os.environ["NUMBA_CACHE_DIR"])
    E, ex, grid, _, _ = _inputs()
    t_import = time.perf_counter() - t0
    out = pipeline(E, ex, grid)
    out["import_seconds"] = t_import
    print(json.dumps(out))


def _cold(cache_dir: str, use_cache: bool) -> dict:
    env = dict(os.environ, PROBE_BENCH_JIT_CACHE="1" if use_cache else "0")
    env.pop("NUMBA_CACHE_DIR", None)
    if use_cache:  # umap's kernels (and pynndescent's) cache into a fresh folder; stock umap caches nothing
        env["NUMBA_CACHE_DIR"] = cache_dir
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", "from probe.benchmarks.embeddings import _cold_child; _cold_child()"],
                       capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"cold run failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench(quick: bool = False) -> dict:
    """Warm and cold seconds of the 4 s mixture → 2-D map, for ``probe bench --json``.

    Returns
    -------
    dict
        ``embedding_map_seconds`` (warm median), ``embedding_map_cold_seconds`` (fresh process,
        empty numba cache), ``embedding_map_cold_cached_seconds`` (fresh process, filled
        cache), ``embedding_trustworthiness``, and ``embedding_detail``.
    """
    from probe.analyze.embeddings import warm_up

    E, ex, grid, source, forward_s = _inputs()
    with tempfile.TemporaryDirectory(prefix="probe-numba-") as tmp:
        cold = _cold(tmp, use_cache=False)  # stock umap: every umap kernel compiles
        cold_cached = None
        if not quick:
            _cold(tmp, use_cache=True)  # fills the cache
            cold_cached = _cold(tmp, use_cache=True)
    warm_up(cache=False)
    runs = [pipeline(E, ex, grid) for _ in range(2 if quick else 3)]
    warm = statistics.median(r["seconds"] for r in runs)
    best = min(runs, key=lambda r: abs(r["seconds"] - warm))
    detail = {"embeddings": source, "n_bins": best["n_bins"], "n_points": best["n_points"], "dim": int(E.shape[0]),
              "metric": best["metric"], "warm_runs": [round(r["seconds"], 3) for r in runs],
              "warm_select_seconds": round(best["select_seconds"], 3), "warm_map_seconds": round(best["map_seconds"], 3),
              "warm_cpu_seconds": round(best["cpu_seconds"], 3), "cold_cpu_seconds": round(cold["cpu_seconds"], 3),
              "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
              "cold_import_seconds": round(cold["import_seconds"], 3),
              "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
              "model_forward_seconds": round(forward_s, 3) if forward_s is not None else None}
    out = {"embedding_map_seconds": round(warm, 3), "embedding_map_cold_seconds": round(cold["seconds"], 3),
           "embedding_trustworthiness": round(float(best["trustworthiness"]), 4), "embedding_detail": detail}
    if cold_cached is not None:
        out["embedding_map_cold_cached_seconds"] = round(cold_cached["seconds"], 3)
    return out



# =====================================================================================
# Findings (docs/findings_embeddings.md): deep clustering on the zoo's test split
# =====================================================================================


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(bench(quick="--quick" in sys.argv), indent=2))
