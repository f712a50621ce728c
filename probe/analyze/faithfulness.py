"""Explanation quality: is an attribution faithful to the model, and does it depend on the model at all?

Four checks, each a function returning a JSON-able dict:

* :func:`deletion_test` — delete (replace by the baseline) T-F bins in attribution order
  and in random order (averaged over several seeds, with its spread); a faithful map
  makes the target fall faster (lower deletion AUC, larger drop at 10 %). Insertion is
  the mirror image (start from the baseline, insert the most relevant bins first; higher
  AUC is better). Petsiuk et al. 2018 (RISE). Curves are normalised by
  ``f(x) - f(baseline)`` and clipped to :data:`CURVE_RANGE`, so they read the same for
  a probability, a logit or an energy; when that difference is near zero the figures are
  None with a reason.
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

__all__ = ["deletion_curve", "deletion_test", "CURVE_RANGE", "MIN_RANDOM_DROP", "randomisation_test", "spearman", "ssim", "completeness",
           "ig_steps_for_completeness", "localisation", "DEFAULT_FRACTIONS"]

#: fractions of bins deleted / inserted (0.1 is on the grid: the "drop at 10 %")
DEFAULT_FRACTIONS = np.round(np.linspace(0.0, 1.0, 21), 4)
#: normalised deletion/insertion curves (1 = f(x), 0 = f(baseline)) are clipped to this range
CURVE_RANGE = (-0.5, 1.5)
#: random deletion of 10 % must move the normalised score at least this much for a drop ratio to be reported
MIN_RANDOM_DROP = 0.05
#: a deletion AUC must beat the random orders' by this much (and by two of their standard deviations)
MIN_AUC_GAIN = 0.05
#: a deletion AUC no better than random's is put down to a rebounding target, not to the map, when deleting the
#: top 10 % moves the normalised target at least this much further than deleting a random 10 %
MIN_EARLY_GAIN = 0.2


def _forward_for(spec, attr, model):
    """A no-grad ``|X| batch → target`` function for the attribution's clip and bound target."""
    from ..attribution.domain import TFForward, analysis_stft
    from ..attribution.targets import Target, TargetContext, as_target

    if attr.audio is None:
        raise AnalysisError("the attribution carries no audio; re-run attribute() to test it")
    _, phase, _ = analysis_stft(spec, attr.audio)
    target = attr.target if isinstance(attr.target, Target) else as_target(attr.target, spec)
    return TFForward(spec, target, TargetContext(spec, len(attr.audio)), phase, model=model)


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


def _unavailable_reason(attr, fx, fb, scale):
    from ..attribution.health import TINY_DIFFERENCE, is_tiny_difference

    if getattr(attr, "nonfinite", None) is not None or not np.all(np.isfinite(attr.map)):
        return "the attribution is non-finite (NaN/Inf); see its warnings for the module and the fix"
    if not (np.isfinite(fx) and np.isfinite(fb)):
        return f"the target is non-finite on the clip or the baseline (f(x) = {fx}, f(baseline) = {fb})"
    if is_tiny_difference(fx, fb, scale):
        return (f"f(x) = {fx:.4g} and f(baseline) = {fb:.4g} differ by at most {TINY_DIFFERENCE:.0%} of the target's "
                "scale: deleting or inserting bins has nothing to move, so normalised curves are meaningless. "
                "Use another baseline or a target the clip changes")
    return None


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
        ``fractions``, ``values`` (the target), ``f_x``, ``f_baseline``, ``normalized``
        (``(values - f(baseline)) / (f(x) - f(baseline))``: 1 = the clip's score, 0 = the
        baseline's, clipped to :data:`CURVE_RANGE`), ``clipped`` (share of points clipped),
        ``auc`` (area under ``normalized`` over [0, 1]). ``normalized`` and ``auc`` are
        None, with a ``reason``, when ``f(x) - f(baseline)`` is near zero or non-finite.
    """
    import torch

    from ..attribution.isolation import preserved_model

    if mode not in ("deletion", "insertion"):
        raise AnalysisError(f"mode must be 'deletion' or 'insertion', given {mode!r}")
    if attr.baseline is None:
        raise AnalysisError("the attribution has no baseline to delete towards")
    fr = DEFAULT_FRACTIONS if fractions is None else np.asarray(fractions, float)
    rng = np.random.default_rng(seed)
    idx = _order(np.nan_to_num(attr.map), order, rng)
    p = next(iter(spec.model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    x = torch.as_tensor(attr.input_magnitude, device=dev).reshape(-1)
    b = torch.as_tensor(attr.baseline, device=dev).reshape(-1)
    start, fill = (x, b) if mode == "deletion" else (b, x)
    idx_t = torch.as_tensor(idx, device=dev)
    F, T = attr.map.shape
    ks = [int(round(f * idx.size)) for f in fr]
    values = []
    with preserved_model(spec.model) as model, torch.no_grad():
        fwd = _forward_for(spec, attr, model)
        for i in range(0, len(ks), batch_size):
            batch = []
            for k in ks[i:i + batch_size]:
                v = start.clone()
                v[idx_t[:k]] = fill[idx_t[:k]]
                batch.append(v.reshape(F, T))
            values.append(fwd(torch.stack(batch)).float().cpu().numpy())
        ends = fwd(torch.stack([x.reshape(F, T), b.reshape(F, T)])).double().cpu().numpy()
    fx, fb = float(ends[0]), float(ends[1])
    values = np.concatenate(values).astype(float)
    out = {"mode": mode, "order": order if isinstance(order, str) else "custom", "fractions": fr.tolist(),
           "values": values.tolist(), "f_x": fx, "f_baseline": fb, "normalized": None, "auc": None, "clipped": None}
    reason = _unavailable_reason(attr, fx, fb, attr.info.get("output_scale") if hasattr(attr, "info") else None)
    if reason is not None:
        out["reason"] = reason
        return out
    raw = (values - fb) / (fx - fb)
    norm = np.clip(raw, *CURVE_RANGE)
    out.update(normalized=norm.tolist(), auc=float(np.trapezoid(norm, fr)), clipped=float(np.mean(norm != raw)))
    return out


def _at(curve, frac, key="normalized"):
    fr = np.asarray(curve["fractions"])
    return float(np.asarray(curve[key])[int(np.argmin(np.abs(fr - frac)))])


def _mean_curve(curves):
    """Mean and spread (standard deviation) over random orders, per fraction."""
    vals = np.asarray([c["values"] for c in curves], float)
    norm = np.asarray([c["normalized"] for c in curves], float)
    return {"fractions": curves[0]["fractions"], "values": vals.mean(0).tolist(), "normalized": norm.mean(0).tolist(),
            "spread": norm.std(0).tolist(), "n": len(curves)}


def deletion_test(spec, attr, *, fractions=None, n_random: int = 5, seed: int = 0, insertion: bool = True,
                  batch_size: int = 8) -> dict:
    """Deletion (and insertion) curves in attribution order vs random order, on a scale that means the same for any score.

    Every curve is normalised by the difference the attribution explains:
    ``(f(curve) - f(baseline)) / (f(x) - f(baseline))`` — 1 is the clip's score, 0 the
    baseline's, whatever the target (a probability, a logit, an energy) — and clipped to
    :data:`CURVE_RANGE` (``[-0.5, 1.5]``) so one overshooting point cannot dominate an
    area. The random-order curve is the mean over ``n_random`` seeds, with its spread.

    Returns
    -------
    dict
        ``auc`` (deletion, lower is better) and ``auc_random`` ± ``auc_random_std``;
        ``drop_at_10`` (fall of the normalised target after deleting the top 10 % of
        bins; 1 = all the way to the baseline) and ``drop_at_10_random`` ±
        ``drop_at_10_random_std``; ``drop_ratio`` (their quotient, None when random
        deletion moves the score by less than 5 % — a ratio of near-zero numbers means
        nothing); ``insertion_auc`` / ``insertion_auc_random`` (higher is better);
        ``f_x``, ``f_baseline``; ``curves``; ``warnings`` (deletion no better than
        random: the AUC beats the random orders' by less than :data:`MIN_AUC_GAIN` or two
        of their standard deviations — unless deleting the top 10 % beats random by
        :data:`MIN_EARLY_GAIN`, when the warning says the target rebounds instead) and
        ``reason`` for each figure that is None. Every figure is None, with
        ``reason``, when the attribution is non-finite or ``|f(x) - f(baseline)|`` is
        near zero.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid, attribute
    >>> g = TFGrid(8000, n_fft=256, hop_length=64)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1), torch.nn.Sigmoid())
    >>> y = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    >>> _ = net(torch.zeros(1, 129, g.n_frames(4000)))
    >>> spec = ModelSpec(net, input_kind="stft", grid=g, output_kind="clip_scores", classes=["x"])
    >>> d = deletion_test(spec, attribute(spec, y, "class=x", method="ixg"), n_random=2)
    >>> sorted(k for k in d if k.startswith("auc"))
    ['auc', 'auc_random', 'auc_random_std']
    """
    fr = DEFAULT_FRACTIONS if fractions is None else np.asarray(fractions, float)
    if not np.any(np.isclose(fr, 0.1)) or not np.any(np.isclose(fr, 0.0)):
        fr = np.unique(np.concatenate([fr, [0.0, 0.1]]))
    n_random = max(1, int(n_random))
    keys = ("auc", "auc_random", "auc_random_std", "drop_at_10", "drop_at_10_random", "drop_at_10_random_std",
            "drop_ratio")
    d = deletion_curve(spec, attr, fractions=fr, seed=seed, batch_size=batch_size)
    out: dict = {**{k: None for k in keys}, "f_x": d["f_x"], "f_baseline": d["f_baseline"], "n_random": n_random,
                 "curve_range": list(CURVE_RANGE), "curves": {"deletion": d}, "warnings": []}
    if insertion:
        out.update(insertion_auc=None, insertion_auc_random=None, insertion_auc_random_std=None)
    if d["auc"] is None:
        out["reason"] = d["reason"]
        return out
    rand = [deletion_curve(spec, attr, order="random", fractions=fr, seed=seed + 1 + i, batch_size=batch_size)
            for i in range(n_random)]
    aucs_r = np.array([r["auc"] for r in rand])
    drop = 1.0 - _at(d, 0.1)
    drops_r = np.array([1.0 - _at(r, 0.1) for r in rand])
    out.update(auc=d["auc"], auc_random=float(aucs_r.mean()), auc_random_std=float(aucs_r.std()),
               drop_at_10=float(drop), drop_at_10_random=float(drops_r.mean()),
               drop_at_10_random_std=float(drops_r.std()))
    out["curves"]["deletion_random"] = _mean_curve(rand)
    if drops_r.mean() >= MIN_RANDOM_DROP:
        out["drop_ratio"] = float(drop / drops_r.mean())
    else:
        out["drop_ratio_reason"] = (f"deleting a random 10 % of the bins moves the score by {drops_r.mean():.1%} of "
                                    f"f(x) - f(baseline) (under {MIN_RANDOM_DROP:.0%}): a ratio to it would be noise")
    if out["auc_random"] - d["auc"] < max(2 * out["auc_random_std"], MIN_AUC_GAIN):
        early = drop - float(drops_r.mean()) >= max(2 * float(drops_r.std()), MIN_EARLY_GAIN)
        if early:
            # the top bins matter (their deletion moves the target far more than random bins do), but the target
            # comes back as more of the clip is deleted: a model that is not monotonic in its input, not a bad map
            out["warnings"].append(
                f"deletion AUC {d['auc']:.3f} is no lower than random orders' {out['auc_random']:.3f} only because the "
                f"target rebounds as more bins are deleted: deleting the top 10 % moves it {drop:.0%} of the way to the "
                f"baseline (random 10 %: {drops_r.mean():.0%}). The map ranks the bins that matter first; the model is "
                "not monotonic in them, so read the early drop, not the AUC")
        else:
            out["warnings"].append(f"deletion no better than random: AUC {d['auc']:.3f} vs {out['auc_random']:.3f} "
                                   f"± {out['auc_random_std']:.3f} for random orders; the map does not rank bins by "
                                   "their effect. Try IG (steps='auto', spacing='adaptive'), another baseline, or "
                                   "another target")
    if insertion:
        ins = deletion_curve(spec, attr, mode="insertion", fractions=fr, seed=seed, batch_size=batch_size)
        ins_r = [deletion_curve(spec, attr, mode="insertion", order="random", fractions=fr, seed=seed + 1 + i,
                                batch_size=batch_size) for i in range(n_random)]
        a_r = np.array([r["auc"] for r in ins_r])
        out.update(insertion_auc=ins["auc"], insertion_auc_random=float(a_r.mean()),
                   insertion_auc_random_std=float(a_r.std()))
        out["curves"]["insertion"] = ins
        out["curves"]["insertion_random"] = _mean_curve(ins_r)
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

    from ..attribution.isolation import preserved_model

    order: list = []
    with preserved_model(spec.model) as model, torch.no_grad():  # hooks on the shadow: the user's model is untouched
        cands = [(n, m) for n, m in model.named_modules()
                 if n and any(True for _ in m.parameters(recurse=False)) and not any(k in type(m).__name__ for k in _NORMS)]
        handles = [m.register_forward_hook(lambda mod, i, o, name=n: order.append(name) if name not in order else None)
                   for n, m in cands]
        try:
            dataclasses.replace(spec, model=model).forward(np.asarray(y[: min(len(y), spec.sample_rate)], np.float32))
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
        from ..attribution.methods import find_layer as _find_layer

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
