"""Sound-event scenes from recorded sound effects, with exact event stems and time-frequency boxes.

A scene is ``seconds`` of a real ambience recording (birds, campfire, night, a ship)
with 3–7 recorded sound events dropped in at random times (they may overlap), each at a
random signal-to-background ratio. Everything is known by construction: every event's
own signal inside the scene (``event_stems``), the background alone, and labels read off
the event's energy, not off the file's length:

* ``onset`` / ``offset``: first / last millisecond whose 20 ms energy lies within
  :data:`TOP_DB` dB of the event's peak (trailing silence and faint tails do not count);
* ``fmin`` / ``fmax``: the band holding the central 95 % of the event's energy between its
  onset and offset (2.5 % of the energy lies below ``fmin``, 2.5 % above ``fmax``).

The events come from Debian packages (no downloads), grouped into :data:`SCENE_CLASSES`.
Each class's files are split into disjoint train / val / test pools (about 58 / 12 / 30 %
of the files); variants of one recording (``X`` / ``X-miss`` / ``X.wav`` / ``X-fire`` /
``X-big``) always fall in the same pool, so no test scene holds a recording, or a re-cut
of one, that training or model selection heard. The backgrounds (seven ambience recordings,
looped from a random offset, one or two per scene, over a coloured-noise floor) are the
environment and are shared by all splits.

Augmentation happens while a scene is made: level (random SNR), a mild speed change of
±10 % (pitch and length together, by resampling), a random spectral tilt of about ±10 dB
across the band, random crops of long sources, and the random placement and overlap of events.

Every scene is a pure function of ``(split, index, sr, seconds)``: its random generator is
seeded from them, so scene ``i`` is the same whether one scene or the whole split is made,
and ``n=k`` gives the first ``k`` scenes of the full split. Decoded, resampled and trimmed
sources are cached under ``model_zoo/data/_build/`` (gitignored).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ._common import MissingSourceError, build_dir, require_source, resample, source_path, stable_hash

__all__ = ["SCENE_CLASSES", "DEFAULT_SIZES", "TOP_DB", "BAND_ENERGY", "FRAME_SECONDS", "scene_set", "scene",
           "scene_sources", "scene_manifest", "event_bounds", "event_band", "event_roll", "MissingSourceError"]

#: Bump when the output of :func:`scene` changes (invalidates nothing on disk: only sources are cached).
VERSION = 4
SEED = 7_071_991

#: Event classes, in the order of every model's output channels.
SCENE_CLASSES = ["speech", "cry", "creature", "melee", "projectile", "magic", "alert", "horn"]

CLASS_DESCRIPTIONS = {
    "speech": "read English speech prompts (one female and one male speaker)",
    "cry": "pain and death cries of humans, dwarves, elves, orcs, goblins, ogres and trolls (game foley), and a laugh",
    "creature": "animal and monster calls: wolf, gryphon, drake, horse, bat, yeti, snake hiss, tusker",
    "melee": "melee swings and hits: sword, axe, mace, club, flail, hatchet, staff, spear, knife, torch, fist, "
             "claws, pincers, tail, bites",
    "projectile": "bows, crossbows, slings, thrown knives, darts and nets (release and flight)",
    "magic": "spell effects: dark, holy, faerie fire, magic missile, thorns, lightning, flames, water blast, "
             "heal, slow, petrify, poison, entangle",
    "alert": "desktop alert and notification sounds, telephone and PBX tones",
    "horn": "horn signals and a short fanfare",
}

DEFAULT_SIZES = {"train": 400, "val": 40, "test": 60}
SPLITS = ("train", "val", "test")
TEST_FRACTION, VAL_FRACTION = 0.30, 0.12

#: An event is "on" while its 20 ms energy is within this many dB of its own peak.
TOP_DB = 30.0
#: Fraction of an event's energy inside its (fmin, fmax) box.
BAND_ENERGY = 0.95
#: Envelope analysis: 20 ms windows every millisecond.
_ENV_WIN_S, _ENV_HOP_S = 0.020, 0.001
#: Frame period of the detectors' outputs and of :func:`event_roll` (hop 320 at 16 kHz).
FRAME_SECONDS = 0.020

SNR_DB = (2.0, 20.0)  # event level over the background, dB (RMS over the event's active part)
BACKGROUND_DBFS = (-38.0, -28.0)
SPEED = (0.90, 1.10)
TILT = (-0.5, 0.5)  # random spectral tilt: gain (f / 1 kHz) ** a, about +-10 dB over 100 Hz-8 kHz
MAX_EVENT_SECONDS = 4.0
SPEECH_SECONDS = (0.8, 4.0)  # asterisk prompts kept for the speech class

_PACKAGES = {
    "wesnoth": ("wesnoth-1.16-data", "GPL-2+",
                "Battle for Wesnoth 1.16 sound effects (c) the Wesnoth project contributors"),
    "freedesktop": ("sound-theme-freedesktop", "per file: CC-BY-3.0, CC-BY-SA-3.0, GPL-2+ or GPL-2",
                    "freedesktop.org sound theme"),
    "asterisk": ("asterisk-core-sounds-en-wav", "CC-BY-SA-3.0", "Asterisk core prompts read by Allison Smith"),
    "alsa": ("alsa-utils", "GPL-2", "ALSA test sounds"),
}

# per-file licences of the freedesktop theme (from /usr/share/doc/sound-theme-freedesktop/copyright)
_FREEDESKTOP_LICENCES = {
    "alarm-clock-elapsed": "CC-BY-SA-3.0 (Tim/corsica_s)", "audio-volume-change": "CC-BY-SA-3.0 (Lucas McCallister)",
    "bell": "CC-BY-3.0 (Dr. Richard Boulanger et al)", "complete": "CC-BY-3.0 (Dr. Richard Boulanger et al)",
    "device-added": "CC-BY-SA-3.0 (Ivica Bukvic)", "device-removed": "CC-BY-SA-3.0 (Ivica Bukvic)",
    "power-plug": "CC-BY-SA-3.0 (Ivica Bukvic)", "power-unplug": "CC-BY-SA-3.0 (Ivica Bukvic)",
    "network-connectivity-established": "CC-BY-SA-3.0 (Ivica Bukvic)",
    "network-connectivity-lost": "CC-BY-SA-3.0 (Ivica Bukvic)", "message": "CC-BY-SA-3.0 (Ivica Bukvic)",
    "dialog-error": "CC-BY-SA-3.0 (freedesktop sound theme)", "dialog-warning": "CC-BY-SA-3.0 (freedesktop sound theme)",
    "window-attention": "CC-BY-SA-3.0 (freedesktop sound theme)",
    "window-question": "CC-BY-SA-3.0 (freedesktop sound theme)",
    "message-new-instant": "GPL-2+ (Damien Sandras)", "phone-incoming-call": "GPL-2+ (Damien Sandras)",
    "phone-outgoing-busy": "GPL-2+ (Damien Sandras)", "phone-outgoing-calling": "GPL-2+ (Damien Sandras)",
    "service-login": "GPL-2 (the Pidgin developers)", "service-logout": "GPL-2 (the Pidgin developers)",
    "suspend-error": "CC-BY-SA-3.0 (Red Hat, Inc.)",
}
_FREEDESKTOP_ALERTS = sorted(_FREEDESKTOP_LICENCES)
_ASTERISK_TONES = ["ascending-2tone", "beep", "beeperr", "descending-2tone"]  # PBX tones: alert, not speech
_FREEDESKTOP_SPEECH = ["audio-channel-front-center", "audio-channel-front-left", "audio-channel-front-right",
                       "audio-channel-rear-center", "audio-channel-rear-left", "audio-channel-rear-right",
                       "audio-channel-side-left", "audio-channel-side-right"]

# Wesnoth files per class (regular expressions on the file name)
_WESNOTH_PATTERNS = {
    "cry": r"(human(-female|-old)?-(hit|die)-\d|dwarf-(hit|die)-\d|elf-hit-\d|dwarf-laugh|"
           r"(orc|orc-small|ogre|troll|goblin)-(hit|die)-\d)\.(ogg|wav)",
    "creature": r"(wolf-(growl|hit|die)-\d|gryphon-(hit|die|shriek)-\d|drake-(hit-\d|die)|horse-(hit-\d|die)|"
                r"bat-hit-\d|yeti-(hit|die)|hiss(-big|-hit|-die)?|tusker-(hit|die))\.(ogg|wav)",
    "melee": r"(sword-1|axe|mace|club|flail|hatchet|staff|spear|knife|fist|dagger-swish|miss-\d|torch|claws|pincers|"
             r"tail|bite|bite-small)(-miss)?\.(ogg|wav)",
    "projectile": r"(bow|bow-puny|bow-puny-fire|crossbow|crossbow-fire|sling|sling-big|throwing-knife|dart|throw-\d|net)"
                  r"(-miss)?\.(ogg|wav)",
    "magic": r"(magic-[a-z0-9-]+|magicmissile|lightning(-miss)?|flame-big(-miss)?|fire|water-blast|heal|slowed|"
             r"petrified|poison|entangle)\.(ogg|wav)",
    "horn": r"(horn-signals/horn-\d|fanfare-short)\.(ogg|wav)",
}
# Ambiences: the environment the events happen in, shared by all splits (whole files). Giving
# each split its own stretch of every file was tried (version 2-3): with 3.5-10 s files the val
# and test stretches (0.5-2.5 s) loop so often that one chirp becomes a train of false alarms,
# which measured the loop, not the detector. Held out is what the task is about: the events.
# Left out: morning.ogg (a sustained tonal chord, too close to the horn class to be a neutral
# background) and wardrums.ogg (music).
_AMBIENCES = [("wesnoth", "ambient/birds1.ogg"), ("wesnoth", "ambient/birds2.ogg"), ("wesnoth", "ambient/birds3.ogg"),
              ("wesnoth", "ambient/campfire.ogg"), ("wesnoth", "ambient/night.ogg"), ("wesnoth", "ambient/ship.ogg"),
              ("alsa", "Noise.wav")]
BACKGROUND_SPANS = {"train": (0.0, 1.0), "val": (0.0, 1.0), "test": (0.0, 1.0)}


# ---- sources --------------------------------------------------------------------------
def _root(package_key: str) -> Path:
    """Folder of a source package's sounds, found from what the package installs (model_zoo/data/_sources.py)."""
    return require_source(package_key)


_require = _root


# Alert sounds made as pairs (one likely the other reversed or re-pitched): one family each.
_PAIRS = {"device-added": "device", "device-removed": "device", "power-plug": "power", "power-unplug": "power",
          "network-connectivity-established": "network", "network-connectivity-lost": "network",
          "service-login": "service", "service-logout": "service", "ascending-2tone": "2tone",
          "descending-2tone": "2tone", "beep": "beep", "beeperr": "beep"}


def _group(name: str) -> str:
    """Recording family: variants of one recording share it (and so a split)."""
    stem = re.sub(r"\.(ogg|oga|wav)$", "", name)
    if stem in _PAIRS:
        return _PAIRS[stem]
    for part in ("-miss", "-fire", "-big"):
        stem = stem.replace(part, "")
    return stem


@functools.lru_cache(maxsize=None)
def _catalogue() -> dict:
    """``{class: [(package_key, relative path), ...]}`` of every usable recording, sorted."""
    out: dict[str, list] = {c: [] for c in SCENE_CLASSES}
    wes = _require("wesnoth")
    names = sorted(str(p.relative_to(wes)) for p in wes.rglob("*") if p.suffix in (".ogg", ".wav"))
    for cls, pat in _WESNOTH_PATTERNS.items():
        rx = re.compile(pat + "$")
        out[cls] = [("wesnoth", n) for n in names if rx.fullmatch(n)]
    fd = _require("freedesktop")
    out["alert"] = [("freedesktop", f"{n}.oga") for n in _FREEDESKTOP_ALERTS if (fd / f"{n}.oga").is_file()]
    import soundfile as sf

    ast = _require("asterisk")
    speech = []
    out["alert"] += [("asterisk", f"{n}.wav") for n in _ASTERISK_TONES if (ast / f"{n}.wav").is_file()]
    for p in sorted(ast.glob("*.wav")):
        if p.stem in _ASTERISK_TONES:
            continue
        d = sf.info(str(p)).duration
        if SPEECH_SECONDS[0] <= d <= SPEECH_SECONDS[1]:
            speech.append(("asterisk", p.name))
    speech += [("freedesktop", f"{n}.oga") for n in _FREEDESKTOP_SPEECH if (fd / f"{n}.oga").is_file()]
    out["speech"] = speech
    for cls, files in out.items():
        if len(files) < 5:
            raise MissingSourceError(f"class {cls!r} found only {len(files)} recordings; the Debian packages "
                                     f"{', '.join(v[0] for v in _PACKAGES.values())} must be installed complete")
    return out


def _kind(group: str) -> str:
    """What a family is a recording of (``human-hit-3`` → ``human-hit``): its numbered takes are spread over splits."""
    return re.sub(r"-?\d+$", "", group)


@functools.lru_cache(maxsize=None)
def _splits() -> dict:
    """``{split: {class: [(package_key, path), ...]}}``: disjoint recording families per split.

    Families are dealt one at a time (in a seeded order) to the split furthest below its
    share of the class's files, preferring a split that holds no take of the same kind yet,
    so that numbered takes of one kind (``wolf-growl-1..4``) land on different sides.
    """
    shares = {"test": TEST_FRACTION, "val": VAL_FRACTION, "train": 1.0 - TEST_FRACTION - VAL_FRACTION}
    out = {s: {} for s in SPLITS}
    for cls, files in _catalogue().items():
        groups: dict[str, list] = {}
        for f in files:
            groups.setdefault(_group(Path(f[1]).name), []).append(f)
        order = sorted(groups, key=lambda g: stable_hash("scenes-split", VERSION, cls, g))
        taken = {s: [] for s in shares}
        count = {s: 0 for s in shares}
        for g in order:
            total = sum(count.values()) + len(groups[g])
            deficit = {s: shares[s] * total - count[s] for s in shares}
            fresh = [s for s in shares if deficit[s] > 0 and all(_kind(x) != _kind(g) for x in taken[s])]
            pick = max(fresh or list(shares), key=lambda s: deficit[s])
            taken[pick].append(g)
            count[pick] += len(groups[g])
        if not taken["train"] or not taken["test"]:  # pragma: no cover - only with a crippled package
            raise MissingSourceError(f"class {cls!r} has too few recording families ({len(groups)}) to split")
        for split, gs in taken.items():
            out[split][cls] = sorted(f for g in gs for f in groups[g])
    return out


def scene_sources(split: str) -> dict:
    """Recordings each class draws from in ``split``.

    Returns
    -------
    dict
        ``{"events": {class: [path, ...]}, "backgrounds": [path, ...], "background_span": (start, stop)}``
        with absolute paths; the split uses the stretch ``[start, stop)`` (fractions of each file's length)
        of every background.
    """
    _check_split(split)
    ev = {c: [str(_root(k) / p) for k, p in files] for c, files in _splits()[split].items()}
    a, b = BACKGROUND_SPANS[split]
    return {"events": ev, "backgrounds": [str(_root(k) / p) for k, p in _AMBIENCES], "background_span": (a, b)}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")


def _envelope_db(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """20 ms energy every 1 ms: ``(centre times in s, level in dB)``; frame ``j`` is centred on ``j * hop``."""
    win, hop = max(1, round(_ENV_WIN_S * sr)), max(1, round(_ENV_HOP_S * sr))
    c = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
    centres = np.arange(0, len(y), hop)
    lo = np.clip(centres - win // 2, 0, len(y))
    hi = np.clip(centres + win - win // 2, 0, len(y))
    energy = (c[hi] - c[lo]) / win
    return centres / sr, 10.0 * np.log10(energy + 1e-20)


def event_bounds(y: np.ndarray, sr: int, *, top_db: float = TOP_DB) -> tuple[float, float]:
    """Onset and offset (s) of the part of ``y`` within ``top_db`` of its peak 20 ms energy.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        One event's signal (silent elsewhere).
    sr : int
    top_db : float

    Returns
    -------
    onset, offset : float
        Centres of the first and last 1 ms step above the threshold; ``(nan, nan)`` if ``y`` is silent.

    Examples
    --------
    >>> y = np.zeros(16000, np.float32); y[4000:8000] = 0.5
    >>> [round(t, 2) for t in event_bounds(y, 16000)]
    [0.24, 0.51]
    """
    t, db = _envelope_db(np.asarray(y, dtype=np.float32), sr)
    if not np.isfinite(db).any() or db.max() <= -190:
        return float("nan"), float("nan")
    on = np.flatnonzero(db > db.max() - top_db)
    return float(t[on[0]]), float(t[on[-1]])


def event_band(y: np.ndarray, sr: int, onset: float, offset: float, *, energy: float = BAND_ENERGY,
               n_fft: int = 1024) -> tuple[float, float]:
    """``(fmin, fmax)`` in Hz: the band holding the central ``energy`` share of ``y``'s energy in ``[onset, offset]``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    onset, offset : float
        Seconds; the band is measured over this span only.
    energy : float
        Share inside the box; ``(1 - energy) / 2`` lies below ``fmin`` and as much above ``fmax``.
    n_fft : int
        FFT size of the analysis (frequency resolution ``sr / n_fft``).

    Returns
    -------
    fmin, fmax : float
        Bin centres in Hz.
    """
    from scipy.signal import stft

    a, b = max(0, int(onset * sr) - n_fft // 2), min(len(y), int(offset * sr) + n_fft // 2)
    seg = np.asarray(y[a:b], dtype=np.float64)
    if len(seg) < n_fft:
        seg = np.pad(seg, (0, n_fft - len(seg)))
    f, _, Z = stft(seg, fs=sr, nperseg=n_fft, noverlap=n_fft - n_fft // 4, boundary=None, padded=True)
    p = (np.abs(Z) ** 2).sum(axis=1)
    cum = np.cumsum(p) / max(p.sum(), 1e-30)
    tail = (1.0 - energy) / 2.0
    lo = int(np.searchsorted(cum, tail))
    hi = int(np.searchsorted(cum, 1.0 - tail))
    return float(f[min(lo, len(f) - 1)]), float(f[min(hi, len(f) - 1)])


def _cache_file(key: str) -> Path:
    d = build_dir() / "scene_sources"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"


@functools.lru_cache(maxsize=2048)
def _load_source(package_key: str, rel: str, sr: int, trim: bool = True) -> np.ndarray:
    """Decoded, mono, resampled to ``sr`` and (for events) trimmed to ±20 ms around its energy."""
    from probe.audio import load_audio

    path = _root(package_key) / rel
    if not path.is_file():
        raise MissingSourceError(f"recording not found: {path}. It is shipped by the Debian package "
                                 f"{_PACKAGES[package_key][0]!r}; install it with: apt-get install -y "
                                 f"{_PACKAGES[package_key][0]}")
    st = path.stat()
    key = json.dumps([str(path), st.st_size, int(st.st_mtime), sr, trim, TOP_DB, _ENV_HOP_S, 2])
    cf = _cache_file(key)
    if cf.is_file():
        try:
            return np.load(cf, allow_pickle=False)
        except Exception:  # torn file: rebuild
            pass
    y, native = load_audio(path)
    y = resample(y, native, sr)
    y = y - y.mean()
    if trim:
        on, off = event_bounds(y, sr, top_db=TOP_DB + 10.0)
        a, b = max(0, int((on - 0.02) * sr)), min(len(y), int((off + 0.02) * sr) + 1)
        y = y[a:b]
    y = np.ascontiguousarray(y, dtype=np.float32)
    fd, tmp = tempfile.mkstemp(dir=cf.parent, suffix=".tmp.npy")
    os.close(fd)
    try:
        np.save(tmp, y)
        os.replace(tmp, cf)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return y


# ---- scenes ---------------------------------------------------------------------------
def _scene_rng(split: str, index: int, sr: int, seconds: float) -> np.random.Generator:
    return np.random.default_rng([SEED, VERSION, stable_hash("scenes", split, int(sr), float(seconds)) & 0xFFFFFFFF,
                                  int(index)])


def _fade(x: np.ndarray, sr: int, seconds: float = 0.005) -> np.ndarray:
    n = min(len(x) // 2, max(1, int(seconds * sr)))
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    x = x.copy()
    x[:n] *= ramp
    x[len(x) - n:] *= ramp[::-1]
    return x


def _tile(x: np.ndarray, n: int, start: int, sr: int) -> np.ndarray:
    """Loop ``x`` to ``n`` samples from offset ``start`` with 50 ms crossfades at the seams."""
    xf = max(1, min(int(0.05 * sr), len(x) // 4))
    out = np.zeros(n + len(x), np.float32)
    pos, first = 0, True
    seg = np.roll(x, -start)
    ramp = np.linspace(0, 1, xf, dtype=np.float32)
    while pos < n:
        s = seg.copy()
        if not first:
            s[:xf] *= ramp
        s[-xf:] *= ramp[::-1]
        out[pos:pos + len(s)] += s
        pos += len(s) - xf
        first = False
        seg = x
    return out[:n]


def _ambience(split: str, k: int, sr: int) -> np.ndarray:
    """The ``split``'s stretch of ambience ``k`` (see :data:`BACKGROUND_SPANS`)."""
    x = _load_source(*_AMBIENCES[k], sr, False)
    a, b = BACKGROUND_SPANS[split]
    return x[int(a * len(x)):int(b * len(x))]


def _background(split: str, rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, list]:
    k = int(rng.integers(len(_AMBIENCES)))
    first = _ambience(split, k, sr)
    bg = _tile(first, n, int(rng.integers(len(first))), sr)
    used = [str(_root(_AMBIENCES[k][0]) / _AMBIENCES[k][1])]
    bg = bg / (np.sqrt(np.mean(bg ** 2)) + 1e-12)
    if rng.random() < 0.5:  # a second ambience underneath
        j = (k + 1 + int(rng.integers(len(_AMBIENCES) - 1))) % len(_AMBIENCES)
        second = _ambience(split, j, sr)
        b2 = _tile(second, n, int(rng.integers(len(second))), sr)
        bg = bg + b2 / (np.sqrt(np.mean(b2 ** 2)) + 1e-12) * 10 ** (rng.uniform(-12, -3) / 20)
        used.append(str(_root(_AMBIENCES[j][0]) / _AMBIENCES[j][1]))
    # a faint coloured noise floor (spectral slope drawn per scene) so no two scenes share a floor
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec /= np.maximum(f, 20.0) ** (rng.uniform(0.0, 1.0))
    floor = np.fft.irfft(spec, n)
    bg = bg + floor / (np.sqrt(np.mean(floor ** 2)) + 1e-12) * 10 ** (rng.uniform(-25, -15) / 20)
    bg = bg / (np.sqrt(np.mean(bg ** 2)) + 1e-12) * 10 ** (rng.uniform(*BACKGROUND_DBFS) / 20)
    return bg.astype(np.float32), used


def _tilt(x: np.ndarray, sr: int, a: float) -> np.ndarray:
    """Random colouring: spectrum times ``(f / 1 kHz) ** a`` (f floored at 50 Hz), as a new recording chain would."""
    if abs(a) < 1e-3:
        return x
    spec = np.fft.rfft(x.astype(np.float64))
    f = np.maximum(np.fft.rfftfreq(len(x), 1.0 / sr), 50.0)
    return np.fft.irfft(spec * (f / 1000.0) ** a, len(x)).astype(np.float32)


def _speed(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch up by ``factor``), by resampling."""
    if abs(factor - 1.0) < 1e-3:
        return x
    import librosa

    return librosa.resample(x, orig_sr=float(sr) * factor, target_sr=float(sr), res_type="soxr_hq").astype(np.float32)


def scene(split: str, index: int, *, sr: int = 16000, seconds: float = 10.0, stems: bool = True) -> dict:
    """Make scene ``index`` of ``split`` (deterministic).

    Parameters
    ----------
    split : {"train", "val", "test"}
    index : int
    sr : int
    seconds : float
    stems : bool
        Keep each event's own signal (``event_stems``); ``False`` saves memory for training.

    Returns
    -------
    dict
        ``audio`` float32 (N,), ``sr``, ``events`` (list of ``{"label", "onset", "offset", "fmin", "fmax",
        "source_file", "snr_db", "speed"}``, sorted by onset), ``event_stems`` float32 (n_events, N) or None,
        ``background`` float32 (N,), ``meta`` (split, index, seed, background files, version).
        ``audio == background + event_stems.sum(0)`` up to float error.
    """
    _check_split(split)
    index = int(index)
    if index < 0:
        raise ValueError(f"scene index must be >= 0, given {index}")
    rng = _scene_rng(split, index, sr, seconds)
    n = int(round(seconds * sr))
    pools = _splits()[split]
    bg, bg_files = _background(split, rng, n, sr)
    bg_rms = float(np.sqrt(np.mean(bg.astype(np.float64) ** 2)))
    lo, hi = max(1, round(3 * seconds / 10)), max(1, round(7 * seconds / 10))
    n_events = int(rng.integers(lo, hi + 1))
    placed = []  # (label, start, stop, stem piece, file, snr, speed)
    for _ in range(n_events):
        cls = SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))]
        pkg, rel = pools[cls][int(rng.integers(len(pools[cls])))]
        x = _load_source(pkg, rel, sr, True)
        speed = float(rng.uniform(*SPEED))
        x = _speed(x, sr, speed)
        max_len = int(min(MAX_EVENT_SECONDS, seconds) * sr)
        if len(x) > max_len:  # random crop of a long source, then re-trim
            L = int(rng.uniform(0.4, 1.0) * max_len)
            a = int(rng.integers(len(x) - L + 1))
            x = x[a:a + L]
            on, off = event_bounds(x, sr, top_db=TOP_DB + 10.0)
            if not np.isfinite(on):
                continue
            x = x[max(0, int((on - 0.02) * sr)):int((off + 0.02) * sr) + 1]
        tilt = float(rng.uniform(*TILT))
        x = _fade(_tilt(x, sr, tilt), sr)
        snr = float(rng.uniform(*SNR_DB))
        on, off = event_bounds(x, sr)
        act = x[int(on * sr):int(off * sr) + 1]
        level = float(np.sqrt(np.mean(act.astype(np.float64) ** 2))) if len(act) else 0.0
        if level <= 0:
            continue
        x = x * np.float32(bg_rms * 10 ** (snr / 20) / level)
        start = None
        for _try in range(10):  # no two events of one class overlap (they would be one event)
            s = int(rng.integers(0, max(1, n - len(x)) + 1))
            if all(p[0] != cls or s >= p[2] + int(0.1 * sr) or s + len(x) + int(0.1 * sr) <= p[1] for p in placed):
                start = s
                break
        if start is None:
            continue
        x = x[: n - start]
        placed.append((cls, start, start + len(x), x, str(_root(pkg) / rel), snr, speed, tilt))
    audio = bg.copy()
    for p in placed:
        audio[p[1]:p[2]] += p[3]
    peak = float(np.abs(audio).max())
    scale = np.float32(0.95 / peak) if peak > 0.95 else np.float32(1.0)
    audio *= scale
    bg = bg * scale
    events, stem_list = [], []
    for cls, a, b, x, f, snr, speed, tilt in sorted(placed, key=lambda p: p[1]):
        stem = np.zeros(n, np.float32)
        stem[a:b] = x * scale
        on, off = event_bounds(stem[a:b], sr)
        on, off = on + a / sr, off + a / sr
        fmin, fmax = event_band(stem, sr, on, off)
        events.append({"label": cls, "onset": round(on, 4), "offset": round(off, 4), "fmin": round(fmin, 1),
                       "fmax": round(fmax, 1), "source_file": f, "snr_db": round(snr, 2), "speed": round(speed, 4),
                       "tilt": round(tilt, 3)})
        if stems:
            stem_list.append(stem)
    event_stems = (np.stack(stem_list) if stem_list else np.zeros((0, n), np.float32)) if stems else None
    meta = {"split": split, "index": index, "sr": int(sr), "seconds": float(seconds), "seed": [SEED, VERSION],
            "background_files": bg_files, "background_span": list(BACKGROUND_SPANS[split]), "version": VERSION,
            "n_events": len(events)}
    return {"audio": audio.astype(np.float32), "sr": int(sr), "events": events, "event_stems": event_stems,
            "background": bg.astype(np.float32), "meta": meta}


def scene_set(split: str, *, n: int | None = None, sr: int = 16000, seconds: float = 10.0,
              stems: bool = True, progress: bool = False) -> list[dict]:
    """The first ``n`` scenes of a split (see :func:`scene` for one scene's fields).

    Parameters
    ----------
    split : {"train", "val", "test"}
        Test scenes use only recordings (and ambiences) that train and val never use.
    n : int, optional
        Number of scenes; default :data:`DEFAULT_SIZES` (400 / 40 / 60).
    sr : int
    seconds : float
    stems : bool
        Keep ``event_stems`` (about 3 MB per 10 s scene); ``False`` leaves ``None``.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    list of dict

    Raises
    ------
    MissingSourceError
        A Debian package with the recordings is not installed (the message names it).

    Examples
    --------
    >>> s = scene_set("test", n=1)[0]  # doctest: +SKIP
    >>> s["audio"].shape, s["events"][0]["label"] in SCENE_CLASSES  # doctest: +SKIP
    ((160000,), True)
    """
    _check_split(split)
    n = DEFAULT_SIZES[split] if n is None else int(n)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"scenes/{split}", leave=False)
    return [scene(split, i, sr=sr, seconds=seconds, stems=stems) for i in it]


def event_roll(events: list, n_frames: int, *, frame_seconds: float = FRAME_SECONDS,
               classes: list | None = None) -> np.ndarray:
    """Frame targets: 1 where a frame's centre lies inside an event of that class.

    Parameters
    ----------
    events : list of dict
        With ``label``, ``onset``, ``offset`` (s).
    n_frames : int
    frame_seconds : float
        Frame ``t`` is centred at ``t * frame_seconds`` (a centred STFT grid).
    classes : list of str, optional
        Default :data:`SCENE_CLASSES`.

    Returns
    -------
    np.ndarray [shape=(n_classes, n_frames), dtype=float32]
    """
    classes = SCENE_CLASSES if classes is None else classes
    roll = np.zeros((len(classes), n_frames), np.float32)
    t = np.arange(n_frames) * frame_seconds
    for e in events:
        if e["label"] in classes:
            roll[classes.index(e["label"]), (t >= e["onset"]) & (t <= e["offset"])] = 1.0
    return roll


def scene_manifest() -> dict:
    """Provenance of the scene data: packages, licences, classes, and which files each split uses.

    Returns
    -------
    dict
        ``{"name", "version", "classes", "class_descriptions", "packages": {key: {"debian_package", "licence",
        "credit", "root"}}, "splits": {split: {"events": {class: [file, ...]}, "backgrounds": [...]}},
        "counts": {split: {class: n_files}}, "file_licences": {file: licence}, "labels", "augmentation",
        "default_sizes"}``
    """
    splits = {s: scene_sources(s) for s in SPLITS}
    lic = {}
    for s in SPLITS:
        for files in list(splits[s]["events"].values()) + [splits[s]["backgrounds"]]:
            for f in files:
                if f.startswith(str(source_path("freedesktop")) + "/"):
                    stem = Path(f).stem
                    lic[f] = _FREEDESKTOP_LICENCES.get(stem, "GPL-2+ (the ALSA developers)")
                else:
                    for k, (_pkg, licence, _credit) in _PACKAGES.items():
                        if f.startswith(str(_root(k)) + "/"):
                            lic[f] = licence
    return {
        "name": "scenes", "version": VERSION, "classes": list(SCENE_CLASSES), "class_descriptions": CLASS_DESCRIPTIONS,
        "packages": {k: {"debian_package": p, "licence": li, "credit": c, "root": str(_root(k))}
                     for k, (p, li, c) in _PACKAGES.items()},
        "splits": splits,
        "counts": {s: {c: len(v) for c, v in splits[s]["events"].items()} for s in SPLITS},
        "file_licences": lic,
        "labels": {"top_db": TOP_DB, "band_energy": BAND_ENERGY, "envelope": "20 ms energy every 1 ms"},
        "augmentation": {"snr_db": list(SNR_DB), "background_dbfs": list(BACKGROUND_DBFS), "speed": list(SPEED),
                         "spectral_tilt": list(TILT),
                         "max_event_seconds": MAX_EVENT_SECONDS, "events_per_10s": [3, 7]},
        "default_sizes": dict(DEFAULT_SIZES),
        "held_out": "val and test use sound-event recording families (X, X-miss, X-fire, X-big, X.wav, and the "
                    "paired alert sounds) that no other split uses; the 7 ambience recordings behind the events "
                    "are shared by all splits",
        "background_spans": {k: list(v) for k, v in BACKGROUND_SPANS.items()},
    }


def scene_example(i: int = 0, split: str = "test", *, sr: int = 16000, seconds: float = 10.0, name: str | None = None):
    """Scene ``i`` of ``split`` as a :class:`probe.audio.AudioExample` (events, event stems, provenance).

    ``info`` (JSON-able) holds the scene's ``meta``, the source files and their licences. The
    background alone is ``y - event_stems.sum(0)``.
    """
    from probe.audio import AudioExample

    s = scene(split, i, sr=sr, seconds=seconds, stems=True)
    lic = scene_manifest()["file_licences"]
    files = sorted({e["source_file"] for e in s["events"]} | set(s["meta"]["background_files"]))
    info = {**s["meta"], "dataset": "scenes", "classes": list(SCENE_CLASSES),
            "licences": {f: lic.get(f, "unknown") for f in files}}
    return AudioExample(s["audio"], s["sr"], name=name or f"scenes:{split}:{i}", events=s["events"],
                        event_stems=s["event_stems"], info=info)
