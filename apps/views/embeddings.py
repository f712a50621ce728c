"""Embeddings: a 2-D map of a layer's embeddings (PCA first, UMAP on request) to explore by ear.

Click a point → hear its T-F neighbourhood (or its frame) resynthesised; box/lasso-select
points → hear the selection and see it as a mask on the spectrogram. Points can be coloured
and filtered by what is known (source, class, cluster) and by a time span and a frequency
band. Clusters come from the shared clustering (:func:`apps.cache.cached_clustering`): numbered
from 1 by decreasing energy and named from the ground truth when the example has it, the same on
the Overview, here and in the Attribution targets.
"""

import numpy as np
import streamlit as st

from apps import downloads as dl
from apps import selection as sel
from apps.cache import cached_default_layer, cached_embeddings, cached_report_html, clustering_options
from apps.menus import embedding_layers
from apps.ui import button_columns, build, play, plot, show_error, page_selection
from probe.errors import ProbeError
from probe.figures.embeddings import cluster_mask_figure, display_subset, embedding_scatter
from probe.pipelines import EmbeddingOptions

#: a clicked point plays its cell and this many cells either side (in time and frequency): one
#: 16-ms cell is too short to hear, 9 × 9 cells (~0.1 s × ~300 Hz on the zoo's 8 kHz grid) is not
NEIGHBOURHOOD = 4
#: points the map draws at most (a stratified sample by cluster; the analysis keeps every point). An SVG map of
#: 4,000 points took ~0.2 s of the browser's time per visit, 1,500 take ~0.08 s
MAP_POINTS = 1500

st.title("Embeddings")
model, example = page_selection()

layers = embedding_layers(model.spec)
try:
    first = cached_default_layer(model, example, "embeddings")
except ProbeError as exc:  # the model cannot run on this clip: say why, once
    show_error(exc, "Cannot run the model: ")
    st.stop()
c1, c2, c3 = st.columns([3, 1, 2])
layer = c1.selectbox("Embedding layer", layers, index=layers.index(first) if first in layers else 0, key="w_emb_layer",
                     format_func=lambda n: "model output (tf_embeddings)" if n == "output" else n,
                     help="The model's per-T-F embeddings, or any layer with a time axis (a per-frame or per-T-F "
                          "embedding after capture).")
n_clusters = c2.number_input("Clusters", 2, 8, value=int(model.spec.n_sources or 2), key="w_emb_k")
defaults = EmbeddingOptions()
budget = c3.select_slider("Points", [500, 1000, 2000, 4000], value=defaults.budget, key="w_emb_budget")
use_umap = st.toggle("UMAP map (slower; the first run compiles numba kernels)", value=defaults.projection == "umap",
                     key="w_emb_umap")
projection = "umap" if use_umap else "pca"

options = clustering_options(model, layer, int(n_clusters), int(budget), projection)
try:
    res = cached_embeddings(model, example, options)
except ProbeError as exc:
    show_error(exc, f"Cannot map {layer}: ")
    st.stop()

points, clip = res["points"], res["clip"]
numbers = np.asarray(res.clusters.labels_) + 1  # clusters numbered from 1 by decreasing energy, as everywhere
cluster_names = list(res.cluster_names or [f"cluster {j}" for j in range(1, res.n_clusters + 1)])


def cluster_label(j: int) -> str:
    """``"cluster 1 (high)"`` (1-based ``j``), or ``"cluster 1"`` without a name from the ground truth."""
    name = cluster_names[j - 1]
    return name if name == f"cluster {j}" else f"cluster {j} ({name})"


if int(budget) != defaults.budget:
    st.caption(f"With {int(budget)} points the clustering differs from the {defaults.budget}-point one that the "
               "Overview and the Attribution targets use.")
for w in res.warnings:
    st.warning(w, icon=":material/warning:")
m = st.columns(4)
m[0].metric("Points", f"{len(points):,}", f"{'T-F bins' if res['kind'] == 'tf' else 'frames'}", delta_color="off",
            delta_arrow="off")
m[1].metric("Dimension", points.X.shape[1])
m[2].metric(f"Trustworthiness ({projection.upper()})", f"{res['trustworthiness']:.3f}")
if res["agreement"]:
    m[3].metric("Mask accuracy vs oracle", f"{res['agreement']['mask_accuracy']:.2f}",
                f"ARI {res['agreement']['ari']:.2f}", delta_color="off", delta_arrow="off")

# ---- colour and filter ----------------------------------------------------------------------
colours = list(res["colourings"])
preferred = [c for c in ("source", "class", "cluster", "freq", "time", "energy") if c in colours]
c1, c2 = st.columns([2, 3])
colour = c1.radio("Colour by", preferred + [c for c in colours if c not in preferred], horizontal=True,
                  key="w_emb_colour")
categorical = {k: v for k, v in res["colourings"].items() if v["kind"] == "categorical"}
if "cluster" in categorical:
    categorical["cluster"] = {**categorical["cluster"], "values": numbers,
                              "names": ["(none)"] + [cluster_label(j) for j in range(1, res.n_clusters + 1)]}
label_by = c2.selectbox("Filter by label", ["(all)"] + list(categorical), key="w_emb_filter_by")
allowed = None
if label_by != "(all)":
    cat = categorical[label_by]
    present = sorted(set(np.asarray(cat["values"]).tolist()))
    names = {v: (cat["names"][v] if 0 <= v < len(cat["names"]) else str(v)) for v in present}
    picked = c2.multiselect("Show", present, default=present, format_func=names.get, key=f"w_emb_show_{label_by}")
    allowed = picked
dur = float(len(example.y) / example.sr)
c1, c2 = st.columns(2)
span = c1.slider("Time span (s)", 0.0, round(dur, 2), (0.0, round(dur, 2)), step=0.05, key="w_emb_time")
band = None
if res["kind"] == "tf":
    nyq = float(example.sr / 2)
    band = c2.slider("Frequency band (Hz)", 0.0, nyq, (0.0, nyq), step=float(max(1, round(nyq / 200))), key="w_emb_freq")
keep = sel.filter_mask(points, time=span, freq=band,
                       category=None if allowed is None else categorical[label_by]["values"], allowed=allowed)
if not keep.any():
    st.info("No point passes these filters.")
    st.stop()
shown = sel.subset_points(points, keep)
coords = np.asarray(res["coords"])[keep]
# the map draws a stratified sample of at most MAP_POINTS (display only: the clustering, the masks, the
# downloads and a box/lasso selection keep every point); SVG, not WebGL: for this many points SVG draws in
# about half the time WebGL takes to start (and far sooner in a browser without a GPU)
drawn = display_subset(numbers[keep], MAP_POINTS)
drawn_points = sel.subset_points(shown, np.isin(np.arange(len(shown)), drawn))
axis_names = (f"{projection.upper()} 1", f"{projection.upper()} 2")
what = "T-F bins" if res["kind"] == "tf" else "frames"
fig = build(embedding_scatter, drawn_points, coords[drawn], color=colour, clusters=numbers[keep][drawn],
            axis_names=axis_names, webgl=False,
            title=f"{model.name} · {res.layer}: " + (f"showing {len(drawn):,} of {int(keep.sum()):,} {what}"
                                                    if len(drawn) < keep.sum() else f"{len(drawn):,} {what}")
            + f", coloured by {colour}")
if fig is not None:  # Streamlit makes clicks select only while dragging pans (box/lasso: from the mode bar)
    fig.update_layout(dragmode="pan")
n_cells = int(np.prod(clip.shape))
st.caption((f"Showing {len(drawn):,} of {int(keep.sum()):,} points" if len(drawn) < keep.sum() else
            f"{int(keep.sum()):,} points shown")
           + (f" (of {len(points):,} before the filters)" if keep.sum() < len(points) else "")
           + f"; the points are a sample of the clip's {n_cells:,} {what} (the Points budget). Click a point to hear "
           "its neighbourhood; draw a box or lasso to hear every point inside it, drawn or not.")
event = plot(fig, key="emb_scatter", on_select="rerun", selection_mode=("points", "box", "lasso"))

# ---- what was picked ------------------------------------------------------------------------
picked_idx = np.zeros(0, int)
if event is not None:
    region = sel.region_indices(event, coords)  # a box or lasso: every point inside, drawn or not
    if len(region):
        picked_idx = np.flatnonzero(keep)[region]
    else:  # a click: the drawn point, named by its (s, Hz) in the hover data
        on_map = sel.picked_indices(event, coords[drawn], drawn_points)
        picked_idx = np.flatnonzero(keep)[drawn[on_map]]
if len(picked_idx):
    single = len(picked_idx) == 1
    mask = sel.cell_mask(clip, points, picked_idx, spread=NEIGHBOURHOOD if single else 0)
    audio, stft_mask = sel.resynthesise(clip, mask)
    if single:
        i = int(picked_idx[0])
        where = f"t = {points.time[i]:.3f} s" + (f", f = {points.freq[i]:.0f} Hz" if np.isfinite(points.freq[i]) else "")
        st.markdown(f"**Picked point** ({where}, {cluster_label(int(numbers[i]))}): its "
                    + (f"T-F neighbourhood ({2 * NEIGHBOURHOOD + 1} × {2 * NEIGHBOURHOOD + 1} cells)"
                       if res["kind"] == "tf" else f"frame and {NEIGHBOURHOOD} frames either side"))
    else:
        st.markdown(f"**Selection**: {len(picked_idx)} points, {int(mask.sum())} cells")
    play(audio, clip.sr)
    # a coarser display than the cluster masks below (the figure stays light); a block with any picked cell is
    # shown, so a 9 × 9-cell neighbourhood stays visible
    mfig = build(cluster_mask_figure, clip, stft_mask[None], 0, title=f"{clip.name}: the picked cells",
                 max_frames=250, max_bins=100, mask_reduce="any")
    if mfig is not None:
        for a in mfig.layout.annotations:
            a.text = a.text.replace("cluster 1 bins", "picked bins").replace("what cluster 1 plays", "what they play")
        mfig.update_annotations(font_size=11)
    plot(mfig, key="emb_pick_mask")

# ---- clusters -------------------------------------------------------------------------------
st.subheader("Listen to each cluster")
st.caption("Each cluster becomes a binary mask on the clip's STFT (every bin goes to its nearest cluster) and is "
           "resynthesised with the mixture's phase.")
k = res["cluster_audio"].shape[0]
cols = st.columns(k)
for j, col in enumerate(cols):
    col.markdown(f"**{cluster_label(j + 1).capitalize()}**")
    play(res["cluster_audio"][j], res["sr"], where=col)
which = st.radio("Show the mask of cluster", list(range(1, k + 1)), horizontal=True, key="w_emb_mask",
                 format_func=lambda j: cluster_label(j).removeprefix("cluster "))
mask_fig = build(cluster_mask_figure, clip, res["cluster_masks"], int(which) - 1, name=cluster_names[int(which) - 1],
                 title=f"{clip.name}: {cluster_label(int(which))} of {k}")
if mask_fig is not None:
    mask_fig.update_annotations(font_size=11)  # two panel titles side by side at the page's width
plot(mask_fig, key="emb_mask")

st.subheader("Downloads")
stem = dl.file_stem(model.name, example.name, res.layer, projection)
table = dl.points_table(res)
c = button_columns(6)
c[0].download_button("Points + clusters (CSV)", lambda: dl.table_csv(table), f"{stem}_points.csv", "text/csv",
                     key="dl_emb_csv", on_click="ignore")
c[1].download_button("Points + clusters (Parquet)", lambda: dl.table_parquet(table), f"{stem}_points.parquet",
                     "application/octet-stream", key="dl_emb_parquet", on_click="ignore")
c[2].download_button(f"{cluster_label(1).capitalize()} (WAV)", lambda: dl.wav_bytes(res["cluster_audio"][0], res["sr"]),
                     f"{stem}_cluster1.wav", "audio/wav", key="dl_emb_wav", on_click="ignore")
if fig is not None:  # the downloads draw every point (built when clicked; WebGL in the HTML file)
    def _full_map():
        full = embedding_scatter(shown, coords, color=colour, clusters=numbers[keep], axis_names=axis_names)
        return full.update_layout(dragmode="pan")

    c[3].download_button("Map (HTML)", lambda: dl.figure_html(_full_map()), f"{stem}_map.html", "text/html",
                         key="dl_emb_html", on_click="ignore", help="Every point, not only the drawn sample")
    c[4].download_button("Map (PNG)", lambda: dl.png_later(_full_map())(), f"{stem}_map.png", "image/png",
                         key="dl_emb_png", on_click="ignore", help="Every point; rendered when clicked (a few seconds)")
if mask_fig is not None:
    c[4].download_button(f"Mask of cluster {int(which)} (PNG)", dl.png_later(mask_fig), f"{stem}_cluster{int(which)}.png",
                         "image/png", key="dl_emb_mask_png", on_click="ignore", help="Rendered when clicked")
if c[5].button("Report of this view", key="w_emb_report", help="The HTML report (overview + embeddings) with the "
               "options above; opens offline."):
    st.session_state["_emb_report"] = True
if st.session_state.get("_emb_report"):
    try:
        html = cached_report_html(model, example, ("overview", "embeddings"), {"embeddings": {"options": options}})
        c[5].download_button("Download report", html, f"{stem}_report.html", "text/html", key="dl_emb_report",
                             on_click="ignore")
    except ProbeError as exc:
        show_error(exc, "Cannot write the report: ")
