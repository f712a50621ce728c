"""Two-instrument mixtures rendered from the FluidR3 General MIDI soundfont.

Each mixture holds one LOW-register instrument (basses, cello, bassoon, trombone, tuba...;
MIDI notes 28-55) and one HIGH-register instrument (violin, flute, oboe, trumpet,
clarinet...; notes 60-88), each playing a random monophonic line with random durations,
velocities and rests. The stems are exact: ``mixture == sources[0] + sources[1]`` in float32,
and the note list of each stem is in ``meta``.

Held-out design: about a third of the GM programs of each family are TEST programs, never
used in train or val; train/val/test also use disjoint random seeds.

The samples in ``FluidR3_GM.sf2`` (Debian package ``fluid-soundfont-gm``, MIT licence) are
recordings of real instruments; ``tinysoundfont`` (PyPI, MIT) renders them.

Rendering runs at 32 kHz (tinysoundfont pitch-shifts samples by linear interpolation, which
aliases when rendering straight at 8 kHz) and is then resampled with soxr to ``sr``.
"""

from __future__ import annotations

import numpy as np

from probe.errors import AudioError

from . import _common as C

__all__ = ["LOW_PROGRAMS", "HIGH_PROGRAMS", "programs", "build", "DEFAULT_SIZES", "VERSION", "render_line"]

VERSION = 2
DEFAULT_SIZES = {"train": 800, "val": 60, "test": 100}
SOURCE_NAMES = ["low", "high"]
RENDER_SR = 32000

#: GM program (0-based) -> split group; "test" programs are never used in train or val.
LOW_PROGRAMS = {
    32: "train",  # Acoustic Bass
    33: "train",  # Fingered Bass
    34: "train",  # Picked Bass
    36: "train",  # Slap Bass
    38: "train",  # Synth Bass 1
    42: "train",  # Cello
    57: "train",  # Trombone
    58: "train",  # Tuba
    70: "train",  # Bassoon
    35: "test",  # Fretless Bass
    37: "test",  # Pop Bass
    39: "test",  # Synth Bass 2
    43: "test",  # Contrabass
    67: "test",  # Baritone Sax
}
HIGH_PROGRAMS = {
    22: "train",  # Harmonica
    40: "train",  # Violin
    56: "train",  # Trumpet
    64: "train",  # Soprano Sax
    68: "train",  # Oboe
    71: "train",  # Clarinet
    72: "train",  # Piccolo
    73: "train",  # Flute
    75: "train",  # Pan Flute
    79: "train",  # Ocarina
    41: "test",  # Viola
    59: "test",  # Muted Trumpet
    65: "test",  # Alto Sax
    69: "test",  # English Horn
    74: "test",  # Recorder
}
#: FluidR3 preset names (bank 0), so the manifest needs no soundfont load.
FLUID_NAMES = {
    22: "Harmonica", 32: "Acoustic Bass", 33: "Fingered Bass", 34: "Picked Bass", 35: "Fretless Bass", 36: "Slap Bass",
    37: "Pop Bass", 38: "Synth Bass 1", 39: "Synth Bass 2", 40: "Violin", 41: "Viola", 42: "Cello", 43: "Contrabass",
    56: "Trumpet", 57: "Trombone", 58: "Tuba", 59: "Muted Trumpet", 64: "Soprano Sax", 65: "Alto Sax", 67: "Baritone Sax",
    68: "Oboe", 69: "English Horn", 70: "Bassoon", 71: "Clarinet", 72: "Piccolo", 73: "Flute", 74: "Recorder",
    75: "Pan Flute", 79: "Ocarina",
}
LOW_RANGE = (28, 55)
HIGH_RANGE = (60, 88)
#: Presets whose FluidR3 samples stop inside the family range (measured: silent above these keys).
PLAYABLE = {43: (28, 44), 65: (60, 84), 69: (60, 85)}

_SYNTH = {}


def programs(family: str, split: str) -> list[int]:
    """GM programs of ``family`` ("low" or "high") used by ``split`` (val uses the train programs)."""
    table = {"low": LOW_PROGRAMS, "high": HIGH_PROGRAMS}[family]
    group = "test" if split == "test" else "train"
    return sorted(p for p, g in table.items() if g == group)


def note_range(program: int) -> tuple[int, int]:
    """MIDI note range drawn for ``program``: its family range, cut to the keys its samples cover."""
    if program in PLAYABLE:
        return PLAYABLE[program]
    return LOW_RANGE if program in LOW_PROGRAMS else HIGH_RANGE


def _synth():
    """One tinysoundfont synth per process (loading FluidR3 takes ~1 s and ~150 MB)."""
    path = C.require_source("soundfont")
    key = str(path)
    if key not in _SYNTH:
        tinysoundfont = C.require_source("tinysoundfont")  # the error names a pip command that works
        synth = tinysoundfont.Synth(samplerate=RENDER_SR)
        sfid = synth.sfload(key)
        _SYNTH.clear()
        _SYNTH[key] = (synth, sfid)
    return _SYNTH[key]


def _silence(synth) -> None:
    """Stop every voice and run the synth until its quick releases have died out."""
    synth.sounds_off()
    for _ in range(100):  # sounds_off fades voices over a few ms; render that fade away
        if not np.any(np.frombuffer(synth.generate(RENDER_SR // 20), np.float32)):
            return
    raise AudioError("tinysoundfont kept sounding 5 s after sounds_off(); stems would not be independent")  # pragma: no cover


def preset_name(program: int) -> str:
    synth, sfid = _synth()
    return str(synth.sfpreset_name(sfid, 0, int(program)))


def render_line(program: int, notes, n_samples: int, *, sr: int) -> np.ndarray:
    """Render a monophonic note list with one GM program.

    Parameters
    ----------
    program : int
        GM program, 0-based (bank 0).
    notes : list of dict
        ``{"pitch", "onset", "offset", "velocity"}``, times in seconds.
    n_samples : int
        Output length at ``sr``.
    sr : int
        Output rate.

    Returns
    -------
    y : np.ndarray [shape=(n_samples,), dtype=float32]
        Mono stem (channel mean of the synth's stereo output); note releases that run past
        the end are cut.
    """
    synth, sfid = _synth()
    synth.program_select(0, sfid, 0, int(program))
    n_render = int(np.ceil(n_samples * RENDER_SR / sr)) + 1
    events = []
    for note in notes:
        events.append((int(round(note["onset"] * RENDER_SR)), 1, int(note["pitch"]), int(note["velocity"])))
        events.append((int(round(note["offset"] * RENDER_SR)), 0, int(note["pitch"]), 0))
    events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same sample
    chunks, cur = [], 0
    try:
        for t, on, pitch, vel in events:
            t = min(t, n_render)
            if t > cur:
                chunks.append(np.frombuffer(synth.generate(t - cur), np.float32).copy())
                cur = t
            if on:
                if not synth.noteon(0, pitch, vel):
                    raise C.MissingSourceError(f"GM program {program} cannot play MIDI note {pitch} with {C.source_path('soundfont')}")
            else:
                synth.noteoff(0, pitch)
        if n_render > cur:
            chunks.append(np.frombuffer(synth.generate(n_render - cur), np.float32).copy())
    finally:
        _silence(synth)  # the next stem must start from a silent synth: stems stay independent
    y = np.concatenate(chunks).reshape(-1, 2).mean(axis=1)
    return C.resample(y, RENDER_SR, sr)[:n_samples]


def random_line(rng: np.random.Generator, pitch_range, seconds: float) -> list[dict]:
    """A random monophonic line: a bounded random walk of pitches with random durations and rests."""
    lo, hi = pitch_range
    notes = []
    t = float(rng.uniform(0.0, 0.4))
    pitch = int(rng.integers(lo, hi + 1))
    while t < seconds - 0.25:
        dur = float(np.exp(rng.uniform(np.log(0.12), np.log(0.9))))
        off = min(t + dur, seconds)
        notes.append({"pitch": pitch, "onset": round(t, 4), "offset": round(off, 4), "velocity": int(rng.integers(60, 121))})
        gap = float(rng.uniform(0.08, 0.6)) if rng.random() < 0.3 else float(rng.uniform(0.0, 0.03))
        t = off + gap
        step = int(rng.choice([-7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7, 12, -12]))
        pitch = pitch + step
        if pitch < lo or pitch > hi:
            pitch = pitch - 2 * step if lo <= pitch - 2 * step <= hi else int(rng.integers(lo, hi + 1))
    return notes


def make_item(split: str, index: int, *, sr: int, seconds: float):
    """Item ``index`` of ``split``: arrays ``{"sources": (2, N)}`` and its meta dict."""
    rng = C.item_rng("instruments", split, index)
    n = int(round(seconds * sr))
    progs = [int(rng.choice(programs("low", split))), int(rng.choice(programs("high", split)))]
    lines = [random_line(rng, note_range(p), seconds) for p in progs]
    stems = np.stack([render_line(p, line, n, sr=sr) for p, line in zip(progs, lines)])
    # Levels: reference at -26..-18 dBFS, the high source within +-5 dB of the low one.
    ref_db = float(rng.uniform(-26.0, -18.0))
    diff_db = float(rng.uniform(-5.0, 5.0))
    targets = [ref_db, ref_db + diff_db]
    for k in range(2):
        stems[k] *= np.float32(10.0 ** ((targets[k] - C.rms_db(stems[k])) / 20.0))
    peak = float(np.max(np.abs(stems[0] + stems[1])))
    if peak > 0.9:  # never clip: scale both stems together
        stems *= np.float32(0.9 / peak)
    stems = stems.astype(np.float32)
    meta = {
        "kind": "instruments",
        "split": split,
        "index": int(index),
        "programs": progs,
        "preset_names": [FLUID_NAMES[p] for p in progs],
        "families": list(SOURCE_NAMES),
        "note_ranges": [list(note_range(p)) for p in progs],
        "notes": lines,
        "rms_db": [round(C.rms_db(s), 2) for s in stems],
        "level_diff_db": round(diff_db, 2),
        "source_files": [str(C.source_path("soundfont"))],
        "package": "fluid-soundfont-gm",
        "licence": "MIT",
        "renderer": f"tinysoundfont at {RENDER_SR} Hz, soxr resampled",
    }
    return {"sources": stems}, meta


def build(split: str, n: int, *, sr: int = 8000, seconds: float = 4.0, cache: bool = True) -> list[dict]:
    """First ``n`` mixtures of ``split`` as item dicts (see :func:`model_zoo.data.separation_set`)."""
    arrays, metas = C.cached_items(
        "instruments", split, n, sr=sr, seconds=seconds, version=VERSION, keys=("sources",),
        make_item=lambda i: make_item(split, i, sr=sr, seconds=seconds), cache=cache,
    )
    out = []
    for src, meta in zip(arrays["sources"], metas):
        src = np.ascontiguousarray(src, dtype=np.float32)
        out.append({"mixture": src[0] + src[1], "sources": src, "sr": int(sr), "source_names": list(SOURCE_NAMES), "meta": meta})
    return out
