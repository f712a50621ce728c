"""Two-talker mixtures spoken by the flite synthesiser's four English voices.

Each mixture puts two DIFFERENT voices (of ``kal16``, ``awb``, ``rms``, ``slt``) saying two
different generated sentences at random offsets inside the window; the stems are exact
(``mixture == sources[0] + sources[1]``) and ``meta`` carries each stem's voice, text and
position.

Held-out design: flite has only four voices, so every split uses all four. TEST holds out
TEXT: its sentences are built around nouns that never occur in train or val, so no test
sentence (and no test noun) is ever heard in training. Val sentences use the training
vocabulary but are sentences not in the training pool.

Speech comes from ``/usr/bin/flite`` (Debian ``flite`` + ``libflite1``, CMU permissive
licence); utterances are synthesised at 16 kHz once, cached as WAV under
``_build/flite/``, and resampled with soxr.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from . import _common as C

__all__ = ["VOICES", "plural", "text_pool", "synthesize", "build", "DEFAULT_SIZES", "VERSION", "TEST_NOUNS"]

VERSION = 2
DEFAULT_SIZES = {"train": 400, "val": 40, "test": 60}
#: flite's distinct speakers (``kal`` is the 8 kHz twin of ``kal16``, ``awb_time`` a talking clock).
VOICES = ("kal16", "awb", "rms", "slt")
POOL_SIZES = {"train": 400, "val": 60, "test": 100}

_NAMES = ["anna", "peter", "maria", "john", "susan", "david", "laura", "tom", "helen", "mark", "julia", "paul"]
_ADJ = [
    "quiet", "heavy", "bright", "old", "small", "green", "cold", "busy", "yellow", "strong", "gentle", "narrow",
    "wooden", "empty", "warm", "silver", "dark", "little", "broken", "clean", "sharp", "round", "tall", "soft",
]
_TRAIN_NOUNS = [
    "farmer", "basket", "bridge", "window", "river", "garden", "teacher", "table", "letter", "kettle", "market",
    "ladder", "engine", "pocket", "candle", "doctor", "bottle", "blanket", "hammer", "village", "forest", "wagon",
    "painter", "carpet", "mirror", "tower", "sailor", "pencil", "button", "orange", "rabbit", "kitchen", "bucket",
    "island", "castle", "baker", "violin", "jacket", "harbor", "station",
]
#: Nouns heard only in the test split: every test sentence is built around one of them.
TEST_NOUNS = [
    "lantern", "compass", "meadow", "puppet", "glacier", "tractor", "pepper", "saddle", "feather", "tunnel",
    "blossom", "chimney", "trumpet", "walnut", "camel", "dentist",
]
_VERBS = [
    "carried", "painted", "found", "moved", "washed", "opened", "pushed", "dropped", "cleaned", "watched",
    "sold", "fixed", "lifted", "borrowed", "counted", "covered", "followed", "packed",
]
_PREPS = ["across", "behind", "near", "under", "inside", "beside", "over", "past"]
_TIMES = ["this morning", "last night", "after lunch", "on monday", "before dawn", "every evening", "in the spring", "at noon"]
_NUMS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]

_TEMPLATES = [
    "the {adj} {noun} {verb} the {noun2} {prep} the {noun3}",
    "{name} {verb} the {adj} {noun} {time}",
    "{name} said the {noun} was {adj} {time}",
    "{name} and {name2} {verb} {num} {nouns} {time}",
    "why is the {noun} so {adj} {time}",
    "the {noun} {prep} the {noun2} looks {adj} {time}",
    "we {verb} a {adj} {noun} {prep} the {noun2}",
    "please bring the {adj} {noun} to {name}",
]

_POOLS: dict[str, list[str]] = {}


def plural(noun: str) -> str:
    """English plural of the nouns used here (``compass`` -> ``compasses``)."""
    return noun + "es" if noun.endswith(("s", "sh", "ch", "x")) else noun + "s"


def _sentence(rng: np.random.Generator, nouns: list[str], other_nouns: list[str]) -> str:
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    names = rng.permutation(_NAMES)
    noun = pick(nouns)
    return pick(_TEMPLATES).format(
        adj=pick(_ADJ), noun=noun, nouns=plural(noun), noun2=pick(other_nouns), noun3=pick(other_nouns), verb=pick(_VERBS),
        prep=pick(_PREPS), time=pick(_TIMES), num=pick(_NUMS), name=names[0], name2=names[1],
    )


def text_pool(split: str) -> list[str]:
    """The sentences of ``split``: deterministic, unique, and disjoint between splits.

    Train and val draw from the training vocabulary (val sentences are never in the train
    pool); test sentences put a held-out noun (:data:`TEST_NOUNS`) in the main noun slot
    and use only training nouns elsewhere... and never occur in train or val.
    """
    if not _POOLS:
        rng = np.random.default_rng([C.SEED, C.stable_hash("speech-texts") & 0xFFFFFFFF])
        seen: set[str] = set()
        for name in C.SPLITS:  # train first, then val, then test: later pools avoid earlier ones
            pool: list[str] = []
            nouns = TEST_NOUNS if name == "test" else _TRAIN_NOUNS
            while len(pool) < POOL_SIZES[name]:
                s = _sentence(rng, nouns, _TRAIN_NOUNS)
                if s not in seen:
                    seen.add(s)
                    pool.append(s)
            _POOLS[name] = pool
    return list(_POOLS[split])


def _flite_path() -> str:
    return str(C.require_source("flite"))


def synthesize(text: str, voice: str, *, sr: int) -> np.ndarray:
    """Speak ``text`` with a flite ``voice``; the 16 kHz output is cached, then resampled to ``sr``.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
    """
    if voice not in VOICES:
        raise ValueError(f"unknown flite voice {voice!r}; expected one of {VOICES}")
    flite = _flite_path()
    d = C.build_dir() / "flite" / voice
    d.mkdir(parents=True, exist_ok=True)
    path = d / (hashlib.sha1(text.encode()).hexdigest()[:16] + ".wav")
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp.wav")
        os.close(fd)
        try:
            res = subprocess.run([flite, "-voice", voice, "-t", text, "-o", tmp], capture_output=True, text=True, timeout=60)
            if res.returncode != 0 or os.path.getsize(tmp) < 100:
                raise C.MissingSourceError(
                    f"flite could not speak with voice {voice!r} ({flite} exit {res.returncode}: {res.stderr.strip()[:200]}). "
                    "The voices are shipped by the Debian packages 'flite' and 'libflite1'; install them with: "
                    "apt-get install -y flite libflite1"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    y, file_sr = sf.read(path, dtype="float32", always_2d=True)
    return C.resample(y.mean(axis=1), file_sr, sr)


def place(y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, float, bool]:
    """Put ``y`` at a random offset in ``n`` samples (cut at the end if longer)."""
    out = np.zeros(n, dtype=np.float32)
    if len(y) >= n:
        out[:] = y[:n]
        return out, 0, True
    start = int(rng.integers(0, n - len(y) + 1))
    out[start : start + len(y)] = y
    return out, start, False


def make_item(split: str, index: int, *, sr: int, seconds: float):
    """Item ``index`` of ``split``: arrays ``{"sources": (2, N)}`` and its meta dict."""
    rng = C.item_rng("speech", split, index)
    n = int(round(seconds * sr))
    voices = [str(v) for v in rng.choice(VOICES, size=2, replace=False)]
    pool = text_pool(split)
    text_ids = [int(i) for i in rng.choice(len(pool), size=2, replace=False)]
    stems, per_source = [], []
    for voice, tid in zip(voices, text_ids):
        y = synthesize(pool[tid], voice, sr=sr)
        stem, start, cropped = place(y, n, rng)
        stems.append(stem)
        per_source.append({
            "voice": voice, "text": pool[tid], "text_id": tid, "onset": round(start / sr, 4),
            "offset": round(min(start + len(y), n) / sr, 4), "utterance_seconds": round(len(y) / sr, 4), "cropped": cropped,
        })
    stems = np.stack(stems)
    ref_db = float(rng.uniform(-26.0, -18.0))
    diff_db = float(rng.uniform(-5.0, 5.0))
    for k, target in enumerate([ref_db, ref_db + diff_db]):
        stems[k] *= np.float32(10.0 ** ((target - C.rms_db(stems[k])) / 20.0))
    peak = float(np.max(np.abs(stems[0] + stems[1])))
    if peak > 0.9:
        stems *= np.float32(0.9 / peak)
    stems = stems.astype(np.float32)
    meta = {
        "kind": "speech",
        "split": split,
        "index": int(index),
        "voices": voices,
        "sources": per_source,
        "texts": [s["text"] for s in per_source],
        "rms_db": [round(C.rms_db(s), 2) for s in stems],
        "level_diff_db": round(diff_db, 2),
        "held_out": "texts (test sentences and their main nouns never occur in train/val); voices are shared",
        "source_files": [str(C.source_path("flite"))],
        "package": "flite",
        "licence": "CMU permissive (flite)",
    }
    return {"sources": stems}, meta


def build(split: str, n: int, *, sr: int = 8000, seconds: float = 4.0, cache: bool = True) -> list[dict]:
    """First ``n`` mixtures of ``split`` as item dicts (see :func:`model_zoo.data.separation_set`)."""
    arrays, metas = C.cached_items(
        "speech", split, n, sr=sr, seconds=seconds, version=VERSION, keys=("sources",),
        make_item=lambda i: make_item(split, i, sr=sr, seconds=seconds), cache=cache,
    )
    out = []
    for src, meta in zip(arrays["sources"], metas):
        src = np.ascontiguousarray(src, dtype=np.float32)
        out.append({"mixture": src[0] + src[1], "sources": src, "sr": int(sr), "source_names": list(meta["voices"]), "meta": meta})
    return out
