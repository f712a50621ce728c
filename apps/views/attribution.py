"""Attribution: which time-frequency regions drive an output — seen over the spectrogram, heard, tested by deletion.

Defaults are the pipeline's: integrated gradients with adaptive node spacing and as many
steps as completeness ≤ 1 % needs (the steps used are shown). Every warning the library
raises — near-empty map, near-zero target, deletion no better than random — is shown above
the map. A compare mode puts two methods (or targets) side by side; the sanity panel runs
the cascading randomisation test.
"""

import streamlit as st

from apps import downloads as dl
from apps.cache import (cached_attribution, cached_clustering, cached_default_target, cached_randomisation,
                        cached_report_html)
from apps.menus import ATTRIBUTION_METHODS, target_options
from apps.ui import button_columns, align_time_axes, build, play, plot, show_error, page_selection
from probe.errors import ProbeError
from probe.figures.attribution import attribution_figure, deletion_figure, randomisation_figure, target_track_figure
from probe.pipelines import AttributionOptions

st.title("Attribution")
model, example = page_selection()

defaults = AttributionOptions()
try:
    targets = target_options(model.spec, example, default=cached_default_target(model, example))
except ProbeError as exc:  # the model cannot run on this clip: say why, once
    show_error(exc, "Cannot run the model: ")
    st.stop()
custom = "custom…"
cluster_names: dict = {}
if model.spec.output_kind == "tf_embeddings":  # the shared clustering: the Embeddings/Overview numbering and names
    try:
        _c = cached_clustering(model, example)
        cluster_names = {f"cluster={j}": n for j, n in zip(_c.cluster_numbers or [], _c.cluster_names or [])
                         if n != f"cluster {j}"}
    except ProbeError:
        pass


def _target_label(t: str) -> str:
    return f"{t} ({cluster_names[t]})" if t in cluster_names else t



def _controls(col_target, col_method, col_steps, suffix: str, method_default: str, target_default: int = 0):
    choice = col_target.selectbox("Target", targets + [custom], index=min(target_default, len(targets)),
                                  key=f"w_attr_target{suffix}", format_func=_target_label,
                                  help="What to explain: a class over a time span (detectors), a separated source, "
                                       "an embedding cluster (1 = the loudest; the clustering of the Embeddings page at the output, k = sources; "
                                       "the map explains the magnitude the cluster's mask assigns, 0 for silence — add "
                                       "',of=similarity' for the cosine to its centroid), an encoder's features (feature=norm: "
                                       "the norm of its vectors; feature=K: unit K from 0; add ',t=A:B' for a span). "
                                       "The example's events come first.")
    target = col_target.text_input("Target string", value=targets[0] if targets else "", key=f"w_attr_custom{suffix}",
                                   placeholder="class=bell,t=3.0:3.5 · source=1,f=200:1000 · cluster=1 · feature=norm,t=1:2") \
        if choice == custom else choice
    method = col_method.selectbox("Method", list(ATTRIBUTION_METHODS), index=ATTRIBUTION_METHODS.index(method_default),
                                  key=f"w_attr_method{suffix}",
                                  help="ig: integrated gradients (completeness checked; the default); saliency and "
                                       "ixg: one gradient (fast); gradshap, occlusion: slower; gradcam: last conv layer.")
    steps = col_steps.selectbox("IG steps", ["auto", 8, 16, 32, 64, 128, 256], index=0, key=f"w_attr_steps{suffix}",
                                disabled=method not in ("ig", "gradshap"),
                                help="auto: raised until the completeness error is at most 1 % (with adaptive node "
                                     "spacing)")
    return target or None, method, steps


c1, c2, c3 = st.columns([3, 2, 1])
target, method, steps = _controls(c1, c2, c3, "", defaults.method)
c1, c2 = st.columns([3, 1])
top = c1.slider("Explanation keeps the top % of T-F bins", 1, 50, int(defaults.top_percent), key="w_attr_top")
compare = c2.toggle("Compare", value=False, key="w_attr_compare",
                    help="A second method or target side by side, with its faithfulness figures.")


def _options(target, method, steps):
    return AttributionOptions(target=target, method=method, steps=steps, top_percent=float(top))


def _attribute(target, method, steps):
    try:
        return cached_attribution(model, example, _options(target, method, steps))
    except ProbeError as exc:
        show_error(exc, f"Cannot attribute {target!r} with {method}: ")
        return None


def _summary(res, where, key: str):
    attr, summ = res.attribution, res.summary
    m = where.columns(3)
    if summ.get("target_value") is not None:
        m[0].metric("Target f(clip)", f"{summ['target_value']:.3g}",
                    None if summ.get("baseline_value") is None else f"baseline {summ['baseline_value']:.3g}",
                    delta_color="off", delta_arrow="off",
                    help=f"{summ['target']} on the clip, and on the baseline ({summ.get('baseline')})")
    if attr.completeness_error is not None:
        m[1].metric("Completeness error", f"{attr.completeness_error:.2%}",
                    f"{res.steps_used} steps" if res.steps_used else None, delta_color="off", delta_arrow="off",
                    help="|sum(map) − (f(clip) − f(baseline))| / |f(clip) − f(baseline)|; IG steps used to reach it")
    d = res.deletion or {}
    if d.get("auc") is not None:
        m[2].metric("Deletion AUC (lower = faithful)", f"{d['auc']:.3f}", f"random order {d['auc_random']:.3f}",
                    delta_color="off", delta_arrow="off",
                    help="Area under the normalised target while the top bins are deleted; 1 = the clip's score, "
                         "0 = the baseline's")
    for w in res.warnings:  # the pipeline's list: the map's, the deletion test's, completeness — as the CLI prints
        where.warning(w, icon=":material/warning:")
    amap = build(attribution_figure, attr, boxes=example.events, mel=mel)
    track = build(target_track_figure, attr) if attr.track is not None else None
    align_time_axes(amap, track, duration=example.duration)  # the track's seconds under the map's
    plot(amap, key=f"attr_map{key}", where=where)
    plot(track, key=f"attr_track{key}", where=where)
    return amap


res = _attribute(target, method, steps)
if res is None:
    st.stop()
mel = st.toggle("Fold relevance onto mel bands", value=model.spec.input_kind == "logmel", key="w_attr_mel",
                help="The map lives on the linear STFT; the mel view sums it into mel bands (total relevance kept).")

if compare:
    left, right = st.columns(2)
    left.markdown(f"**A · {method} · {_target_label(res.target)}**")
    fig = _summary(res, left, "")
    with right:
        c1, c2, c3 = st.columns([3, 2, 1])
        second = next((m for m in ("saliency", "ixg", "ig") if m != method), "saliency")
        target_b, method_b, steps_b = _controls(c1, c2, c3, "_b", second)
    res_b = _attribute(target_b, method_b, steps_b)
    if res_b is not None:
        right.markdown(f"**B · {method_b} · {_target_label(res_b.target)}**")
        _summary(res_b, right, "_b")
        if res.deletion and res_b.deletion and res.deletion.get("auc") is not None \
                and res_b.deletion.get("auc") is not None:
            st.dataframe({"": ["A", "B"], "method": [method, method_b], "target": [res.target, res_b.target],
                          "completeness": [res.attribution.completeness_error, res_b.attribution.completeness_error],
                          "deletion AUC": [res.deletion["auc"], res_b.deletion["auc"]],
                          "random AUC": [res.deletion["auc_random"], res_b.deletion["auc_random"]],
                          "insertion AUC": [res.deletion.get("insertion_auc"), res_b.deletion.get("insertion_auc")]},
                         hide_index=True)
else:
    fig = _summary(res, st, "")

attr = res.attribution
st.subheader("Listen")
st.caption(f"The explanation keeps the top {top} % of bins by relevance (positive only) of the clip's STFT; the "
           "complement is everything else. Together they add up to the clip.")
c1, c2, c3 = st.columns(3)
c1.markdown("**Clip**")
play(example.y, example.sr, where=c1)
c2.markdown("**Explanation**")
play(res["explanation"], res["sr"], where=c2)
c3.markdown("**Complement**")
play(res["complement"], res["sr"], where=c3)

if res.deletion and res.deletion.get("auc") is not None:
    st.subheader("Deletion test")
    st.caption("Bins are replaced by the baseline in attribution order and in random order; a faithful map makes the "
               "target fall faster than random.")
    plot(build(deletion_figure, res["deletion"]), key="attr_deletion")

st.subheader("Downloads")
stem = dl.file_stem(model.name, example.name, attr.method, res.target)
c = button_columns(6)
c[0].download_button("Map (safetensors)", lambda: dl.map_safetensors(
    {"map": attr.map, "times": attr.times, "freqs": attr.freqs},
    {"model": model.name, "audio": example.name, "method": attr.method, "target": res.target,
     "completeness_error": attr.completeness_error, "steps_used": res.steps_used}),
    f"{stem}.safetensors", "application/octet-stream", key="dl_attr_st", on_click="ignore")
c[1].download_button("Map (CSV)", lambda: dl.map_csv(attr.map, times=attr.times, freqs=attr.freqs, value="relevance"),
                     f"{stem}.csv", "text/csv", key="dl_attr_csv", on_click="ignore")
c[2].download_button("Explanation (WAV)", lambda: dl.wav_bytes(res["explanation"], res["sr"]), f"{stem}_explanation.wav",
                     "audio/wav", key="dl_attr_wav", on_click="ignore")
if fig is not None:  # the map drawn above (built once per run)
    c[3].download_button("Map figure (HTML)", lambda: dl.figure_html(fig), f"{stem}.html", "text/html", key="dl_attr_html", on_click="ignore")
    c[4].download_button("Map figure (PNG)", dl.png_later(fig), f"{stem}.png", "image/png", key="dl_attr_png",
                         on_click="ignore", help="Rendered when clicked (a few seconds)")
if c[5].button("Report of this view", key="w_attr_report", help="The HTML report (overview + attribution) with "
               "the options above; opens offline."):
    st.session_state["_attr_report"] = True
if st.session_state.get("_attr_report"):
    try:
        html = cached_report_html(model, example, ("overview", "attribution"),
                                  {"attribution": {"options": _options(target, method, steps)}})
        c[5].download_button("Download report", html, f"{stem}_report.html", "text/html", key="dl_attr_report", on_click="ignore")
    except ProbeError as exc:
        show_error(exc, "Cannot write the report: ")

with st.expander("Sanity check: cascading randomisation (Adebayo et al. 2018)"):
    st.caption("The layers are randomised one by one from the output down (on a copy of the model) and the map is "
               "computed again. A map that explains the model should change (Spearman / SSIM fall); one that stays "
               "the same shows the input, not the model.")
    c1, c2 = st.columns([2, 1])
    s_method = c1.selectbox("Method", ["saliency", "ixg", "ig"], key="w_attr_sanity_method",
                            help="saliency is fast; ig repeats integrated gradients (16 steps) for every layer")
    if c2.button("Run", key="w_attr_sanity_run"):
        st.session_state["_attr_sanity"] = s_method
    if st.session_state.get("_attr_sanity"):
        try:
            rnd = cached_randomisation(model, example, res.target, st.session_state["_attr_sanity"])
            plot(build(randomisation_figure, rnd), key="attr_sanity")
            last = {k: rnd[k][-1] for k in ("spearman", "ssim_rank") if rnd.get(k)}
            st.caption(f"After randomising all {len(rnd['layers']) - 1} layers: "
                       + ", ".join(f"{k} {v:.2f}" for k, v in last.items() if v is not None))
        except ProbeError as exc:
            show_error(exc, "Cannot run the randomisation test: ")
