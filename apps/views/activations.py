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
first = cached_default_layer(model, example)
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
