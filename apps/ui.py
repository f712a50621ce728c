"""The app's selection (model, clip) kept in ``st.session_state``, error display and figure placement.

The selection lives under plain keys, so it survives page switches. A link
``?model=zoo:crnn_sed&audio=example:crnn_sed:3`` preselects both.
"""

from __future__ import annotations

import json
import re

import streamlit as st

from probe.errors import ProbeError

from . import policy, state
from .cache import get_example, get_model

#: session-state keys of the selection
MODEL_KEY, AUDIO_KEY, UPLOAD_KEY = "probe_model_ref", "probe_audio_ref", "probe_upload"
#: why the last upload was refused (the other pages say so instead of falling back to an example)
UPLOAD_ERROR_KEY = "probe_upload_error"

__all__ = ["MODEL_KEY", "AUDIO_KEY", "UPLOAD_KEY", "UPLOAD_ERROR_KEY", "current_model_ref", "current_model", "current_audio",
           "selection_caption", "show_error", "build", "plot", "align_time_axes", "button_columns"]


def show_error(exc: BaseException, what: str = "") -> None:
    """One clear line for probe's own errors; the traceback only for bugs."""
    if isinstance(exc, state.Unavailable):
        st.info(f"{what}{exc}")
    elif isinstance(exc, ProbeError):
        st.error(f"{what}{exc}")
    else:
        st.exception(exc)


def _from_query() -> None:
    """Once per session: ``?model=zoo:NAME&audio=example:NAME:i`` preselect the model and clip.

    A link is whatever a web page put there: both values pass :mod:`apps.policy` (zoo names,
    spec files and audio in the folders the server allows); a refused value is named in one
    error line and ignored.
    """
    if st.session_state.get("_probe_query_read"):
        return
    st.session_state["_probe_query_read"] = True
    qp = st.query_params
    if qp.get("model"):
        try:
            st.session_state[MODEL_KEY] = policy.check_model_ref(qp["model"])
        except ProbeError as exc:
            st.session_state["_probe_query_error"] = f"Link ignored: {exc}"
            return
        audio = qp.get("audio") or None
        if audio:
            try:
                audio = policy.check_audio_ref(audio)
            except ProbeError as exc:
                st.session_state["_probe_query_error"] = f"Link ignored: {exc}"
                audio = None
        st.session_state[AUDIO_KEY] = audio


def current_model_ref() -> str | None:
    """The selected model reference (from the session, a ``?model=`` link, or the first trained zoo model)."""
    _from_query()
    if st.session_state.get("_probe_query_error"):
        st.error(st.session_state.pop("_probe_query_error"))
    ref = st.session_state.get(MODEL_KEY)
    if not ref:
        ref = state.default_model_ref()
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
        return get_model(ref)  # a refused reference's message echoes only what the user sent
    except ProbeError as exc:
        show_error(exc, f"Cannot load {str(ref)[:120]}: ")
        return None


def current_audio(model):
    """The selected clip at the model's rate, or ``None`` after showing why there is none."""
    ref = st.session_state.get(AUDIO_KEY)
    if ref == "upload":
        ex = st.session_state.get(UPLOAD_KEY)
        if ex is not None and ex.sr == model.sample_rate:
            return ex
        why = st.session_state.get(UPLOAD_ERROR_KEY)
        st.warning((f"The uploaded file was not accepted ({why})" if why else
                    "The uploaded clip was decoded for another model's sample rate")
                   + ": upload another file or pick an example on the Overview page.")
        return None
    if not ref:
        refs = state.example_refs(model.ref, 1)
        if not refs:
            st.info("No audio selected: upload a file on the Overview page.")
            return None
        ref = refs[0]
        st.session_state[AUDIO_KEY] = ref
    try:
        return get_example(ref, model.sample_rate)
    except ProbeError as exc:
        show_error(exc, "Cannot load this audio: ")
        return None


def selection_caption(model, example) -> None:
    st.caption(f"Model **{model.name}** ({model.ref}) · audio **{example.name}** "
               f"({example.duration:.2f} s at {example.sr} Hz) — change them on the Overview page.")


def page_selection():
    """The model and clip chosen on Overview, with the caption naming them; stops the page when either is missing.

    Returns
    -------
    (SharedModel, AudioExample)
    """
    model = current_model()
    if model is None:
        st.stop()
    example = current_audio(model)
    if example is None:
        st.stop()
    selection_caption(model, example)
    return model, example


def build(builder, *args, **kwargs):
    """``builder(*args, **kwargs)`` (a ``probe.figures`` function); ``None`` after a message when it refuses the data."""
    try:
        return builder(*args, **kwargs)
    except (ProbeError, ValueError) as exc:
        show_error(exc if isinstance(exc, ProbeError) else ProbeError(str(exc)), f"{builder.__name__}: ")
        return None


#: Streamlit's frontend replaces the exact colours #000001…#000040 in a plotly figure by theme colours
#: (its placeholders, whatever the theme), so magma/inferno's first stop "#000004" would turn purple
_PLACEHOLDER = re.compile(r'"#0000(0[1-9]|[1-3][0-9]|40)"', re.IGNORECASE)


def _fix_scale(scale):
    """A colour scale with Streamlit's placeholder colours replaced by black, or ``None`` when it has none."""
    if not scale or isinstance(scale, str):
        return None
    out, changed = [], False
    for stop in scale:
        v, c = stop
        if isinstance(c, str) and _PLACEHOLDER.fullmatch(f'"{c}"'):
            c, changed = "#000000", True
        out.append([v, c])
    return out if changed else None


def _without_placeholders(fig):
    """Nudge the colours Streamlit would take for theme placeholders (in colour scales) to black, in place.

    Only colour scales are rewritten (where magma/inferno's "#000004" lives): serialising the whole
    figure to find them cost more than drawing it.
    """
    for t in fig.data:
        for part in (t, getattr(t, "marker", None), getattr(t, "line", None)):
            scale = getattr(part, "colorscale", None) if part is not None else None
            fixed = _fix_scale(scale)
            if fixed is not None:
                part.colorscale = fixed
    layout = fig.layout
    for name in [k for k in layout.to_plotly_json() if k.startswith("coloraxis")]:
        fixed = _fix_scale(layout[name].colorscale)
        if fixed is not None:
            layout[name].colorscale = fixed
    return fig


def play(y, sr: int, where=None):
    """An audio player for mono float audio at ``sr``; ``where``: a column or container.

    ``st.audio`` scales an array by its peak, so an all-zero clip (a ground-truth stem that is
    silent in its example) became 0/0 and NaN cast to int16; such a clip, or one with NaN or
    inf, goes as a WAV of what it holds (non-finite samples as 0) instead.
    """
    import numpy as np

    from . import downloads

    where = where or st
    y = np.asarray(y, np.float32)
    if y.size and np.isfinite(y).all() and np.any(y):
        return where.audio(y, sample_rate=int(sr))
    return where.audio(downloads.wav_bytes(np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0), int(sr)),
                       format="audio/wav")


def plot(fig, key: str | None = None, where=None, **kwargs):
    """Place a plotly figure at the page's width (no-op for ``None``); ``where``: a column or container.

    Extra keyword arguments go to ``st.plotly_chart`` (``on_select="rerun"``, ``selection_mode``), whose
    return value (the selection) is returned.

    ``theme=None`` keeps the library's own styling (colour scales, template), so the app
    shows exactly what the HTML report and the CLI figures show; colours that Streamlit
    would take for its theme placeholders are nudged to black first.
    """
    if fig is None:
        return None
    fig = _without_placeholders(fig)
    return (where or st).plotly_chart(fig, width="stretch", theme=None, key=key, config={"displaylogo": False},
                                      **kwargs)


def align_time_axes(*figs, duration: float | None = None, left: int = 70, right: int = 130):
    """Give stacked figures the same plot-area width and time range, so their time axes line up.

    Plotly widens a figure's right margin for each colour bar it draws; figures with and
    without one (a map and its target track) then have plot areas of different widths.
    Fixed margins (no auto-expansion) with colour bars drawn inside the right margin keep
    the same seconds at the same pixels on every figure. Returns the figures.
    """
    for fig in figs:
        if fig is None:
            continue
        fig.update_layout(margin=dict(l=left, r=right), margin_autoexpand=False)
        fig.update_traces(colorbar=dict(x=1.0, xanchor="left", xpad=8, thickness=14),
                          selector=lambda t: hasattr(t, "colorbar"))
        if duration:
            fig.update_xaxes(range=[0.0, float(duration)])
    return figs


def button_columns(n: int, per_row: int = 3, where=None) -> list:
    """``n`` column slots in rows of ``per_row``: download rows whose labels fit on a laptop-wide page.

    Six buttons side by side cut labels such as "Points + clusters (Parquet)" at the page's width;
    rows of three keep every label whole.
    """
    where = where or st
    slots: list = []
    while len(slots) < n:
        slots += list(where.columns(per_row))
    return slots[:n]
