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
mixing: any two training speakers of different languages, fresh streams every draw). For the
TRAINING split only it can also manufacture new speakers (``augment=True``): every source is
sped up or slowed down by resampling with a random factor (0.8–1.25, which moves f0 and the
formants together, like a different vocal tract), gets a random smooth EQ and a random time
shift; and it can add flite's four synthetic voices (``flite=True``, :data:`FLITE_VOICES`,
sentences of the flite speech set's TRAINING text pool) as extra training speakers. Neither
ever reaches the built items of any split, so validation and test stay real, unseen speakers.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import _common as C
from . import _sources as SRC

__all__ = ["VERSION", "DEFAULT_SIZES", "SPLIT_LANGUAGES", "FLITE_VOICES", "SPEED_RANGE", "speakers", "flite_speakers",
           "language_of", "split_of", "clips", "flite_clips", "stream", "perturb_speed", "random_eq", "make_item", "build",
           "StreamSampler", "provenance", "PROMPT_VOICES", "prompt_speakers", "prompt_clips"]

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
#: four more recorded prompt voices (Asterisk prompt packages, running speech at 8 kHz), each its own real
#: speaker: extra TRAINING speakers of :class:`StreamSampler` (``prompts=True``) only → their data source key
PROMPT_VOICES = {
    "asterisk:fr_CA_f_June": "asterisk_fr",
    "asterisk:it_IT_m_Carlo": "asterisk_it",
    "asterisk:ru_RU_f_IvrvoiceRU": "asterisk_ru",
    "asterisk:it_IT_f_Menardi": "asterisk_it_menardi",
}
#: a prompt is cut at its pauses (35 dB below its peak, ≥ this many seconds) into phrase clips
PHRASE_PAUSE_S = 0.12
TRIM_DB = 35.0
CLIP_RMS_DB = -20.0
GAP_S = (0.05, 0.25)
LEAD_S = (0.0, 0.4)
SR = 8000
#: flite voices used as extra TRAINING speakers by :class:`StreamSampler` (``flite=True``) only
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
#: sentences per flite voice (the first ones of the flite speech set's TRAINING text pool)
FLITE_SENTENCES = 60
#: speed factors of the speaker augmentation (log-uniform): >1 raises f0 and formants and shortens
SPEED_RANGE = (0.8, 1.25)
#: random EQ: gains (dB) drawn at this many frequencies, linearly interpolated over the band
EQ_DB = 6.0
EQ_POINTS = 6
#: random time shift: the segment starts up to this many seconds into a longer stream
SHIFT_S = 0.5
_CLIPS: dict = {}


def language_of(speaker: str) -> str:
    """``"klettres:de/alpha"`` → ``"de"``; the asterisk voice is ``"asterisk"``; a flite voice or a prompt voice
    (:data:`PROMPT_VOICES`) is its own group."""
    if speaker.startswith("flite:") or speaker in PROMPT_VOICES:
        return speaker
    return speaker.split(":", 1)[1].split("/", 1)[0] if speaker.startswith("klettres:") else "asterisk"


def flite_speakers() -> list[str]:
    """The synthetic extra training speakers (``"flite:VOICE"``); never part of :func:`speakers` of any split."""
    return [f"flite:{v}" for v in FLITE_VOICES]


def prompt_speakers() -> list[str]:
    """The extra real training speakers of the Asterisk prompt packages (``"asterisk:VOICE"``); never part of
    :func:`speakers` of any split."""
    return list(PROMPT_VOICES)


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
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return _prepare(C.resample(y.mean(axis=1), sr, SR))


def _prepare(y: np.ndarray) -> np.ndarray | None:
    """Trim silence (35 dB), remove DC, normalise to −20 dBFS RMS; None for a clip too short."""
    import librosa

    y, _ = librosa.effects.trim(y, top_db=TRIM_DB, frame_length=256, hop_length=64)
    if len(y) < int(0.08 * SR) or not np.any(y):
        return None
    y = y - np.float32(y.mean())
    return (y * np.float32(10 ** ((CLIP_RMS_DB - C.rms_db(y)) / 20))).astype(np.float32)


def _clip_cache(split: str) -> Path:
    return C.build_dir() / f"speaker_clips_{split}_sr{SR}_v{VERSION}.npz"


def split_of(speaker: str) -> str:
    """The split whose speakers include ``speaker`` (flite voices: ``"train"``, as extra training speakers)."""
    lang = language_of(speaker)
    if lang == "asterisk" or speaker.startswith("flite:") or speaker in PROMPT_VOICES:
        return "train"
    for split, langs in SPLIT_LANGUAGES.items():
        if lang in langs:
            return split
    raise KeyError(f"unknown speaker {speaker!r}")


def _read_clip_cache(path, want) -> dict | None:
    """The clips stored at ``path`` when it holds exactly the speakers ``want``; ``None`` when absent, torn or stale."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            index = json.loads(str(z["index_json"]))
            audio = z["audio"]
    except Exception:  # torn cache: rebuild
        return None
    if sorted(index) != sorted(want):
        return None
    return {spk: [audio[a:b] for a, b in bounds] for spk, bounds in index.items()}


def _pool(tag: str, path: Path, want: list[str], sources) -> dict[str, list[np.ndarray]]:
    """The clips of speakers ``want``: from memory, else from the cache file ``path`` when it holds exactly them,
    else built from ``sources()`` (``{speaker: iterable of clip or None}``) into ``path``."""
    key = (str(C.build_dir()), tag)
    if key not in _CLIPS:
        cached = _read_clip_cache(path, want)
        _CLIPS[key] = cached if cached is not None else _build_clip_cache(path, sources())
    return _CLIPS[key]


def clips(split: str) -> dict[str, list[np.ndarray]]:
    """``{speaker: [clip, ...]}`` for the speakers of ``split`` (8 kHz, trimmed, −20 dBFS RMS); cached."""
    want = speakers(split)
    return _pool(split, _clip_cache(split), want, lambda: {spk: (_load_clip(f) for f in _files(spk)) for spk in want})


def flite_clips() -> dict[str, list[np.ndarray]]:
    """``{"flite:VOICE": [clip, ...]}``: :data:`FLITE_SENTENCES` training sentences per voice, prepared like
    :func:`clips` (8 kHz, trimmed, −20 dBFS RMS); synthesised once with flite and cached."""
    from . import speech

    def voice(v: str):
        return [_prepare(speech.synthesize(t, v, sr=SR)) for t in speech.text_pool("train")[:FLITE_SENTENCES]]

    path = C.build_dir() / f"speaker_flite_clips_sr{SR}_n{FLITE_SENTENCES}_v{VERSION}.npz"
    return _pool("flite", path, flite_speakers(), lambda: {f"flite:{v}": voice(v) for v in FLITE_VOICES})


def _phrases(path: Path) -> list[np.ndarray]:
    """One prompt recording cut at its pauses into phrase clips, each prepared like :func:`_load_clip`."""
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = C.resample(y.mean(axis=1), sr, SR)
    if not np.any(y):
        return []
    spans = librosa.effects.split(y, top_db=TRIM_DB, frame_length=256, hop_length=64)
    merged: list[list[int]] = []
    for a, b in spans:  # pauses shorter than PHRASE_PAUSE_S stay inside a phrase
        if merged and a - merged[-1][1] < PHRASE_PAUSE_S * SR:
            merged[-1][1] = int(b)
        else:
            merged.append([int(a), int(b)])
    pad = int(0.02 * SR)
    out = [_prepare(y[max(a - pad, 0):b + pad]) for a, b in merged]
    return [c for c in out if c is not None]


def _prompt_files(speaker: str) -> list[Path]:
    return sorted(p for p in C.require_source(PROMPT_VOICES[speaker]).glob("*.wav") if not p.name.startswith("beep"))


def prompt_clips() -> dict[str, list[np.ndarray]]:
    """``{"asterisk:VOICE": [phrase, ...]}`` of the :data:`PROMPT_VOICES`: every top-level prompt (beeps left out)
    cut at its pauses into phrases, prepared like :func:`clips` (8 kHz, trimmed, −20 dBFS RMS); cached."""
    want = prompt_speakers()
    path = C.build_dir() / f"speaker_prompt_clips_sr{SR}_v{VERSION}.npz"
    return _pool("prompts", path, want, lambda: {spk: (c for f in _prompt_files(spk) for c in _phrases(f)) for spk in want})


def _build_clip_cache(path: Path, sources: dict) -> dict[str, list[np.ndarray]]:
    """Concatenate the prepared clips of every speaker (``{speaker: iterable of clip or None}``) into ``path``."""
    parts, index, pos = [], {}, 0
    for spk, ys in sources.items():
        bounds = []
        for y in ys:
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
    return {spk: [audio[a:b] for a, b in bounds] for spk, bounds in index.items()}


def stream(speaker: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """``n`` samples of ``speaker``: random clips with random gaps after a random lead; returns (audio, clip ids)."""
    if speaker.startswith("flite:"):
        pool = flite_clips()[speaker]
    elif speaker in PROMPT_VOICES:
        pool = prompt_clips()[speaker]
    else:
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


def perturb_speed(y: np.ndarray, factor: float) -> np.ndarray:
    """Play ``y`` ``factor`` times faster by band-limited resampling (f0 and formants × factor, length ÷ factor).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    factor : float
        Speed factor, rounded to a ratio of integers with denominator 100.

    Returns
    -------
    np.ndarray [shape=(round(n / factor),), dtype=float32]

    Examples
    --------
    >>> t = np.arange(8000) / 8000
    >>> z = perturb_speed(np.sin(2 * np.pi * 200 * t), 1.25)
    >>> len(z), int(np.argmax(np.abs(np.fft.rfft(z))) * 8000 / len(z))
    (6400, 250)
    """
    from math import gcd

    from scipy.signal import resample_poly

    up, down = 100, int(round(100 * float(factor)))
    g = gcd(up, down)
    if down == up:
        return np.asarray(y, np.float32).copy()
    return resample_poly(np.asarray(y, np.float64), up // g, down // g).astype(np.float32)


def random_eq(y: np.ndarray, rng: np.random.Generator, *, max_db: float = EQ_DB, points: int = EQ_POINTS) -> np.ndarray:
    """Filter ``y`` with a random smooth zero-phase EQ: gains uniform in ±``max_db`` at ``points`` frequencies.

    Examples
    --------
    >>> y = np.random.default_rng(0).normal(size=800).astype(np.float32)
    >>> random_eq(y, np.random.default_rng(1)).shape
    (800,)
    """
    Y = np.fft.rfft(np.asarray(y, np.float64))
    gains = rng.uniform(-max_db, max_db, size=int(points))
    curve = np.interp(np.linspace(0, 1, len(Y)), np.linspace(0, 1, int(points)), gains)
    return np.fft.irfft(Y * 10 ** (curve / 20), n=len(y)).astype(np.float32)


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
    augment : bool
        Manufacture new speakers (TRAINING split only): per source, a speed factor drawn
        log-uniformly in :data:`SPEED_RANGE` (:func:`perturb_speed`), a random EQ
        (:func:`random_eq`) and a random start up to :data:`SHIFT_S` into its stream.
    flite : bool
        Add flite's voices (:func:`flite_speakers`) as extra speakers (TRAINING split only).
    prompts : bool
        Add the four recorded prompt voices (:func:`prompt_speakers`, real speakers) as extra speakers
        (TRAINING split only).

    Attributes
    ----------
    last : dict
        ``{"speakers": [...], "speed": [...]}`` of the last segment drawn by :meth:`one`.

    Examples
    --------
    >>> mix, src = StreamSampler(8000, np.random.default_rng(0)).batch(2)   # doctest: +SKIP
    >>> mix.shape, src.shape                                                 # doctest: +SKIP
    ((2, 8000), (2, 2, 8000))
    """

    def __init__(self, segment: int, rng: np.random.Generator, *, split: str = "train", gain_db: float = 5.0,
                 min_active: float = 0.3, augment: bool = False, flite: bool = False, prompts: bool = False):
        if (augment or flite or prompts) and split != "train":
            raise ValueError(f"speaker augmentation, flite voices and prompt voices are for the training split only, "
                             f"given split={split!r}, augment={augment}, flite={flite}, prompts={prompts}")
        self.segment = int(segment)
        self.rng = rng
        self.speakers = speakers(split) + (flite_speakers() if flite else []) + (prompt_speakers() if prompts else [])
        self.gain_db = float(gain_db)
        self.min_active = float(min_active)
        self.augment = bool(augment)
        self.last: dict = {}
        clips(split)
        if flite:
            flite_clips()
        if prompts:
            prompt_clips()

    def _source(self, speaker: str) -> tuple[np.ndarray, float]:
        if not self.augment:
            return stream(speaker, self.segment, self.rng)[0], 1.0
        lo, hi = np.log(SPEED_RANGE[0]), np.log(SPEED_RANGE[1])
        factor = round(float(np.exp(self.rng.uniform(lo, hi))), 2)
        shift = int(self.rng.uniform(0, SHIFT_S) * SR)
        y = stream(speaker, int(np.ceil((self.segment + shift) * factor)) + 8, self.rng)[0]
        y = perturb_speed(y, factor)[shift:shift + self.segment]
        y = np.pad(y, (0, self.segment - len(y)))
        return random_eq(y, self.rng), factor

    def _active(self, y: np.ndarray) -> float:
        fr = y[: len(y) // 64 * 64].reshape(-1, 64)
        e = np.sqrt((fr.astype(np.float64) ** 2).mean(1))
        return float((e > 1e-3).mean())

    def one(self) -> np.ndarray:
        for _ in range(8):
            spk = _pair(self.speakers, self.rng)
            drawn = [self._source(s) for s in spk]
            src = np.stack([d[0] for d in drawn])
            if min(self._active(s) for s in src) >= self.min_active:
                break
        self.last = {"speakers": spk, "speed": [d[1] for d in drawn]}
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
           "extra_training_speakers": {"flite": flite_speakers(), "note": (
               f"flite voices (CMU permissive) saying the first {FLITE_SENTENCES} sentences of the flite speech "
               "set's training text pool; dynamic mixing of the training split only (StreamSampler flite=True)"),
               "prompt_voices": {spk: {"package": SRC.SOURCES[key].package, "licence": SRC.SOURCES[key].licence,
                                       "what": SRC.SOURCES[key].what} for spk, key in PROMPT_VOICES.items()},
               "prompt_note": ("recorded prompt voices (real speakers, running speech) cut at their pauses into "
                               "phrases; dynamic mixing of the training split only (StreamSampler prompts=True)")},
           "languages": {s: list(v) for s, v in SPLIT_LANGUAGES.items()}}
    return out
