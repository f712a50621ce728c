"""Corpus input: a folder of audio files or a CSV/JSONL manifest, read into :class:`Clip` rows.

A manifest names one clip per row (``path``, optional ``label``, ``split``, ``group``,
``id``) and may carry sound events: a CSV row with ``start``, ``end`` and ``event``
(or ``label`` when no ``event`` column exists) adds one event to the clip at ``path``;
a JSONL object may instead hold ``"events": [{"start": .., "end": .., "label": ..}]``.
Relative paths are read relative to the manifest's folder.

Clips that cannot be used (unreadable, too short, non-finite) are not errors of the
corpus: :func:`load_clip` raises :class:`~probe.errors.AudioError` with the reason, the
engines log and count it, and the run goes on.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AudioError, ProbeError

__all__ = ["Clip", "CorpusError", "read_corpus", "load_clip", "AUDIO_SUFFIXES"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")


class CorpusError(ProbeError, ValueError):
    """A corpus (folder or manifest) or a corpus run that cannot be used as given."""


@dataclass
class Clip:
    """One clip of a corpus.

    Attributes
    ----------
    clip_id : str
        Unique key (the manifest's ``id``, else the path relative to the corpus root).
    path : str
        Absolute path of the audio file.
    label : str or None
        Clip-level label.
    events : list of dict
        ``{"start", "end", "label"}`` in seconds.
    split, group : str or None
        Group defaults to the clip id in cross-validation (no clip in two folds).
    """

    clip_id: str
    path: str
    label: str | None = None
    events: list = field(default_factory=list)
    split: str | None = None
    group: str | None = None

    def to_row(self) -> dict:
        row = asdict(self)
        row["events"] = json.dumps(self.events)
        return row

    @classmethod
    def from_row(cls, row: dict) -> "Clip":
        ev = row.get("events") or "[]"
        return cls(clip_id=row["clip_id"], path=row["path"], label=row.get("label"),
                   events=json.loads(ev) if isinstance(ev, str) else list(ev), split=row.get("split"),
                   group=row.get("group"))


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _text(v):
    return None if _blank(v) else str(v).strip()


def read_corpus(source) -> list[Clip]:
    """Read a corpus: a folder (searched recursively) or a ``.csv`` / ``.jsonl`` manifest.

    In a folder, a file inside a sub-folder takes the sub-folder's name as its label
    (the ``corpus/dog/x.wav`` convention).

    Parameters
    ----------
    source : str or Path

    Returns
    -------
    list of Clip
        In manifest order (folders: sorted by path).

    Raises
    ------
    CorpusError
        Missing source, unknown manifest format, missing ``path`` column, duplicate ids,
        bad event times, or no clips at all.

    Examples
    --------
    >>> import tempfile, soundfile as sf
    >>> d = Path(tempfile.mkdtemp()); (d / "dog").mkdir()
    >>> sf.write(d / "dog" / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    >>> [(c.clip_id, c.label) for c in read_corpus(d)]
    [('dog/a.wav', 'dog')]
    """
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        clips = []
        for p in files:
            rel = p.relative_to(src)
            label = rel.parts[-2] if len(rel.parts) > 1 else None
            clips.append(Clip(clip_id=rel.as_posix(), path=str(p.resolve()), label=label))
    elif src.is_file():
        suffix = src.suffix.lower()
        if suffix == ".csv":
            with open(src, newline="") as fh:
                rows = list(csv.DictReader(fh))
        elif suffix in (".jsonl", ".ndjson"):
            rows = []
            for i, line in enumerate(src.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise CorpusError(f"{src} line {i} is not JSON: {exc}") from None
        else:
            raise CorpusError(f"a corpus is a folder, a .csv or a .jsonl manifest; given {src}")
        clips = _clips_from_rows(rows, src)
    else:
        raise CorpusError(f"no such corpus folder or manifest: {src}")
    if not clips:
        raise CorpusError(f"no audio clips in {src} (looked for {', '.join(AUDIO_SUFFIXES)})")
    return clips


def _clips_from_rows(rows: list, src: Path) -> list[Clip]:
    by_key: dict = {}
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or _blank(row.get("path")):
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise CorpusError(f"{src} row {i} has no 'path'; found {found}")
        raw = Path(str(row["path"]).strip())
        path = raw if raw.is_absolute() else (src.parent / raw)
        key = _text(row.get("id")) or raw.as_posix()
        clip = by_key.get(key)
        if clip is None:
            clip = by_key[key] = Clip(clip_id=key, path=str(path.resolve()), split=_text(row.get("split")),
                                      group=_text(row.get("group")))
        elif clip.path != str(path.resolve()):
            raise CorpusError(f"{src} row {i}: id {key!r} already names {clip.path}")
        has_event = not _blank(row.get("start")) or not _blank(row.get("end"))
        ev_label = _text(row.get("event")) if "event" in row else (_text(row.get("label")) if has_event else None)
        clip_label = _text(row.get("label")) if ("event" in row or not has_event) else None
        if clip_label is not None:
            if clip.label is not None and clip.label != clip_label:
                raise CorpusError(f"{src} row {i}: clip {key!r} has two labels, {clip.label!r} and {clip_label!r}")
            clip.label = clip_label
        if has_event:
            clip.events.append(_event(row.get("start"), row.get("end"), ev_label, f"{src} row {i}"))
        for ev in row.get("events") or []:
            clip.events.append(_event(ev.get("start"), ev.get("end"), _text(ev.get("label")), f"{src} row {i}"))
    return list(by_key.values())


def _event(start, end, label, where) -> dict:
    try:
        s, e = float(start), float(end)
    except (TypeError, ValueError):
        raise CorpusError(f"{where}: event start/end must be numbers, given start={start!r}, end={end!r}") from None
    if not (0 <= s < e):
        raise CorpusError(f"{where}: event needs 0 <= start < end, given start={s}, end={e}")
    return {"start": s, "end": e, "label": label or "event"}


def load_clip(clip: Clip, sr: int, *, min_seconds: float = 0.1, max_seconds: float | None = 3600.0) -> np.ndarray:
    """Read one clip as mono float32 at ``sr``; :class:`AudioError` says why a clip is unusable.

    Examples
    --------
    >>> import tempfile, soundfile as sf
    >>> p = Path(tempfile.mkdtemp()) / "a.wav"; sf.write(p, np.zeros(800, dtype=np.float32), 16000)
    >>> load_clip(Clip("a", str(p)), 16000, min_seconds=0.1)
    Traceback (most recent call last):
    ...
    probe.errors.AudioError: clip lasts 0.050 s, shorter than min_seconds=0.1
    """
    from ..audio import load_audio

    y, _ = load_audio(clip.path, sr, max_seconds=max_seconds)
    if len(y) < min_seconds * sr:
        raise AudioError(f"clip lasts {len(y) / sr:.3f} s, shorter than min_seconds={min_seconds:g}")
    return y
