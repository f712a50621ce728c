"""NMF: how NMF-like the model is — its bases vs NMF's W, its activations vs NMF's H, on this clip."""

import streamlit as st

from apps import downloads as dl
from apps.cache import cached_nmf
from apps.menus import layer_names
from apps.ui import build, plot, show_error, page_selection
from probe.errors import ProbeError
from probe.figures.nmf import activations_vs_h, bases_overview
from probe.pipelines import NMFOptions

st.title("NMF comparison")
model, example = page_selection()
st.caption("NMF factorises the clip's magnitude spectrogram into spectral bases W and their activations H. A model "
           "that works like NMF has bases close to W (cosine near 1) and activations that follow H.")

defaults = NMFOptions()
c1, c2, c3 = st.columns([2, 2, 3])
components = c1.number_input("NMF rank (0 = as many as the model's bases)", 0, 128, 0, key="w_nmf_k")
beta = c2.selectbox("NMF loss", ["frobenius", "kl", "is"], index=["frobenius", "kl", "is"].index(defaults.beta),
                    key="w_nmf_beta")
layers = ["(bases layer's latent)"] + layer_names(model.spec)
layer = c3.selectbox("Activations layer", layers, key="w_nmf_layer")
options = NMFOptions(components=int(components) or None, beta=beta,
                     layer=None if layer == layers[0] else layer)
try:
    res = cached_nmf(model, example, options)
except ProbeError as exc:
    if options.layer is None:  # the default needs a spectral bank: say so and offer the layer menu
        st.info(f"{str(exc)[0].upper()}{str(exc)[1:]} in the Activations layer menu above: its output is then "
                "compared with NMF's H.")
    else:
        show_error(exc, "Cannot compare with NMF: ")
    st.stop()
for w in res.warnings:
    st.warning(w, icon=":material/warning:")
cmp, like = res.comparison, res.likeness
m = st.columns(4)
m[0].metric("NMF rank", like["nmf_rank"], f"rel. error {like['nmf_rel_error']:.3f}", delta_color="off",
            delta_arrow="off")
if hasattr(cmp, "cosine_"):
    m[1].metric("Bases vs W (mean matched cosine)", f"{cmp.mean_cosine_:.3f}",
                f"{int(cmp.unmatched_.size)} below {cmp.threshold}", delta_color="off", delta_arrow="off")
if hasattr(cmp, "act_corr_"):
    m[2].metric("Activations vs H (mean matched r)", f"{cmp.mean_act_corr_:.3f}")
m[3].metric("Non-negative share", f"{like['nonneg_share']:.2f}", f"Hoyer sparsity {like['hoyer']:.2f}",
            delta_color="off", delta_arrow="off",
            help="Share of activation mass that is non-negative, and how sparse the activations are (0..1)")
st.caption(f"Bases from {res.bases_layer or '– (no spectral bank)'}; activations from {res.activations_layer} "
           f"({res.n_units} units{', ' + res.units_kept if res.units_kept else ''}).")
figs = {}
if hasattr(cmp, "cosine_"):
    # one chart: the bases side by side and their matching matrix (a page pays ~0.1 s per chart in the browser)
    figs["bases"] = build(bases_overview, cmp, res.freqs)
    plot(figs["bases"], key="nmf_bases")
if hasattr(cmp, "act_corr_"):
    figs["activations"] = build(activations_vs_h, cmp)
    plot(figs["activations"], key="nmf_activations")
stem = dl.file_stem(model.name, example.name, "nmf")
c = st.columns(3)
# downloads are built when clicked (a callable), not on every rerun of the page
c[0].download_button("NMF W and H (safetensors)", lambda: dl.map_safetensors(
                         {"W": cmp.W_, "H": cmp.H_, "freqs": res.freqs}, {"model": model.name, "audio": example.name}),
                     f"{stem}.safetensors", "application/octet-stream", key="dl_nmf_st", on_click="ignore")
c[1].download_button("Figures (HTML)", lambda: b"".join(dl.figure_html(f) for f in figs.values() if f is not None),
                     f"{stem}.html", "text/html", key="dl_nmf_html", on_click="ignore", disabled=not any(figs.values()))
# PNGs (rendered on the click) and a report of this view (added by the attribution/downloads helper)
for name_, f_ in figs.items():
    if f_ is not None:
        c[2].download_button(f"{name_.replace('_', ' ').capitalize()} (PNG)", dl.png_later(f_), f"{stem}_{name_}.png",
                             "image/png", key=f"dl_nmf_png_{name_}", on_click="ignore", help="Rendered when clicked")
if st.button("Report of this view", key="w_nmf_report", help="The HTML report (overview + NMF); opens offline."):
    st.session_state["_nmf_report"] = True
if st.session_state.get("_nmf_report"):
    from apps.cache import cached_report_html

    try:
        st.download_button("Download report", cached_report_html(model, example, ("overview", "nmf"), {"nmf": {"options": options}}),
                           f"{stem}_report.html", "text/html", key="dl_nmf_report", on_click="ignore")
    except ProbeError as exc:
        show_error(exc, "Cannot write the report: ")
