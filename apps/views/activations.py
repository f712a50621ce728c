"""Activations: capture one layer on the clip and show it as a heatmap over seconds."""

import streamlit as st

from apps.cache import cached_activation, cached_default_layer, cached_spectrogram
from apps.menus import layer_names
from apps.ui import align_time_axes, plot, show_error, page_selection
from probe.errors import ProbeError
from probe.pipelines import ActivationOptions
from probe.figures import clip as fc

st.title("Activations")
model, example = page_selection()

layers = layer_names(model.spec)
try:
    first = cached_default_layer(model, example)
except ProbeError as exc:  # the model cannot run on this clip: say why, once
    show_error(exc, "Cannot run the model: ")
    st.stop()
c1, c2, c3 = st.columns([3, 2, 1])
layer = c1.selectbox("Layer (module path)", layers, index=layers.index(first) if first in layers else 0, key="w_act_layer")
view = c2.radio("Rows", ["auto", "channels", "frequency", "all"], horizontal=True, key="w_act_view",
                help="For layers with channels and a frequency axis: average over frequency (channels), over channels "
                     "(frequency), or keep every (channel, bin) row (all).")
normalise = c3.checkbox("Per-row scale", value=True, key="w_act_norm")
try:
    act = cached_activation(model, example, layer, ActivationOptions(view=view))
except ProbeError as exc:
    show_error(exc, f"Cannot show {layer}: ")
    st.stop()
if act.views and view == "auto":
    st.caption(f"This layer has channels and a frequency axis; showing **channels** (mean over {act.axes}).")
afig = fc.activation_figure(act, normalise=normalise)
sfig = fc.spectrogram_figure(cached_spectrogram(model, example), height=260, title="Input spectrogram")
align_time_axes(afig, sfig, duration=example.duration)  # the layer's frames over the input's seconds
plot(afig, key="activations_heatmap")
st.caption(f"Record shape {act.shape}, axes {act.axes}, "
           + (f"{act.seconds_per_step * 1000:.2f} ms per step." if act.seconds_per_step else "no time step known."))
plot(sfig, key="activations_spectrogram")

# downloads (added by the attribution/downloads helper): the activation matrix, its figure, a report of this view
import numpy as np  # noqa: E402

from apps import downloads as dl  # noqa: E402
from apps.cache import cached_report_html  # noqa: E402

stem = dl.file_stem(model.name, example.name, layer)
vals = np.asarray(act.values, np.float32)
times = act.times if act.times is not None else np.arange(vals.shape[-1], dtype=np.float64)
c = st.columns(4)
c[0].download_button("Activations (safetensors)", lambda: dl.map_safetensors(  # built when clicked
    {"values": vals, "times": np.asarray(times, np.float64)}, {"model": model.name, "audio": example.name,
                                                             "layer": layer, "axes": act.axes, "rows": act.row_label}),
    f"{stem}.safetensors", "application/octet-stream", key="dl_act_st", on_click="ignore")
if vals.ndim == 2:
    c[1].download_button("Activations (CSV)", lambda: dl.map_csv(vals, times=times, freqs=np.arange(vals.shape[0])),
                         f"{stem}.csv", "text/csv", key="dl_act_csv", on_click="ignore",
                         help="Rows time_s, row index (in the freq_hz column: the row number), value")
c[2].download_button("Heat map (PNG)", dl.png_later(afig), f"{stem}.png", "image/png", key="dl_act_png",
                     on_click="ignore", help="Rendered when clicked (a few seconds)")
if c[3].button("Report of this view", key="w_act_report", help="The HTML report (overview + activations of this "
               "layer); opens offline."):
    st.session_state["_act_report"] = True
if st.session_state.get("_act_report"):
    try:
        c[3].download_button("Download report", cached_report_html(model, example, ("overview", "activations"),
                                                                   {"activations": {"layers": [layer]}}),
                             f"{stem}_report.html", "text/html", key="dl_act_report", on_click="ignore")
    except ProbeError as exc:
        show_error(exc, "Cannot write the report: ")
