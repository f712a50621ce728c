"""The user's own labels on an embedding map: read them, attach them to points, score clusters against them.

Two shapes of label file are read (CSV or JSON):

* **segments** of one clip — ``start,end,label`` rows (seconds), CSV with or without a
  header, or JSON ``[{"start": 0.0, "end": 1.5, "label": "speech"}, ...]`` (also under a
  ``"segments"`` key);
* **one label per file** of a folder of clips — ``file,label`` rows, or JSON
  ``{"a.wav": "dog", ...}`` / ``[{"file": "a.wav", "label": "dog"}, ...]``. Files are
  matched by name (with or without extension). Segment rows may also carry a ``file``
  column to label segments of several clips.

Points get the label of the segment containing their time (the first one when segments
overlap); points outside every segment stay unlabelled and are left out of the scores.
Scores: adjusted Rand index, normalised mutual information and purity (the share of
labelled points whose cluster's majority label is their own).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnalysisError

__all__ = ["Labels", "read_labels", "label_points", "apply_labels", "label_scores", "purity"]


@dataclass
class Labels:
    """Labels read from a file.

    Attributes
    ----------
    segments : list of (file or None, start, end, label)
        ``file`` is ``None`` for segments that apply to any clip.
    per_file : dict
        ``{file stem: label}`` for folder labelling.
    names : list of str
        Every label, in order of first appearance.
    source : str
    """

    segments: list = field(default_factory=list)
    per_file: dict = field(default_factory=dict)
    names: list = field(default_factory=list)
    source: str = ""

    def label_at(self, times, *, clip: str | None = None) -> np.ndarray:
        """Label index (into :attr:`names`) at each time of one clip; ``-1`` where unlabelled.

        Examples
        --------
        >>> lab = Labels(segments=[(None, 0.0, 1.0, "a"), (None, 1.0, 2.0, "b")], names=["a", "b"])
        >>> lab.label_at([0.5, 1.5, 3.0]).tolist()
        [0, 1, -1]
        """
        t = np.asarray(times, dtype=float)
        out = np.full(t.shape, -1, dtype=np.int64)
        stem = _stem(clip) if clip is not None else None
        if stem is not None and stem in self.per_file:
            out[:] = self.names.index(self.per_file[stem])
        for f, start, end, lab in self.segments:
            if f is not None and (stem is None or _stem(f) != stem):
                continue
            hit = (out < 0) & (t >= start) & (t < end)
            out[hit] = self.names.index(lab)
        return out


def _stem(name) -> str:
    p = Path(str(name))
    return p.stem if p.suffix else p.name


def _num(v, where) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise AnalysisError(f"{where}: {v!r} is not a number of seconds") from None
    if not np.isfinite(x):
        raise AnalysisError(f"{where}: {v!r} is not a finite number of seconds")
    return x


def _rows_from_json(obj, path) -> list[dict]:
    if isinstance(obj, dict) and "segments" in obj:
        obj = obj["segments"]
    if isinstance(obj, dict):  # {file: label}
        return [{"file": k, "label": v} for k, v in obj.items()]
    if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
        return obj
    if isinstance(obj, list) and all(isinstance(r, (list, tuple)) and len(r) in (2, 3) for r in obj):
        return [dict(zip(("start", "end", "label") if len(r) == 3 else ("file", "label"), r)) for r in obj]
    raise AnalysisError(f"{path}: expected a list of {{start, end, label}} / {{file, label}} objects or a "
                        f"{{file: label}} object")


def _rows_from_csv(text: str, path) -> list[dict]:
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)
            and not r[0].lstrip().startswith("#")]
    if not rows:
        raise AnalysisError(f"{path} holds no labels")
    head = [c.strip().lower() for c in rows[0]]
    if "label" in head:
        return [{k: v.strip() for k, v in zip(head, r)} for r in rows[1:]]
    if len(rows[0]) == 3:
        return [dict(zip(("start", "end", "label"), (c.strip() for c in r))) for r in rows]
    if len(rows[0]) == 2:
        return [dict(zip(("file", "label"), (c.strip() for c in r))) for r in rows]
    raise AnalysisError(f"{path}: rows must be start,end,label or file,label (a header with 'label' names the "
                        f"columns); the first row has {len(rows[0])} columns")


def read_labels(path) -> Labels:
    """Read a CSV or JSON label file (see the module docstring).

    Raises
    ------
    AnalysisError
        Missing file, unreadable rows, a segment with ``end <= start``, no labels.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(p, "w").write("start,end,label\\n0,1.5,speech\\n1.5,3,music\\n")
    >>> lab = read_labels(p)
    >>> lab.names, lab.label_at([0.2, 2.0]).tolist()
    (['speech', 'music'], [0, 1])
    """
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"no such label file: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            rows = _rows_from_json(json.loads(text), path)
        except json.JSONDecodeError as exc:
            raise AnalysisError(f"{path} is not valid JSON: {exc}") from None
    else:
        rows = _rows_from_csv(text, path)
    lab = Labels(source=str(path))
    for k, r in enumerate(rows):
        where = f"{path.name} row {k + 1}"
        if "label" not in r or str(r["label"]).strip() == "":
            raise AnalysisError(f"{where} has no label: {r}")
        name = str(r["label"]).strip()
        if name not in lab.names:
            lab.names.append(name)
        if "start" in r or "end" in r:
            start = _num(r["start"], where) if r.get("start") not in ("", None) else 0.0
            end = _num(r["end"], where) if r.get("end") not in ("", None) else np.inf
            if end <= start:
                raise AnalysisError(f"{where}: end {end} is not after start {start}")
            lab.segments.append((r.get("file") or None, start, end, name))
        elif r.get("file"):
            lab.per_file[_stem(r["file"])] = name
        else:
            raise AnalysisError(f"{where} needs start,end or file: {r}")
    if not lab.names:
        raise AnalysisError(f"{path} holds no labels")
    return lab


def label_points(points, labels: Labels) -> np.ndarray:
    """Label index of every point of an :class:`~probe.analyze.embeddings.EmbeddingPoints` (``-1`` = none)."""
    out = np.full(len(points), -1, dtype=np.int64)
    names = [getattr(c, "name", None) for c in points.clips] or [None]
    for ci in np.unique(points.clip):
        sel = points.clip == ci
        clip = names[int(ci)] if int(ci) < len(names) else None
        out[sel] = labels.label_at(points.time[sel], clip=clip)
    return out


def apply_labels(points, labels: Labels):
    """A copy of ``points`` whose ``label`` / ``class_names`` are the user's labels (colour with ``color="class"``)."""
    idx = label_points(points, labels)
    if (idx >= 0).sum() == 0:
        span = f"{float(points.time.min()):.2f}–{float(points.time.max()):.2f} s" if len(points) else "no points"
        raise AnalysisError(f"no point falls inside a labelled segment of {labels.source} (points span {span}); "
                            "check the times and file names")
    return dataclasses.replace(points, label=idx, class_names=list(labels.names))


def purity(clusters, labels) -> float:
    """Share of points whose cluster's majority label is their own.

    Examples
    --------
    >>> purity([0, 0, 1, 1], [0, 0, 1, 0])
    0.75
    """
    c, y = np.asarray(clusters), np.asarray(labels)
    if c.size == 0:
        return float("nan")
    total = 0
    for k in np.unique(c):
        total += np.bincount(y[c == k]).max()
    return float(total / c.size)


def label_scores(clusters, point_labels, *, names=None) -> dict:
    """ARI, NMI and purity of cluster assignments against the user's labels (labelled points only).

    Parameters
    ----------
    clusters : EmbeddingClusters or array [shape=(n,)]
    point_labels : array [shape=(n,)]
        Label indices, ``-1`` for unlabelled points (left out).

    Returns
    -------
    dict
        ``ari``, ``nmi``, ``purity``, ``n_labelled``, ``n_unlabelled``, ``label_counts``;
        ``note`` instead of scores when fewer than two labels or two points are present.

    Examples
    --------
    >>> s = label_scores([0, 0, 1, 1, 1], [0, 0, 1, 1, -1])
    >>> s["ari"], s["purity"], s["n_labelled"]
    (1.0, 1.0, 4)
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    c = np.asarray(getattr(clusters, "labels_", clusters))
    y = np.asarray(point_labels)
    if c.shape != y.shape:
        raise AnalysisError(f"{c.shape[0]} cluster assignments for {y.shape[0]} point labels")
    keep = y >= 0
    c, y = c[keep], y[keep]
    counts = np.bincount(y, minlength=len(names) if names else 0) if y.size else np.zeros(0, int)
    out = {"n_labelled": int(keep.sum()), "n_unlabelled": int((~keep).sum()),
           "label_counts": {(names[i] if names and i < len(names) else str(i)): int(n) for i, n in enumerate(counts) if n}}
    if y.size < 2 or np.unique(y).size < 2:
        out.update(ari=None, nmi=None, purity=None,
                   note="fewer than two labels among the points: the clusters cannot be compared with them")
        return out
    out.update(ari=round(float(adjusted_rand_score(y, c)), 4), nmi=round(float(normalized_mutual_info_score(y, c)), 4),
               purity=round(purity(c, y), 4))
    return out
