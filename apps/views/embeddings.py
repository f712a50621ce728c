"""Embeddings: a 2-D map of a layer's embeddings (PCA first, UMAP on request), coloured by what is known; listen to each cluster."""

import streamlit as st

from apps.cache import cached_default_layer, cached_embeddings
from apps.menus import embedding_layers
from apps.ui import build, current_audio, current_model, plot, selection_caption, show_error
from probe.errors import ProbeError
from probe.figures.embeddings import cluster_mask_figure, embedding_scatter
from probe.pipelines import EmbeddingOptions

st.title("Embeddings")
model = current_model()
if model is None:
    st.stop()
example = current_audio(model)
if example is None:
    st.stop()
selection_caption(model, example)

layers = embedding_layers(model.spec)
first = cached_default_layer(model, example, "embeddings")
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

try:
    res = cached_embeddings(model, example, EmbeddingOptions(layer=layer, projection=projection, n_clusters=int(n_clusters),
                                                          budget=int(budget)))
except ProbeError as exc:
    show_error(exc, f"Cannot map {layer}: ")
    st.stop()

points = res["points"]
colours = list(res["colourings"])
preferred = [c for c in ("source", "class", "cluster", "freq", "time", "energy") if c in colours]
m = st.columns(4)
m[0].metric("Points", f"{len(points):,}", f"{'T-F bins' if res['kind'] == 'tf' else 'frames'}", delta_color="off",
            delta_arrow="off")
m[1].metric("Dimension", points.X.shape[1])
m[2].metric(f"Trustworthiness ({projection.upper()})", f"{res['trustworthiness']:.3f}")
if res["agreement"]:
    m[3].metric("Mask accuracy vs oracle", f"{res['agreement']['mask_accuracy']:.2f}",
                f"ARI {res['agreement']['ari']:.2f}", delta_color="off", delta_arrow="off")
colour = st.radio("Colour by", preferred + [c for c in colours if c not in preferred], horizontal=True,
                  key="w_emb_colour")
plot(build(embedding_scatter, points, res["coords"], color=colour, clusters=res["clusters"],
            axis_names=(f"{projection.upper()} 1", f"{projection.upper()} 2")), key="emb_scatter")

st.subheader("Listen to each cluster")
st.caption("Each cluster becomes a binary mask on the clip's STFT (every bin goes to its nearest cluster) and is "
           "resynthesised with the mixture's phase.")
k = res["cluster_audio"].shape[0]
cols = st.columns(k)
for j, col in enumerate(cols):
    col.markdown(f"**Cluster {j}**")
    col.audio(res["cluster_audio"][j], sample_rate=res["sr"])
which = st.radio("Show the mask of cluster", list(range(k)), horizontal=True, key="w_emb_mask")
mask_fig = build(cluster_mask_figure, res["clip"], res["cluster_masks"], int(which))
if mask_fig is not None:
    mask_fig.update_annotations(font_size=11)  # two panel titles side by side at the page's width
plot(mask_fig, key="emb_mask")
