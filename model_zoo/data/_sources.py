"""Where the recordings the zoo builds its data from live on this machine: one place for every source.

Each source is found from what its Debian package really installs, never from a link that
only some other (recommended) package creates. ``asterisk-core-sounds-en-wav`` for
instance puts its prompts under ``/usr/share/asterisk/sounds/en_US_f_Allison/``; the
``en`` link beside it comes from ``asterisk-core-sounds-en``, which an install with
``--no-install-recommends`` leaves out.

A source is looked up, in this order:

1. an override: :data:`OVERRIDES` (tests) or the environment variable
   ``PROBE_SOURCE_<KEY>`` (e.g. ``PROBE_SOURCE_ASTERISK=/opt/sounds/en_US_f_Allison`` for a
   package unpacked with ``dpkg -x``); an override is used as given, found or not;
2. the package's own file list (``dpkg-query -L PACKAGE``): the folder that holds the
   source's marker file;
3. the usual places (a glob over e.g. ``/usr/share/asterisk/sounds/*/``), for machines
   without dpkg.

Examples
--------
>>> from model_zoo.data import _sources as SRC
>>> sorted(SRC.SOURCES)[:6]
['alsa', 'asterisk', 'asterisk_fr', 'asterisk_it', 'asterisk_it_menardi', 'asterisk_ru']
>>> SRC.SOURCES["asterisk"].package
'asterisk-core-sounds-en-wav'
>>> info = SRC.check("asterisk")          # never raises: {"status": "ok" | "missing", "path", "fix", ...}
>>> {"status", "path", "fix", "disables"} <= set(info)
True
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from probe.errors import AudioError

__all__ = ["Source", "SOURCES", "OVERRIDES", "MissingSourceError", "path", "require", "check", "check_all",
           "clear_cache"]


class MissingSourceError(AudioError, FileNotFoundError):
    """A recording, soundfont or program the data builders need is not installed.

    The message names the missing path and the package that ships it, with the command
    that installs it.
    """


@dataclass(frozen=True)
class Source:
    """One data source: what it is, which package ships it and how to find it.

    Attributes
    ----------
    key : str
        Short name (``"asterisk"``); the override variable is ``PROBE_SOURCE_<KEY>``.
    package : str
        The Debian package (or, with ``pypi=True``, the PyPI distribution) that ships it.
    kind : {"dir", "file", "executable", "python"}
    marker : str
        For ``"dir"``: a file, relative to the folder, that the folder must hold (its presence
        identifies the folder in the package's file list). For ``"file"``/``"executable"``:
        the file's name. For ``"python"``: the import name.
    places : tuple of str
        Glob patterns of the marker's usual locations, used when dpkg cannot say.
    pattern : str
        For ``"dir"``: files a usable folder holds (``"*.wav"``).
    what : str
        Human description, used in messages.
    licence : str
    disables : str
        What cannot be built without it.
    fix : str
        The exact command that installs it.
    """

    key: str
    package: str
    kind: str
    marker: str
    places: tuple
    pattern: str
    what: str
    licence: str
    disables: str
    fix: str


def _apt(package: str) -> str:
    return f"apt-get install -y {package}"


SOURCES: dict[str, Source] = {s.key: s for s in [
    Source("soundfont", "fluid-soundfont-gm", "file", "FluidR3_GM.sf2",
           ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2"), "",
           "General MIDI soundfont FluidR3_GM.sf2", "MIT",
           "instrument mixtures (data of dc_blstm, chimera, nmf_ae, convtasnet_lite, unfolded_nmf; "
           "instrument signals of partitioned_ae)", _apt("fluid-soundfont-gm")),
    Source("tinysoundfont", "tinysoundfont", "python", "tinysoundfont", (), "",
           "SoundFont renderer tinysoundfont (PyPI)", "MIT",
           "instrument mixtures (renders the soundfont)",
           # its wheel declares pyaudio (live playback, needs PortAudio headers to build); rendering needs none of it
           "pip install --no-deps 'tinysoundfont>=0.3.6'"),
    Source("flite", "flite", "executable", "flite", ("/usr/bin/flite", "/usr/local/bin/flite"), "",
           "speech synthesiser flite with voices kal16, awb, rms, slt (libflite1)", "CMU permissive (BSD-like)",
           "speech mixtures and partitioned_ae's speech signals", _apt("flite")),
    Source("alsa", "alsa-utils", "dir", "Noise.wav", ("/usr/share/sounds/alsa/Noise.wav",), "*.wav",
           "ALSA test sounds (Noise.wav)", "GPL-2",
           "sound-event scenes (crnn_sed, rawcnn_sed: one background) and noisy clips (partitioned_ae)",
           _apt("alsa-utils")),
    Source("freedesktop", "sound-theme-freedesktop", "dir", "bell.oga",
           ("/usr/share/sounds/freedesktop/stereo/bell.oga", "/usr/share/sounds/*/stereo/bell.oga"), "*.oga",
           "freedesktop sound theme (event sounds)", "CC-BY-3.0 / CC-BY-SA-3.0 / GPL-2(+), per file",
           "sound-event scenes (crnn_sed, rawcnn_sed: alert and speech events) and noisy clips (partitioned_ae)",
           _apt("sound-theme-freedesktop")),
    Source("asterisk", "asterisk-core-sounds-en-wav", "dir", "beep.wav",
           ("/usr/share/asterisk/sounds/en_US_f_Allison/beep.wav", "/usr/share/asterisk/sounds/en*/beep.wav"), "*.wav",
           "Asterisk English prompts (Allison Smith, 8 kHz wav)", "CC-BY-SA-3.0",
           "sound-event scenes (crnn_sed, rawcnn_sed: speech events) and noisy clips (partitioned_ae)",
           _apt("asterisk-core-sounds-en-wav")),
    Source("wesnoth", "wesnoth-1.16-data", "dir", "ambient/birds1.ogg",
           ("/usr/share/games/wesnoth/1.16/data/core/sounds/ambient/birds1.ogg",
            "/usr/share/games/wesnoth/*/data/core/sounds/ambient/birds1.ogg"), "*.ogg",
           "Battle for Wesnoth 1.16 sound effects", "GPL-2+",
           "sound-event scenes (crnn_sed, rawcnn_sed: most events and the ambiences)", _apt("wesnoth-1.16-data")),
    *[Source(key, package, "dir", "vm-goodbye.wav", (f"/usr/share/asterisk/sounds/{voice}/vm-goodbye.wav",), "*.wav",
             f"Asterisk {lang} prompts ({who}, 8 kHz wav)", licence,
             "real two-speaker mixtures (dc_speech: an extra real training speaker)", _apt(package))
      for key, package, voice, lang, who, licence in [
          ("asterisk_fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", "Canadian French", "June Wallack",
           "CC-BY-SA-3.0"),
          ("asterisk_it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", "Italian", "Carlo Flora", "CC-BY-3.0"),
          ("asterisk_ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", "Russian", "ivrvoice.ru, Maxim Topal",
           "CC-BY-3.0"),
          ("asterisk_it_menardi", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "Italian",
           "Paola Dal Zot, Marco Menardi", "CC-BY-SA-3.0 (attribution: http://www.voip.ammdomus.it)"),
      ]],
    Source("klettres", "klettres-data", "dir", "en/alpha/A.ogg", ("/usr/share/klettres/en/alpha/A.ogg",),
           "*/alpha/*.ogg", "KLettres letters and syllables spoken by real people (one folder per language)",
           "GPL-2+", "real two-speaker mixtures (dc_speech)", _apt("klettres-data")),
]}

#: Test overrides: ``{key: path}``; a path set here is used as is (``monkeypatch.setitem``).
OVERRIDES: dict = {}


@functools.lru_cache(maxsize=None)
def _package_files(package: str) -> tuple | None:
    """Files the installed Debian ``package`` lists (``None`` without dpkg or when not installed)."""
    if shutil.which("dpkg-query") is None:
        return None
    try:
        r = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(r.stdout.splitlines()) if r.returncode == 0 else None


def _installed(package: str) -> bool | None:
    """Whether dpkg has ``package`` installed (``None`` without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return None
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.returncode == 0 and r.stdout.strip() == "installed"


def _to_path(src: Source, marker_path: str) -> Path:
    """The source's path from the path of its marker file."""
    p = Path(marker_path)
    if src.kind == "dir":
        for _ in Path(src.marker).parts:
            p = p.parent
    return p


def _usable(src: Source, p: Path) -> bool:
    if src.kind == "dir":
        return p.is_dir() and (p / src.marker).is_file() and any(p.glob(src.pattern))
    if src.kind == "executable":
        return p.is_file() and os.access(p, os.X_OK)
    return p.is_file()


def _origin_override(key: str):
    if key in OVERRIDES:
        return Path(OVERRIDES[key]), "override"
    env = os.environ.get(f"PROBE_SOURCE_{key.upper()}")
    if env:
        return Path(env), f"$PROBE_SOURCE_{key.upper()}"
    return None


@functools.lru_cache(maxsize=None)
def _discover(key: str):
    """``(path, origin)`` found on this machine, or ``(None, reason)``."""
    src = SOURCES[key]
    files = _package_files(src.package)
    if files:
        suffix = "/" + src.marker
        for f in files:
            if f.endswith(suffix):
                p = _to_path(src, f)
                if _usable(src, p):
                    return p, f"dpkg -L {src.package}"
    for place in src.places:
        for hit in sorted(glob.glob(place)):
            p = _to_path(src, hit)
            if _usable(src, p):
                return p.resolve() if src.kind == "dir" else p, "found at " + place
    return None, ("dpkg lists it, but its files are gone" if files else "not installed")


def clear_cache() -> None:
    """Forget what was found (after installing a package in the same process)."""
    _discover.cache_clear()
    _package_files.cache_clear()


def path(key: str) -> Path | None:
    """Where source ``key`` is on this machine (an override as given), or ``None`` when it is missing."""
    if key not in SOURCES:
        raise KeyError(f"unknown data source {key!r}; known: {', '.join(SOURCES)}")
    if SOURCES[key].kind == "python":
        raise KeyError(f"{key!r} is a Python package, not a path; use require({key!r})")
    over = _origin_override(key)
    if over is not None:
        return over[0]
    return _discover(key)[0]


def _fix(src: Source) -> str:
    if src.kind != "python" and _installed(src.package):  # installed, files gone: put them back
        return src.fix.replace("apt-get install -y", "apt-get install -y --reinstall", 1)
    return src.fix


def _error(src: Source, where, origin=None) -> MissingSourceError:
    if src.kind == "python":
        return MissingSourceError(f"the PyPI package {src.package!r} ({src.what}) is needed for {src.disables}; "
                                  f"install it with: {src.fix}")
    if origin is not None:  # an override points nowhere: say so, the package may well be installed
        return MissingSourceError(f"{src.what} not found: {where} (set by {origin}). It is shipped by the Debian "
                                  f"package {src.package!r}; install it with: {src.fix}, or correct {origin}")
    at = f": {where}" if where else f" (looked in the package's file list and at {', '.join(src.places)})"
    return MissingSourceError(f"{src.what} not found{at}. It is shipped by the Debian package {src.package!r}; "
                              f"install it with: {_fix(src)} (see `probe doctor` for every data source)")


def require(key: str):
    """The path of source ``key`` (for ``"python"`` sources: the imported module), or raise.

    Raises
    ------
    MissingSourceError
        Naming the package and the exact command that installs it.
    """
    src = SOURCES[key]
    if src.kind == "python":
        import importlib

        try:
            return importlib.import_module(src.marker)
        except ImportError as e:
            raise _error(src, None) from e
    over = _origin_override(key)
    p, origin = over if over is not None else (_discover(key)[0], None)
    if p is None or not _usable(src, p):
        raise _error(src, p, origin)
    return p


def check(key: str) -> dict:
    """Status of one source, JSON-able; never raises.

    Returns
    -------
    dict
        ``{"key", "kind", "package", "what", "status": "ok" | "missing", "path", "found_by", "version",
        "licence", "disables", "fix"}``; ``fix`` is ``None`` when the source is ok.
    """
    src = SOURCES[key]
    out = {"key": key, "kind": src.kind, "package": src.package, "what": src.what, "licence": src.licence,
           "disables": src.disables}
    if src.kind == "python":
        import importlib.util

        ok = importlib.util.find_spec(src.marker) is not None
        version = None
        if ok:
            try:
                from importlib.metadata import version as _v

                version = _v(src.package)
            except Exception:
                version = None
        out.update(status="ok" if ok else "missing", path=None, found_by="import" if ok else None, version=version,
                   fix=None if ok else src.fix)
        return out
    over = _origin_override(key)
    p, origin = over if over is not None else _discover(key)
    ok = p is not None and _usable(src, p)
    if ok and key == "flite":
        missing = _missing_voices(str(p))
        if missing:
            ok, origin = False, f"voices missing: {', '.join(missing)}"
    version = None
    if ok and src.kind != "python" and _package_files(src.package):
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", src.package], capture_output=True, text=True,
                               timeout=20)
            version = r.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            version = None
    if ok:
        fix = None
    elif over is not None and origin.startswith("$"):
        fix = f"unset {origin[1:]}  (it points where there is no {src.what}; or: {src.fix})"
    else:
        fix = src.fix if over is not None else _fix(src)
    out.update(status="ok" if ok else "missing", path=str(p) if p is not None else None, found_by=origin,
               version=version, fix=fix)
    return out


#: voices the speech builders use (model_zoo/data/speech.py VOICES)
FLITE_VOICES = ("kal16", "awb", "rms", "slt")


@functools.lru_cache(maxsize=4)
def _missing_voices(flite: str) -> tuple:
    try:
        r = subprocess.run([flite, "-lv"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return FLITE_VOICES
    have = set((r.stdout + r.stderr).replace("Voices available:", "").split())
    return tuple(v for v in FLITE_VOICES if v not in have)


def check_all() -> list[dict]:
    """:func:`check` for every source, in a fixed order."""
    return [check(k) for k in SOURCES]
