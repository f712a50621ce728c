"""Shared fixtures: signals and tiny models whose answers are known by construction."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")  # kaleido's PNG export uses Debian's chromium
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tone():
    """1 s of a 440 Hz sine at 16 kHz, amplitude 0.5."""
    sr = 16000
    t = np.arange(sr) / sr
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr


@pytest.fixture
def probe_exe():
    """The installed ``probe`` console script next to this interpreter."""
    exe = Path(sys.executable).with_name("probe")
    if not exe.exists():
        pytest.fail(f"the probe console script is not installed next to {sys.executable}; run pip install -e .")
    return str(exe)
