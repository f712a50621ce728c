"""Deterministic data sets for the model zoo, built from recordings shipped in Debian/PyPI packages.

Nothing is downloaded: instruments come from the FluidR3 soundfont (``fluid-soundfont-gm``),
speech from the flite voices (``flite``), noises from ``alsa-utils``,
``sound-theme-freedesktop`` and ``asterisk-core-sounds-en-wav``. Every item is seeded by
``(kind, split, index)``, so builds are identical everywhere and ``n=k`` returns the first
``k`` items of the full split. Built arrays are cached in ``model_zoo/data/_build/``.

Examples
--------
>>> from model_zoo.data import separation_set, noisy_set
>>> items = separation_set("instruments", "train", n=4)      # doctest: +SKIP
>>> items[0]["sources"].shape, items[0]["sr"]                  # doctest: +SKIP
((2, 32000), 8000)
>>> clips = noisy_set("val", n=2)                              # doctest: +SKIP

Build everything once with ``python -m model_zoo.data build``; print provenance with
``python -m model_zoo.data manifest``.
"""

from __future__ import annotations

from ._common import SPLITS, MissingSourceError
from .scenes import scene_set  # noqa: F401  (sound-event scenes: model_zoo/data/scenes.py, a colleague's file)

__all__ = ["separation_set", "noisy_set", "scene_set", "SEPARATION_KINDS", "SPLITS", "MissingSourceError", "default_size"]

SEPARATION_KINDS = ("instruments", "speech")
#: real two-speaker speech (model_zoo.data.speakers, dc_speech's set): built at 8 kHz only
REAL_SPEECH_KIND = "speakers"


def _module(kind: str):
    if kind == "instruments":
        from . import instruments as m
    elif kind == "speech":
        from . import speech as m
    elif kind == "speakers":
        from . import speakers as m
    elif kind == "noisy":
        from . import noisy as m
    else:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {SEPARATION_KINDS + ('noisy',)}")
    return m


def _check(kind: str, split: str, n, sr, seconds, module) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {kind!r}; expected one of {SPLITS}")
    full = module.DEFAULT_SIZES[split]
    if n is None:
        n = full
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise ValueError(f"n must be a positive integer or None, given n={n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be a positive integer or None, given n={n!r}")
    if int(sr) != sr or not 1000 <= int(sr) <= 48000:
        raise ValueError(f"sr must be an integer rate in [1000, 48000] Hz, given sr={sr!r}")
    if not 0.25 <= float(seconds) <= 30.0:
        raise ValueError(f"seconds must be in [0.25, 30], given seconds={seconds!r}")
    return n


def default_size(kind: str, split: str) -> int:
    """Number of items in the full ``split`` of ``kind`` ("instruments", "speech" or "noisy")."""
    return _module(kind).DEFAULT_SIZES[split]


def separation_set(kind: str, split: str, *, n: int | None = None, sr: int = 8000, seconds: float = 4.0) -> list[dict]:
    """Two-source mixtures with exact stems.

    Parameters
    ----------
    kind : {"instruments", "speech", "speakers"}
        ``"speakers"``: two REAL speakers (klettres-data folders, the asterisk voice in train
        only) of different languages; test and val speakers are never heard in training
        (:mod:`model_zoo.data.speakers`; 8 kHz only). ``"instruments"``: a low-register and a
        high-register FluidR3 instrument, each a random monophonic line (source_names
        ``["low", "high"]``). ``"speech"``: two different flite voices saying different
        generated sentences (source_names are the voice names; their order carries no
        meaning, use permutation-invariant losses).
    split : {"train", "val", "test"}
        Test uses GM programs (instruments) or sentences and words (speech) never used in
        train or val.
    n : int or None
        ``None`` gives the full split (instruments 800/60/100, speech 400/40/60); ``k`` gives
        the first ``k`` items, identical to the first ``k`` of the full split.
    sr : int
        Sample rate of the returned audio (8000 by default).
    seconds : float
        Duration of every mixture.

    Returns
    -------
    items : list of dict
        ``"mixture"`` float32 [shape=(N,)], ``"sources"`` float32 [shape=(2, N)] with
        ``sources[0] + sources[1] == mixture`` exactly, ``"sr"``, ``"source_names"`` (two
        strings) and ``"meta"`` (notes with pitch/onset/offset/velocity and programs, or
        voice/text per source; source files and licences).
    """
    if kind not in SEPARATION_KINDS + (REAL_SPEECH_KIND,):
        raise ValueError(f"unknown separation kind {kind!r}; expected one of {SEPARATION_KINDS + (REAL_SPEECH_KIND,)}")
    module = _module(kind)
    n = _check(kind, split, n, sr, seconds, module)
    return module.build(split, n, sr=int(sr), seconds=float(seconds))


def noisy_set(split: str, *, n: int | None = None, sr: int = 8000, seconds: float = 2.0) -> list[dict]:
    """Noisy clips for denoising / partitioned autoencoders; half of them are noise only.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Test uses noise recordings, sentences and GM programs never used in train or val.
    n : int or None
        ``None`` gives the full split (600/50/100); ``k`` gives the first ``k`` clips.
    sr : int
        Sample rate (8000 by default).
    seconds : float
        Clip duration.

    Returns
    -------
    clips : list of dict
        ``"noisy"`` float32 [shape=(N,)] ``== clean + noise`` exactly, ``"clean"`` float32
        [shape=(N,)] (zeros for noise-only clips), ``"noise"`` float32 [shape=(N,)],
        ``"has_signal"`` bool, ``"snr_db"`` float or None (noise only), ``"sr"``, ``"meta"``.
        Training a partitioned autoencoder should read only ``"noisy"`` and ``"has_signal"``;
        ``"clean"`` is for evaluation.
    """
    module = _module("noisy")
    n = _check("noisy", split, n, sr, seconds, module)
    return module.build(split, n, sr=int(sr), seconds=float(seconds))
