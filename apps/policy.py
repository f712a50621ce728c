"""What a web user of the app may reach on the server: models, audio files and upload sizes.

A web page is not the person who started the server. Whatever a browser sends — a typed
path, a ``?model=`` / ``?audio=`` link, a forged session — passes through these checks
before the app imports code or opens a file:

* **models**: ``zoo:NAME`` for the installed zoo's names, and TOML spec files inside the
  folders the server's owner allowed (``probe app --allow-models DIR``, carried to the app
  in :data:`ENV_MODELS`). A spec's factory must be a module file in that folder (an
  installed module such as ``os:system`` is refused) and its checkpoint must lie there too;
* **audio**: uploads, the zoo's examples, and audio files inside the folders of
  ``probe app --allow-audio DIR`` (:data:`ENV_AUDIO`) — symbolic links resolved, ``..``
  refused;
* **uploads**: limited by their *decoded* size (channels × rate × seconds), read from the
  file header before anything is decoded (:func:`check_upload_header`).

Every refusal of a path says the same thing whether the path exists or not, and never names
a file outside the allowed folders. Nothing here imports streamlit.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from probe.errors import AudioError, SpecError

__all__ = ["ENV_MODELS", "ENV_AUDIO", "AUDIO_TYPES", "MAX_SECONDS", "MAX_DECODED_SAMPLES", "MAX_UPLOAD_MB",
           "Policy", "current_policy", "check_model_ref", "check_audio_ref", "allowed_spec_files",
           "allowed_audio_files", "check_upload_header", "UploadTooLong", "ENV_RUNS", "allowed_runs", "check_run_ref"]

#: environment variables through which ``probe app`` hands the allowed folders to the app (os.pathsep-separated)
ENV_MODELS, ENV_AUDIO = "PROBE_APP_ALLOW_MODELS", "PROBE_APP_ALLOW_AUDIO"
#: environment variable carrying the folders of corpus runs the app may browse (``probe app --allow-runs DIR``)
ENV_RUNS = "PROBE_APP_ALLOW_RUNS"
#: audio file types the app accepts (uploads and allowed folders): what soundfile decodes everywhere
AUDIO_TYPES = ("wav", "flac", "ogg")
#: longest clip the app analyses (seconds): the pages are interactive, not batch jobs
MAX_SECONDS = 120.0
#: most decoded samples (all channels) an upload may hold: 2 channels × 48 kHz × MAX_SECONDS,
#: 46 MB as float32 — a file whose header promises more is refused before it is decoded
MAX_DECODED_SAMPLES = int(2 * 48000 * MAX_SECONDS)
#: Streamlit's ``server.maxUploadSize`` (MB): the largest *file* that can still be useful. A
#: 16-bit file within :data:`MAX_DECODED_SAMPLES` takes 22 MB; longer files are accepted up to
#: this size so that the app can offer to crop them to their first MAX_SECONDS seconds.
MAX_UPLOAD_MB = 100
#: most spec files / audio files listed from the allowed folders
MAX_LISTED = 2000
#: largest spec file read (bytes): a TOML spec is a few hundred bytes
MAX_SPEC_BYTES = 256 * 1024
_ZOO_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Policy:
    """The folders the server's owner allowed (resolved, existing directories only)."""

    models: tuple = ()
    audio: tuple = ()
    runs: tuple = ()

    @classmethod
    def from_env(cls, environ=None) -> "Policy":
        env = os.environ if environ is None else environ
        return cls(models=_folders(env.get(ENV_MODELS, "")), audio=_folders(env.get(ENV_AUDIO, "")),
                   runs=_folders(env.get(ENV_RUNS, "")))


def _folders(text: str) -> tuple:
    out = []
    for part in str(text or "").split(os.pathsep):
        if part.strip():
            try:
                p = Path(part.strip()).expanduser().resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if p.is_dir() and p not in out:
                out.append(p)
    return tuple(out)


def current_policy() -> Policy:
    """The policy of this server process (read from the environment ``probe app`` set)."""
    return Policy.from_env()


def _inside(path: Path, roots) -> Path | None:
    """The root that holds ``path`` (already resolved), or ``None``."""
    for root in roots:
        if path == root or root in path.parents:
            return root
    return None


def _resolve_under(raw: str, roots, suffixes) -> Path | None:
    """``raw`` resolved (symlinks followed) when it is a regular file with one of ``suffixes`` inside ``roots``."""
    raw = str(raw or "").strip()
    if not raw or not roots or "\x00" in raw or len(raw) > 4096:
        return None
    p = Path(raw).expanduser()
    if ".." in p.parts:
        return None
    if not p.is_absolute():  # relative names are taken inside each allowed folder, never the server's cwd
        for root in roots:
            hit = _resolve_under(str(root / p), roots, suffixes)
            if hit is not None:
                return hit
        return None
    try:
        real = p.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if _inside(real, roots) is None or real.suffix.lower().lstrip(".") not in suffixes:
        return None
    try:
        return real if real.is_file() else None
    except OSError:
        return None


def _zoo_names() -> list:
    from .state import zoo_models

    return [e["name"] for e in zoo_models()]


def _model_refusal(ref: str, policy: Policy) -> SpecError:
    shown = str(ref)[:120]
    where = ("a zoo model or a spec file in the folders this server allows"
             if policy.models else "a zoo model (this server allows no spec folders: its owner can add some with "
                                   "`probe app --allow-models DIR`)")
    return SpecError(f"{shown!r} is not a model this server offers: pick {where}")


def _check_spec_contents(path: Path, root: Path, shown: str) -> None:
    """The spec's factory module and checkpoint must be files inside ``root`` (no installed module, no outside file)."""
    import tomllib

    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{shown!r} is larger than {MAX_SPEC_BYTES // 1024} KB: not a model spec")
    try:
        cfg = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{shown!r} is not a valid TOML spec: {exc}") from None
    m = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    factory = str(m.get("factory") or "")
    mod = factory.split(":", 1)[0]
    local = path.parent / (mod.replace(".", "/") + ".py") if mod and re.fullmatch(r"[A-Za-z_][\w.]*", mod) else None
    ok = False
    if local is not None:
        try:
            ok = local.is_file() and _inside(local.resolve(strict=True), (root,)) is not None
        except (OSError, RuntimeError):
            ok = False
    if not ok:
        raise SpecError(f"{shown!r}: its factory {factory!r} is not a module file beside the spec; the app only runs "
                        "code from the folders its owner allowed, never an installed module")
    ckpt = m.get("checkpoint")
    if ckpt:
        c = Path(str(ckpt))
        c = c if c.is_absolute() else path.parent / c
        try:
            inside = ".." not in Path(str(ckpt)).parts and _inside(c.resolve(strict=True), (root,)) is not None
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            raise SpecError(f"{shown!r}: its checkpoint is not a file inside the allowed folder")


def check_model_ref(ref, policy: Policy | None = None) -> str:
    """The canonical form of a model reference a web user may load, or :class:`SpecError`.

    ``zoo:NAME`` for an installed zoo model; otherwise a ``.toml`` spec file inside an allowed
    folder (returned as its resolved path) whose factory is a module file in that folder.
    The message for a refused path is the same whether the path exists or not.

    Examples
    --------
    >>> check_model_ref("/etc/passwd", Policy())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    probe.errors.SpecError: '/etc/passwd' is not a model this server offers: pick a zoo model ...
    """
    policy = current_policy() if policy is None else policy
    text = str(ref or "").strip()
    if text.startswith("zoo:"):
        name = text[4:]
        if _ZOO_NAME.match(name) and name in _zoo_names():
            return f"zoo:{name}"
        raise _model_refusal(text, policy)
    path = _resolve_under(text, policy.models, ("toml",))
    if path is None:
        raise _model_refusal(text, policy)
    _check_spec_contents(path, _inside(path, policy.models), text[:120])
    return str(path)


def check_audio_ref(ref, policy: Policy | None = None, *, n_examples: int = 8) -> str:
    """The canonical form of an audio reference a web user may open, or :class:`AudioError`.

    ``example:NAME:i`` (an installed zoo model, ``0 <= i < n_examples``), ``upload``, or an
    audio file inside an allowed folder (returned resolved). The message for a refused path
    is the same whether the path exists or not.

    Examples
    --------
    >>> check_audio_ref("example:nope:0", Policy())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    probe.errors.AudioError: 'example:nope:0' is not audio this server offers: ...
    """
    policy = current_policy() if policy is None else policy
    text = str(ref or "").strip()
    if text == "upload":
        return text
    if text.startswith("example:"):
        parts = text.split(":")
        if len(parts) == 3 and parts[1] in _zoo_names() and parts[2].isdigit() and int(parts[2]) < int(n_examples):
            return f"example:{parts[1]}:{int(parts[2])}"
    else:
        path = _resolve_under(text, policy.audio, AUDIO_TYPES)
        if path is not None:
            return str(path)
    where = ("an example, an upload or a file in the folders this server allows" if policy.audio else
             "an example or an upload (this server allows no audio folders: its owner can add some with "
             "`probe app --allow-audio DIR`)")
    raise AudioError(f"{text[:120]!r} is not audio this server offers: pick {where}")


def _walk(roots, suffixes) -> list:
    out = []
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if Path(f).suffix.lower().lstrip(".") in suffixes:
                    hit = _resolve_under(str(Path(folder) / f), roots, suffixes)
                    if hit is not None and str(hit) not in out:
                        out.append(str(hit))
                if len(out) >= MAX_LISTED:
                    return out
    return out


def allowed_spec_files(policy: Policy | None = None) -> list:
    """Spec files (resolved paths) in the allowed model folders, for the app's menu."""
    return _walk((current_policy() if policy is None else policy).models, ("toml",))


def allowed_audio_files(policy: Policy | None = None) -> list:
    """Audio files (resolved paths) in the allowed audio folders, for the app's menu."""
    return _walk((current_policy() if policy is None else policy).audio, AUDIO_TYPES)


#: the file that marks a corpus run folder (probe.corpus.run.MANIFEST)
RUN_MANIFEST = "corpus.json"


def allowed_runs(policy: Policy | None = None) -> list:
    """Corpus run folders (resolved paths) under the allowed run folders, for the app's menu."""
    policy = current_policy() if policy is None else policy
    return sorted({str(Path(f).parent) for f in _walk(policy.runs, ("json",)) if Path(f).name == RUN_MANIFEST})


def check_run_ref(ref, policy: Policy | None = None) -> str:
    """The resolved path of a corpus run folder a web user may browse, or :class:`SpecError`.

    Only folders holding a ``corpus.json`` inside the folders of ``probe app --allow-runs DIR``
    qualify; the message for a refused path is the same whether it exists or not.

    Examples
    --------
    >>> check_run_ref("/etc", Policy())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    probe.errors.SpecError: '/etc' is not a corpus run this server offers: ...
    """
    policy = current_policy() if policy is None else policy
    text = str(ref or "").strip()
    manifest = _resolve_under(str(Path(text) / RUN_MANIFEST), policy.runs, ("json",)) if text else None
    if manifest is not None and manifest.name == RUN_MANIFEST:
        return str(manifest.parent)
    where = ("a run in the folders this server allows" if policy.runs else
             "none: this server allows no run folders (its owner can add some with `probe app --allow-runs DIR`)")
    raise SpecError(f"{text[:120]!r} is not a corpus run this server offers: pick {where}")


class UploadTooLong(AudioError):
    """An upload longer than :data:`MAX_SECONDS` (the app offers to crop it): ``seconds`` it lasts."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = float(seconds)


def check_upload_header(name: str, data: bytes, *, max_seconds: float = MAX_SECONDS,
                        max_samples: int = MAX_DECODED_SAMPLES, crop: bool = False) -> dict:
    """Read an upload's header (nothing decoded) and refuse what would not fit.

    Returns ``{"channels", "samplerate", "frames", "seconds", "format"}``.

    Raises
    ------
    AudioError
        Not an audio file soundfile reads; a sample rate outside 1 kHz..384 kHz; more
        decoded samples (channels × rate × seconds) than ``max_samples`` within the first
        ``max_seconds``.
    UploadTooLong
        Longer than ``max_seconds`` (and ``crop`` is false): the app offers to crop.

    Examples
    --------
    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO(); sf.write(buf, np.zeros((800, 8)), 384000, format="FLAC")
    >>> check_upload_header("x.flac", buf.getvalue(), max_samples=1000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    probe.errors.AudioError: 'x.flac' would decode to 6,400 samples (8 channels × 384000 Hz × 0.0 s)...
    """
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            channels, rate, frames, fmt = int(f.channels), int(f.samplerate), int(f.frames), str(f.format)
    except Exception:
        raise AudioError(f"{name!r} is not an audio file soundfile can read (expected "
                         f"{', '.join('.' + t for t in AUDIO_TYPES)} with a valid header)") from None
    if not 1000 <= rate <= 384000:
        raise AudioError(f"{name!r}: its header gives a sample rate of {rate} Hz, outside the 1000..384000 Hz probe "
                         "accepts")
    if frames < 2:
        raise AudioError(f"{name!r} holds {frames} sample(s): no audio to analyse")
    seconds = frames / rate
    used = min(frames, int(math.floor(max_seconds * rate))) if crop else frames
    if channels * used > max_samples:
        raise AudioError(f"{name!r} would decode to {channels * used:,} samples ({channels} channels × {rate} Hz × "
                         f"{used / rate:.1f} s); the app decodes at most {max_samples:,}: downmix or resample "
                         "it first")
    if seconds > max_seconds and not crop:
        raise UploadTooLong(f"{name!r} lasts {seconds:.1f} s; the app analyses at most {max_seconds:.0f} s at a time",
                            seconds)
    return {"channels": channels, "samplerate": rate, "frames": frames, "seconds": seconds, "format": fmt}
