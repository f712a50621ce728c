"""``probe.bench`` — kept for old imports; the benchmarks live in :mod:`probe.benchmarks`."""

from .benchmarks import DEFAULT, SECTIONS, run_all
from .benchmarks.capture import capture_overhead

__all__ = ["run_all", "capture_overhead", "SECTIONS", "DEFAULT"]
