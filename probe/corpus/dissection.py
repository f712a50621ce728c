"""Network dissection over a corpus: which unit follows which acoustic concept, tested against nulls.

For every unit × concept of a layer (on the run's sampled frames):

* continuous concepts: Pearson correlation of the unit's activation with the concept track;
* binary concepts (``voiced``, ``event:*``): IoU between the unit's top frames and the
  concept-active frames, where "top" takes as many frames as the concept is active (so
  a perfect detector scores 1 whatever the base rate).

Two controls decide whether an alignment means anything:

1. **shifted time** — every clip's concept tracks are circularly shifted by a random
   offset (all concepts of a clip by the same offset, so their mutual correlation is
   kept), ``permutations`` times. This keeps each track's autocorrelation and level and
   breaks only its timing relative to the unit. Pair p-values and a per-unit p-value (the
   unit's best standardised score over concepts vs the same maximum under shifts) come
   from it; Benjamini–Hochberg controls the false discovery rate over all units tested.
2. **random-init model** — the same architecture with fresh weights (the run's
   ``random`` variant) scored on the same frames. An alignment a random network also has
   (a random filter on a spectrogram follows loudness) is not something training put there.

A unit gets a label only if its unit-level q-value is ≤ ``fdr``, and then the label is
the concept with the highest standardised score among those whose pair q-value is ≤ ``fdr``
*and* whose score beats every unit of the random-init model for that concept.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .concepts import is_binary
from .inputs import CorpusError

__all__ = ["DissectOptions", "dissect", "bh_qvalues", "write_excerpts"]


@dataclass(frozen=True)
class DissectOptions:
    """Defaults of a dissection.

    Attributes
    ----------
    layers : tuple of str
        Layers to dissect (empty: all of the run's).
    permutations : int
        Circular-shift permutations. Sets the smallest p-value, 1/(permutations+1); with
        hundreds of unit × concept tests BH needs about a thousand.
    fdr : float
        False discovery rate for the unit-level and pair-level Benjamini–Hochberg steps.
    random_init : bool
        Require labels to beat the random-init model (needs a run with ``random_init``).
    seed : int
    excerpts : int
        Top excerpts written per labelled unit (0: none).
    excerpt_seconds : float
    """

    layers: tuple = ()
    permutations: int = 1000
    fdr: float = 0.05
    random_init: bool = True
    seed: int = 0
    excerpts: int = 3
    excerpt_seconds: float = 1.0


def bh_qvalues(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) of a flat array; NaN stays NaN.

    Examples
    --------
    >>> bh_qvalues(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    pv = p[ok]
    m = len(pv)
    if m == 0:
        return out
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(q, 1.0)
    out[ok] = res
    return out


def _segments(clip: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal clip indices (frames are stored clip by clip)."""
    edges = np.flatnonzero(np.diff(clip)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(clip)]])
    return list(zip(starts.tolist(), stops.tolist()))


def _shift_index(segs, n: int, n_perm: int, rng) -> np.ndarray:
    """(n, n_perm) row indices: each clip segment rolled by its own random offset per permutation."""
    idx = np.empty((n, n_perm), dtype=np.int64)
    for s, e in segs:
        L = e - s
        off = rng.integers(1, L, size=n_perm) if L > 1 else np.zeros(n_perm, dtype=np.int64)
        idx[s:e] = s + (np.arange(L)[:, None] + off[None, :]) % L
    return idx


def _standardize(X):
    X = np.asarray(X, dtype=np.float64)
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    Z = (X - mu) / np.where(sd > 0, sd, 1.0)
    Z[:, sd == 0] = 0.0  # a constant unit correlates with nothing
    return Z


def _top_masks(A, k: int) -> np.ndarray:
    """(n, U) float: 1 on each unit's k highest frames (ties broken by frame order)."""
    n, U = A.shape
    T = np.zeros((n, U))
    if k <= 0:
        return T
    top = np.argsort(-A, axis=0, kind="stable")[:k]
    T[top, np.arange(U)[None, :]] = 1.0
    return T


def _concept_scores(A, c, segs_all, clip, shift_idx, binary: bool):
    """Observed (U,) scores and null (U, P) scores of all units for one concept."""
    finite = np.isfinite(c)
    if binary:
        act = (np.nan_to_num(c) > 0.5).astype(np.float64)
        k = int(act.sum())
        if k == 0 or k == len(act):
            return None
        T = _top_masks(A, k)
        inter = T.T @ act
        obs = inter / (2 * k - inter)
        ip = _chunked(lambda cols: T.T @ act[cols], shift_idx)
        return obs, ip / (2 * k - ip)
    if finite.sum() < 3:
        return None
    if not finite.all():  # e.g. register: only voiced frames, shifted among each clip's own voiced frames
        A, c, sub_clip = A[finite], c[finite], clip[finite]
        segs = _segments(sub_clip)
        rng = np.random.default_rng(int(shift_idx[0, 0]) + len(c))
        shift_idx = _shift_index(segs, len(c), shift_idx.shape[1], rng)
    if np.std(c) == 0:
        return None
    Za = _standardize(A)
    zc = _standardize(c[:, None])[:, 0]
    n = len(c)
    obs = Za.T @ zc / n
    null = _chunked(lambda cols: Za.T @ zc[cols], shift_idx) / n  # a shift permutes values within clips
    return obs, null


def _chunked(fn, shift_idx, chunk: int = 128) -> np.ndarray:
    """``fn(shift_idx[:, a:b])`` over column chunks, concatenated (bounds memory at n × chunk)."""
    return np.concatenate([fn(shift_idx[:, a:a + chunk]) for a in range(0, shift_idx.shape[1], chunk)], axis=1)


def dissect(run, *, options: DissectOptions | None = None, progress: bool = False) -> dict:
    """Dissect the units of a corpus run; see the module docstring for the statistics.

    Parameters
    ----------
    run : CorpusRun or path
    options : DissectOptions

    Returns
    -------
    dict
        ``pairs``: list of rows (layer, unit, concept, kind, score, z, p, q, random_max,
        passes); ``units``: one row per unit (layer, unit, p_unit, q_unit, best concept,
        label or None); ``summary`` counts.
    """
    from .run import CorpusRun

    run = run if isinstance(run, CorpusRun) else CorpusRun(run)
    options = options or DissectOptions()
    if options.permutations < 1:
        raise CorpusError(f"permutations must be positive, given {options.permutations}")
    if not 0 < options.fdr < 1:
        raise CorpusError(f"fdr must lie in (0, 1), given {options.fdr}")
    layers = [run.check_layer(la) for la in options.layers] or list(run.layers)
    use_random = options.random_init and "random" in run.variants
    if options.random_init and not use_random:
        raise CorpusError("this run has no random-init variant (run with random_init on, or dissect with random_init=False)")
    rng = np.random.default_rng(options.seed)
    pairs, units = [], []
    P = int(options.permutations)
    for layer in layers:
        fr = run.frames(layer, "trained")
        if len(fr) < 8:
            raise CorpusError(f"layer {layer!r} has only {len(fr)} frames; dissection needs more clips or frames")
        A = fr.acts.astype(np.float64)
        segs = _segments(fr.clip)
        shift_idx = _shift_index(segs, len(fr), P, rng)
        Ar = run.frames(layer, "random").acts.astype(np.float64) if use_random else None
        names = sorted(fr.concepts)
        obs_all, null_all, keep = [], [], []
        for name in names:
            c = fr.concepts[name]
            res = _concept_scores(A, c, segs, fr.clip, shift_idx, is_binary(name))
            if res is None:
                continue
            obs, null = res
            rand = _concept_scores(Ar, c, segs, fr.clip, shift_idx[:, :1], is_binary(name))[0] if use_random else None
            mu, sd = null.mean(axis=1), null.std(axis=1)
            z = (obs - mu) / np.where(sd > 0, sd, np.inf)
            zn = (null - mu[:, None]) / np.where(sd > 0, sd, np.inf)[:, None]
            p = (1 + (null >= obs[:, None] - 1e-12).sum(axis=1)) / (1 + P)
            rmax = float(np.nanmax(rand)) if rand is not None else None
            for u in range(A.shape[1]):
                pairs.append({"layer": layer, "unit": u, "concept": name, "kind": "iou" if is_binary(name) else "corr",
                              "score": float(obs[u]), "z": float(z[u]), "p": float(p[u]),
                              "random_max": rmax, "null_mean": float(mu[u]), "null_sd": float(sd[u])})
            obs_all.append(z)
            null_all.append(zn)
            keep.append(name)
        if not keep:
            raise CorpusError(f"no usable concept track for layer {layer!r} (run with concepts, or add events)")
        Zo = np.nan_to_num(np.stack(obs_all), nan=-np.inf)  # (K, U)
        Zn = np.nan_to_num(np.stack(null_all), nan=-np.inf)  # (K, U, P)
        best_obs = Zo.max(axis=0)
        best_null = Zn.max(axis=0)
        p_unit = (1 + (best_null >= best_obs[:, None] - 1e-12).sum(axis=1)) / (1 + P)
        for u in range(A.shape[1]):
            units.append({"layer": layer, "unit": u, "p_unit": float(p_unit[u]),
                          "best": keep[int(np.argmax(Zo[:, u]))], "best_z": float(best_obs[u])})
    q_pairs = bh_qvalues([r["p"] for r in pairs])
    for r, q in zip(pairs, q_pairs):
        r["q"] = float(q)
        r["beats_random"] = bool(r["random_max"] is None or r["score"] > r["random_max"])
        r["passes"] = bool(q <= options.fdr and r["beats_random"] and r["score"] > 0)
    q_units = bh_qvalues([u["p_unit"] for u in units])
    by_unit: dict = {}
    for r in pairs:
        by_unit.setdefault((r["layer"], r["unit"]), []).append(r)
    for u, q in zip(units, q_units):
        u["q_unit"] = float(q)
        cands = [r for r in by_unit.get((u["layer"], u["unit"]), []) if r["passes"]]
        if q <= options.fdr and cands:
            best = max(cands, key=lambda r: r["z"])
            u.update(label=best["concept"], score=best["score"], kind=best["kind"], z=best["z"])
        else:
            u.update(label=None, score=None, kind=None, z=None)
    labelled = [u for u in units if u["label"]]
    summary = {"layers": layers, "units": len(units), "labelled": len(labelled), "permutations": P,
               "fdr": options.fdr, "random_init_control": use_random,
               "labels": {f"{u['layer']}:{u['unit']}": u["label"] for u in labelled}}
    return {"pairs": pairs, "units": units, "summary": summary}


def write_excerpts(run, units: list, out, *, k: int = 3, seconds: float = 1.0) -> list:
    """Write the top-``k`` activating excerpts of each unit as wav files (listen to what a unit likes).

    ``units`` holds dicts with ``layer`` and ``unit``; excerpts come from the run's
    top-k table (clip and time of each unit's strongest steps). Returns the written paths.
    """
    import soundfile as sf

    from .inputs import load_clip

    stats = run.unit_stats().to_pylist()
    table = {(r["layer"], r["unit"]): r for r in stats if r["variant"] == "trained"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sr = run.sample_rate
    written = []
    for u in units:
        row = table.get((u["layer"], u["unit"]))
        if row is None:
            continue
        for rank, (cid, t) in enumerate(zip(row["top_clips"][:k], row["top_times"][:k])):
            clip = run.clips[run.clip_index[cid]]
            try:
                y = load_clip(clip, sr, min_seconds=0.0)
            except Exception:  # the source moved since the run: skip, the table still names it
                continue
            a = max(0, int((t - seconds / 2) * sr))
            b = min(len(y), a + int(seconds * sr))
            safe = u["layer"].replace("/", "_").replace(".", "_")
            path = out / f"{safe}_unit{u['unit']:04d}_top{rank + 1}.wav"
            sf.write(path, y[a:b], sr)
            written.append(str(path))
    return written


def _swap_in(tmp: Path, dest: Path, *, force: bool) -> None:
    if dest.exists():
        if not force:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CorpusError(f"{dest} exists; pass force=True (--force) to replace it or choose another --out")
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:6]}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
