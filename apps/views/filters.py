"""Filters: the learned filterbanks in filterbank terms — gallery, responses, centre frequencies, reference matching."""

import numpy as np
import streamlit as st

from apps import downloads as dl
from apps.cache import cached_filter_analysis, cached_filter_banks, cached_report_html
from apps.ui import button_columns, build, current_audio, current_model, plot, show_error
from probe.errors import ProbeError
from probe.figures.filters import filter_gallery, matching_overview, responses_and_spacing
from probe.pipelines import FilterOptions

st.title("Learned filters")
model = current_model()
if model is None:
    st.stop()
st.caption(f"Model **{model.name}** ({model.ref}) — change it on the Overview page.")

try:
    banks = cached_filter_banks(model)
except ProbeError as exc:
    show_error(exc, "Cannot inspect the filters: ")
    st.stop()
if not banks:
    st.info(f"{model.name} has no layer whose kernels lie on waveform samples or frequency bins "
            f"(input kind {model.spec.input_kind!r}), so there is no filterbank to show.")
    st.stop()

names = list(banks)
c1, c2 = st.columns([3, 2])
layer = c1.selectbox("Filter layer", names, key="w_filter_layer",
                     format_func=lambda n: f"{n} — {banks[n].module_type}, {banks[n].n_filters} filters, {banks[n].axis}")
span = c2.radio("Reference banks span", ["full", "bank"], horizontal=True, key="w_filter_span",
                help="full: 0 Hz – Nyquist, as a textbook bank; bank: the learned centres' range (compares shape and "
                     "spacing only)")
bank = banks[layer]
try:
    res = cached_filter_analysis(model, bank, FilterOptions(span=span))
except ProbeError as exc:
    show_error(exc, f"Cannot analyse {layer}: ")
    st.stop()
fr, summary = res["responses"], res["summary"]

m = st.columns(4)
m[0].metric("Filters", summary["n_filters"])
m[1].metric("Sample rate", f"{summary['sample_rate']} Hz")
if res.fit is not None:
    fit = res.fit
    m[2].metric("Best scale", fit.best_scale_, help="R² of the sorted centres on each scale: "
                + ", ".join(f"{k} {v:.3f}" for k, v in fit.r2_.items()))
    best_ref = res.best_reference
    m[3].metric("Closest reference", best_ref, f"mean cosine {res['refs'][best_ref].mean_cosine_:.2f}",
                delta_color="off", delta_arrow="off")
elif res.note:
    st.info(res.note)
st.caption("Filter shapes: " + ", ".join(f"{k}: {v}" for k, v in summary["labels"].items()))

# One tab per topic the bank has, drawn only when open: a chart costs the browser ~0.1 s beyond its drawing and
# Streamlit draws each chart twice, so a visit draws the open tab's one chart, not all three (warm Filters pages
# took 1.0-1.35 s); a bank without frequency responses (spectro-temporal patches) shows the gallery only
has_responses, has_matching = bool(fr.is_spectral_), res.fit is not None
labels = ["Gallery"] + (["Responses and spacing"] if has_responses else []) + \
    (["Reference matching"] if has_matching else [])
if st.session_state.get("w_filter_tab") not in labels:  # e.g. a tab of another layer or model that this one lacks
    st.session_state["w_filter_tab"] = "Gallery"
tabs = dict(zip(labels, st.tabs(labels, key="w_filter_tab", on_change="rerun")))
figs: dict = {}
if tabs["Gallery"].open:
    with tabs["Gallery"]:
        n_show = st.slider("Filters in the gallery", 8, 64, 32, step=8, key="w_filter_n")
        figs["gallery"] = build(filter_gallery, bank, fr, max_filters=n_show)
        plot(figs["gallery"], key="filters_gallery")
if has_responses and tabs["Responses and spacing"].open:
    with tabs["Responses and spacing"]:
        if has_matching:
            st.caption("Left: every filter's magnitude response (sorted by centre) and the bank's mean. Right: the "
                       "sorted centres with the best straight line on a linear, mel, ERB-rate and log scale (the bank "
                       "is spaced on the scale whose line fits best), and the filters per octave against linear and "
                       "ERB-rate spacing.")
        figs["responses"] = build(responses_and_spacing, fr, res.fit, sample_rate=fr.sample_rate_)
        plot(figs["responses"], key="filters_responses")
if has_matching and tabs["Reference matching"].open:
    with tabs["Reference matching"]:
        refs = res.refs
        st.dataframe({"reference": list(refs),
                      "mean matched cosine": [round(r.mean_cosine_, 3) for r in refs.values()],
                      f"unmatched (cos < {next(iter(refs.values())).threshold})":
                          [int(r.unmatched_.size) for r in refs.values()]},
                     hide_index=True, width="stretch")
        ref = st.selectbox("Reference bank", list(refs), index=list(refs).index(best_ref), key="w_filter_ref")
        figs["matching"] = build(matching_overview, fr, refs[ref],
                                 title=f"{layer} × {ref}: mean matched cosine {refs[ref].mean_cosine_:.3f}")
        plot(figs["matching"], key="filters_matrix")

st.subheader("Downloads")
stem = dl.file_stem(model.name, layer, "filters")
order = np.asarray(fr.order_)
table = {"filter": order, "rank": np.arange(len(order))}
for k in ("centre_hz_", "peak_hz_", "bandwidth_hz_", "q_", "peak_gain_db_"):
    v = getattr(fr, k, None)
    if v is not None and np.ndim(v) == 1 and len(v) == len(order):
        table[k.rstrip("_")] = np.asarray(v, np.float64)[order]
c = button_columns(5)  # row 1: tables and the report; row 2: figures as PNG | as HTML
c[0].download_button("Filters (CSV)", lambda: dl.table_csv(table), f"{stem}.csv", "text/csv", key="dl_filt_csv",
                     on_click="ignore", help="One row per filter, sorted by centre: centre, peak, bandwidth, Q, gain")
c[1].download_button("Kernels + responses (safetensors)", lambda: dl.map_safetensors(
    {"weights": np.asarray(bank.weights, np.float32), "responses_db": np.asarray(fr.responses_db_, np.float32),
     "freqs_hz": np.asarray(fr.freqs_hz_, np.float64)},
    {"model": model.name, "layer": layer, "sample_rate": fr.sample_rate_, "axis": bank.axis}),
    f"{stem}.safetensors", "application/octet-stream", key="dl_filt_st", on_click="ignore")
for k, f in figs.items():  # the open tab's figure
    c[3].download_button(f"{k.capitalize()} (PNG)", dl.png_later(f), f"{stem}_{k}.png", "image/png",
                         key=f"dl_filt_png_{k}", on_click="ignore", help="Rendered when clicked (a few seconds)")
    c[4].download_button(f"{k.capitalize()} (HTML)", (lambda f=f: dl.figure_html(f)), f"{stem}_{k}.html", "text/html",
                         key=f"dl_filt_html_{k}", on_click="ignore")
if c[2].button("Report of this view", key="w_filt_report", help="The HTML report (overview + filters) of this layer "
               "with the options above; opens offline."):
    st.session_state["_filt_report"] = True
if st.session_state.get("_filt_report"):
    example = current_audio(model)
    if example is not None:
        try:
            html = cached_report_html(model, example, ("overview", "filters"),
                                      {"filters": {"options": FilterOptions(span=span, layers=(layer,))}})
            c[2].download_button("Download report", html, f"{stem}_report.html", "text/html", key="dl_filt_report",
                                 on_click="ignore")
        except ProbeError as exc:
            show_error(exc, "Cannot write the report: ")
