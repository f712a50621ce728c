"""Attribution: which time-frequency regions drive an output — seen over the spectrogram, heard, and tested by deletion."""

import streamlit as st

from apps.cache import cached_attribution
from apps.menus import ATTRIBUTION_METHODS, target_options
from apps.ui import build, current_audio, current_model, plot, selection_caption, show_error
from probe.errors import ProbeError
from probe.figures.attribution import attribution_figure, deletion_figure, target_track_figure
from probe.pipelines import AttributionOptions

st.title("Attribution")
model = current_model()
if model is None:
    st.stop()
example = current_audio(model)
if example is None:
    st.stop()
selection_caption(model, example)

options = target_options(model.spec, example)
c1, c2, c3 = st.columns([3, 2, 1])
custom = "custom…"
choice = c1.selectbox("Target", options + [custom], key="w_attr_target",
                      help="What to explain: a class over a time span (detectors), a separated source, an embedding "
                           "cluster. The ground-truth events of the example come first.")
target = c1.text_input("Target string", value="" if not options else options[0], key="w_attr_custom",
                       placeholder="class=bell,t=3.0:3.5 · source=1,f=200:1000 · cluster=1") if choice == custom else choice
defaults = AttributionOptions()
method = c2.selectbox("Method", list(ATTRIBUTION_METHODS), index=ATTRIBUTION_METHODS.index(defaults.method),
                      key="w_attr_method",
                      help="saliency and ixg: one gradient (fast); ig: integrated gradients (completeness checked); "
                           "gradshap, occlusion: slower; gradcam: last conv layer.")
steps = c3.selectbox("IG steps", ["auto", 8, 16, 32, 64, 128], index=0, key="w_attr_steps",
                     disabled=method not in ("ig", "gradshap"),
                     help="auto: raised until the completeness error is at most 1 %")
top = st.slider("Explanation keeps the top % of T-F bins", 1, 50, int(defaults.top_percent), key="w_attr_top")

try:
    res = cached_attribution(model, example, AttributionOptions(target=target or None, method=method, steps=steps,
                                                                top_percent=float(top)))
except ProbeError as exc:
    show_error(exc, f"Cannot attribute {target!r}: ")
    st.stop()

attr, summ = res.attribution, res.summary
m = st.columns(3)
if summ.get("target_value") is not None:
    m[0].metric("Target value f(clip)", f"{summ['target_value']:.3f}",
                None if summ.get("baseline_value") is None else f"baseline {summ['baseline_value']:.3f}", delta_color="off",
                delta_arrow="off", help=f"{summ['target']} on the clip, and on the baseline ({summ.get('baseline')})")
if summ.get("completeness_error") is not None:
    m[1].metric("Completeness error", f"{summ['completeness_error']:.2%}",
                help="|sum(map) − (f(clip) − f(baseline))| relative to f(clip) − f(baseline)")
if res.deletion and res.deletion.get("auc") is not None:
    d = res["deletion"]
    m[2].metric("Deletion AUC (lower = faithful)", f"{d['auc']:.3f}", f"random order {d['auc_random']:.3f}",
                delta_color="off", delta_arrow="off")
for w in res.warnings:
    st.warning(w)

mel = st.toggle("Fold relevance onto mel bands", value=model.spec.input_kind == "logmel", key="w_attr_mel",
                help="The map lives on the linear STFT; the mel view sums it into mel bands (total relevance kept).")
plot(build(attribution_figure, attr, boxes=example.events, mel=mel), key="attr_map")
if attr.track is not None:
    plot(build(target_track_figure, attr), key="attr_track")

st.subheader("Listen")
st.caption(f"The explanation keeps the top {top} % of bins by relevance (positive only) of the clip's STFT; the "
           "complement is everything else. Together they add up to the clip.")
c1, c2, c3 = st.columns(3)
c1.markdown("**Clip**")
c1.audio(example.y, sample_rate=example.sr)
c2.markdown("**Explanation**")
c2.audio(res["explanation"], sample_rate=res["sr"])
c3.markdown("**Complement**")
c3.audio(res["complement"], sample_rate=res["sr"])

if res.deletion and res.deletion.get("auc") is not None:
    st.subheader("Deletion test")
    st.caption("Bins are replaced by the baseline in attribution order and in random order; a faithful map makes the "
               "target fall faster than random.")
    plot(build(deletion_figure, res["deletion"]), key="attr_deletion")
