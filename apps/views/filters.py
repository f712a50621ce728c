"""Filters: the learned filterbanks in filterbank terms — gallery, responses, centre frequencies, reference matching."""

import streamlit as st

from apps.cache import cached_filter_analysis, cached_filter_banks
from apps.ui import build, current_model, plot, show_error
from probe.errors import ProbeError
from probe.figures.filters import (centre_frequency_plot, filter_gallery, matched_responses_plot, matching_matrix,
                                   octave_density_plot, response_heatmap)
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

n_show = st.slider("Filters in the gallery", 8, 64, 32, step=8, key="w_filter_n")
plot(build(filter_gallery, bank, fr, max_filters=n_show), key="filters_gallery")
if fr.is_spectral_:
    plot(build(response_heatmap, fr), key="filters_responses")
if res.fit is not None:
    st.subheader("Centre frequency vs filter rank")
    st.caption("Sorted centres with the best straight line on a linear, mel, ERB-rate and log scale: the bank is "
               "spaced on the scale whose line fits best.")
    plot(build(centre_frequency_plot, fr, res.fit), key="filters_centres")
    plot(build(octave_density_plot, res.fit, sample_rate=fr.sample_rate_), key="filters_octaves")

    st.subheader("Matching with reference filterbanks")
    refs = res.refs
    st.dataframe({"reference": list(refs), "mean matched cosine": [round(r.mean_cosine_, 3) for r in refs.values()],
                  f"unmatched (cos < {next(iter(refs.values())).threshold})": [int(r.unmatched_.size) for r in refs.values()]},
                 hide_index=True, width="stretch")
    ref = st.selectbox("Reference bank", list(refs), index=list(refs).index(best_ref), key="w_filter_ref")
    match = refs[ref]
    c1, c2 = st.columns(2)
    with c1:
        plot(build(matching_matrix, match.cosine_, match.assignment_, row_order=fr.order_,
                    col_title=f"{ref} filter", title=f"{layer} × {ref} — mean matched cosine {match.mean_cosine_:.3f}"),
             key="filters_matrix")
    with c2:
        plot(build(matched_responses_plot, fr, match), key="filters_pairs")
