"""Streamlit caches around the pipelines: shared models, clips and analysis results.

* ``st.cache_resource`` holds :class:`apps.state.SharedModel` objects — one per model,
  shared by every session, each with its own lock, which every pipeline call receives as
  ``lock=model.lock``.
* ``st.cache_data`` holds pipeline results keyed by the model (reference + file stamp), the
  audio's content hash and the options (frozen dataclasses). The unhashable model and clip
  are passed with a leading underscore so they stay out of the key.

Every value comes from :mod:`probe.pipelines` with the options a page passes; nothing here
computes anything of its own.

Below the in-memory caches, every deterministic result also goes through :mod:`apps.diskcache`
(safetensors + JSON in ``~/.cache/probe/app`` or ``probe app --cache-dir``), keyed by the model's
content (checkpoint SHA-256), the clip's content hash, the options and the code, so a restarted
server (or a second one) serves what the warm-up or an earlier visitor computed.
"""

from __future__ import annotations

import functools

import streamlit as st

from probe import pipelines as P

from . import diskcache, state
from .policy import check_model_ref

__all__ = ["get_model", "get_example", "cached_spectrogram", "cached_outputs", "cached_filter_banks",
           "cached_filter_analysis", "cached_default_layer", "cached_activation", "cached_embeddings",
           "clustering_options", "cached_clustering", "cached_attribution", "cached_nmf", "cached_randomisation", "cached_report_html", "start_warmup"]


# every zoo model stays loaded after the warm-up (the zoo's checkpoints are 0.2-7 MB each)
@st.cache_resource(max_entries=16, show_spinner="Loading model…")
def _load_model(ref: str, stamp: str):
    return state.load_shared_model(ref)


def get_model(ref: str):
    """The shared, lock-guarded model for ``ref`` (one per process, reloaded when its file changes).

    ``ref`` passes :func:`apps.policy.check_model_ref` first: a refused reference raises
    :class:`~probe.errors.SpecError` before any file is looked at.
    """
    ref = check_model_ref(ref)
    return _load_model(ref, state.model_ref_key(ref))


@st.cache_data(max_entries=16, show_spinner="Loading audio…")
def get_example(ref: str, sr: int):
    """``example:NAME:i`` (or a server-side file path) → AudioExample at ``sr`` (a copy per session)."""
    return state.load_example_ref(ref, sr)



def _model_errors(fn):
    """Raise a user model's own failure (e.g. ``forward(x, lengths)`` called with ``x``) as one-line ``ModelError``.

    Pages show a :class:`~probe.errors.ProbeError` in an error box; anything else surfaced as a traceback
    (the Overview of a model whose ``forward`` needs two arguments did). The CLI converts the same way
    (:func:`probe.diagnostics.model_error_from`); probe's own bugs keep their traceback.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from probe.errors import ProbeError

        try:
            return fn(*args, **kwargs)
        except ProbeError:
            raise
        except Exception as exc:
            from probe.diagnostics import model_error_from

            err = model_error_from(exc)
            if err is None:
                raise
            raise err from exc
    return wrapper

def _audio_key(example) -> str:
    from probe.audio import audio_hash

    return audio_hash(example.y, example.sr)


def _model_key(model) -> str:
    return state.model_ref_key(model.ref)


def _disk(kind: str, model, parts: tuple, compute):
    """``compute()`` through the on-disk cache, keyed by the model's content and ``parts``."""
    return diskcache.cached(kind, (state.model_content_key(model.ref),) + tuple(parts), compute)


@st.cache_data(max_entries=32, show_spinner=False)
def _spectrogram(audio_key: str, model_key: str, _y, _grid):
    return diskcache.cached("spectrogram", (audio_key, repr(_grid)), lambda: P.spectrogram(_y, _grid))


@_model_errors
def cached_spectrogram(model, example):
    return _spectrogram(_audio_key(example), _model_key(model), example.y, model.spec.grid)


@st.cache_data(max_entries=32, show_spinner="Running the model…")
def _outputs(model_key: str, audio_key: str, _model, _y):
    return _disk("outputs", _model, (audio_key,), lambda: P.model_outputs(_model.spec, _y, lock=_model.lock))


@_model_errors
def cached_outputs(model, example):
    return _outputs(_model_key(model), _audio_key(example), model, example.y)


@st.cache_data(max_entries=32, show_spinner=False)
def _default_target(model_key: str, audio_key: str, _model, _example):
    from probe.attribution import default_target_for
    from probe.pipelines._base import locked

    with locked(_model.lock):
        return str(default_target_for(_model.spec, _example))


@_model_errors
def cached_default_target(model, example) -> str | None:
    """The attribution target the CLI and the report use when given none (a string), or ``None`` when there is none."""
    from probe.errors import ProbeError

    try:
        return _default_target(_model_key(model), _audio_key(example), model, example)
    except ProbeError:
        return None


@st.cache_data(max_entries=24, show_spinner="Finding filter layers…")
def _filter_banks(model_key: str, _model):
    # the discovery runs shape and gradient probes through the model (seconds to a minute); the banks are
    # plain arrays (FilterBank), so a restarted server reads them from disk like every other result
    return _disk("filter_banks", _model, (), lambda: P.find_banks(_model.spec, lock=_model.lock))


@_model_errors
def cached_filter_banks(model):
    return _filter_banks(_model_key(model), model)


@st.cache_data(max_entries=32, show_spinner="Analysing the filters…")
def _filter_analysis(model_key: str, layer: str, options, _bank, _model):
    return _disk("filter_analysis", _model, (layer, options), lambda: P.analyse_bank(_bank, options))


@_model_errors
def cached_filter_analysis(model, bank, options=None):
    """:class:`probe.pipelines.BankAnalysis` of one bank (``options``: a :class:`~probe.pipelines.FilterOptions`)."""
    return _filter_analysis(_model_key(model), bank.name, options or P.FilterOptions(), bank, model)


@st.cache_data(max_entries=48, show_spinner=False)
def _default_layer(model_key: str, purpose: str, _model, _y):
    from probe.audio import audio_hash

    return _disk("default_layer", _model, (purpose, audio_hash(_y, _model.sample_rate)),
                 lambda: P.default_layer(_model.spec, _y, purpose=purpose, lock=_model.lock))


@_model_errors
def cached_default_layer(model, example, purpose: str = "activations"):
    """The layer a page shows first (the last time-resolved layer before the head; a DC model's output)."""
    return _default_layer(_model_key(model), purpose, model, example.y)


@st.cache_data(max_entries=32, show_spinner="Capturing the layer…")
def _activation(model_key: str, audio_key: str, layer: str, options, _model, _y):
    return _disk("activation", _model, (audio_key, layer, options),
                 lambda: P.capture_layer(_model.spec, _y, layer, options, lock=_model.lock))


@_model_errors
def cached_activation(model, example, layer: str, options=None):
    return _activation(_model_key(model), _audio_key(example), layer, options or P.ActivationOptions(), model, example.y)


@st.cache_data(max_entries=24, show_spinner="Computing embeddings, map and clusters…")
def _embeddings(model_key: str, audio_key: str, options, _model, _ex):
    return _disk("embeddings", _model, (audio_key, options),
                 lambda: P.analyse_embeddings(_model.spec, _ex, options, lock=_model.lock))


@_model_errors
def cached_embeddings(model, example, options=None):
    return _embeddings(_model_key(model), _audio_key(example), options or P.EmbeddingOptions(), model, example)


_OUTPUT_LAYERS = (None, "", "output", "tf_embeddings")


def clustering_options(model, layer=None, k=None, budget=None, projection: str = "pca"):
    """The one :class:`~probe.pipelines.EmbeddingOptions` of the clustering of (model, layer, k).

    Every page asks for a clustering through this, so the same (model, clip, layer, k) is one
    cache entry with one numbering (clusters from 1 by decreasing energy) and one set of names.
    ``budget`` other than the default makes a different clustering (the Embeddings page says so);
    the projection does not change the clustering.
    """
    d = P.EmbeddingOptions()
    return P.EmbeddingOptions(layer=None if layer in _OUTPUT_LAYERS else layer, projection=projection,
                              n_clusters=int(k or model.spec.n_sources or 2), budget=int(budget or d.budget))


@_model_errors
def cached_clustering(model, example, layer=None, k=None):
    """The shared clustering (:class:`probe.pipelines.EmbeddingAnalysis`) of (model, clip, layer, k)."""
    return cached_embeddings(model, example, clustering_options(model, layer, k))


@st.cache_data(max_entries=24, show_spinner="Attributing (and running the deletion test)…")
def _attribution(model_key: str, audio_key: str, options, _model, _ex, _clustering=None):
    return _disk("attribution", _model, (audio_key, options),
                 lambda: P.analyse_attribution(_model.spec, _ex, options, lock=_model.lock, clustering=_clustering))


@_model_errors
def cached_attribution(model, example, options=None):
    """Attribution; a ``cluster=j`` target takes cluster ``j`` of :func:`cached_clustering` (the output, k = sources)."""
    options = options or P.AttributionOptions()
    clustering = None
    if model.spec.output_kind == "tf_embeddings" and options.chunk_seconds is None and options.clusters is None:
        clustering = cached_clustering(model, example)
    return _attribution(_model_key(model), _audio_key(example), options, model, example, clustering)


def _refusal(compute):
    """``compute()``, or ``{"refused": error class, "message": ...}`` when the library refuses (a ProbeError).

    A refusal that depends only on the model and options (no spectral bank for NMF) is as
    deterministic as a result: caching it spares a restarted server the discovery that finds it.
    """
    from probe.errors import ProbeError

    try:
        return compute()
    except ProbeError as exc:
        if isinstance(exc, state.Unavailable):
            raise
        return {"refused": type(exc).__name__, "message": str(exc)}


def _raise_refusal(value):
    if isinstance(value, dict) and "refused" in value:
        from probe import errors

        cls = getattr(errors, str(value["refused"]), None)
        raise (cls if isinstance(cls, type) and issubclass(cls, errors.ProbeError) else errors.ProbeError)(
            value["message"])
    return value


@st.cache_data(max_entries=24, show_spinner="Fitting NMF and comparing it with the model…")
def _nmf(model_key: str, audio_key: str, options, _model, _ex):
    return _disk("nmf", _model, (audio_key, options),
                 lambda: _refusal(lambda: P.analyse_nmf(_model.spec, _ex, options, lock=_model.lock)))


@_model_errors
def cached_nmf(model, example, options=None):
    """:class:`probe.pipelines.NMFAnalysis` of the model on the clip (a refusal is cached and raised again)."""
    return _raise_refusal(_nmf(_model_key(model), _audio_key(example), options or P.NMFOptions(), model, example))


@st.cache_data(max_entries=4, show_spinner="Randomising the layers one by one and attributing again…")
def _randomisation(model_key: str, audio_key: str, target: str, method: str, steps: int, _model, _ex):
    from probe.analyze.faithfulness import randomisation_test

    def compute():
        with _model.lock:  # randomises a deep copy; the shared model is only read
            return randomisation_test(_model.spec, _ex, target, method=method, mode="cascade", return_maps=True,
                                      **({"steps": int(steps)} if method in ("ig", "gradshap") else {}))

    return _disk("randomisation", _model, (audio_key, target, method, steps), compute)


@_model_errors
def cached_randomisation(model, example, target: str, method: str = "saliency", steps: int = 16):
    """Cascading model-parameter randomisation (:func:`probe.analyze.faithfulness.randomisation_test`)."""
    return _randomisation(_model_key(model), _audio_key(example), str(target), method, int(steps), model, example)


@st.cache_data(max_entries=4, show_spinner="Writing the report of this view…")
def _report_html(model_key: str, audio_key: str, sections: tuple, options_key: str, _options, _model, _ex):
    from probe.report import build_report

    return build_report(_model.spec, _ex, sections=sections, options=_options, lock=_model.lock).to_html().encode()


@_model_errors
def cached_report_html(model, example, sections, options: dict) -> bytes:
    """The HTML report (:func:`probe.report.build_report`) of ``sections`` with this view's options."""
    return _report_html(_model_key(model), _audio_key(example), tuple(sections), repr(sorted(options.items())),
                        options, model, example)


@st.cache_resource(show_spinner=False)
def start_warmup():
    """Start :func:`apps.warmup.start` once per server process (the thread is the cached value)."""
    from . import warmup

    return warmup.start()
