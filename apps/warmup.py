"""Warm the caches when the server starts, so a visitor's first page does not pay for the first model run.

``probe app`` sets ``PROBE_APP_WARMUP=1``; the router then starts :func:`start` once per
process (``st.cache_resource``). A background thread loads every trained zoo model and
computes, for its first example, what the pages show first under their defaults — the
spectrogram, the outputs, the default layer, the embedding map (PCA) — cheapest first, the
default model before the others. Attribution is warmed last (IG with ``steps="auto"`` may take
minutes on a shared CPU). Each step is timed into :data:`LOG` (the Overview can show it).
"""

from __future__ import annotations

import os
import threading
import time

ENV = "PROBE_APP_WARMUP"
#: (what, model ref, seconds) of each warm-up step done so far
LOG: list = []


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0", "false", "no")


def _steps(ref):
    from probe.pipelines import AttributionOptions, EmbeddingOptions

    from . import cache, state
    from .menus import target_options

    model = cache.get_model(ref)
    ex = cache.get_example(state.example_refs(ref, 1)[0], model.sample_rate)
    yield "spectrogram", lambda: cache.cached_spectrogram(model, ex)
    yield "outputs", lambda: cache.cached_outputs(model, ex)
    yield "default layer", lambda: cache.cached_default_layer(model, ex)
    yield "embeddings", lambda: cache.cached_embeddings(
        model, ex, EmbeddingOptions(layer=cache.cached_default_layer(model, ex, "embeddings"),
                                    n_clusters=int(model.spec.n_sources or 2)))
    targets = target_options(model.spec, ex)
    yield "attribution", lambda: cache.cached_attribution(
        model, ex, AttributionOptions(target=targets[0] if targets else None, top_percent=10.0))


def run(refs=None) -> None:
    """Warm every step for ``refs`` (default: trained zoo models, the default one first); errors are logged, not raised."""
    from . import state

    refs = list(refs or [e["ref"] for e in state.zoo_models() if e.get("trained")])
    first, rest = refs[:1], refs[1:]
    plan = []
    for ref in first:  # everything for the default model, attribution included
        plan.append((ref, None))
    for ref in rest:  # the cheap steps for the others, then their attributions
        plan.append((ref, {"spectrogram", "outputs", "default layer", "embeddings"}))
    for ref in rest:
        plan.append((ref, {"attribution"}))
    for ref, only in plan:
        try:
            for what, fn in _steps(ref):
                if only is not None and what not in only:
                    continue
                t0 = time.perf_counter()
                try:
                    fn()
                except Exception as exc:  # a model that cannot do this step: the page will say why
                    LOG.append((what, ref, f"{type(exc).__name__}: {exc}"))
                    continue
                LOG.append((what, ref, round(time.perf_counter() - t0, 2)))
        except Exception as exc:
            LOG.append(("load", ref, f"{type(exc).__name__}: {exc}"))


def start() -> threading.Thread:
    """Start :func:`run` in a daemon thread at low priority."""
    def target():
        try:
            os.nice(5)  # visitors' requests first
        except (AttributeError, OSError):
            pass
        run()

    t = threading.Thread(target=target, name="probe-warmup", daemon=True)
    t.start()
    return t
