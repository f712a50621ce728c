"""Where a Ray worker waits between its tasks: the record behind "one task per worker" in
docs/findings_corpus.md ("Fourth pass").

200 ten-second clips through zoo crnn_sed (layers conv.2 and rnn, no concepts, batches of 8) on a local
Ray with 2 CPUs, one worker then two, at several batches per task (``n`` = one task per worker, the
default). From each batch's part-file time and CPU seconds (the run's own timing records) it prints, per
run, the wall seconds, and per worker process the idle gaps between one batch's end and the next one's
start longer than 20 ms. Usage: ``python docs/scripts/ray_task_gaps.py n,4,1 3 > out.jsonl``
(batches-per-task list, repeats).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import probe.corpus.run as run_mod
from probe.benchmarks.corpus import _subset, _wait_ray_idle, _write_clips
from probe.corpus.run import run_corpus
from probe.corpus.worker import RunOptions


def main(per_tasks: str, repeats: int) -> None:
    import ray

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    sub = _subset(tmp, _write_clips(tmp / "clips", 200, 10.0, 16000), 200)
    opts = RunOptions(layers=("conv.2", "rnn"), concepts=(), random_init=False, batch_size=8)
    run_mod._start_ray(workers=2, ray_address=None)
    real, seen = run_mod._run_ray, {}

    def keep_written(*a, **k):
        n = real(*a, **k)
        seen["written"] = list(k["written"])
        return n

    run_mod._run_ray = keep_written
    run_corpus("zoo:crnn_sed", sub, tmp / "warm", options=dataclasses.replace(opts, engine="ray", workers=2))
    i = 0
    for r in range(repeats):
        for per in [None if x == "n" else int(x) for x in per_tasks.split(",")]:
            run_mod._RAY_BATCHES_PER_TASK = per
            for w in (1, 2):
                _wait_ray_idle(ray)
                i += 1
                t0 = time.perf_counter()
                run_corpus("zoo:crnn_sed", sub, tmp / f"r{i}", options=dataclasses.replace(opts, engine="ray", workers=w))
                secs = time.perf_counter() - t0
                spans: dict = {}
                for done, _k, cpu, who in seen["written"]:
                    spans.setdefault(who, []).append((done - cpu, done))  # one thread: wall ~ CPU
                gaps = []
                for v in spans.values():
                    v.sort()
                    gaps += [b[0] - a[1] for a, b in zip(v, v[1:])]
                big = [g for g in gaps if g > 0.02]
                print(json.dumps({"repeat": r, "batches_per_task": per, "workers": w, "seconds": round(secs, 3),
                                  "gaps_over_20ms": len(big), "gap_seconds": round(sum(big), 3),
                                  "max_gap": round(max(gaps), 3) if gaps else 0.0}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "n,4,1", int(sys.argv[2]) if len(sys.argv) > 2 else 3)
