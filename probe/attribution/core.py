"""The public :func:`attribute`: one scalar of a model's output explained as a T-F map.

The pieces live next door: the T-F domain (:mod:`.domain`), one builder per method in a
registry (:mod:`.methods`), long-audio chunking (:mod:`.chunking`), checks against
meaningless figures (:mod:`.health`), the shadow model that keeps shared models untouched
(:mod:`.isolation`) and the result object (:mod:`.result`). Captum does the attribution
(Saliency, InputXGradient, IntegratedGradients, GradientShap, DeepLift, NoiseTunnel,
Occlusion, FeatureAblation, LayerGradCam).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext

import numpy as np

from ..errors import AnalysisError, SpecError
from .baselines import make_baseline
from .chunking import DEFAULT_CHUNK_SECONDS, MAX_UNCHUNKED_SECONDS, fade_weights, plan_chunks
from .domain import TFForward, analysis, analysis_stft
from .health import locate_nonfinite, map_warnings, nonfinite_message, target_warnings, TINY_DIFFERENCE
from .isolation import preserved_model, seeded
from .methods import AUTO_STEPS, COMPLETE, METHODS, MethodOptions, find_layer, method_name, run_method
from .result import Attribution
from .targets import ClassTarget, EmbeddingTarget, FeatureTarget, Target, TargetContext, as_target, default_target

__all__ = ["Attribution", "attribute", "default_target_for", "METHODS", "preserved_model", "TFForward", "analysis_stft"]

# names kept for code written against the single-module version
_plan_chunks, _fade_weights, _find_layer, _Options = plan_chunks, fade_weights, find_layer, MethodOptions
_QUADRATURES = ("nested", "gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


def attribute(spec, y, target=None, *, method: str = "ig", baseline="silence", steps="auto",
              spacing: str | None = None, path: str = "straight", quadrature: str | None = None,
              internal_batch_size: int = 8, smooth: str | None = None, nt_samples: int = 8, nt_stdev: float = 0.05,
              layer=None, layer_axes: str | None = None, patch=None, stride=None, bands: int = 12,
              segment_seconds: float = 0.25, feature_mask=None, n_baselines: int = 8, abs: bool = True,
              chunk_seconds: float | None = None, overlap_seconds: float = 2.0,
              max_unchunked_seconds: float = MAX_UNCHUNKED_SECONDS, tol: float = 0.01, progress: bool = False,
              seed: int = 0, sr: int | None = None) -> Attribution:
    """Explain one scalar of a model's output as a map over the clip's magnitude STFT.

    Parameters
    ----------
    spec : ModelSpec
        The model and the meaning of its input/output (any input kind).
    y : np.ndarray [shape=(n,)] or AudioExample
        The clip, at ``spec.sample_rate`` (or at ``sr``, then resampled). With an
        :class:`~probe.audio.AudioExample` and no target, the target is its first
        event (detection) or source 1 (separation).
    target : str, Target or callable, optional
        What to explain (see :mod:`probe.attribution.targets`): ``"class=bell,t=3:3.5"``,
        ``"source=1,f=200:1000"``, a :class:`Target`, or ``fn(out[, ctx]) -> (B,)``.
        Default: the example's first event, source 1, or the top-scoring class.
    method : str
        One of :data:`METHODS`: ``saliency``, ``ixg``, ``ig``, ``gradshap``, ``deeplift``,
        ``occlusion``, ``ablation``, ``gradcam``.
    baseline : str or array [shape=(F, T)]
        ``"silence"``, ``"noise[:DB]"``, ``"smooth[:SECONDS]"``, ``"bandstop:LO:HI"``
        (see :mod:`probe.attribution.baselines`). Used by IG, GradientShap, DeepLift,
        occlusion, ablation and the deletion test.
    path : {"straight", "geometric"}
        IG's path from the baseline to the clip: the straight line in ``|X|`` (the
        original method), or ``b^(1-a) * x^a``, straight in ``log|X|`` (needs a baseline
        above zero, e.g. ``"noise:-60"``). Both explain ``f(x) - f(b)`` over the same bins
        (completeness holds for any path); the geometric path keeps log / log-mel front
        ends from concentrating the whole integrand near ``a = 0``, so fewer steps reach a
        given completeness error (docs/findings_attribution.md).
    spacing : {"adaptive", "linear", "db[:D]"}, optional
        Default ``"adaptive"`` for IG on the straight path (``"linear"`` otherwise). How IG walks its straight path ``b + a (x - b)`` (the path and the integral stay the
        same, completeness included; only the quadrature nodes move). ``"linear"`` is
        Captum's own. ``"db:60"`` spaces ``a`` evenly in dB over 60 dB. ``"adaptive"``
        first scores the clip at 64 scales (forward passes only), then puts the nodes where
        the score changes: a detector that switches on within a few dB (the zoo CRNN rises
        from 0.01 to 0.45 between 0.6 % and 0.9 % of the clip's amplitude) otherwise gets
        one or two nodes on its whole transition and an erratic completeness error.
    quadrature : str, optional
        The rule for IG's integral. Default: ``"nested"`` with ``steps="auto"`` on the
        straight path, else ``"gausslegendre"``. ``"nested"`` (straight path only) is
        probe's open trapezoid rule on a doubling grid
        (:class:`~probe.attribution.methods.NestedIG`): each doubling of ``steps="auto"``
        reuses every gradient already computed, so reaching 127 nodes costs 127 gradient
        evaluations, and neither end of the path is evaluated. ``"gausslegendre"`` (best
        for smooth integrands; ``steps="auto"`` then reruns from scratch at each count) and
        ``"riemann_trapezoid"`` / ``"riemann_middle"`` / … are Captum's rules.
    steps : int or "auto"
        IG quadrature points / GradientShap samples. ``"auto"`` (default): IG raises its
        points through :data:`~probe.attribution.methods.AUTO_STEPS` (31, 63, …, 511:
        the nested rule on 32, 64, …, 512 intervals) until the completeness error is at
        most ``tol`` and reports the count in ``steps_used`` (a warning when 511 points do
        not reach it); GradientShap takes 50 samples. The zoo detectors needed 16–512 steps (linear spacing) or 8–128
        (``spacing="adaptive"``) for 1 % (docs/findings_attribution.md).
    tol : float
        Completeness target of ``steps="auto"`` (relative to ``|f(x) - f(baseline)|``;
        when that difference is near zero, relative to 1 % of the output's scale).
    internal_batch_size : int
        Inputs per forward pass inside Captum (bounds memory).
    smooth : {"smoothgrad", "smoothgrad_sq", "vargrad"}, optional
        Wrap the method in Captum's NoiseTunnel with ``nt_samples`` noisy copies of
        standard deviation ``nt_stdev * (max|X| - min|X|)``.
    layer, layer_axes
        GradCAM layer (module path or module; default the last Conv1d/Conv2d) and the
        order of its two spatial axes (``"ft"``/``"tf"``, read from the input layout).
    patch, stride : (int, int)
        Occlusion window and step in (bins, frames); default ``(F // 16, 0.2 s)``, half-window strides.
    bands, segment_seconds, feature_mask
        FeatureAblation regions: mel-spaced bands × fixed segments, or an explicit
        integer ``(F, T)`` mask.
    n_baselines : int
        GradientShap baseline distribution size (the baseline times log-normal gains).
    abs : bool
        Saliency: absolute gradients (Captum's default).
    chunk_seconds, overlap_seconds, max_unchunked_seconds
        Clips longer than ``max_unchunked_seconds`` (60 s; or than ``chunk_seconds`` when given)
        are attributed chunk by chunk (default 10 s chunks; stated in ``Attribution.chunk_seconds``) with ``overlap_seconds`` of
        overlap, and the maps cross-faded; memory is bounded by one chunk. Exact away from
        chunk edges when the model's receptive field is shorter than half the overlap and
        the target is additive over frames (mean, energy). Models that see the whole clip
        (bidirectional RNNs) and ``reduce="max"`` / cluster targets are approximated
        chunk by chunk (each chunk explains its own share, max or clustering).
    progress : bool
        Show a tqdm bar over chunks.
    seed : int
        For GradientShap / NoiseTunnel draws.

    Returns
    -------
    Attribution
        ``.map [shape=(F, T)]`` on ``spec.grid`` with ``.times``, ``.freqs``, completeness,
        ``.steps_used``, ``.chunk_seconds`` and ``.warnings`` (non-finite values and the module
        they come from, a completeness error above ``tol``, a near-zero target or difference
        from the baseline, a near-empty map — each with what to try).

    Notes
    -----
    The user's model is never modified, not even for the duration of the call: the
    attribution runs on a shadow that shares its weights (see
    :mod:`probe.attribution.isolation`), so threads sharing one model (captures, forwards,
    other attributions) are unaffected.

    Raises
    ------
    AnalysisError
        Unknown method/target/baseline, or a method the model does not allow (DeepLift on
        recurrent layers).
    SpecError
        A waveform model whose grid cannot invert the clip (reconstruction above -60 dB).

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> g = TFGrid(8000, n_fft=256, hop_length=64)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    >>> y = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    >>> _ = net(torch.zeros(1, 129, g.n_frames(4000)))
    >>> spec = ModelSpec(net, input_kind="stft", grid=g, output_kind="clip_scores", classes=["x"])
    >>> a = attribute(spec, y, "class=x", method="ig")
    >>> a.map.shape, a.completeness_error <= 0.01, a.steps_used
    ((129, 63), True, 31)
    """
    from ..adapter import ModelSpec

    if not isinstance(spec, ModelSpec):
        raise SpecError(f"attribute needs a ModelSpec (the model plus its grid and output kind), given {type(spec).__name__}; "
                        "wrap it: ModelSpec(model, input_kind=..., grid=TFGrid(...), output_kind=...)")
    t_start = time.perf_counter()
    m = method_name(method)
    if smooth is not None and smooth not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        raise AnalysisError(f"smooth must be smoothgrad, smoothgrad_sq or vargrad, given {smooth!r}")
    if quadrature is None:
        quadrature = ("nested" if m == "ig" and path == "straight" and smooth is None
                      and isinstance(steps, str) else "gausslegendre")
    if quadrature not in _QUADRATURES:
        raise AnalysisError(f"unknown quadrature {quadrature!r}; known: {', '.join(_QUADRATURES)}")
    if quadrature == "nested" and (m != "ig" or path != "straight" or smooth is not None):
        raise AnalysisError("quadrature='nested' applies to method='ig' on the straight path without smoothing; "
                            f"given method={m!r}, path={path!r}, smooth={smooth!r}")
    if path not in ("straight", "geometric"):
        raise AnalysisError(f"path must be 'straight' or 'geometric', given {path!r}")
    if path == "geometric" and m != "ig":
        raise AnalysisError(f"path='geometric' applies to method='ig' only, given method={m!r}")
    if not 0 < float(tol) < 1:
        raise AnalysisError(f"tol must be in (0, 1), given {tol!r}")
    n_steps = _check_steps(steps, m)
    if spacing is None:
        spacing = "adaptive" if m == "ig" and path == "straight" and smooth is None else "linear"
    y, example = _coerce_audio(spec, y, sr)
    duration = len(y) / spec.sample_rate
    if chunk_seconds is None and duration > max_unchunked_seconds:
        chunk_seconds = DEFAULT_CHUNK_SECONDS
    if target is None:
        tgt = default_target_for(spec, example if example is not None else y, chunk_seconds=chunk_seconds,
                                 max_unchunked_seconds=max_unchunked_seconds)
    else:
        tgt = as_target(target, spec)
    if (isinstance(tgt, EmbeddingTarget) and tgt.cluster is not None and tgt.bins is None
            and spec.output_kind == "tf_embeddings" and chunk_seconds is None):
        # cluster j of the one shared clustering (the Embeddings page's, probe embed's), not a k-means of its own
        from ..analyze.embedding_clusters import shared_clustering

        tgt = EmbeddingTarget.from_clustering(shared_clustering(spec, example if example is not None else y,
                                                                n_clusters=tgt.n_clusters), tgt.cluster, of=tgt.of)
    opts = MethodOptions(m, steps=n_steps, internal_batch_size=int(internal_batch_size), smooth=smooth,
                         nt_samples=int(nt_samples), nt_stdev=float(nt_stdev), layer=layer, layer_axes=layer_axes,
                         patch=patch, stride=stride, bands=int(bands), segment_seconds=float(segment_seconds),
                         feature_mask=feature_mask, n_baselines=int(n_baselines), abs=bool(abs), seed=int(seed),
                         baseline=baseline, path=path, quadrature=quadrature,
                         spacing=_check_spacing(spacing, m, path))
    if m == "gradcam" and not isinstance(layer, (str, type(None))):
        opts.layer = find_layer(spec.model, layer)[0]  # by name: the attribution runs on a shadow of the model
    with seeded(seed, draws=opts.draws), preserved_model(spec.model) as shadow:  # one shadow for every chunk
        return _attribute(spec, y, tgt, opts, chunk_seconds, float(overlap_seconds), progress, float(tol), t_start,
                          shadow)


def _check_steps(steps, method):
    if isinstance(steps, str):
        if steps.strip().lower() != "auto":
            raise AnalysisError(f"steps must be a positive integer or 'auto', given {steps!r}")
        return "auto" if method == "ig" else 50
    try:
        n = int(steps)
    except (TypeError, ValueError):
        raise AnalysisError(f"steps must be a positive integer or 'auto', given {steps!r}") from None
    if n < 1:
        raise AnalysisError(f"steps must be a positive integer or 'auto', given {steps!r}")
    return n


def _check_spacing(spacing, method, path) -> str:
    spacing = str(spacing or "linear").strip().lower()
    kind, _, arg = spacing.partition(":")
    ok = kind in ("linear", "adaptive") and not arg
    if kind == "db":
        try:
            ok = float(arg or 60.0) > 0
        except ValueError:
            ok = False
    if not ok:
        raise AnalysisError(f"spacing must be 'linear', 'adaptive' or 'db[:D]' (D > 0 dB), given {spacing!r}")
    if kind != "linear" and (method != "ig" or path != "straight"):
        raise AnalysisError(f"spacing={spacing!r} applies to method='ig' on the straight path; "
                            f"given method={method!r}, path={path!r}")
    return spacing


def _coerce_audio(spec, y, sr):
    from ..audio import AudioExample, load_audio, validate_audio

    example = None
    if isinstance(y, AudioExample):
        example, sr, y = y, y.sr, y.y
    if not isinstance(y, np.ndarray):
        import torch

        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    sr = spec.sample_rate if sr is None else int(sr)
    if sr != spec.sample_rate:
        y, _ = load_audio(y, spec.sample_rate, source_sr=sr, max_seconds=None)
    return validate_audio(y, sr=spec.sample_rate, max_seconds=None), example


def default_target_for(spec, audio, *, sr: int | None = None, chunk_seconds: float | None = None,
                       max_unchunked_seconds: float = MAX_UNCHUNKED_SECONDS):
    """The target :func:`attribute` explains when it is given none, for this model and clip.

    :func:`~probe.attribution.targets.default_target` (an example's first event, source 1,
    cluster 1); for a detector without events, the class with the highest mean score on the
    clip; for an encoder (``features``), the unit that varies most over the clip (both run the
    model once). The CLI, the report and the app all start from this target.

    Parameters
    ----------
    spec : ModelSpec
    audio : np.ndarray or AudioExample
    sr : int, optional
        Sample rate of a bare array (default: the model's).

    Returns
    -------
    Target

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    >>> spec = ModelSpec(net, input_kind="stft", grid=TFGrid(8000, n_fft=256, hop_length=64),
    ...                  output_kind="clip_scores", classes=["a", "b", "c"])
    >>> _ = net(torch.zeros(1, 129, 63))
    >>> str(default_target_for(spec, np.zeros(4000, np.float32))) in ("class=a", "class=b", "class=c")
    True
    """
    y, example = _coerce_audio(spec, audio, sr)
    tgt = default_target(spec, example)
    if tgt is not None:
        return tgt
    if spec.output_kind == "features":
        import torch

        with preserved_model(spec.model) as model, torch.no_grad():
            out = dataclasses.replace(spec, model=model).forward(y[:int(MAX_UNCHUNKED_SECONDS * spec.sample_rate)])
        return FeatureTarget.most_active(out, spec)
    if spec.output_kind in ("frame_probs", "clip_scores"):
        duration = len(y) / spec.sample_rate
        if chunk_seconds is None and duration > max_unchunked_seconds:
            chunk_seconds = DEFAULT_CHUNK_SECONDS
        c = _top_class(spec, y, int((chunk_seconds or duration) * spec.sample_rate))
        return ClassTarget((spec.classes or [])[c] if spec.classes and c < len(spec.classes) else c)
    raise AnalysisError(f"a {spec.output_kind!r} model needs an explicit target (a callable or Target)")


def _top_class(spec, y, chunk_samples):
    import torch

    scores = []
    with preserved_model(spec.model) as model, torch.no_grad():
        s_spec = dataclasses.replace(spec, model=model)
        for s in range(0, len(y), chunk_samples):
            out = s_spec.forward(y[s:s + chunk_samples])
            scores.append(out[0].mean(-1) if spec.output_kind == "frame_probs" else out[0])
    return int(torch.stack(scores).mean(0).argmax())


def _typical_scale(spec, bound, out0, ctx):
    """The target's typical size on this clip, and what reaches it (class targets on probabilities only)."""
    if not isinstance(bound, ClassTarget) or bound.score != "prob" or not spec.classes:
        return None, None
    vals = []
    for i in range(len(spec.classes)):
        try:
            vals.append(float(dataclasses.replace(bound, cls=i)(out0, ctx)[0]))
        except AnalysisError:
            return None, None
    i = int(np.nanargmax(vals)) if np.isfinite(vals).any() else 0
    return abs(vals[i]), f"class {spec.classes[i]!r}"


def _attribute(spec, y, tgt, opts, chunk_seconds, overlap_seconds, progress, tol, t_start, shadow):
    import torch

    g = spec.grid
    n = len(y)
    duration = n / spec.sample_rate
    chunked = chunk_seconds is not None and duration > chunk_seconds
    warn: list[str] = []
    if not chunked:
        res = _attribute_segment(spec, y, tgt, TargetContext(spec, n), opts, tol, shadow)
        mag, base, bname = res["mag"], res["base"], res["baseline_name"]
        amap = res["map"]
        info = dict(res["extra"])
        delta, cerr, steps_used = res["delta"], res["completeness_error"], res["steps_used"]
        fx, fb, err_db, track, bound = res["fx"], res["fb"], res["err_db"], res["track"], res["target"]
        nonfinite, scale = res["nonfinite"], res["scale"]
        warn += res["warnings"]
    else:
        spans = plan_chunks(n, spec.sample_rate, g.hop_length, float(chunk_seconds), overlap_seconds,
                            align=g.hop_length * 32)
        T = g.n_frames(n)
        amap = torch.zeros(g.n_freqs, T)
        fades = fade_weights(spans, g.hop_length, T)
        deltas, errs, cinfo, extra, used = [], [], [], {}, []
        nonfinite, scale = None, None
        span = getattr(tgt, "t", None)
        from tqdm.auto import tqdm

        for i, ((s, e), (a, w)) in enumerate(tqdm(list(zip(spans, fades)), desc="attribution", unit="chunk",
                                                  disable=not progress)):
            t0, t1 = s / spec.sample_rate, e / spec.sample_rate
            if span is not None and (span[1] <= t0 or span[0] >= t1):
                cinfo.append({"start": t0, "end": t1, "skipped": True})
                continue
            ctx = TargetContext(spec, e - s, offset_seconds=t0, total_seconds=duration)
            r = _attribute_segment(spec, y[s:e], tgt, ctx, opts, tol, shadow)
            k = min(r["map"].shape[-1], len(w))
            amap[:, a:a + k] += torch.as_tensor(w[:k])[None, :] * r["map"][:, :k]
            extra = r["extra"]
            if r["steps_used"] is not None:
                used.append(r["steps_used"])
            if r["nonfinite"] is not None and nonfinite is None:
                nonfinite = {**r["nonfinite"], "chunk": i, "chunk_start": t0}
                warn += [f"chunk {i} ({t0:.1f}-{t1:.1f} s): {w_}" for w_ in r["warnings"] if "NaN/Inf" in w_]
            if r["delta"] is not None and np.isfinite(r["delta"]):
                deltas.append(abs(r["delta"]))
                errs.append(abs(r["fx"] - r["fb"]))
            cinfo.append({"start": t0, "end": t1, "completeness_error": r["completeness_error"],
                          "reconstruction_error_db": r["err_db"], "steps_used": r["steps_used"]})
            del r
        mag = g.stft(torch.as_tensor(y)).abs()
        base, bname = make_baseline(opts.baseline, mag, grid=g, y=y)
        # chunks explain different shares of the target: weigh each chunk's error by its share
        delta = float(np.sum(deltas)) if deltas else None
        cerr = (float(np.sum(deltas) / max(np.sum(errs), 1e-12))
                if deltas and opts.method in COMPLETE and not opts.smooth and nonfinite is None else None)
        fx = fb = None
        rec = [c["reconstruction_error_db"] for c in cinfo if c.get("reconstruction_error_db") is not None]
        err_db = float(np.max(rec)) if rec else None
        track = None
        bound = tgt
        steps_used = max(used) if used else None
        info = {**extra, "chunks": cinfo, "chunks_n": len(spans), "chunk_seconds": float(chunk_seconds),
                "overlap_seconds": float(overlap_seconds)}
        warn += map_warnings(amap.numpy(), g.bin_frequencies()) if nonfinite is None else []
    if nonfinite is not None:
        delta = cerr = None
    elif opts.method in COMPLETE and cerr is not None and not opts.smooth:
        limit = tol if opts.steps == "auto" else 0.05
        tiny = any(w_.startswith("near-zero difference") for w_ in warn)
        if cerr > limit and not tiny:
            if opts.method == "ig":
                how = (f"after {steps_used} steps (the most steps='auto' tries); try spacing='adaptive', "
                       f"path='geometric' with baseline='noise:-60', or quadrature="
                       f"{'gausslegendre' if opts.quadrature == 'nested' else 'nested'!r}"
                       if opts.steps == "auto" else
                       "raise steps, or use steps='auto' / spacing='adaptive' (the score may switch on within a few "
                       "dB along the path)")
            else:
                how = "the method's rules do not cover every nonlinearity of this model; use method='ig'"
            warn.append(f"completeness error {cerr:.1%} (above {limit:.0%}): {how}")
    info["steps"] = steps_used
    info["warnings"] = warn
    info["seconds"] = round(time.perf_counter() - t_start, 4)
    info["baseline"] = bname
    if scale is not None:
        info["output_scale"] = scale
    def f32(t):  # no copy when already float32 on the CPU (long audio: each array is F x T)
        return np.asarray(t.detach().cpu().numpy(), dtype=np.float32)

    return Attribution(map=f32(amap), times=g.frame_times(amap.shape[-1]), freqs=g.bin_frequencies(),
                       grid=g, method=opts.method, target=bound, input_magnitude=f32(mag), convergence_delta=delta,
                       completeness_error=cerr, baseline=f32(base),
                       baseline_name=bname, target_value=_finite_or_none(fx), baseline_value=_finite_or_none(fb),
                       audio=y, reconstruction_error_db=err_db, track=track, warnings=warn, steps_used=steps_used,
                       chunk_seconds=float(chunk_seconds) if chunked else None, nonfinite=nonfinite, info=info)


def _finite_or_none(v):
    return None if v is None or not np.isfinite(v) else float(v)


def _converged(delta, fx, fb, scale, tol) -> bool:
    """IG's completeness error at most ``tol`` (relative to 1 % of the scale when f(x) - f(b) is near zero)."""
    if delta is None or not np.isfinite(delta):
        return True  # nothing more steps can fix
    ref = max(abs(fx - fb), TINY_DIFFERENCE * max(abs(fx), abs(fb), abs(scale or 0.0)), 1e-12)
    return abs(delta) <= tol * ref


def _attribute_segment(spec, y, tgt: Target, ctx: TargetContext, o: MethodOptions, tol: float, shadow=None):
    """Attribution of one segment (the whole clip, or a chunk), on ``shadow`` (made here when None)."""
    import torch

    mag, phase, err_db, rec = analysis(spec, y)
    p = next(iter(spec.model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    mag = mag.to(device, dtype)
    if phase is not None:
        phase = phase.to(device)
    base, bname = make_baseline(o.baseline, mag, grid=spec.grid, y=y)
    x = mag[None]
    mag_range = float(mag.max() - mag.min())
    warn: list[str] = []
    with (nullcontext(shadow) if shadow is not None else preserved_model(spec.model)) as model:
        fwd = TFForward(spec, tgt, ctx, phase, model=model, y=rec)
        with torch.no_grad():
            ctx.magnitude = x
            if fwd.waveform_model:  # the clip's and the baseline's waveforms, each made once
                y_x, y_b = fwd.path_ends(x, base[None])
                out0 = spec.select_output(model(spec.to_model_layout(y_x)))
            else:
                out0 = fwd.output(x)
            bound = tgt.bind(out0, ctx)
            fwd.target = bound
            fx = float(bound(out0, ctx)[0])
            track = bound.track(out0, ctx)
            scale, top = _typical_scale(spec, bound, out0, ctx)
            if fwd.waveform_model and spec.output_kind not in ("masks", "tf_embeddings"):
                ctx.magnitude = base[None]
                fb = float(fwd.from_waveform(y_b)[0])
            else:
                fb = float(fwd(base[None])[0])
            del out0
        state: dict = {}
        tried = {}
        if o.method == "ig" and o.steps == "auto" and not o.smooth:
            for n_steps in AUTO_STEPS:
                attr, delta, extra = run_method(dataclasses.replace(o, steps=n_steps), fwd, x, base[None], mag_range, state)
                delta = _ig_delta(attr, delta, fx, fb)
                tried[n_steps] = None if delta is None or not np.isfinite(delta) else abs(delta) / max(abs(fx - fb), 1e-12)
                if _converged(delta, fx, fb, scale, tol) or not bool(torch.isfinite(attr).all()):
                    break
            steps_used = n_steps
            extra["steps_tried"] = tried
            # nested rule: every node evaluated once; otherwise each count from scratch
            extra["gradient_evaluations"] = (state["nested"].evaluations if "nested" in state
                                             else int(sum(tried)))
        else:
            oo = dataclasses.replace(o, steps=AUTO_STEPS[0]) if o.steps == "auto" else o
            attr, delta, extra = run_method(oo, fwd, x, base[None], mag_range, state)
            if o.method == "ig" and not o.smooth:
                delta = _ig_delta(attr, delta, fx, fb)
            steps_used = oo.steps if o.method in ("ig", "gradshap") else None
        nonfinite = None
        attr_ok = bool(torch.isfinite(attr).all())
        if not (np.isfinite(fx) and np.isfinite(fb) and attr_ok and (delta is None or np.isfinite(delta))):
            what = "the target f(x)" if not np.isfinite(fx) else (
                "f(baseline)" if not np.isfinite(fb) else ("the map" if not attr_ok else "the convergence delta"))
            where = locate_nonfinite(fwd, [x[0], 0.5 * (x[0] + base), base])
            nonfinite = {"what": what, **(where or {"stage": None, "module": None, "module_type": None}),
                         "map_nonfinite_fraction": float((~torch.isfinite(attr)).float().mean())}
            warn.append(nonfinite_message(where, spec, what))
    cerr = None
    if nonfinite is None:
        if o.method in COMPLETE and delta is not None and not o.smooth:
            # Captum's delta is sum(attr) - (f(x) - f(b)); relative to the explained difference
            cerr = abs(delta) / max(abs(fx - fb), 1e-12)
        warn += target_warnings(bound, fx, fb, scale, top=top)
        warn += map_warnings(attr.numpy(), spec.grid.bin_frequencies())
    return {"map": attr, "mag": mag.detach().cpu(), "base": base.detach().cpu(), "baseline_name": bname, "delta": delta,
            "completeness_error": cerr, "fx": fx, "fb": fb, "err_db": err_db, "track": track, "target": bound,
            "extra": extra, "steps_used": steps_used, "nonfinite": nonfinite, "scale": scale, "warnings": warn}


def _ig_delta(attr, delta, fx, fb):
    """IG's convergence delta ``sum(map) - (f(x) - f(b))`` (from the map when the method did not return one)."""
    if delta is not None:
        return delta
    return float(attr.double().sum()) - (fx - fb)
