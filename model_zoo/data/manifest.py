"""Provenance of the zoo's data sets: every source (file, preset, voice, sentence) per split, with its licence.

:func:`manifest` lists what each split DRAWS FROM (the candidate pools, cheap and complete);
``manifest(kind, used=True)`` also builds (or reads from the cache) the default splits and
counts how often each source is actually used. Model cards copy this dict.
"""

from __future__ import annotations

import subprocess

from . import _common as C

__all__ = ["manifest", "PACKAGES"]

#: Debian/PyPI packages the builders read, with their licences.
PACKAGES = {
    "fluid-soundfont-gm": {"source": "debian", "licence": "MIT", "data_source": "soundfont",
                           "what": "FluidR3_GM.sf2: General MIDI presets from recorded instrument samples"},
    "tinysoundfont": {"source": "pypi", "licence": "MIT", "what": "SoundFont renderer (code only)"},
    "flite": {"source": "debian", "licence": "CMU permissive (BSD-like; flite and its voices)", "data_source": "flite",
              "what": "speech synthesiser; voices kal16, awb, rms, slt (16 kHz)"},
    "libflite1": {"source": "debian", "licence": "CMU permissive (BSD-like)", "what": "flite's voices and libraries"},
    "alsa-utils": {"source": "debian", "licence": "GPL-2", "data_source": "alsa", "what": "Noise.wav, a recorded noise test signal"},
    "sound-theme-freedesktop": {"source": "debian", "licence": "CC-BY-3.0 / CC-BY-SA-3.0 / GPL-2(+), per file", "data_source": "freedesktop",
                                "what": "event sounds (bells, phone rings, crumpling, shutter)"},
    "asterisk-core-sounds-en-wav": {"source": "debian", "licence": "CC-BY-SA-3.0 (Allison Smith)", "data_source": "asterisk",
                                    "what": "568 recorded English prompts, one female speaker, 8 kHz"},
    "klettres-data": {"source": "debian", "licence": "GPL-2+", "data_source": "klettres",
                      "what": "letters and syllables spoken by real people, one folder per language and kind"},
}

_KINDS = ("instruments", "speech", "noisy", "speakers")


def _version(package: str):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def _package(name: str) -> dict:
    info = dict(PACKAGES[name], name=name)
    key = info.pop("data_source", None)
    if key is not None:  # where this machine has it (model_zoo/data/_sources.py), None when missing
        where = C.source_path(key)
        info["path"] = None if where is None else str(where / "Noise.wav" if key == "alsa" else where)
    if info["source"] == "debian":
        info["version"] = _version(name)
    else:
        try:
            from importlib.metadata import version

            info["version"] = version(name)
        except Exception:  # pragma: no cover
            info["version"] = None
    return info


def _instruments(split: str) -> dict:
    from . import instruments as I

    sources = []
    for family in ("low", "high"):
        for p in I.programs(family, split):
            sources.append({"preset": p, "bank": 0, "name": I.FLUID_NAMES[p], "family": family, "note_range": list(I.note_range(p)),
                            "path": str(C.source_path("soundfont")), "package": "fluid-soundfont-gm", "licence": "MIT"})
    return {"sources": sources}


def _speech(split: str) -> dict:
    from . import speech as S

    voices = [{"voice": v, "path": str(C.source_path("flite")), "package": "flite", "licence": "CMU permissive"} for v in S.VOICES]
    return {"voices": voices, "texts": S.text_pool(split),
            "held_out_nouns": list(S.TEST_NOUNS) if split == "test" else []}


def _noisy(split: str) -> dict:
    from . import instruments as I
    from . import noisy as N
    from . import speech as S

    files = N.noise_files(split)
    noise = []
    for role in ("recorded", "events"):
        for path in files[role]:
            noise.append({"path": path, "role": role, "package": N._package_of(path), "licence": N.licence_of(path)})
    prompts = [{"path": p, "role": "babble", "package": "asterisk-core-sounds-en-wav", "licence": N.licence_of(p)}
               for p, _, _ in N.asterisk_prompts(split)]
    return {
        "noise": noise + prompts,
        "shaped_spectra_from": files["shaped_spectra"],
        "bed_types": list(N.BED_TYPES[N._group(split)]),
        "signal_voices": list(S.VOICES),
        "signal_texts": S.text_pool(split),
        "signal_programs": _instruments(split)["sources"],
    }


def _speakers(split: str) -> dict:
    from . import speakers as SP

    return {"speakers": [{"speaker": s, "language": SP.language_of(s),
                          "package": "asterisk-core-sounds-en-wav" if s == SP.ALLISON else "klettres-data",
                          "licence": "CC-BY-SA-3.0" if s == SP.ALLISON else "GPL-2+"} for s in SP.speakers(split)]}


def _held_out(kind: str) -> str:
    return {
        "instruments": "test uses GM programs never used in train/val (about a third of each family) and its own seeds; val uses the train programs with other seeds",
        "speech": "flite has only 4 voices, so all splits share the voices; test holds out TEXTS: its sentences are built around nouns never used in train/val; val sentences are not in the train pool",
        "speakers": "test and val hold out whole LANGUAGES of klettres-data (every folder of a language, so no test or val speaker is heard in training); the asterisk voice is train only; the two sources of a mixture are of different languages",
        "noisy": "test uses asterisk prompts, freedesktop event recordings and shaped-noise spectra never used in train/val, held-out sentences and GM programs; the alsa Noise.wav bed is train/val only",
    }[kind]


def _count_used(kind: str) -> dict:
    from . import noisy_set, separation_set, default_size

    used = {}
    for split in C.SPLITS:
        counts: dict[str, int] = {}

        def add(key):
            counts[key] = counts.get(key, 0) + 1

        items = noisy_set(split) if kind == "noisy" else separation_set(kind, split)
        for it in items:
            m = it["meta"]
            if kind == "instruments":
                for p in m["programs"]:
                    add(f"preset:{p}")
            elif kind == "speakers":
                for s in m["speakers"]:
                    add(f"speaker:{s}")
            elif kind == "speech":
                for s in m["sources"]:
                    add(f"voice:{s['voice']}")
                    add(f"text:{s['text_id']}")
            else:
                bed = m["noise"]["bed"]
                for f in bed.get("files", []):
                    add(f["file"])
                for key in ("file", "spectrum_from"):
                    if key in bed:
                        add(bed[key])
                if m["noise"]["event"]:
                    add(m["noise"]["event"]["file"])
                sig = m["signal"]
                if sig and sig["type"] == "speech":
                    add(f"voice:{sig['voice']}")
                    add(f"text:{sig['text_id']}")
                elif sig:
                    add(f"preset:{sig['program']}")
        used[split] = {"n_items": default_size(kind, split), "counts": dict(sorted(counts.items()))}
    return used


def manifest(kind: str, *, used: bool = False) -> dict:
    """Provenance of one data set.

    Parameters
    ----------
    kind : {"instruments", "speech", "noisy", "speakers"}
    used : bool
        Also build/read the default splits and count how often each source is used.

    Returns
    -------
    dict
        ``kind``, ``version``, ``seed``, ``defaults`` (sr, seconds, sizes), ``held_out`` (the
        design in words), ``packages`` (name, licence, version), ``splits`` (per split: the
        sources it draws from, each with path, package and licence) and, with ``used=True``,
        ``used`` (per split counts).
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {_KINDS}")
    if kind == "instruments":
        from . import instruments as M

        pkgs, per_split, seconds = ["fluid-soundfont-gm", "tinysoundfont"], _instruments, 4.0
    elif kind == "speech":
        from . import speech as M

        pkgs, per_split, seconds = ["flite", "libflite1"], _speech, 4.0
    elif kind == "speakers":
        from . import speakers as M

        pkgs, per_split, seconds = ["klettres-data", "asterisk-core-sounds-en-wav"], _speakers, 4.0
    else:
        from . import noisy as M

        pkgs = ["alsa-utils", "sound-theme-freedesktop", "asterisk-core-sounds-en-wav", "flite", "libflite1", "fluid-soundfont-gm", "tinysoundfont"]
        per_split, seconds = _noisy, 2.0
    out = {
        "kind": kind,
        "version": M.VERSION,
        "seed": C.SEED,
        "seeding": f"item i of split s is drawn from numpy default_rng([{C.SEED}, stable_hash(kind, s), i])",
        "defaults": {"sr": 8000, "seconds": seconds, "sizes": dict(M.DEFAULT_SIZES)},
        "held_out": _held_out(kind),
        "packages": [_package(p) for p in pkgs],
        "splits": {s: per_split(s) for s in C.SPLITS},
    }
    if used:
        out["used"] = _count_used(kind)
    return out
