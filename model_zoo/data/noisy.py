"""Noisy clips for denoising and partitioned autoencoders: half signal + noise, half noise only.

SIGNAL (only in clips with ``has_signal``): either a flite utterance (voices ``kal16``, ``awb``,
``rms``, ``slt``; sentences from :func:`model_zoo.data.speech.text_pool` of the same split,
so test sentences are held out) or a monophonic FluidR3 instrument line (programs from
:func:`model_zoo.data.instruments.programs` of the same split, so test programs are held out).

NOISE, described honestly: a background "bed" plus, in half the clips, one recorded event.

- ``babble``: four random segments of REAL recorded prompts of one female speaker
  (``asterisk-core-sounds-en-wav``, 8 kHz, CC-BY-SA-3.0) summed at equal level. Prompt files
  are split by a stable hash: a third are test-only.
- ``recorded``: the recorded noise ``/usr/share/sounds/alsa/Noise.wav`` (``alsa-utils``,
  GPL-2; identical to freedesktop's ``audio-test-signal.oga``), looped with crossfades from a
  random start, with a random spectral tilt. Only 1.4 s exist, so it is used in train/val only.
- ``shaped``: SYNTHETIC Gaussian noise whose long-term spectrum is copied from a recorded
  sound of the split's pool and whose level is slowly modulated. The spectrum comes from a
  recording; the waveform does not.
- event: a recorded freedesktop sound (crumpling paper, bells, phone rings, alerts...;
  ``sound-theme-freedesktop``, CC-BY-SA-3.0 / GPL-2+) at a random time; train/val and test use
  disjoint files (duplicates of the same recording kept in one split).

Levels: the SNR (whole-clip RMS of clean over noise) is drawn from -5..10 dB, then the noisy
clip is set to -26..-18 dBFS (lowered only where it would clip). Noise-only clips get their
level from the same law, so loudness does not tell whether a clip holds a signal. ``noisy == clean + noise`` exactly (float32); ``clean`` is all zeros in
noise-only clips and ``snr_db`` is ``None``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf

from . import _common as C
from . import instruments, speech

__all__ = ["build", "DEFAULT_SIZES", "VERSION", "EVENT_FILES", "asterisk_prompts", "noise_files"]

VERSION = 2
DEFAULT_SIZES = {"train": 600, "val": 50, "test": 100}
SNR_RANGE = (-5.0, 10.0)
BED_TYPES = {"trainval": ("babble", "recorded", "shaped"), "test": ("babble", "shaped")}

#: freedesktop event recordings per split group (each set of identical files sits in one group).
EVENT_FILES = {
    "trainval": [
        "trash-empty.oga", "alarm-clock-elapsed.oga", "bell.oga", "complete.oga", "device-added.oga",
        "device-removed.oga", "dialog-error.oga", "message.oga", "phone-incoming-call.oga", "service-login.oga",
        "audio-volume-change.oga",
    ],
    "test": [
        "camera-shutter.oga", "suspend-error.oga", "phone-outgoing-busy.oga", "phone-outgoing-calling.oga",
        "message-new-instant.oga", "service-logout.oga", "dialog-information.oga",
    ],
}
MIN_PROMPT_SECONDS = 1.0

#: Per-file licence and copyright of the freedesktop sounds used (from the package's copyright file).
FREEDESKTOP_LICENCES = {
    "alarm-clock-elapsed.oga": ("CC-BY-SA-3.0", "Tim/corsica_s"),
    "audio-volume-change.oga": ("CC-BY-SA-3.0", "Lucas McCallister"),
    "bell.oga": ("CC-BY-3.0", "Dr. Richard Boulanger et al"),
    "complete.oga": ("CC-BY-3.0", "Dr. Richard Boulanger et al"),
    "trash-empty.oga": ("CC-BY-3.0", "Dr. Richard Boulanger et al"),
    "camera-shutter.oga": ("CC-BY-SA-3.0", "freesound user horsthorstensen"),
    "device-added.oga": ("CC-BY-SA-3.0", "Ivica Bukvic"),
    "device-removed.oga": ("CC-BY-SA-3.0", "Ivica Bukvic"),
    "message.oga": ("CC-BY-SA-3.0", "Ivica Bukvic"),
    "dialog-information.oga": ("CC-BY-SA-3.0", "Ivica Bukvic"),
    "dialog-error.oga": ("CC-BY-SA-3.0", "freedesktop sound theme (file not listed separately in the Debian copyright file)"),
    "message-new-instant.oga": ("GPL-2+", "Damien Sandras"),
    "phone-incoming-call.oga": ("GPL-2+", "Damien Sandras"),
    "phone-outgoing-busy.oga": ("GPL-2+", "Damien Sandras"),
    "phone-outgoing-calling.oga": ("GPL-2+", "Damien Sandras"),
    "service-login.oga": ("GPL-2", "The Pidgin developers"),
    "service-logout.oga": ("GPL-2", "The Pidgin developers"),
    "suspend-error.oga": ("CC-BY-SA-3.0", "Red Hat, Inc."),
}


def _under(path, key: str) -> bool:
    """Whether ``path`` lies in data source ``key``'s folder (``False`` when that source is missing)."""
    root = C.source_path(key)
    return root is not None and str(path).startswith(str(root) + "/")


def licence_of(path: str) -> str:
    """Licence string of a noise recording."""
    name = str(path).rsplit("/", 1)[-1]
    if _under(path, "freedesktop"):
        lic, holder = FREEDESKTOP_LICENCES.get(name, ("CC-BY-SA-3.0", "unknown"))
        return f"{lic} ({holder})"
    if _under(path, "alsa"):
        return "GPL-2 (The ALSA developers)"
    return "CC-BY-SA-3.0 (Allison Smith, asterisk core sounds)"


def _group(split: str) -> str:
    return "test" if split == "test" else "trainval"


def noise_files(split: str) -> dict:
    """Recorded noise sources used by ``split``: ``{"events": [...], "recorded": [...], "shaped_spectra": [...]}``."""
    g = _group(split)
    events = [str(C.require_source("freedesktop") / f) for f in EVENT_FILES[g]]
    recorded = [str(C.require_source("alsa") / "Noise.wav")] if g == "trainval" else []
    return {"events": events, "recorded": recorded, "shaped_spectra": recorded + events}


@functools.lru_cache(maxsize=1)
def _all_prompts(folder: str) -> tuple:
    d = Path(folder)
    out = []
    for p in sorted(d.glob("*.wav")):
        info = sf.info(p)
        if info.frames / info.samplerate >= MIN_PROMPT_SECONDS:
            out.append((str(p), int(info.frames), int(info.samplerate)))
    return tuple(out)


def asterisk_prompts(split: str) -> list[tuple[str, int, int]]:
    """``(path, frames, rate)`` of the asterisk prompts (>= 1 s) of ``split``'s group; a third are test-only."""
    want_test = _group(split) == "test"
    return [p for p in _all_prompts(str(C.require_source("asterisk"))) if (C.stable_hash("asterisk", p[0].rsplit("/", 1)[-1]) % 3 == 0) == want_test]


def _package_of(path: str) -> str:
    if _under(path, "alsa"):
        return "alsa-utils"
    if _under(path, "freedesktop"):
        return "sound-theme-freedesktop"
    return "asterisk-core-sounds-en-wav"


@functools.lru_cache(maxsize=64)
def _load(path: str, sr: int) -> np.ndarray:
    C.require_file(path, _package_of(path), "noise recording")
    y, file_sr = sf.read(path, dtype="float32", always_2d=True)
    return C.resample(y.mean(axis=1), file_sr, sr)


def _loop(y: np.ndarray, n: int, start: int, fade: int) -> np.ndarray:
    """``n`` samples of ``y`` repeated from ``start``, seams crossfaded over ``fade`` samples."""
    fade = max(1, min(fade, len(y) // 4))
    body = y[: len(y) - fade].copy()
    body[:fade] = body[:fade] * np.linspace(0, 1, fade, dtype=np.float32) + y[len(y) - fade :] * np.linspace(1, 0, fade, dtype=np.float32)
    reps = int(np.ceil((n + start) / len(body))) + 1
    return np.tile(body, reps)[start : start + n].astype(np.float32)


def _unit(y: np.ndarray) -> np.ndarray:
    r = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    return (y / r).astype(np.float32) if r > 0 else y.astype(np.float32)


def _tilt(y: np.ndarray, rng: np.random.Generator, sr: int) -> tuple[np.ndarray, float]:
    """Random spectral tilt of -6..+6 dB per octave around 1 kHz."""
    slope = float(rng.uniform(-6.0, 6.0))
    Y = np.fft.rfft(y)
    f = np.maximum(np.fft.rfftfreq(len(y), 1.0 / sr), 50.0)
    Y *= 10.0 ** (slope * np.log2(f / 1000.0) / 20.0)
    return np.fft.irfft(Y, n=len(y)).astype(np.float32), slope


def _babble(rng, split, n, sr):
    prompts = asterisk_prompts(split)
    picks = rng.choice(len(prompts), size=4, replace=False)
    out = np.zeros(n, dtype=np.float32)
    used = []
    for k in picks:
        path, frames, file_sr = prompts[int(k)]
        need = int(np.ceil(n * file_sr / sr))
        start = int(rng.integers(0, max(1, frames - need)))
        y, _ = sf.read(path, dtype="float32", start=start, frames=need, always_2d=True)
        y = C.resample(y.mean(axis=1), file_sr, sr)
        if len(y) < n:
            y = _loop(y, n, 0, int(0.05 * sr))
        out += _unit(y[:n])
        used.append({"file": path, "start": round(start / file_sr, 4)})
    return out, {"type": "babble", "talkers": 4, "files": used, "package": "asterisk-core-sounds-en-wav", "licence": licence_of("asterisk")}


def _recorded(rng, split, n, sr):
    path = noise_files(split)["recorded"][0]
    y = _load(path, sr)
    start = int(rng.integers(0, len(y)))
    out, slope = _tilt(_loop(y, n, start, int(0.05 * sr)), rng, sr)
    return out, {"type": "recorded", "file": path, "start": round(start / sr, 4), "tilt_db_per_octave": round(slope, 2),
                 "package": "alsa-utils", "licence": "GPL-2"}


def _shaped(rng, split, n, sr):
    files = noise_files(split)["shaped_spectra"]
    path = files[int(rng.integers(len(files)))]
    ref = _load(path, sr)
    n_fft = 512
    frames = np.pad(ref, (0, (-len(ref)) % n_fft)).reshape(-1, n_fft)
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))
    ltas = np.sqrt(np.mean(spec**2, axis=0))  # long-term magnitude spectrum of the recording
    white = rng.standard_normal(n)
    W = np.fft.rfft(white)
    f_target = np.fft.rfftfreq(n, 1.0 / sr)
    gain = np.interp(f_target, np.fft.rfftfreq(n_fft, 1.0 / sr), ltas)
    y = np.fft.irfft(W * gain, n=n)
    rate, depth = float(rng.uniform(0.3, 4.0)), float(rng.uniform(0.0, 0.6))
    t = np.arange(n) / sr
    y *= 1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return y.astype(np.float32), {"type": "shaped", "spectrum_from": path, "modulation_hz": round(rate, 3), "modulation_depth": round(depth, 3),
                                  "package": _package_of(path), "licence": licence_of(path), "note": "synthetic Gaussian noise with the recording's long-term spectrum"}


def _event(rng, split, n, sr):
    files = noise_files(split)["events"]
    path = files[int(rng.integers(len(files)))]
    y = _load(path, sr)
    if len(y) > n:
        s = int(rng.integers(0, len(y) - n + 1))
        y, onset = y[s : s + n], 0
    else:
        onset = int(rng.integers(0, n - len(y) + 1))
    out = np.zeros(n, dtype=np.float32)
    out[onset : onset + len(y)] = y
    return out, {"file": path, "onset": round(onset / sr, 4), "offset": round((onset + len(y)) / sr, 4),
                 "package": "sound-theme-freedesktop", "licence": licence_of(path)}


def _signal(rng, split, n, sr, seconds):
    if rng.random() < 0.5:
        pool = speech.text_pool(split)
        tid = int(rng.integers(len(pool)))
        voice = str(rng.choice(speech.VOICES))
        y = speech.synthesize(pool[tid], voice, sr=sr)
        if len(y) > n:
            start = int(rng.integers(0, len(y) - n + 1))
            y, onset = y[start : start + n], 0
        else:
            start, onset = 0, int(rng.integers(0, n - len(y) + 1))
        out = np.zeros(n, dtype=np.float32)
        out[onset : onset + len(y)] = y
        return out, {"type": "speech", "voice": voice, "text": pool[tid], "text_id": tid, "crop_start": round(start / sr, 4),
                     "onset": round(onset / sr, 4), "package": "flite", "licence": "CMU permissive (flite)"}
    family = str(rng.choice(["low", "high"]))
    program = int(rng.choice(instruments.programs(family, split)))
    notes = instruments.random_line(rng, instruments.note_range(program), seconds)
    y = instruments.render_line(program, notes, n, sr=sr)
    return y, {"type": "instrument", "family": family, "program": program, "preset_name": instruments.FLUID_NAMES[program],
               "notes": notes, "file": str(C.source_path("soundfont")), "package": "fluid-soundfont-gm", "licence": "MIT"}


def has_signal(split: str, index: int) -> bool:
    """Exactly one clip of each pair ``(2k, 2k+1)`` has a signal; a seeded coin picks which."""
    coin = bool(C.item_rng("noisy-pairs", split, index // 2).random() < 0.5)
    return (index % 2 == 0) == coin


def make_item(split: str, index: int, *, sr: int, seconds: float):
    """Clip ``index`` of ``split``: arrays ``{"clean": (N,), "noise": (N,)}`` and its meta dict."""
    rng = C.item_rng("noisy", split, index)
    n = int(round(seconds * sr))
    with_signal = has_signal(split, index)
    bed_types = BED_TYPES[_group(split)]
    bed_type = bed_types[int(rng.integers(len(bed_types)))]
    bed, bed_meta = {"babble": _babble, "recorded": _recorded, "shaped": _shaped}[bed_type](rng, split, n, sr)
    noise = _unit(bed)
    event_meta = None
    if rng.random() < 0.5:
        ev, event_meta = _event(rng, split, n, sr)
        active = np.abs(ev) > 1e-4
        ev_rms = float(np.sqrt(np.mean(np.square(ev[active], dtype=np.float64)))) if active.any() else 0.0
        if ev_rms > 0:
            rel = float(rng.uniform(-6.0, 6.0))
            noise = noise + (ev / ev_rms * 10.0 ** (rel / 20.0)).astype(np.float32)
            event_meta["level_db_re_bed"] = round(rel, 2)
    level_db = float(rng.uniform(-26.0, -18.0))  # level of the noisy clip, same law with or without signal
    snr = float(rng.uniform(*SNR_RANGE))
    noise = _unit(noise) * np.float32(10.0 ** (-snr / 20.0))
    if with_signal:
        clean, signal_meta = _signal(rng, split, n, sr, seconds)
        clean = _unit(clean)
    else:
        clean, signal_meta = np.zeros(n, dtype=np.float32), None
    mix = clean + noise
    scale = 10.0 ** (level_db / 20.0) / float(np.sqrt(np.mean(np.square(mix, dtype=np.float64))))
    peak = float(np.max(np.abs(mix))) * scale
    if peak > 0.9:  # never clip
        scale *= 0.9 / peak
    clean = (clean * np.float32(scale)).astype(np.float32)
    noise = (noise * np.float32(scale)).astype(np.float32)
    provenance = []  # flat list for model cards: every recording this clip used, with package and licence
    if signal_meta is not None:
        provenance.append({"role": "signal", "file": str(C.source_path("flite" if signal_meta["type"] == "speech" else "soundfont")),
                           "package": signal_meta["package"], "licence": signal_meta["licence"]})
    for f in [x["file"] for x in bed_meta.get("files", [])] + [bed_meta[k] for k in ("file", "spectrum_from") if k in bed_meta]:
        provenance.append({"role": f"noise_{bed_type}", "file": f, "package": _package_of(f), "licence": licence_of(f)})
    if event_meta is not None:
        provenance.append({"role": "noise_event", "file": event_meta["file"], "package": event_meta["package"], "licence": event_meta["licence"]})
    meta = {
        "kind": "noisy",
        "split": split,
        "index": int(index),
        "has_signal": with_signal,
        "snr_db": round(snr, 3) if with_signal else None,
        "signal": signal_meta,
        "noise": {"bed": bed_meta, "event": event_meta},
        "signal_rms_db": round(C.rms_db(clean), 2) if with_signal else None,
        "noise_rms_db": round(C.rms_db(noise), 2),
        "noisy_rms_db": round(C.rms_db(clean + noise), 2),
        "sources": provenance,
        "source_files": sorted({x["file"] for x in provenance}),
    }
    return {"clean": clean, "noise": noise}, meta


def build(split: str, n: int, *, sr: int = 8000, seconds: float = 2.0, cache: bool = True) -> list[dict]:
    """First ``n`` clips of ``split`` as dicts (see :func:`model_zoo.data.noisy_set`)."""
    arrays, metas = C.cached_items(
        "noisy", split, n, sr=sr, seconds=seconds, version=VERSION, keys=("clean", "noise"),
        make_item=lambda i: make_item(split, i, sr=sr, seconds=seconds), cache=cache,
    )
    out = []
    for clean, noise, meta in zip(arrays["clean"], arrays["noise"], metas):
        clean = np.ascontiguousarray(clean, dtype=np.float32)
        noise = np.ascontiguousarray(noise, dtype=np.float32)
        out.append({"noisy": clean + noise, "clean": clean, "noise": noise, "has_signal": bool(meta["has_signal"]),
                    "snr_db": meta["snr_db"], "sr": int(sr), "meta": meta})
    return out
