"""Overview: pick a model and a clip; see the clip (spectrogram, player), the model card and the model's outputs."""

import numpy as np
import streamlit as st

from pathlib import Path

from apps import downloads as dl
from apps import policy, selection, state, uploads
from apps.cache import (cached_clustering, cached_default_layer, cached_outputs, cached_spectrogram, get_example,
                        get_model)
from apps.ui import AUDIO_KEY, MODEL_KEY, UPLOAD_ERROR_KEY, UPLOAD_KEY, current_model_ref, play, plot, show_error
from probe.errors import ProbeError
from probe.pipelines import match_sources, model_card
from probe.figures import clip as fc

st.title("probe")
st.caption("What did this audio model learn? Pick a model and a clip here; the other pages show its filters, "
           "embeddings, attributions and activations on that clip.")

# ---- model ----------------------------------------------------------------------------------
zoo = state.zoo_models()
specs = policy.allowed_spec_files()
ref = current_model_ref()
if ref:
    try:
        policy.check_model_ref(ref)
    except ProbeError as exc:  # a forged session or link: say so, then offer what is allowed
        show_error(exc, "Cannot load this model: ")
        ref = st.session_state[MODEL_KEY] = None
left, right = st.columns([3, 2])
with left:
    sources = (["Zoo"] if zoo else []) + (["Spec file"] if specs else [])
    if not sources:
        st.info("No model zoo is installed and this server allows no spec folders: start it with "
                "`probe app --allow-models DIR` to offer the spec files in DIR.")
        st.stop()
    is_spec = bool(ref) and not str(ref).startswith("zoo:")
    source = st.radio("Model", sources, horizontal=True,
                      index=sources.index("Spec file") if is_spec and "Spec file" in sources else 0,
                      key="w_model_source")
    if source == "Zoo":
        refs = [e["ref"] for e in zoo]
        labels = {e["ref"]: e["label"] for e in zoo}
        picked = st.selectbox("Zoo model", refs, index=refs.index(ref) if ref in refs else 0, format_func=labels.get,
                              key="w_zoo_model")
    else:
        roots = policy.current_policy().models
        picked = st.selectbox("Spec file (from the folders this server allows)", specs,
                              index=specs.index(ref) if ref in specs else 0, key="w_spec_file",
                              format_func=lambda p: next((f"{r.name}/{Path(p).relative_to(r)}" for r in roots
                                                          if Path(p).is_relative_to(r)), Path(p).name))
    if picked != ref:
        st.session_state[MODEL_KEY], st.session_state[AUDIO_KEY] = picked, None
        st.session_state[UPLOAD_KEY] = None
        ref = picked

model = None
if ref:
    try:
        model = get_model(ref)
    except ProbeError as exc:
        show_error(exc, f"Cannot load {str(ref)[:120]}: ")
if model is None:
    st.stop()

# ---- audio ----------------------------------------------------------------------------------
examples = state.example_refs(model.ref)
files = policy.allowed_audio_files()
with right:
    kinds = (["Example"] if examples else []) + ["Upload"] + (["Server file"] if files else [])
    current = st.session_state.get(AUDIO_KEY)
    if current == "upload" or (not current and not examples):
        default_kind = "Upload"
    elif current and not str(current).startswith("example:") and files:
        default_kind = "Server file"
    else:
        default_kind = kinds[0]
    kind = st.radio("Audio", kinds, horizontal=True, index=kinds.index(default_kind), key="w_audio_kind")
    if kind == "Example":
        idx = examples.index(current) if current in examples else 0
        st.session_state[AUDIO_KEY] = st.selectbox("Test-split example", examples, index=idx, key="w_example")
    elif kind == "Upload":
        up = st.file_uploader(f"Audio file ({', '.join(uploads.UPLOAD_TYPES)}; up to "
                              f"{uploads.MAX_UPLOAD_SECONDS:.0f} s are analysed, resampled to {model.sample_rate} Hz)",
                              type=list(uploads.UPLOAD_TYPES), key="w_upload")
        if up is not None:
            stamp = (up.name, up.size, up.file_id, model.sample_rate)
            crop = bool(st.session_state.get("w_upload_crop")) and st.session_state.get("_probe_upload_long") == stamp
            if st.session_state.get("_probe_upload_stamp") != (stamp, crop):
                st.session_state["_probe_upload_stamp"] = (stamp, crop)
                st.session_state[AUDIO_KEY] = "upload"
                st.session_state[UPLOAD_KEY], st.session_state[UPLOAD_ERROR_KEY] = None, None
                try:
                    st.session_state[UPLOAD_KEY] = uploads.load_upload(up.name, up.getvalue(), model.sample_rate,
                                                                       crop=crop)
                except uploads.UploadTooLong as exc:
                    st.session_state["_probe_upload_long"] = stamp
                    st.session_state[UPLOAD_ERROR_KEY] = str(exc)
                except ProbeError as exc:
                    st.session_state[UPLOAD_ERROR_KEY] = str(exc)
            if st.session_state.get(UPLOAD_ERROR_KEY):
                st.error(f"Cannot use this file: {st.session_state[UPLOAD_ERROR_KEY]}")
            if st.session_state.get("_probe_upload_long") == stamp:
                st.checkbox(f"Analyse its first {uploads.MAX_UPLOAD_SECONDS:.0f} s", key="w_upload_crop")
        elif current != "upload":  # the uploader forgets its file on a page switch; the accepted upload stays
            st.session_state[AUDIO_KEY] = None
    else:
        roots = policy.current_policy().audio
        st.session_state[AUDIO_KEY] = st.selectbox(
            "Audio file (from the folders this server allows)", files,
            index=files.index(current) if current in files else 0, key="w_audio_file",
            format_func=lambda p: next((f"{r.name}/{Path(p).relative_to(r)}" for r in roots
                                        if Path(p).is_relative_to(r)), Path(p).name))

example = None
aref = st.session_state.get(AUDIO_KEY)
if aref == "upload":
    example = st.session_state.get(UPLOAD_KEY)
    if example is not None and example.sr != model.sample_rate:
        example = None
        st.warning("The uploaded clip was decoded for another model's sample rate: upload it again.")
elif aref:
    try:
        example = get_example(aref, model.sample_rate)
    except ProbeError as exc:
        show_error(exc, "Cannot load this audio: ")

# ---- model card -----------------------------------------------------------------------------
card = model_card(model.spec)
st.subheader(f"Model: {card['name']}")
st.caption(" · ".join(x for x in (card["task"], f"{card['input_kind']} in → {card['output_kind']} out",
                                  f"{len(card['classes'])} classes" if card["classes"] else "",
                                  f"{card['n_sources']} sources" if card["n_sources"] else "") if x))
c = st.columns(3)
c[0].metric("Parameters", f"{card['params']:,}")
c[1].metric("Sample rate", f"{card['sample_rate'] / 1000:g} kHz", help=f"n_fft {card['n_fft']}, hop {card['hop_length']}"
            + (f", {card['n_mels']} mel bands" if card["n_mels"] else ""))
c[2].metric("Frame hop", f"{card['frame_seconds'] * 1000:.0f} ms")
if card["metrics"]:
    st.dataframe({"metric (model card)": [k for k, _ in card["metrics"]],
                  "value": [f"{v:.4g}" if isinstance(v, float) else str(v) for _, v in card["metrics"]]},
                 hide_index=True, width="stretch", height=220)
else:
    st.caption("No model-card metrics recorded for this model.")
with st.expander("Details"):
    st.json({k: v for k, v in card.items() if k != "metrics"}, expanded=False)

# ---- clip -----------------------------------------------------------------------------------
if example is None:
    st.info("Pick an example or upload a file to see the clip and what the model does with it.")
    st.stop()
st.subheader(f"Audio: {example.name}")
st.caption(f"{example.duration:.2f} s at {example.sr} Hz")
play(example.y, example.sr)
spec_data = cached_spectrogram(model, example)
plot(fc.spectrogram_figure(spec_data, events=example.events, classes=model.spec.classes,
                           title="Spectrogram (ground-truth event boxes)" if example.events else "Spectrogram"),
     key="overview_spectrogram")
if example.sources is not None:
    st.markdown("**Ground-truth sources** (the example's oracle stems)")
    names = example.source_names or [f"source {i + 1}" for i in range(len(example.sources))]
    cols = st.columns(len(names))
    for col, name, s in zip(cols, names, example.sources):
        col.caption(str(name) + ("" if np.any(s) else " — silent in this example"))
        play(s, example.sr, where=col)

try:
    outs = cached_outputs(model, example)
except ProbeError as exc:
    show_error(exc, "Cannot run the model: ")
    st.stop()
for w in outs.warnings:  # the pipeline's (e.g. logits declared as frame_probs), as the report shows them
    st.warning(w, icon=":material/warning:")
fig = fc.outputs_figure(outs, title="Model output", threshold=(model.spec.info.get("postprocessing") or {}).get("threshold"))


def _matched(name, j: int, matches) -> str:
    """An output's caption: its name, and the ground-truth source it matches best (with SI-SDR) when known."""
    if not matches:
        return str(name)
    m = matches[j]
    extra = f", mixture {m['si_sdr_mixture_db']:.1f} dB" if "si_sdr_mixture_db" in m else ""
    return f"{name} ≈ {m['name']} (SI-SDR {m['si_sdr_db']:.1f} dB{extra})"


if outs.get("kind") == "sources" and "values" in outs:
    matches = match_sources(outs["values"], example.sources, example.source_names, mixture=example.y) \
        if example.sources is not None and outs.get("sr") == example.sr else None
    st.markdown("**Model output: separated sources**" + (" — each named by the ground-truth source it matches "
                                                          "best (the permutation with the best SI-SDR)"
                                                          if matches else ""))
    cols = st.columns(len(outs["labels"]))
    for j, (col, name, s) in enumerate(zip(cols, outs["labels"], outs["values"])):
        col.caption(_matched(name, j, matches))
        play(s, outs["sr"], where=col)
        col.download_button("WAV", lambda s=s: dl.wav_bytes(s, outs["sr"]), dl.file_stem(model.name, example.name, name) + ".wav",
                            "audio/wav", key=f"dl_out_{j}", on_click="ignore")
if outs.get("kind") == "masks" and "values" in outs:
    audio = selection.masked_mixture(model.spec.grid, example.y, outs["values"])
    if audio is not None:
        st.markdown("**Model output: each mask applied to the mixture** (mixture phase)")
        matches = match_sources(audio, example.sources, example.source_names, mixture=example.y) \
            if example.sources is not None else None
        cols = st.columns(len(audio))
        for j, (col, name, s) in enumerate(zip(cols, outs["labels"], audio)):
            col.caption(_matched(name, j, matches))
            play(s, example.sr, where=col)
            col.download_button("WAV", lambda s=s: dl.wav_bytes(s, example.sr),
                                dl.file_stem(model.name, example.name, name) + ".wav", "audio/wav", key=f"dl_mask_{j}", on_click="ignore")
if outs.get("kind") == "tf_embeddings":
    # the shared clustering (one cache entry, one numbering, names from the ground truth): as on Embeddings/Attribution
    try:
        emb = cached_clustering(model, example, cached_default_layer(model, example, "embeddings"),
                                int(model.spec.n_sources or 2))
        names = list(emb.cluster_names or [f"cluster {j}" for j in range(1, emb.n_clusters + 1)])
        st.markdown("**Model output: its embeddings clustered** (k-means; each cluster as a mask on the mixture)")
        cols = st.columns(emb.cluster_audio.shape[0])
        for j, col in enumerate(cols):
            col.caption(f"cluster {j + 1}" + (f" ({names[j]})" if names[j] != f"cluster {j + 1}" else ""))
            play(emb.cluster_audio[j], emb.sr, where=col)
            col.download_button("WAV", lambda j=j: dl.wav_bytes(emb.cluster_audio[j], emb.sr),
                                dl.file_stem(model.name, example.name, f"cluster{j + 1}") + ".wav", "audio/wav",
                                key=f"dl_cluster_{j}", on_click="ignore")
    except ProbeError as exc:
        show_error(exc, "Cannot cluster the embeddings: ")
if fig is not None:
    plot(fig, key="overview_outputs")
elif outs.get("kind") not in ("sources", "tf_embeddings"):
    st.caption(f"Model output: {outs.get('kind')} of shape {outs.get('shape')}")

# figure PNG (rendered on the click) and a report of this view (added by the attribution/downloads helper)
c = st.columns(2)
if fig is not None:
    c[0].download_button("Model output (PNG)", dl.png_later(fig), dl.file_stem(model.name, example.name, "output")
                         + ".png", "image/png", key="dl_overview_png", on_click="ignore", help="Rendered when clicked")
rep = c[1] if fig is not None else c[0]  # left-aligned when there is no figure to download
if rep.button("Report of this view", key="w_overview_report", help="The HTML report (overview); opens offline."):
    st.session_state["_overview_report"] = True
if st.session_state.get("_overview_report"):
    from apps.cache import cached_report_html

    try:
        rep.download_button("Download report", cached_report_html(model, example, ("overview",), {}),
                             dl.file_stem(model.name, example.name, "report") + ".html", "text/html",
                             key="dl_overview_report", on_click="ignore")
    except ProbeError as exc:
        show_error(exc, "Cannot write the report: ")
