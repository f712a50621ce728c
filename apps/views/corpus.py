"""Corpus: browse a corpus run — units by concept score, a unit's top excerpts, probes per layer, the corpus map.

Runs are folders written by ``probe corpus run``; a web user picks them from a menu of the
folders the server's owner allowed (``probe app --allow-runs DIR``), never by a typed path.
Everything shown comes from :mod:`probe.pipelines.corpus` and :mod:`probe.corpus.figures`.
"""

import streamlit as st

from apps import policy
from apps.ui import build, play, plot, show_error
from probe.corpus.figures import dissection_figure, map_figure, probe_figure
from probe.errors import ProbeError

RUN_KEY = "probe_corpus_run"

st.title("Corpus")
st.caption("A corpus run holds a model's activations over many clips (`probe corpus run`). Units are labelled by the "
           "acoustic concept they follow when they beat both a shifted-time null and a random-init copy of the model.")


def _stamp(path: str) -> float:
    from pathlib import Path

    return max((Path(path) / f).stat().st_mtime if (Path(path) / f).exists() else 0.0
               for f in ("corpus.json", "unit_stats.parquet", "dissect/dissect.json"))


@st.cache_data(max_entries=8, show_spinner=False)
def _dissection(path: str, stamp: float):
    from probe.report import corpus_unit_table, load_dissection

    dis = load_dissection(path, compute=False)
    if dis is None:
        return None
    return {"pairs": dis.pairs, "units": dis.units, "summary": dis.summary, "table": corpus_unit_table(dis)}


@st.cache_data(max_entries=32, show_spinner=False)
def _excerpts(path: str, stamp: float, layer: str, unit: int, k: int):
    from probe.report import unit_excerpts

    return unit_excerpts(path, layer, unit, k=k)


@st.cache_data(max_entries=16, show_spinner="Probing every layer…")
def _probe(path: str, stamp: float, label: str):
    from probe.pipelines.corpus import ProbeOptions, corpus_probe

    res = corpus_probe(path, options=ProbeOptions(label=label))
    return res.result, res.warnings


@st.cache_data(max_entries=16, show_spinner="Mapping the clips…")
def _map(path: str, stamp: float, layer: str, variant: str):
    from probe.pipelines.corpus import MapOptions, corpus_map

    res = corpus_map(path, options=MapOptions(layer=layer, variant=variant))
    return res.result, res.warnings


@st.cache_data(max_entries=8, show_spinner=False)
def _run_info(path: str, stamp: float):
    from probe.corpus import open_run

    run = open_run(path)
    return {"layers": run.layers, "concepts": run.concepts, "variants": run.variants, "clips": len(run.clips),
            "model": run.manifest["model"]["ref"], "has_labels": any(c.label for c in run.clips),
            "has_events": any(c.events for c in run.clips)}


runs = policy.allowed_runs()
if not runs:
    st.info("This server offers no corpus runs: its owner can add folders of runs with `probe app --allow-runs DIR`.")
    st.stop()
chosen = st.session_state.get(RUN_KEY)
if chosen is not None:  # a forged or stale session value passes the same check as the menu
    try:
        chosen = policy.check_run_ref(chosen)
    except ProbeError as exc:
        show_error(exc)
        st.session_state.pop(RUN_KEY, None)
        st.stop()
path = st.selectbox("Run", runs, index=runs.index(chosen) if chosen in runs else 0, key="w_corpus_run")
st.session_state[RUN_KEY] = path
try:
    path = policy.check_run_ref(path)
    stamp = _stamp(path)
    info = _run_info(path, stamp)
except ProbeError as exc:
    show_error(exc, "Cannot open the run: ")
    st.stop()
st.caption(f"{info['model']} · {info['clips']} clips · layers {', '.join(info['layers'])}")

tab_units, tab_probe, tab_map = st.tabs(["Units", "Probe per layer", "Map"])

with tab_units:
    dis = _dissection(path, stamp)
    if dis is None:
        st.info("This run has not been dissected yet (no `dissect/` folder).")
        if st.button("Dissect this run", key="w_corpus_dissect"):
            from probe.pipelines.corpus import corpus_dissect

            try:
                with st.spinner("Dissecting (1000 shifted-time permutations per unit and concept)…"):
                    corpus_dissect(path)
            except ProbeError as exc:
                show_error(exc, "Cannot dissect: ")
                st.stop()
            st.rerun()
    else:
        s = dis["summary"]
        st.caption(f"{s['labelled']} of {s['units']} units labelled (FDR {s['fdr']}, {s['permutations']} "
                   f"permutations, random-init control: {s['random_init_control']}). Click a column to sort.")
        table = dis["table"]
        st.dataframe(table, hide_index=True, width="stretch", key="w_corpus_table",
                     column_config={"score": st.column_config.NumberColumn("concept score", format="%.3f"),
                                    "z": st.column_config.NumberColumn(format="%.2f"),
                                    "best_z": st.column_config.NumberColumn(format="%.2f"),
                                    "q_unit": st.column_config.NumberColumn("q (unit)", format="%.4f")})
        names = [f"{r['layer']}:{r['unit']}" + (f" → {r['label']}" if r["label"] else "") for r in table]
        pick = st.selectbox("Unit", names, key="w_corpus_unit")
        row = table[names.index(pick)]
        k = st.slider("Excerpts", 1, 10, 3, key="w_corpus_k")
        items = _excerpts(path, stamp, row["layer"], int(row["unit"]), int(k))
        if not items:
            st.info("No excerpt: the unit has no top-k entry, or its clips moved since the run.")
        for caption, y, sr in items:
            st.caption(caption)
            play(y, int(sr))
        one = {"pairs": [p for p in dis["pairs"] if p["layer"] == row["layer"] and p["unit"] == row["unit"]],
               "units": [u for u in dis["units"] if u["layer"] == row["layer"] and u["unit"] == row["unit"]]}
        fig = build(dissection_figure, one, row["layer"])
        if fig is not None:
            fig.update_layout(title=f"{row['layer']} unit {row['unit']}: score per concept", height=320)
        plot(fig, key="corpus_unit_fig")
        with st.expander(f"All units of {row['layer']}"):
            plot(build(dissection_figure, {"pairs": dis["pairs"], "units": dis["units"]}, row["layer"]),
                 key="corpus_layer_fig")

with tab_probe:
    keys = (["label"] if info["has_labels"] else []) + (["event"] if info["has_events"] else []) + info["concepts"]
    if not keys:
        st.info("This run has no clip labels, events or concept tracks to probe.")
    else:
        label = st.selectbox("Label key", keys, key="w_corpus_label")
        if st.button("Probe every layer", key="w_corpus_probe") or st.session_state.get("_corpus_probed") == label:
            st.session_state["_corpus_probed"] = label
            try:
                result, warnings = _probe(path, stamp, label)
            except ProbeError as exc:
                show_error(exc, "Cannot probe: ")
            else:
                for w in warnings:
                    st.warning(w, icon=":material/warning:")
                plot(build(probe_figure, result), key="corpus_probe_fig")

with tab_map:
    c1, c2, c3 = st.columns(3)
    layer = c1.selectbox("Layer", info["layers"], index=len(info["layers"]) - 1, key="w_corpus_map_layer")
    variant = c2.selectbox("Model", info["variants"], key="w_corpus_map_variant")
    color = c3.selectbox("Colour by", ["label", "cluster"], key="w_corpus_map_color")
    try:
        result, warnings = _map(path, stamp, layer, variant)
    except ProbeError as exc:
        show_error(exc, "Cannot map: ")
    else:
        for w in warnings:
            st.caption(w)
        plot(build(map_figure, result, color=color), key="corpus_map_fig")
