"""Streamlit glue shared by the app's pages: cached loaders, the current selection, error display.

Pages import from here and from ``probe``; nothing here computes anything of its own:
every value comes from :mod:`probe.appstate`, wrapped in Streamlit's caches.

* ``st.cache_resource`` holds :class:`probe.appstate.SharedModel` objects — one per model,
  shared by every session, each with its own lock (the library takes it around every
  forward pass, capture and attribution).
* ``st.cache_data`` holds analysis results keyed by the model (reference + file stamp), the
  audio's content hash and the parameters. The unhashable model and clip are passed with a
  leading underscore so they stay out of the key.
* The selection (model reference, audio reference, uploaded clip) lives in
  ``st.session_state`` under plain keys, so it survives page switches. A link
  ``?model=zoo:crnn_sed&audio=example:crnn_sed:3`` preselects both.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the zoo and probe, when the app runs from a checkout without pip install -e
    sys.path.insert(0, str(ROOT))

from probe import appstate  # noqa: E402
from probe.errors import ProbeError  # noqa: E402

#: session-state keys of the selection
MODEL_KEY, AUDIO_KEY, UPLOAD_KEY = "probe_model_ref", "probe_audio_ref", "probe_upload"

__all__ = ["MODEL_KEY", "AUDIO_KEY", "UPLOAD_KEY", "get_model", "get_example", "current_model", "current_audio",
           "selection_caption", "show_error", "cached_spectrogram", "cached_outputs", "cached_filter_banks",
           "cached_filter_analysis", "cached_default_layer", "cached_activation", "cached_embeddings", "cached_attribution", "figure",
           "plot"]


# ---- loaders -------------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def _load_model(ref: str, stamp: str):
    return appstate.load_shared_model(ref)


def get_model(ref: str):
    """The shared, lock-guarded model for ``ref`` (one per process, reloaded when its file changes)."""
    return _load_model(ref, appstate.model_ref_key(ref))


@st.cache_data(max_entries=16, show_spinner="Loading audio…")
def get_example(ref: str, sr: int):
    """``example:NAME:i`` (or a server-side file path) → AudioExample at ``sr`` (a copy per session)."""
    return appstate.load_example_ref(ref, sr)


def show_error(exc: BaseException, what: str = "") -> None:
    """One clear line for probe's own errors; the traceback only for bugs."""
    if isinstance(exc, appstate.Unavailable):
        st.info(f"{what}{exc}")
    elif isinstance(exc, ProbeError):
        st.error(f"{what}{exc}")
    else:
        st.exception(exc)


# ---- the current selection -----------------------------------------------------------------
def _from_query() -> None:
    """Once per session: ``?model=zoo:NAME&audio=example:NAME:i`` (or paths) preselect the model and clip."""
    if st.session_state.get("_probe_query_read"):
        return
    st.session_state["_probe_query_read"] = True
    qp = st.query_params
    if qp.get("model"):
        st.session_state[MODEL_KEY] = qp["model"]
        st.session_state[AUDIO_KEY] = qp.get("audio") or None


def current_model_ref() -> str | None:
    """The selected model reference (from the session, a ``?model=`` link, or the first trained zoo model)."""
    _from_query()
    ref = st.session_state.get(MODEL_KEY)
    if not ref:
        ref = appstate.default_model_ref()
        if ref:
            st.session_state[MODEL_KEY] = ref
    return ref


def current_model():
    """The selected model, or ``None`` after showing why there is none."""
    ref = current_model_ref()
    if not ref:
        st.info("No model selected and no trained zoo model found yet: pick a model (or a spec file) on the Overview page.")
        return None
    try:
        return get_model(ref)
    except ProbeError as exc:
        show_error(exc, f"Cannot load {ref}: ")
        return None


def current_audio(model):
    """The selected clip at the model's rate, or ``None`` after showing why there is none."""
    ref = st.session_state.get(AUDIO_KEY)
    if ref == "upload":
        ex = st.session_state.get(UPLOAD_KEY)
        if ex is not None and ex.sr == model.sample_rate:
            return ex
        ref = None
    if not ref:
        refs = appstate.example_refs(model.ref, 1)
        if not refs:
            st.info("No audio selected: upload a file on the Overview page.")
            return None
        ref = refs[0]
        st.session_state[AUDIO_KEY] = ref
    try:
        return get_example(ref, model.sample_rate)
    except ProbeError as exc:
        show_error(exc, f"Cannot load {ref}: ")
        return None


def selection_caption(model, example) -> None:
    st.caption(f"Model **{model.name}** ({model.ref}) · audio **{example.name}** "
               f"({example.duration:.2f} s at {example.sr} Hz) — change them on the Overview page.")


def _audio_key(example) -> str:
    from probe.audio import audio_hash

    return audio_hash(example.y, example.sr)


# ---- cached analyses (keys: model ref + stamp, audio hash, parameters) --------------------------
@st.cache_data(max_entries=32, show_spinner=False)
def _spectrogram(audio_key: str, model_key: str, _y, _grid):
    return appstate.spectrogram(_y, _grid)


def cached_spectrogram(model, example):
    return _spectrogram(_audio_key(example), appstate.model_ref_key(model.ref), example.y, model.spec.grid)


@st.cache_data(max_entries=32, show_spinner="Running the model…")
def _outputs(model_key: str, audio_key: str, _model, _y):
    return appstate.model_outputs(_model, _y)


def cached_outputs(model, example):
    return _outputs(appstate.model_ref_key(model.ref), _audio_key(example), model, example.y)


@st.cache_data(max_entries=8, show_spinner="Finding filter layers…")
def _filter_banks(model_key: str, _model):
    return appstate.filter_banks(_model)


def cached_filter_banks(model):
    return _filter_banks(appstate.model_ref_key(model.ref), model)


@st.cache_data(max_entries=16, show_spinner="Analysing the filters…")
def _filter_analysis(model_key: str, layer: str, span: str, _bank):
    return appstate.analyse_filters(_bank, span=span)


def cached_filter_analysis(model, bank, span: str = "full"):
    return _filter_analysis(appstate.model_ref_key(model.ref), bank.name, span, bank)


@st.cache_data(max_entries=16, show_spinner=False)
def _default_layer(model_key: str, purpose: str, _model, _y):
    return appstate.default_layer(_model, _y, purpose=purpose)


def cached_default_layer(model, example, purpose: str = "activations"):
    """The layer a page shows first (the last time-resolved layer before the head; a DC model's output)."""
    return _default_layer(appstate.model_ref_key(model.ref), purpose, model, example.y)


@st.cache_data(max_entries=16, show_spinner="Capturing the layer…")
def _activation(model_key: str, audio_key: str, layer: str, view: str, _model, _y):
    return appstate.capture_layer(_model, _y, layer, view=view)


def cached_activation(model, example, layer: str, view: str = "auto"):
    return _activation(appstate.model_ref_key(model.ref), _audio_key(example), layer, view, model, example.y)


@st.cache_data(max_entries=8, show_spinner="Computing embeddings, map and clusters…")
def _embeddings(model_key: str, audio_key: str, layer: str, projection: str, n_clusters: int, budget: int, _model, _ex):
    return appstate.analyse_embeddings(_model, _ex, layer, projection=projection, n_clusters=n_clusters, budget=budget)


def cached_embeddings(model, example, layer: str, projection: str = "pca", n_clusters: int = 2, budget: int = 2000):
    return _embeddings(appstate.model_ref_key(model.ref), _audio_key(example), layer, projection, int(n_clusters),
                       int(budget), model, example)


@st.cache_data(max_entries=8, show_spinner="Attributing (and running the deletion test)…")
def _attribution(model_key: str, audio_key: str, target: str, method: str, steps: int, top_percent: float,
                 baseline: str, _model, _ex):
    return appstate.analyse_attribution(_model, _ex, target or None, method=method, steps=steps,
                                        top_percent=top_percent, baseline=baseline)


def cached_attribution(model, example, target: str, method: str, steps: int = 16, top_percent: float = 10.0,
                       baseline: str = "silence"):
    return _attribution(appstate.model_ref_key(model.ref), _audio_key(example), target or "", method, int(steps),
                        float(top_percent), baseline, model, example)


# ---- figures ---------------------------------------------------------------------------------
def figure(area: str, name: str, *args, **kwargs):
    """Build a figure with ``probe.figures.<area>.<name>``; ``None`` after a message if that piece is missing."""
    try:
        return appstate.figure_builder(area, name)(*args, **kwargs)
    except (ProbeError, ValueError) as exc:
        show_error(exc if isinstance(exc, ProbeError) else ProbeError(str(exc)), f"{area}.{name}: ")
        return None


#: Streamlit's frontend replaces the exact colours #000001…#000040 in a plotly figure by theme colours
#: (its placeholders, whatever the theme), so magma/inferno's first stop "#000004" would turn purple
_PLACEHOLDER = re.compile(r'"#0000(0[1-9]|[1-3][0-9]|40)"', re.IGNORECASE)


def _without_placeholders(fig):
    import plotly.graph_objects as go

    text = fig.to_json()
    if not _PLACEHOLDER.search(text):
        return fig
    return go.Figure(json.loads(_PLACEHOLDER.sub('"#000000"', text)))


def plot(fig, key: str | None = None) -> None:
    """Place a plotly figure at the page's width (no-op for ``None``).

    ``theme=None`` keeps the library's own styling (colour scales, template), so the app
    shows exactly what the HTML report and the CLI figures show; colours that Streamlit
    would take for its theme placeholders are nudged to black first.
    """
    if fig is not None:
        fig = _without_placeholders(fig)
        st.plotly_chart(fig, width="stretch", theme=None, key=key, config={"displaylogo": False})
