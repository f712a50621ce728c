"""Explanation quality: is an attribution faithful to the model, and does it depend on the model at all?

Four checks, each a function returning a JSON-able dict:

* :func:`deletion_test` — delete (replace by the baseline) T-F bins in attribution order
  and in random order; a faithful map makes the target fall faster (lower deletion AUC,
  larger drop at 10 %). Insertion is the mirror image (start from the baseline, insert
  the most relevant bins first; higher AUC is better). Petsiuk et al. 2018 (RISE).
* :func:`randomisation_test` — Adebayo et al. 2018 "Sanity checks for saliency maps":
  randomise the layers top-down on a deep copy of the model and measure how similar the
  maps stay (Spearman rank correlation, SSIM). A map that survives randomisation explains
  the input, not the model.
* :func:`completeness` / :func:`ig_steps_for_completeness` — IG's summation-to-delta
  axiom: Captum's convergence delta relative to ``f(x) - f(baseline)``, and the number of
  quadrature steps that brings it under a tolerance.
* :func:`localisation` — against a ground-truth event box: the share of positive
  relevance inside it (relevance mass accuracy, Arras et al. 2022), whether the peak lands
  inside (pointing game, Zhang et al. 2018) and the relevance rank accuracy.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ..errors import AnalysisError

__all__ = ["deletion_curve", "deletion_test", "randomisation_test", "spearman", "ssim", "completeness",
           "ig_steps_for_completeness", "localisation", "DEFAULT_FRACTIONS"]

#: fractions of bins deleted / inserted (0.1 is on the grid: the "drop at 10 %")
DEFAULT_FRACTIONS = np.round(np.linspace(0.0, 1.0, 21), 4)


def _forward_for(spec, attr):
    """A no-grad ``|X| batch → target`` function for the attribution's clip and bound target."""
    from ..attribution.core import TFForward, analysis_stft
    from ..attribution.targets import Target, TargetContext, as_target

    if attr.audio is None:
        raise AnalysisError("the attribution carries no audio; re-run attribute() to test it")
    _, phase, _ = analysis_stft(spec, attr.audio)
    target = attr.target if isinstance(attr.target, Target) else as_target(attr.target, spec)
    return TFForward(spec, target, TargetContext(spec, len(attr.audio)), phase)


def _order(amap, order, rng):
    flat = np.asarray(amap, np.float64).ravel()
    if isinstance(order, str) and order == "random":
        return rng.permutation(flat.size)
    if isinstance(order, str) and order == "attribution":
        perm = rng.permutation(flat.size)  # ties (e.g. many exact zeros) in random order, not index order
        return perm[np.argsort(-flat[perm], kind="stable")]
    idx = np.asarray(order).ravel()
    if idx.size != flat.size:
        raise AnalysisError(f"an explicit order needs {flat.size} indices, given {idx.size}")
    return idx


def deletion_curve(spec, attr, *, mode: str = "deletion", order="attribution", fractions=None, seed: int = 0,
                   batch_size: int = 8) -> dict:
    """Target value as bins are deleted (replaced by the baseline) or inserted, in a given order.

    Parameters
    ----------
    spec : ModelSpec
        The model the attribution was computed for.
    attr : Attribution
    mode : {"deletion", "insertion"}
        Deletion starts from the clip; insertion from the baseline.
    order : {"attribution", "random"} or array of flat bin indices
    fractions : array, optional
        Fractions of all bins changed (default :data:`DEFAULT_FRACTIONS`).

    Returns
    -------
    dict
        ``fractions``, ``values`` (target), ``normalized`` (values / f(x)), ``auc`` (area
        under ``normalized`` over [0, 1]).
    """
    import torch

    from ..attribution.core import preserved_model

    if mode not in ("deletion", "insertion"):
        raise AnalysisError(f"mode must be 'deletion' or 'insertion', given {mode!r}")
    if attr.baseline is None:
        raise AnalysisError("the attribution has no baseline to delete towards")
    fr = DEFAULT_FRACTIONS if fractions is None else np.asarray(fractions, float)
    rng = np.random.default_rng(seed)
    idx = _order(attr.map, order, rng)
    fwd = _forward_for(spec, attr)
    p = next(iter(spec.model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    x = torch.as_tensor(attr.input_magnitude, device=dev).reshape(-1)
    b = torch.as_tensor(attr.baseline, device=dev).reshape(-1)
    start, fill = (x, b) if mode == "deletion" else (b, x)
    idx_t = torch.as_tensor(idx, device=dev)
    F, T = attr.map.shape
    ks = [int(round(f * idx.size)) for f in fr]
    values = []
    with preserved_model(spec.model), torch.no_grad():
        for i in range(0, len(ks), batch_size):
            batch = []
            for k in ks[i:i + batch_size]:
                v = start.clone()
                v[idx_t[:k]] = fill[idx_t[:k]]
                batch.append(v.reshape(F, T))
            values.append(fwd(torch.stack(batch)).float().cpu().numpy())
        fx = float(fwd(x.reshape(1, F, T))[0])
    values = np.concatenate(values).astype(float)
    scale = fx if abs(fx) > 1e-12 else 1.0
    norm = values / scale
    return {"mode": mode, "order": order if isinstance(order, str) else "custom", "fractions": fr.tolist(),
            "values": values.tolist(), "normalized": norm.tolist(), "auc": float(np.trapezoid(norm, fr)), "f_x": fx}


def _at(curve, frac):
    fr = np.asarray(curve["fractions"])
    return float(np.asarray(curve["values"])[int(np.argmin(np.abs(fr - frac)))])


def deletion_test(spec, attr, *, fractions=None, n_random: int = 3, seed: int = 0, insertion: bool = True,
                  batch_size: int = 8) -> dict:
    """Deletion (and insertion) curves in attribution order vs random order.

    Returns
    -------
    dict
        ``auc`` / ``auc_random`` (deletion, lower is better), ``drop_at_10`` /
        ``drop_at_10_random`` (fall of the target after deleting 10 % of the bins, as a
        fraction of f(x)), ``drop_ratio`` (their quotient), ``insertion_auc`` /
        ``insertion_auc_random`` (higher is better), and the ``curves``.
    """
    fr = DEFAULT_FRACTIONS if fractions is None else np.asarray(fractions, float)
    if not np.any(np.isclose(fr, 0.1)) or not np.any(np.isclose(fr, 0.0)):
        fr = np.unique(np.concatenate([fr, [0.0, 0.1]]))
    d = deletion_curve(spec, attr, fractions=fr, seed=seed, batch_size=batch_size)
    rand = [deletion_curve(spec, attr, order="random", fractions=fr, seed=seed + 1 + i, batch_size=batch_size)
            for i in range(n_random)]
    fx = d["f_x"]
    scale = abs(fx) if abs(fx) > 1e-12 else 1.0
    drop = (fx - _at(d, 0.1)) / scale
    drop_r = float(np.mean([(fx - _at(r, 0.1)) / scale for r in rand]))
    rmean = {"fractions": d["fractions"], "values": np.mean([r["values"] for r in rand], 0).tolist(),
             "normalized": np.mean([r["normalized"] for r in rand], 0).tolist()}
    out = {"auc": d["auc"], "auc_random": float(np.mean([r["auc"] for r in rand])), "drop_at_10": float(drop),
           "drop_at_10_random": drop_r, "drop_ratio": float(drop / drop_r) if abs(drop_r) > 1e-12 else float("inf"),
           "f_x": fx, "curves": {"deletion": d, "deletion_random": rmean}}
    if insertion:
        ins = deletion_curve(spec, attr, mode="insertion", fractions=fr, seed=seed, batch_size=batch_size)
        ins_r = [deletion_curve(spec, attr, mode="insertion", order="random", fractions=fr, seed=seed + 1 + i,
                                batch_size=batch_size) for i in range(n_random)]
        out["insertion_auc"] = ins["auc"]
        out["insertion_auc_random"] = float(np.mean([r["auc"] for r in ins_r]))
        out["curves"]["insertion"] = ins
        out["curves"]["insertion_random"] = {"fractions": ins["fractions"],
                                             "values": np.mean([r["values"] for r in ins_r], 0).tolist(),
                                             "normalized": np.mean([r["normalized"] for r in ins_r], 0).tolist()}
    return out


# ---- similarity of maps ----------------------------------------------------------------------
def spearman(a, b, *, max_points: int = 200_000, seed: int = 0) -> float:
    """Spearman rank correlation of two maps (a random subset of bins when they are large)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise AnalysisError(f"maps differ in size: {a.size} vs {b.size}")
    if a.size > max_points:
        sel = np.random.default_rng(seed).choice(a.size, max_points, replace=False)
        a, b = a[sel], b[sel]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant map has no ranking
    return float(spearmanr(a, b).statistic)


def ssim(a, b, *, window: int = 7, data_range: float | None = None, k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity (Wang et al. 2004) of two 2-D maps, with uniform windows.

    Same definition as ``skimage.metrics.structural_similarity`` with its defaults
    (7×7 uniform window, sample covariances, borders of half a window cropped).

    Parameters
    ----------
    a, b : array [shape=(F, T)]
    data_range : float, optional
        Dynamic range of the values; default the range of both maps together.
    """
    from scipy.ndimage import uniform_filter

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise AnalysisError(f"ssim needs two 2-D maps of one shape, given {a.shape} and {b.shape}")
    if min(a.shape) < window:
        window = max(1, min(a.shape) | 1) if min(a.shape) % 2 else max(1, min(a.shape) - 1)
    L = data_range if data_range is not None else max(a.max(), b.max()) - min(a.min(), b.min())
    L = L if L > 0 else 1.0
    n = window * window
    cov = n / (n - 1) if n > 1 else 1.0
    ua, ub = uniform_filter(a, window), uniform_filter(b, window)
    vaa = cov * (uniform_filter(a * a, window) - ua * ua)
    vbb = cov * (uniform_filter(b * b, window) - ub * ub)
    vab = cov * (uniform_filter(a * b, window) - ua * ub)
    c1, c2 = (k1 * L) ** 2, (k2 * L) ** 2
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua ** 2 + ub ** 2 + c1) * (vaa + vbb + c2))
    p = (window - 1) // 2
    s = s[p:s.shape[0] - p or None, p:s.shape[1] - p or None]
    return float(s.mean())


def _rank01(m):
    """Ranks of ``|m|`` scaled to [0, 1]: SSIM of sparse maps is otherwise dominated by their shared zeros."""
    from scipy.stats import rankdata

    a = np.abs(np.asarray(m, np.float64))
    return ((rankdata(a.ravel()) - 1) / max(a.size - 1, 1)).reshape(a.shape)


def _unit_abs(m):
    m = np.abs(np.asarray(m, np.float64))
    top = m.max()
    return m / top if top > 0 else m


# ---- model-parameter randomisation -------------------------------------------------------------
_NORMS = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm")


def _layers_in_order(spec, y):
    """Modules owning parameters (norm layers excluded), in the order the forward pass calls them."""
    import torch

    from ..attribution.core import preserved_model

    model = spec.model
    order: list = []
    cands = [(n, m) for n, m in model.named_modules()
             if n and any(True for _ in m.parameters(recurse=False)) and not any(k in type(m).__name__ for k in _NORMS)]
    handles = []
    for n, m in cands:
        handles.append(m.register_forward_hook(lambda mod, i, o, name=n: order.append(name) if name not in order else None))
    try:
        with preserved_model(model), torch.no_grad():
            spec.forward(np.asarray(y[: min(len(y), spec.sample_rate)], np.float32))
    finally:
        for h in handles:
            h.remove()
    return order + [n for n, _ in cands if n not in order]


def _randomise(module, seed):
    import torch

    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):  # the user's CPU/CUDA generators are left as they were
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            with torch.no_grad():
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.02)


def randomisation_test(spec, y, target=None, *, method: str = "saliency", mode: str = "cascade", seed: int = 0,
                       layers=None, original=None, return_maps: bool = False, **attribute_kwargs) -> dict:
    """Model-parameter randomisation test (Adebayo et al. 2018) on a deep copy of the model.

    Parameters
    ----------
    spec : ModelSpec
        Left untouched: every randomisation happens on ``copy.deepcopy(spec.model)``.
    y : np.ndarray [shape=(n,)] or AudioExample
    target : str, Target or callable
        As in :func:`probe.attribute` (an :class:`Attribution`'s bound target works too).
    method : str
        Attribution method; extra keyword arguments go to :func:`probe.attribute`.
    mode : {"cascade", "independent"}
        ``cascade``: randomise layers from the output down, cumulatively (the paper's main
        test); ``independent``: one layer at a time, the others trained.
    layers : list of str, optional
        Layer names to randomise, in top-down order (default: every module owning
        parameters except normalisation layers, in reverse call order).
    original : Attribution, optional
        The map of the trained model (computed when omitted).

    Returns
    -------
    dict
        ``layers`` (``"trained"`` first, then each randomised layer), ``spearman`` (signed
        maps), ``spearman_abs`` (absolute maps), ``ssim`` (absolute maps scaled to [0, 1],
        as in the paper), ``ssim_rank`` (SSIM of the maps' rank images: sparse maps share
        many near-zero bins, which keep plain SSIM near 1 even for unrelated maps), and
        ``maps`` (``(F, T)`` arrays) when ``return_maps``.
    """
    from ..attribution import attribute

    if mode not in ("cascade", "independent"):
        raise AnalysisError(f"mode must be 'cascade' or 'independent', given {mode!r}")
    if attribute_kwargs.get("layer") is not None and not isinstance(attribute_kwargs["layer"], str):
        from ..attribution.core import _find_layer

        attribute_kwargs["layer"] = _find_layer(spec.model, attribute_kwargs["layer"])[0]
    if original is None:
        original = attribute(spec, y, target, method=method, seed=seed, **attribute_kwargs)
    target = original.target
    audio = original.audio
    order = list(layers) if layers is not None else _layers_in_order(spec, audio)[::-1]
    if not order:
        raise AnalysisError(f"{type(spec.model).__name__} has no parameterised layers to randomise")
    base_map = original.map
    res = {"method": original.method, "mode": mode, "layers": ["trained"], "spearman": [1.0], "spearman_abs": [1.0],
           "ssim": [1.0], "ssim_rank": [1.0]}
    maps = [base_map]
    model = copy.deepcopy(spec.model)
    named = dict(model.named_modules())
    unknown = [n for n in order if n not in named]
    if unknown:
        raise AnalysisError(f"unknown layers {unknown}; parameterised layers: {_layers_in_order(spec, audio)}")
    for i, name in enumerate(order):
        if mode == "independent":
            model = copy.deepcopy(spec.model)
            named = dict(model.named_modules())
        _randomise(named[name], seed + 1000 + i)
        rspec = dataclasses.replace(spec, model=model)
        a = attribute(rspec, audio, target, method=method, seed=seed, **attribute_kwargs)
        res["layers"].append(name)
        res["spearman"].append(spearman(base_map, a.map, seed=seed))
        res["spearman_abs"].append(spearman(np.abs(base_map), np.abs(a.map), seed=seed))
        res["ssim"].append(ssim(_unit_abs(base_map), _unit_abs(a.map), data_range=1.0))
        res["ssim_rank"].append(ssim(_rank01(base_map), _rank01(a.map), data_range=1.0))
        if return_maps:
            maps.append(a.map)
    if return_maps:
        res["maps"] = maps
    return res


# ---- completeness ------------------------------------------------------------------------------
def completeness(attr) -> float | None:
    """``|sum(map) - (f(x) - f(baseline))| / |f(x) - f(baseline)|`` of an attribution.

    Uses Captum's convergence delta when present, else the map's own sum. ``None`` for
    methods without a summation axiom (Saliency, GradCAM, and occlusion / ablation, which
    give every bin of a window the whole window's effect).
    """
    if attr.completeness_error is not None:
        return float(attr.completeness_error)
    if attr.method not in ("ig", "deeplift", "gradshap", "ixg"):
        return None
    if attr.target_value is None or attr.baseline_value is None:
        return None
    diff = attr.target_value - attr.baseline_value
    return float(abs(float(np.sum(attr.map, dtype=np.float64)) - diff) / max(abs(diff), 1e-12))


def ig_steps_for_completeness(spec, y, target=None, *, tol: float = 0.01, steps=(4, 8, 16, 32, 64, 128, 256),
                              baseline="silence", stop: bool = True, **attribute_kwargs) -> dict:
    """Completeness error of IG for increasing quadrature steps; the first count at or under ``tol``.

    Returns
    -------
    dict
        ``errors`` ``{steps: relative error}``, ``steps_needed`` (``None`` if never reached), ``tol``.
    """
    from ..attribution import attribute

    errors = {}
    needed = None
    for n in sorted(int(s) for s in steps):
        a = attribute(spec, y, target, method="ig", steps=n, baseline=baseline, **attribute_kwargs)
        target = a.target
        y = a.audio
        errors[n] = float(a.completeness_error) if a.completeness_error is not None else float("nan")
        if needed is None and errors[n] <= tol:
            needed = n
            if stop:
                break
    return {"errors": errors, "steps_needed": needed, "tol": tol}


# ---- localisation -----------------------------------------------------------------------------
def localisation(attr, box, *, tolerance=(0, 0)) -> dict:
    """Relevance inside a ground-truth T-F box.

    Parameters
    ----------
    attr : Attribution
    box : dict
        ``{"onset", "offset"}`` in seconds and optionally ``{"fmin", "fmax"}`` in Hz (an
        :class:`~probe.audio.AudioExample` event).
    tolerance : (int, int)
        Pointing-game tolerance in (bins, frames) around the box.

    Returns
    -------
    dict
        ``relevance_mass`` (positive relevance inside / all positive relevance; chance is
        ``box_fraction``), ``rank_accuracy`` (share of the box-sized set of top bins that
        falls inside), ``pointing_game`` (peak inside the box), ``box_fraction``, ``peak``.
    """
    from scipy.ndimage import binary_dilation

    mask = attr.box_mask(box)
    if not mask.any():
        raise AnalysisError(f"the box {box} covers no bin of the map (times {attr.times[0]:.2f}–{attr.times[-1]:.2f} s, "
                            f"freqs 0–{attr.freqs[-1]:.0f} Hz)")
    R = np.asarray(attr.map, np.float64)
    pos = np.maximum(R, 0)
    total = pos.sum()
    mass = float(pos[mask].sum() / total) if total > 0 else float("nan")
    k = int(mask.sum())
    top = np.argsort(-R.ravel(), kind="stable")[:k]
    rank_acc = float(mask.ravel()[top].mean())
    fi, ti = np.unravel_index(int(np.argmax(R)), R.shape)
    tf, tt = int(tolerance[0]), int(tolerance[1])
    near = binary_dilation(mask, structure=np.ones((2 * tf + 1, 2 * tt + 1), bool)) if (tf or tt) else mask
    return {"relevance_mass": mass, "rank_accuracy": rank_acc, "pointing_game": bool(near[fi, ti]),
            "box_fraction": float(mask.mean()), "peak": {"time": float(attr.times[ti]), "freq": float(attr.freqs[fi])}}
