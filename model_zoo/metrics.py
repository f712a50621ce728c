"""Separation metrics for the zoo: SI-SDR / SDR with permutation matching, oracle masks, evaluation loops.

All metrics come from :mod:`fast_bss_eval` (bss_eval-compatible SDR with a 512-tap distortion
filter; SI-SDR after Le Roux et al. 2019). Estimates are matched to references by the
permutation that maximises the summed metric, so a separator may output its sources in
any order.

Improvements (``si_sdri``, ``sdri``) are relative to the unprocessed mixture used as the
estimate of every source, the convention of the deep-clustering papers.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

import numpy as np

from probe.errors import AnalysisError

__all__ = ["si_sdr", "sdr", "separation_scores", "mixture_scores", "oracle_masks", "evaluate_separator", "mean_scores",
           "METRIC_KEYS", "CLAMP_DB"]

METRIC_KEYS = ("si_sdr", "si_sdri", "sdr", "sdri")
#: metrics are clamped to ±CLAMP_DB so a perfect estimate gives a large finite number, not inf
CLAMP_DB = 100.0


def _one_thread():
    """BLAS/OpenMP limited to one thread: fast_bss_eval's small solves run ~50x slower when
    OpenBLAS threads fight over shared cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise AnalysisError(f"{name} must be (n_sources, n_samples) or (n_samples,), given {name}.shape={x.shape}")
    if not np.isfinite(x).all():
        raise AnalysisError(f"{name} holds {int((~np.isfinite(x)).sum())} non-finite values")
    return x


def _pair(est, ref) -> tuple[np.ndarray, np.ndarray]:
    est, ref = _as_2d(est, "est"), _as_2d(ref, "ref")
    if est.shape[0] != ref.shape[0]:
        raise AnalysisError(f"est has {est.shape[0]} sources, ref has {ref.shape[0]}; they must match")
    n = min(est.shape[1], ref.shape[1])
    if abs(est.shape[1] - ref.shape[1]) > 0.01 * max(est.shape[1], ref.shape[1]) + 512:
        raise AnalysisError(f"est and ref lengths differ too much: est.shape={est.shape}, ref.shape={ref.shape}")
    return est[:, :n], ref[:, :n]


def si_sdr(est, ref, *, return_perm: bool = False):
    """Scale-invariant SDR per reference source, best permutation.

    Parameters
    ----------
    est : array [shape=(S, N) or (N,)]
    ref : array [shape=(S, N) or (N,)]
    return_perm : bool
        Also return ``perm`` with ``est[perm[i]]`` matched to ``ref[i]``.

    Returns
    -------
    values : np.ndarray [shape=(S,)]
        dB, clamped to ±:data:`CLAMP_DB`.

    Examples
    --------
    >>> rng = np.random.default_rng(0); s = rng.standard_normal((2, 8000))
    >>> bool((si_sdr(0.5 * s[::-1], s) > 90).all())
    True
    """
    import fast_bss_eval

    est, ref = _pair(est, ref)
    with _one_thread():
        val, perm = fast_bss_eval.si_sdr(ref, est, zero_mean=True, clamp_db=CLAMP_DB, return_perm=True)
    # checked: fast_bss_eval's values are in reference order and perm[i] is the estimate matched to ref[i]
    val, perm = np.asarray(val, dtype=np.float64), np.asarray(perm)
    return (val, perm) if return_perm else val


def sdr(est, ref, *, return_perm: bool = False, filter_length: int = 512):
    """bss_eval SDR (512-tap distortion filter) per reference source, best permutation.

    Parameters and returns as :func:`si_sdr`.
    """
    import fast_bss_eval

    est, ref = _pair(est, ref)
    with _one_thread():
        val, perm = fast_bss_eval.sdr(ref, est, filter_length=filter_length, clamp_db=CLAMP_DB, load_diag=1e-10,
                                      return_perm=True)
    # checked: fast_bss_eval's values are in reference order and perm[i] is the estimate matched to ref[i]
    val, perm = np.asarray(val, dtype=np.float64), np.asarray(perm)
    return (val, perm) if return_perm else val


def mixture_scores(ref, mixture) -> tuple[np.ndarray, np.ndarray]:
    """SI-SDR and SDR of the unprocessed mixture as the estimate of every source: ``(si_sdr (S,), sdr (S,))``."""
    ref = _as_2d(ref, "ref")
    mix = _as_2d(mixture, "mixture")
    if mix.shape[0] != 1:
        raise AnalysisError(f"mixture must be one signal (N,), given mixture.shape={mix.shape}")
    if mix.shape[1] < ref.shape[1]:
        raise AnalysisError(f"mixture is shorter ({mix.shape[1]}) than the sources ({ref.shape[1]})")
    mix = np.repeat(mix[:, : ref.shape[1]], ref.shape[0], axis=0)
    return si_sdr(mix, ref), sdr(mix, ref)


def separation_scores(est, ref, mixture, *, mixture_baseline: tuple | None = None) -> dict:
    """SI-SDR, SDR and their improvements over the mixture, averaged over sources.

    Parameters
    ----------
    est : array [shape=(S, N)]
        Estimated sources, any order.
    ref : array [shape=(S, N)]
        True sources.
    mixture : array [shape=(N,)]
    mixture_baseline : tuple, optional
        :func:`mixture_scores` of ``(ref, mixture)`` when already computed (saves time).

    Returns
    -------
    dict
        ``{"si_sdr", "si_sdri", "sdr", "sdri"}`` in dB (means over the S sources), plus
        ``"per_source"`` with the unaveraged values (reference order).
    """
    est, ref = _pair(est, ref)
    with _one_thread():
        s_mix, d_mix = mixture_baseline if mixture_baseline is not None else mixture_scores(ref, mixture)
        s_est, d_est = si_sdr(est, ref), sdr(est, ref)
    return {"si_sdr": float(s_est.mean()), "si_sdri": float((s_est - s_mix).mean()),
            "sdr": float(d_est.mean()), "sdri": float((d_est - d_mix).mean()),
            "per_source": {"si_sdr": s_est.tolist(), "si_sdri": (s_est - s_mix).tolist(),
                           "sdr": d_est.tolist(), "sdri": (d_est - d_mix).tolist()}}


def oracle_masks(mixture, sources, grid, kind: str = "ibm", *, power: float = 1.0):
    """Oracle masks computed from the true sources, and the sources they resynthesise.

    Parameters
    ----------
    mixture : array [shape=(N,)]
    sources : array [shape=(S, N)]
    grid : probe.grid.TFGrid
    kind : {"ibm", "irm"}
        ``ibm``: 1 where a source has the largest magnitude, else 0 (ideal binary mask).
        ``irm``: ``|S_s|^p / sum_j |S_j|^p`` with ``p = power`` (ideal ratio mask; p=1 is the
        magnitude-ratio mask of Hershey et al., p=2 the Wiener-like power ratio).
    power : float

    Returns
    -------
    masks : np.ndarray [shape=(S, F, T), dtype=float32]
    estimates : np.ndarray [shape=(S, N), dtype=float32]
        ``istft(mask * STFT(mixture))`` with the mixture's phase.
    """
    import torch

    kind = kind.lower()
    if kind not in ("ibm", "irm"):
        raise AnalysisError(f"unknown oracle mask kind {kind!r}; known: ibm, irm")
    src = torch.as_tensor(_as_2d(sources, "sources"), dtype=torch.float32)
    mix = torch.as_tensor(_as_2d(mixture, "mixture")[0], dtype=torch.float32)
    S = grid.stft(src).abs()  # (S, F, T)
    X = grid.stft(mix)  # (F, T)
    if kind == "ibm":
        masks = torch.nn.functional.one_hot(S.argmax(0), S.shape[0]).permute(2, 0, 1).float()
    else:
        P = S ** power
        masks = P / P.sum(0, keepdim=True).clamp_min(1e-12)
    est = grid.istft(masks * X.unsqueeze(0), length=mix.shape[-1])
    return masks.numpy().astype(np.float32), est.numpy().astype(np.float32)


def mean_scores(rows: Sequence[dict]) -> dict:
    """Mean (and std) of :data:`METRIC_KEYS` over a list of score dicts."""
    out = {}
    for k in METRIC_KEYS:
        vals = np.array([r[k] for r in rows if k in r], dtype=np.float64)
        if len(vals):
            out[k] = float(vals.mean())
            out[k + "_std"] = float(vals.std())
    out["n_items"] = len(rows)
    return out


def _item_arrays(item) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(item, dict):
        return np.asarray(item["mixture"], np.float32), np.asarray(item["sources"], np.float32)
    y = getattr(item, "y", None)
    s = getattr(item, "sources", None)
    if y is None or s is None:
        raise AnalysisError(f"an item must be a dict with 'mixture'/'sources' or an AudioExample with sources; "
                            f"given {type(item).__name__}")
    return np.asarray(y, np.float32), np.asarray(s, np.float32)


def _score_items(systems: dict, items, grid, oracles) -> list[dict]:
    per_item = []
    for item in items:
        mix, src = _item_arrays(item)
        row: dict = {}
        base = mixture_scores(src, mix)
        for name, fn in systems.items():
            est = np.asarray(fn(mix), dtype=np.float32)
            if est.shape[0] != src.shape[0]:
                raise AnalysisError(f"system {name!r} returned {est.shape[0]} sources for a {src.shape[0]}-source mixture")
            row[name] = separation_scores(est, src, mix, mixture_baseline=base)
        for kind in oracles:
            _, est = oracle_masks(mix, src, grid, kind)
            row[f"oracle_{kind}"] = separation_scores(est, src, mix, mixture_baseline=base)
        per_item.append(row)
    return per_item


def evaluate_separator(separate_fn: Callable[[np.ndarray], np.ndarray] | dict, items: Iterable, grid, *,
                       oracles: Sequence[str] = ("ibm", "irm"), progress: bool = False, desc: str = "eval") -> dict:
    """Score a separator on a list of mixtures, with oracle masks on the same mixtures.

    Parameters
    ----------
    separate_fn : callable or dict of str → callable
        ``separate_fn(mixture (N,)) -> estimates (S, N)``. A dict scores several systems
        (e.g. ``{"dc": ..., "mi": ...}``) on the same items in one pass.
    items : iterable of dict or AudioExample
        Each with ``"mixture"`` (N,) and ``"sources"`` (S, N) (or ``.y`` / ``.sources``).
    grid : probe.grid.TFGrid
        Grid of the oracle masks (use the model's grid).
    oracles : sequence of {"ibm", "irm"}
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    dict
        ``{"model" (or each system name): mean scores, "oracle_ibm": ..., "oracle_irm": ...,
        "mixture": {"si_sdr", "sdr"} of the unprocessed mixture, "per_item": [{system: scores}],
        "n_items": int, "seconds": float}``. Mean scores hold ``si_sdr``, ``si_sdri``,
        ``sdr``, ``sdri`` and their ``_std``.
    """
    systems = separate_fn if isinstance(separate_fn, dict) else {"model": separate_fn}
    items = list(items)
    if not items:
        raise AnalysisError("evaluate_separator needs at least one item")
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc=desc, leave=False)
    t0 = time.perf_counter()
    per_item: list[dict] = []
    limiter = _one_thread()  # restored below, also on errors
    try:
        per_item = _score_items(systems, it, grid, oracles)
    finally:
        limiter.restore_original_limits()
    out: dict = {}
    for name in list(systems) + [f"oracle_{k}" for k in oracles]:
        out[name] = mean_scores([r[name] for r in per_item])
    first = next(iter(systems))
    out["mixture"] = {"si_sdr": float(np.mean([r[first]["si_sdr"] - r[first]["si_sdri"] for r in per_item])),
                      "sdr": float(np.mean([r[first]["sdr"] - r[first]["sdri"] for r in per_item]))}
    out["per_item"] = [{k: {m: v[m] for m in METRIC_KEYS} for k, v in r.items()} for r in per_item]
    out["n_items"] = len(per_item)
    out["seconds"] = time.perf_counter() - t0
    return out
