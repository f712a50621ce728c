"""Warm the caches when the server starts, so a visitor's first page does not pay for the first model run.

``probe app`` sets ``PROBE_APP_WARMUP=1``; the router then starts :func:`start` once per
process (``st.cache_resource``). A background thread loads every trained zoo model and
computes, for its first example, exactly what each page computes under its defaults (the
same cache calls with the same options, so the page finds them): spectrogram, outputs,
default layers, the shared clustering and PCA map, the captured default layer, the filter
analysis, the NMF comparison and, last, the attribution (IG until completeness ≤ 1 % may take
minutes on a shared CPU). The work goes in three passes over the models (the default model
first in each): the Overview of every model (model, spectrogram, outputs and, for an embedding
model, the shared PCA clustering its Overview plays), so any model's first page is ready
soonest; then the other cheap pages of every model; then the attributions.

Every result also lands in the on-disk cache (:mod:`apps.diskcache`), so after one warm-up a
restarted server fills its memory caches from disk in seconds. Each step is timed into
:data:`LOG`; :data:`DONE` is set when the thread has finished.

Visitors come first: before each step the thread waits (up to :data:`YIELD_S` seconds) while a
visitor's page script is running, so a first page does not share the process (its GIL and the
2 cores) with the warm-up. The first page after a start is the one that starts the warm-up, so it
runs alone; the warm-up resumes when it has been sent. The seconds waited add up in :data:`YIELDED`.
"""

from __future__ import annotations

import os
import threading
import time

ENV = "PROBE_APP_WARMUP"
#: (what, model ref, seconds or the error) of each warm-up step done so far
LOG: list = []
#: set when :func:`run` has finished (in the warm-up thread)
DONE = threading.Event()
#: the steps of the Overview page (the first page a visitor sees), done for every model before anything else
OVERVIEW = ("spectrogram", "outputs", "overview clustering")
#: the steps that run the model for seconds to minutes; done after every model's cheap steps
HEAVY = ("attribution",)
#: the passes of :func:`run`, in order
PASSES = ("overview", "cheap", "heavy")
#: seconds the thread waits at most, before a step, for visitors' page runs to end (then it goes on anyway)
YIELD_S = 30.0
#: seconds waited for visitors so far (one number, in a list to update in place)
YIELDED = [0.0]
#: third-party modules that page scripts and the warm-up both import lazily. Two threads importing
#: pandas at the same time can hand one of them a half-initialised module (a browser walk showed
#: "partially initialized module 'pandas' has no attribute 'Series'" on the Filters page while the
#: warm-up ran), so the warm-up imports these first, one at a time, never while a page script runs;
#: a page script waits (:func:`wait_for_imports`) while one of these imports is under way. Only the
#: dataframe stack: importing scipy.signal, scikit-learn and captum here too (4.3 s of imports holding
#: the GIL) made the first page after a start 15 s instead of 6-9 s in a browser walk
SHARED_IMPORTS = ("pandas", "pyarrow")
#: held by the warm-up while it imports one of :data:`SHARED_IMPORTS`
IMPORT_LOCK = threading.Lock()


def visitors_running() -> int:
    """How many sessions are running their page script now (0 outside a Streamlit server).

    Reads the Streamlit runtime's sessions (each has a running / not running state); any error
    in that private structure counts as nobody running, so the warm-up never stalls on it.
    """
    try:
        from streamlit import runtime
        from streamlit.runtime.app_session import AppSessionState

        if not runtime.exists():
            return 0
        sessions = runtime.get_instance()._session_mgr.list_active_sessions()
        return sum(1 for s in sessions if getattr(s.session, "_state", None) == AppSessionState.APP_IS_RUNNING)
    except Exception:
        return 0


def _yield_to_visitors(limit: float = YIELD_S, poll: float = 0.05) -> float:
    """Wait while a visitor's page runs (at most ``limit`` s); the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and visitors_running():
        time.sleep(poll)
    waited = time.monotonic() - t0
    YIELDED[0] += waited
    return waited


def wait_for_imports(timeout: float = 15.0) -> bool:
    """Called by the app before a page runs: wait while the warm-up imports a shared module.

    Returns False if the import did not end within ``timeout`` seconds (the page then goes on).
    """
    if not IMPORT_LOCK.acquire(timeout=timeout):
        return False
    IMPORT_LOCK.release()
    return True


def _import_shared(names=SHARED_IMPORTS) -> list:
    """Import ``names`` one at a time, each only while no page script runs; the names imported here."""
    import importlib
    import sys

    done = []
    for name in names:
        if name in sys.modules:
            continue
        for _ in range(3):  # pages running for 3 × YIELD_S: leave this one to the pages
            _yield_to_visitors()
            with IMPORT_LOCK:
                if visitors_running():  # a page started between the check and the lock: let it run first
                    busy = True
                else:
                    busy = False
                    try:
                        importlib.import_module(name)
                        done.append(name)
                    except Exception as exc:  # an optional module missing: the page that needs it says so
                        LOG.append(("import", name, f"{type(exc).__name__}: {exc}"))
            if not busy:
                break
            time.sleep(0.05)
        else:
            LOG.append(("import", name, "skipped: page scripts kept running"))
    return done


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0", "false", "no")


def page_defaults(model, example) -> dict:
    """What each page shows first under its defaults, as ``{step: callable}`` in page order.

    The calls and options are the pages' own (``apps/views/*.py``): a change there needs the same
    change here, which ``tests/test_app.py::test_warmup_covers_every_page`` catches.
    """
    from probe.pipelines import ActivationOptions, AttributionOptions, FilterOptions, NMFOptions

    from . import cache
    from .menus import target_options

    def embeddings():  # Overview (embedding models), Embeddings and Attribution share this clustering (PCA map)
        first = cache.cached_default_layer(model, example, "embeddings")
        return cache.cached_embeddings(model, example,
                                       cache.clustering_options(model, first, int(model.spec.n_sources or 2)))

    def overview_clustering():  # what the Overview plays for a model whose output is T-F embeddings
        return embeddings() if model.spec.output_kind == "tf_embeddings" else None

    def filters():
        banks = cache.cached_filter_banks(model)
        return cache.cached_filter_analysis(model, next(iter(banks.values())), FilterOptions(span="full")) \
            if banks else None

    def activations():
        return cache.cached_activation(model, example, cache.cached_default_layer(model, example),
                                       ActivationOptions(view="auto"))

    def nmf():
        return cache.cached_nmf(model, example, NMFOptions(components=None, beta=NMFOptions().beta, layer=None))

    def attribution():
        targets = target_options(model.spec, example, default=cache.cached_default_target(model, example))
        d = AttributionOptions()
        return cache.cached_attribution(model, example, AttributionOptions(
            target=targets[0] if targets else None, method=d.method, steps="auto", top_percent=float(int(d.top_percent))))

    return {"spectrogram": lambda: cache.cached_spectrogram(model, example),
            "outputs": lambda: cache.cached_outputs(model, example),
            "overview clustering": overview_clustering,
            "default layer": lambda: cache.cached_default_layer(model, example),
            "embeddings": embeddings,
            "filters": filters,
            "activations": activations,
            "nmf": nmf,
            "attribution": attribution}


def _pass_of(step: str) -> str:
    return "overview" if step in OVERVIEW else "heavy" if step in HEAVY else "cheap"


def _selection(ref, audio_ref=None):
    from . import cache, state

    model = cache.get_model(ref)
    audio_ref = audio_ref or state.example_refs(ref, 1)[0]
    return model, cache.get_example(audio_ref, model.sample_rate)


def run(refs=None) -> None:
    """Warm every page's defaults for ``refs`` (default: trained zoo models, the default one first).

    ``refs`` items are model references or ``(model ref, audio ref)`` pairs (a zoo model's first
    example when no audio is given). Errors are logged, not raised: a model that cannot do a
    step (no filter bank, no spectral bank for NMF) gets its message on the page.
    """
    from . import state

    try:
        if refs is None:
            refs = [e["ref"] for e in state.zoo_models() if e.get("trained")]
        t0 = time.perf_counter()
        imported = _import_shared()
        LOG.append(("imports", ",".join(imported) or "-", round(time.perf_counter() - t0, 2)))
        pairs = [r if isinstance(r, tuple) else (r, None) for r in refs]
        plan = [(p, part) for part in PASSES for p in pairs]
        failed = set()
        for (ref, audio), part in plan:
            if (ref, audio) in failed:
                continue
            try:
                _yield_to_visitors()
                model, example = _selection(ref, audio)
                steps = page_defaults(model, example)
            except Exception as exc:
                LOG.append(("load", ref, f"{type(exc).__name__}: {exc}"))
                failed.add((ref, audio))
                continue
            for what, fn in steps.items():
                if _pass_of(what) != part:
                    continue
                _yield_to_visitors()
                t0 = time.perf_counter()
                try:
                    fn()
                except Exception as exc:  # a model that cannot do this step: the page will say why
                    LOG.append((what, ref, f"{type(exc).__name__}: {exc}"))
                    continue
                LOG.append((what, ref, round(time.perf_counter() - t0, 2)))
    finally:
        DONE.set()


def start() -> threading.Thread:
    """Start :func:`run` in a daemon thread at low priority."""
    def target():
        try:
            os.nice(5)  # visitors' requests first (on Linux this lowers only this thread)
        except (AttributeError, OSError):
            pass
        run()

    t = threading.Thread(target=target, name="probe-warmup", daemon=True)
    t.start()
    return t
