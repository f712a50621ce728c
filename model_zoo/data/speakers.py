"""Two-speaker mixtures of REAL speech at 8 kHz, with speakers held out between splits.

Sources
-------
* ``klettres-data`` (Debian, GPL-2+): letters and syllables spoken by real people, one folder
  per language and kind (``de/alpha``, ``de/syllab``, ...). A folder is one speaker; the two
  folders of a language may or may not be the same person (``de/alpha`` is a female voice,
  ``de/syllab`` a male one; ``cs/alpha`` and ``cs/syllab`` sound alike), so **splits hold
  out whole languages**: every folder of a language lies in one split, and the two sources
  of a mixture always come from two different languages.
* ``asterisk-core-sounds-en-wav`` (Debian, CC-BY-SA-3.0): 568 prompts of one real female
  speaker (Allison Smith), **train only**.

Test speakers (:data:`SPLIT_LANGUAGES` ``["test"]``) and validation speakers are never heard
in training. Each source of a mixture is an *utterance stream*: the speaker's clips
(silence-trimmed at 35 dB, RMS-normalised) concatenated in random order with random
50–250 ms gaps, starting after a random 0–0.4 s lead, cut to the mixture length. Levels:
the first source at −26…−18 dBFS, the second at ±5 dB from it; a mixture louder than
0.9 peak is scaled down (both stems alike). ``mixture == sources[0] + sources[1]`` exactly.

Clips are decoded (soundfile), resampled with soxr (librosa) to 8 kHz and cached once per
split in ``_build/speaker_clips_<split>_sr8000_v1.npz``; mixtures are cached like the other zoo sets. The
recordings are never committed (GPL / CC-BY-SA): everything is rebuilt from the packages.

:class:`StreamSampler` draws training segments on the fly from the same clips (dynamic
mixing: any two training speakers of different languages, fresh streams every draw).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import _common as C

__all__ = ["VERSION", "DEFAULT_SIZES", "SPLIT_LANGUAGES", "speakers", "language_of", "split_of", "clips", "stream", "make_item",
           "build", "StreamSampler", "provenance"]

VERSION = 1
DEFAULT_SIZES = {"train": 600, "val": 40, "test": 60}
#: languages (klettres folders) per split; every folder of a language stays in its split
SPLIT_LANGUAGES = {
    "train": ("ar", "da", "en", "en_GB", "es", "hu", "lt", "ml", "nb", "pt_BR", "ru", "tn"),
    "val": ("cs", "he", "nds"),
    "test": ("de", "fr", "it", "nl", "uk"),
}
#: the recorded prompt voice: train only
ALLISON = "asterisk:en_US_f_Allison"
TRIM_DB = 35.0
CLIP_RMS_DB = -20.0
GAP_S = (0.05, 0.25)
LEAD_S = (0.0, 0.4)
SR = 8000
_CLIPS: dict = {}


def language_of(speaker: str) -> str:
    """``"klettres:de/alpha"`` → ``"de"``; the asterisk voice is its own group ``"asterisk"``."""
    return speaker.split(":", 1)[1].split("/", 1)[0] if speaker.startswith("klettres:") else "asterisk"


def _klettres_root() -> Path:
    return C.require_source("klettres")


def speakers(split: str) -> list[str]:
    """Speaker ids of ``split`` (``"klettres:LANG/KIND"``, plus the asterisk voice in train)."""
    root = _klettres_root()
    out = []
    for lang in SPLIT_LANGUAGES[split]:
        for kind in ("alpha", "syllab"):
            if any((root / lang / kind).glob("*.ogg")):
                out.append(f"klettres:{lang}/{kind}")
    if split == "train":
        out.append(ALLISON)
    return out


def _files(speaker: str) -> list[Path]:
    if speaker == ALLISON:
        return sorted(C.require_source("asterisk").glob("*.wav"))
    lang_kind = speaker.split(":", 1)[1]
    return sorted((_klettres_root() / lang_kind).glob("*.ogg"))


def _load_clip(path: Path) -> np.ndarray | None:
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = C.resample(y.mean(axis=1), sr, SR)
    y, _ = librosa.effects.trim(y, top_db=TRIM_DB, frame_length=256, hop_length=64)
    if len(y) < int(0.08 * SR) or not np.any(y):
        return None
    y = y - np.float32(y.mean())
    return (y * np.float32(10 ** ((CLIP_RMS_DB - C.rms_db(y)) / 20))).astype(np.float32)


def _clip_cache(split: str) -> Path:
    return C.build_dir() / f"speaker_clips_{split}_sr{SR}_v{VERSION}.npz"


def split_of(speaker: str) -> str:
    """The split whose speakers include ``speaker``."""
    lang = language_of(speaker)
    if lang == "asterisk":
        return "train"
    for split, langs in SPLIT_LANGUAGES.items():
        if lang in langs:
            return split
    raise KeyError(f"unknown speaker {speaker!r}")


def clips(split: str) -> dict[str, list[np.ndarray]]:
    """``{speaker: [clip, ...]}`` for the speakers of ``split`` (8 kHz, trimmed, −20 dBFS RMS); cached."""
    key = (str(C.build_dir()), split)
    if key in _CLIPS:
        return _CLIPS[key]
    want = speakers(split)
    path = _clip_cache(split)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                index = json.loads(str(z["index_json"]))
                audio = z["audio"]
            if sorted(index) == sorted(want):
                _CLIPS[key] = {spk: [audio[a:b] for a, b in bounds] for spk, bounds in index.items()}
                return _CLIPS[key]
        except Exception:  # torn or stale cache: rebuild
            pass
    parts, index, pos = [], {}, 0
    for spk in want:
        bounds = []
        for f in _files(spk):
            y = _load_clip(f)
            if y is None:
                continue
            parts.append(y)
            bounds.append([pos, pos + len(y)])
            pos += len(y)
        index[spk] = bounds
    audio = np.concatenate(parts).astype(np.float32)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, audio=audio, index_json=np.array(json.dumps(index)))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _CLIPS[key] = {spk: [audio[a:b] for a, b in bounds] for spk, bounds in index.items()}
    return _CLIPS[key]


def stream(speaker: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """``n`` samples of ``speaker``: random clips with random gaps after a random lead; returns (audio, clip ids)."""
    pool = clips(split_of(speaker))[speaker]
    out = np.zeros(n, np.float32)
    pos = int(rng.uniform(*LEAD_S) * SR)
    used = []
    while pos < n:
        k = int(rng.integers(len(pool)))
        y = pool[k] * np.float32(10 ** (rng.uniform(-3, 3) / 20))
        m = min(len(y), n - pos)
        out[pos:pos + m] = y[:m]
        used.append(k)
        pos += len(y) + int(rng.uniform(*GAP_S) * SR)
    return out, used


def _pair(split_speakers: list[str], rng: np.random.Generator) -> list[str]:
    while True:
        a, b = (split_speakers[int(i)] for i in rng.choice(len(split_speakers), 2, replace=False))
        if language_of(a) != language_of(b):
            return [a, b]


def make_item(split: str, index: int, *, sr: int = SR, seconds: float = 4.0):
    """Mixture ``index`` of ``split``: ``({"sources": (2, N)}, meta)``."""
    if int(sr) != SR:
        raise ValueError(f"the real-speech set is built at {SR} Hz only, given sr={sr}")
    rng = C.item_rng("speakers", split, index)
    n = int(round(seconds * sr))
    spk = _pair(speakers(split), rng)
    stems, used = [], []
    for s in spk:
        y, ids = stream(s, n, rng)
        stems.append(y)
        used.append(ids)
    stems = np.stack(stems)
    ref_db = float(rng.uniform(-26.0, -18.0))
    diff_db = float(rng.uniform(-5.0, 5.0))
    for k, target in enumerate([ref_db, ref_db + diff_db]):
        stems[k] *= np.float32(10.0 ** ((target - C.rms_db(stems[k])) / 20.0))
    peak = float(np.max(np.abs(stems[0] + stems[1])))
    if peak > 0.9:
        stems *= np.float32(0.9 / peak)
    stems = stems.astype(np.float32)
    packages = sorted({"asterisk-core-sounds-en-wav" if s == ALLISON else "klettres-data" for s in spk})
    meta = {
        "kind": "speakers", "split": split, "index": int(index), "speakers": spk,
        "languages": [language_of(s) for s in spk], "clip_ids": used,
        "rms_db": [round(C.rms_db(s), 2) for s in stems], "level_diff_db": round(diff_db, 2),
        "held_out": "speakers: test and val languages (all their klettres folders) are never heard in training",
        "package": " + ".join(packages),
        "licence": " + ".join("CC-BY-SA-3.0" if p.startswith("asterisk") else "GPL-2+" for p in packages),
        "source_files": [str(C.source_path("asterisk") if s == ALLISON else C.source_path("klettres") / s.split(":")[1])
                         for s in spk],
    }
    return {"sources": stems}, meta


def build(split: str, n: int, *, sr: int = SR, seconds: float = 4.0, cache: bool = True) -> list[dict]:
    """First ``n`` mixtures of ``split`` as item dicts (see :func:`model_zoo.data.separation_set`)."""
    arrays, metas = C.cached_items(
        "speakers", split, n, sr=sr, seconds=seconds, version=VERSION, keys=("sources",),
        make_item=lambda i: make_item(split, i, sr=sr, seconds=seconds), cache=cache,
    )
    out = []
    for src, meta in zip(arrays["sources"], metas):
        src = np.ascontiguousarray(src, dtype=np.float32)
        out.append({"mixture": src[0] + src[1], "sources": src, "sr": int(sr), "source_names": list(meta["speakers"]),
                    "meta": meta})
    return out


class StreamSampler:
    """Dynamic mixing for training: fresh two-speaker segments drawn from the clips of ``split``.

    Same interface as :class:`model_zoo.recipes._common.MixtureSampler` (``.batch(B)``, ``.rng``).

    Parameters
    ----------
    segment : int
        Samples per segment.
    rng : np.random.Generator
    split : str
        Whose speakers to draw from (``"train"``).
    gain_db : float
        Relative level of the two sources, uniform in ±gain_db.
    min_active : float
        Redraw (up to 8 times) when a source has energy (RMS > 1e-3) in less than this
        share of its 8 ms frames.

    Examples
    --------
    >>> mix, src = StreamSampler(8000, np.random.default_rng(0)).batch(2)   # doctest: +SKIP
    >>> mix.shape, src.shape                                                 # doctest: +SKIP
    ((2, 8000), (2, 2, 8000))
    """

    def __init__(self, segment: int, rng: np.random.Generator, *, split: str = "train", gain_db: float = 5.0,
                 min_active: float = 0.3):
        self.segment = int(segment)
        self.rng = rng
        self.speakers = speakers(split)
        self.gain_db = float(gain_db)
        self.min_active = float(min_active)
        clips(split)

    def _active(self, y: np.ndarray) -> float:
        fr = y[: len(y) // 64 * 64].reshape(-1, 64)
        e = np.sqrt((fr.astype(np.float64) ** 2).mean(1))
        return float((e > 1e-3).mean())

    def one(self) -> np.ndarray:
        for _ in range(8):
            spk = _pair(self.speakers, self.rng)
            src = np.stack([stream(s, self.segment, self.rng)[0] for s in spk])
            if min(self._active(s) for s in src) >= self.min_active:
                break
        g = 10 ** (self.rng.uniform(-self.gain_db, self.gain_db) / 20)
        src[1] *= np.float32(g)
        src *= np.float32(10 ** (self.rng.uniform(-10, 6) / 20))
        return src.astype(np.float32)

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mixtures (B, n), sources (B, 2, n))``."""
        src = np.stack([self.one() for _ in range(int(batch_size))])
        return src.sum(1), src


def provenance() -> dict:
    """Speakers per split and the packages/licences (for the model card)."""
    out = {"packages": {"klettres-data": {"licence": "GPL-2+", "what": "letters/syllables by real speakers, "
                                                                      "one folder per language and kind",
                                          "path": str(C.source_path("klettres"))},
                        "asterisk-core-sounds-en-wav": {"licence": "CC-BY-SA-3.0",
                                                        "what": "568 prompts, one real female speaker (train only)",
                                                        "path": str(C.source_path("asterisk"))}},
           "speakers": {s: speakers(s) for s in C.SPLITS},
           "languages": {s: list(v) for s, v in SPLIT_LANGUAGES.items()}}
    return out
