"""Regenerate docs/findings_attribution.md: localisation, deletion, randomisation, IG steps, separators.

Every attribution uses probe's current IG default unless a row says otherwise: ``steps="auto"`` (the nested open
trapezoid rule on 31, 63, …, 511 nodes, stopping at the first level whose completeness error is ≤ 1 %),
``spacing="adaptive"``. Results go to ``docs/scripts/results/attribution.json`` (one entry per zoo model, stamped
with the checkpoint's sha256), figures to ``docs/img/attr_*.png``; the script prints the doc's tables.

    nice -n 19 .venv/bin/python docs/scripts/findings_attribution.py                         # every model
    nice -n 19 .venv/bin/python docs/scripts/findings_attribution.py --models crnn_sed       # after a retraining
    nice -n 19 .venv/bin/python docs/scripts/findings_attribution.py --models rawcnn_sed --parts loc,deletion
    .venv/bin/python docs/scripts/findings_attribution.py --tables

Parts (detectors): ``loc`` (all events of the first 8 test scenes, silence and noise −30 dB baselines, explanation
SNR), ``deletion`` (6 detected events), ``example`` (crnn_sed's worked example and method comparison),
``random`` (cascading randomisation), ``chunk`` (4 s chunks vs whole clip), ``steps`` (what the default spends,
vs fixed Gauss-Legendre counts). Separators (convtasnet_lite, chimera, dc_blstm): ``sep``.
CPU (one thread, idle core): crnn_sed ≈ 15 min for everything, rawcnn_sed ≈ 6 min, each separator 1–5 min.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import IMG, checkpoint_line, load_results, one_thread, stamp, update_results, write_png  # noqa: E402

DOC = "attribution"
DETECTORS = ("crnn_sed", "rawcnn_sed")
SEPARATORS = ("convtasnet_lite", "chimera", "dc_blstm")
DETECTOR_PARTS = ("loc", "deletion", "example", "random", "chunk", "steps")
BASELINES = ("silence", "noise:-30")


def _target(ev):
    from probe.attribution import ClassTarget

    return ClassTarget(ev["label"], t=(float(ev["onset"]), float(ev["offset"])))


def _shares(a, ev):
    """Positive relevance inside the box, in the event's span outside its band, outside the span."""
    R = np.maximum(a.map.astype(np.float64), 0)
    tot = R.sum() or 1.0
    box = a.box_mask(ev)
    span = a.box_mask({"onset": ev["onset"], "offset": ev["offset"]})
    return {"in_box": float(R[box].sum() / tot), "in_span_out_of_band": float(R[span & ~box].sum() / tot),
            "out_of_span": float(R[~span].sum() / tot)}


def _events(spec, name, n_scenes, first=0):
    from model_zoo.registry import load_example

    for i in range(first, n_scenes):
        ex = load_example(name, i)
        for k, ev in enumerate(ex.events):
            if ev["label"] in spec.classes:
                yield i, k, ex, ev


def part_loc(spec, name, n_scenes, entry, first=0, baselines=BASELINES):
    """Localisation of every event of scenes [first, n_scenes); each event's row is stored as soon as it is done."""
    from probe.analyze.faithfulness import localisation
    from probe.attribution import attribute, listen, snr_db

    rows = []
    key = f"loc_{first}_{n_scenes}"
    for i, k, ex, ev in _events(spec, name, n_scenes, first):
        row = {"scene": i, "event": k, "label": ev["label"], "seconds": round(ev["offset"] - ev["onset"], 3)}
        for base in baselines:
            t0 = time.process_time()
            a = attribute(spec, ex.y, _target(ev), method="ig", baseline=base)
            loc = localisation(a, ev)
            row[base] = {"relevance_mass": loc["relevance_mass"], "pointing_game": loc["pointing_game"],
                         "rank_accuracy": loc["rank_accuracy"], "box_fraction": loc["box_fraction"],
                         "completeness_error": a.completeness_error, "target_value": a.target_value,
                         "steps_used": a.steps_used, "cpu_s": time.process_time() - t0, **_shares(a, ev)}
            if base == "noise:-30":
                stem = ex.event_stems[k]
                row["snr_db"] = {str(p): snr_db(listen(a, top_percent=p)[0], stem) for p in (1, 2, 5, 10)}
                row["snr_db"]["mixture"] = snr_db(ex.y, stem)
                row["snr_db"]["box_mask"] = snr_db(listen(a, mask=a.box_mask(ev))[0], stem)
        rows.append(row)
        print(f"  [{name}] scene {i} event {k} {ev['label']}: mass {row['noise:-30']['relevance_mass']:.2f} "
              f"steps {row['noise:-30']['steps_used']}", file=sys.stderr, flush=True)
        update_results(DOC, name, {**stamp(name), key: {"scenes": [first, n_scenes], "events": rows, "partial": True}})
    entry[key] = {"scenes": [first, n_scenes], "events": rows}


def part_deletion(spec, name, n_scenes, entry, n_deletion=6):
    from probe.analyze.faithfulness import deletion_test
    from probe.attribution import attribute

    dels, scenes = [], set()
    for i, k, ex, ev in _events(spec, name, n_scenes):
        if i in scenes or len(dels) >= n_deletion:
            continue
        a = attribute(spec, ex.y, _target(ev), method="ig", baseline="noise:-30")
        if a.target_value < 0.5:
            continue
        d = deletion_test(spec, a, n_random=3)
        scenes.add(i)
        dels.append({"scene": i, "event": k, "label": ev["label"],
                     **{kk: d[kk] for kk in ("auc", "auc_random", "drop_at_10", "drop_at_10_random",
                                             "insertion_auc", "insertion_auc_random")}})
        if name == "rawcnn_sed" and len(dels) == 1:
            from probe.figures.attribution import attribution_figure

            write_png(attribution_figure(a, boxes=[ev], fmax=6000, max_frames=300, max_bins=160, width=800),
                      IMG / f"attr_{name}_map.png")
            entry.setdefault("figure_event", {"scene": i, "event": k, "label": ev["label"],
                                              "completeness_error": a.completeness_error, "steps_used": a.steps_used})
    entry["deletion"] = dels


def part_example(spec, name, entry):
    """crnn_sed's worked example (test scene 0, first event, noise −30 dB) and the method comparison."""
    from model_zoo.registry import load_example
    from probe.analyze.faithfulness import deletion_test, localisation
    from probe.attribution import attribute, listen, snr_db
    from probe.figures.attribution import attribution_figure, deletion_figure, target_track_figure

    ex = load_example(name, 0)
    k, ev = next((k, e) for k, e in enumerate(ex.events) if e["label"] in spec.classes)
    t0 = time.process_time()
    a = attribute(spec, ex.y, _target(ev), method="ig", baseline="noise:-30")
    cpu = time.process_time() - t0
    loc = localisation(a, ev)
    d = deletion_test(spec, a, n_random=3)
    stem = ex.event_stems[k]
    expl, _ = listen(a, top_percent=2)
    peak_f, peak_t = np.unravel_index(np.argmax(a.map), a.map.shape)
    X = np.abs(a.input_magnitude)
    top = a.map >= np.percentile(a.map, 98)
    out = {"scene": 0, "event": k, "label": ev["label"], "onset": ev["onset"], "offset": ev["offset"],
           "band": [ev.get("f_lo"), ev.get("f_hi")], "target_value": a.target_value,
           "baseline_value": a.baseline_value, "completeness_error": a.completeness_error,
           "steps_used": a.steps_used, "steps_tried": a.info.get("steps_tried"), "cpu_s": cpu,
           "localisation": {kk: loc[kk] for kk in ("relevance_mass", "pointing_game", "rank_accuracy", "box_fraction")},
           **_shares(a, ev), "peak": {"t": float(a.times[peak_t]), "f": float(a.freqs[peak_f])},
           "top2_energy_share": None if X is None else float((X[top] ** 2).sum() / (X ** 2).sum()),
           "snr_db": {"top2": snr_db(expl, stem), "mixture": snr_db(ex.y, stem),
                      "box": snr_db(listen(a, mask=a.box_mask(ev))[0], stem)},
           "deletion": {kk: d[kk] for kk in ("auc", "auc_random", "drop_at_10", "drop_at_10_random",
                                            "insertion_auc", "insertion_auc_random")}}
    write_png(attribution_figure(a, boxes=[ev], fmax=6000, max_frames=300, max_bins=160, width=800),
              IMG / f"attr_{name}_map.png")
    write_png(attribution_figure(a, boxes=[ev], mel=True, fmax=6000, max_frames=300, max_bins=160, width=800),
              IMG / f"attr_{name}_mel.png")
    if a.track is not None:
        write_png(target_track_figure(a), IMG / f"attr_{name}_track.png")
    write_png(deletion_figure(d), IMG / f"attr_{name}_deletion.png")
    methods = {}
    for m, kw in (("ig", {}), ("gradshap", {}), ("occlusion", {"patch": (32, 25)}), ("ixg", {}), ("gradcam", {}),
                  ("saliency", {})):
        t0 = time.process_time()
        b = a if m == "ig" else attribute(spec, ex.y, _target(ev), method=m, baseline="noise:-30", **kw)
        methods[m] = {"relevance_mass": localisation(b, ev)["relevance_mass"],
                      "cpu_s": cpu if m == "ig" else time.process_time() - t0}
    out["methods"] = methods
    entry["example"] = out


def part_random(spec, name, entry):
    from model_zoo.registry import load_example
    from probe.analyze.faithfulness import randomisation_test
    from probe.figures.attribution import randomisation_figure

    ex = load_example(name, 0)
    ev = next(e for e in ex.events if e["label"] in spec.classes)
    rand = {}
    for method in ("saliency", "ig", "ixg", "gradcam"):
        kw = {"steps": 16} if method == "ig" else {}
        figs = (method in ("saliency", "ig")) if name == "crnn_sed" else method == "saliency"
        r = randomisation_test(spec, ex.y, _target(ev), method=method, baseline="noise:-30", return_maps=figs, **kw)
        if figs and "maps" in r:
            write_png(randomisation_figure(r), IMG / f"attr_{name}_randomisation_{method}.png")
        r.pop("maps", None)
        rand[method] = r
    entry["random"] = rand


def part_chunk(spec, name, entry):
    from model_zoo.registry import load_example
    from probe.analyze.faithfulness import localisation, spearman
    from probe.attribution import attribute

    ex = load_example(name, 0)
    ev = next(e for e in ex.events if e["label"] in spec.classes)
    full = attribute(spec, ex.y, _target(ev), method="ig", steps=16, baseline="noise:-30")
    ch = attribute(spec, ex.y, _target(ev), method="ig", steps=16, baseline="noise:-30", chunk_seconds=4.0,
                   overlap_seconds=2.0)
    entry["chunk"] = {"chunk_seconds": 4.0, "overlap_seconds": 2.0, "spearman": spearman(full.map, ch.map),
                      "relevance_mass_full": localisation(full, ev)["relevance_mass"],
                      "relevance_mass_chunked": localisation(ch, ev)["relevance_mass"]}


def part_steps(spec, name, entry):
    """What ``steps="auto"`` spends on scenes 0–2 (first event), beside Captum's linear Gauss-Legendre at fixed counts."""
    from model_zoo.registry import load_example
    from probe.attribution import attribute

    rows = []
    for i in range(3):
        ex = load_example(name, i)
        ev = next(e for e in ex.events if e["label"] in spec.classes)
        for base in BASELINES:
            a = attribute(spec, ex.y, _target(ev), method="ig", baseline=base)
            row = {"scene": i, "label": ev["label"], "baseline": base, "auto_steps_used": a.steps_used,
                   "auto_completeness": a.completeness_error, "auto_steps_tried": a.info.get("steps_tried"),
                   "linear": {}}
            for n in (64,):  # the old fixed default, Gauss-Legendre on linear spacing
                b = attribute(spec, ex.y, _target(ev), method="ig", baseline=base, steps=n, spacing="linear")
                row["linear"][str(n)] = b.completeness_error
            rows.append(row)
    entry["steps"] = rows


def part_converge(spec, name, entry):
    """How far the default's map is from a converged one: relative L1 to a 511-node nested map (scene 0)."""
    from model_zoo.registry import load_example
    from probe.attribution import attribute

    ex = load_example(name, 0)
    ev = next(e for e in ex.events if e["label"] in spec.classes)
    ref = attribute(spec, ex.y, _target(ev), method="ig", baseline="noise:-30", steps=511, quadrature="nested")
    out = {"label": ev["label"], "reference_steps": 511, "rel_l1": {}}
    for steps in ("auto", 127):
        kw = {} if steps == "auto" else {"steps": steps, "quadrature": "nested"}
        a = attribute(spec, ex.y, _target(ev), method="ig", baseline="noise:-30", **kw)
        out["rel_l1"][str(a.steps_used if steps == "auto" else steps) + (" (auto)" if steps == "auto" else "")] = float(
            np.abs(a.map - ref.map).sum() / np.abs(ref.map).sum())
    entry["converge"] = out


def study_separator(name, n_items=3):
    """Source (or cluster) targets: relevance inside the matched true source's ideal binary mask, SNR, deletion."""
    import torch

    from model_zoo.registry import load_example, load_model
    from probe.analyze.faithfulness import deletion_test
    from probe.attribution import SourceTarget, attribute, listen, snr_db

    spec = load_model(name)
    g = spec.grid
    rows = []
    for i in range(n_items):
        ex = load_example(name, i)
        S = np.abs(g.stft(torch.as_tensor(ex.sources)).numpy())
        with torch.no_grad():
            out = spec.forward(ex.y)
        for k in range(min(2, ex.sources.shape[0])):
            if spec.output_kind == "sources":
                est = out[0, k].cpu().numpy()[: len(ex.y)]
                match = int(np.argmax([abs(np.corrcoef(est, s)[0, 1]) for s in ex.sources]))
            elif spec.output_kind == "masks":
                m = out[0, k].cpu().numpy()
                X = np.abs(g.stft(torch.as_tensor(ex.y)).numpy())
                match = int(np.argmax([np.corrcoef((m * X).ravel(), s.ravel())[0, 1] for s in S]))
            target = SourceTarget(k) if spec.output_kind != "tf_embeddings" else f"cluster={k + 1}"
            t0 = time.process_time()
            a = attribute(spec, ex.y, target, method="ig", baseline="noise:-30")
            cpu = time.process_time() - t0
            if spec.output_kind == "tf_embeddings":
                bins = a.target.bins
                match = int(np.argmax([(bins & (S[j] > np.max(np.delete(S, j, axis=0), axis=0))).sum()
                                       for j in range(len(S))]))
            ibm = S[match] > np.max(np.delete(S, match, axis=0), axis=0)
            R = np.maximum(a.map, 0)
            row = {"item": i, "source": k + 1, "matched_true_source": match + 1,
                   "relevance_in_ibm": float(R[ibm].sum() / max(R.sum(), 1e-30)), "ibm_fraction": float(ibm.mean()),
                   "completeness_error": a.completeness_error, "steps_used": a.steps_used, "cpu_s": cpu,
                   "snr_db": {str(p): snr_db(listen(a, top_percent=p)[0], ex.sources[match]) for p in (10, 20, 40)}}
            row["snr_db"]["mixture"] = snr_db(ex.y, ex.sources[match])
            row["snr_db"]["ibm"] = snr_db(listen(a, mask=ibm)[0], ex.sources[match])
            if i == 0 and spec.output_kind != "tf_embeddings":
                d = deletion_test(spec, a, n_random=3, insertion=False)
                row["deletion"] = {kk: d[kk] for kk in ("auc", "auc_random", "drop_at_10", "drop_at_10_random")}
            rows.append(row)
            print(f"  [{name}] item {i} source {k + 1}: in IBM {row['relevance_in_ibm']:.2f} steps {a.steps_used} "
                  f"completeness {a.completeness_error:.2g}", file=sys.stderr, flush=True)
    return {"rows": rows}


def run_model(name, parts, n_scenes=8, first=0, baselines=BASELINES) -> dict:
    """Run the parts for one model; each part's numbers are merged into the stored entry as soon as it ends."""
    from model_zoo.registry import load_model

    if name in SEPARATORS:
        return update_results(DOC, name, {**stamp(name), "sep": study_separator(name)})
    spec = load_model(name)
    entry = {}
    for p in parts:
        t0 = time.perf_counter()
        print(f"[attribution] {name} {p} …", file=sys.stderr, flush=True)
        part = {}
        fn = {"loc": lambda: part_loc(spec, name, n_scenes, part, first, baselines), "deletion": lambda: part_deletion(spec, name, n_scenes, part),
              "example": lambda: part_example(spec, name, part) if name == "crnn_sed" else None,
              "random": lambda: part_random(spec, name, part), "chunk": lambda: part_chunk(spec, name, part),
              "steps": lambda: part_steps(spec, name, part), "converge": lambda: part_converge(spec, name, part)}[p]
        fn()
        part[f"wall_s_{p}"] = round(time.perf_counter() - t0, 1)
        entry = update_results(DOC, name, {**stamp(name), **part})
    return entry


# ---- tables --------------------------------------------------------------------------------------------------
def loc_events(entry: dict, max_scene=None) -> list:
    """Localisation rows of every stored ``loc_*`` part (and an older single ``loc``), one per event, by scene."""
    rows = {}
    for key, part in entry.items():
        if key == "loc" or key.startswith("loc_"):
            for r in part["events"]:
                rows[(r["scene"], r["event"])] = r
    return [rows[k] for k in sorted(rows) if max_scene is None or k[0] < max_scene]


def tables(res: dict, max_scene=None) -> str:
    out = [checkpoint_line(n) + f"   (stored: {res[n]['checkpoint_sha256'][:12]}, {res[n]['measured_utc']})"
           for n in res]
    for name in DETECTORS:
        e = res.get(name, {})
        if "example" in e:
            x = e["example"]
            out.append(f"\n## worked example {name} scene 0 {x['label']} {x['onset']:.2f}-{x['offset']:.2f}")
            out.append(f"f(x) {x['target_value']:.3f} f(b) {x['baseline_value']} completeness {x['completeness_error']:.2%} "
                       f"steps {x['steps_used']} (tried {x['steps_tried']}) cpu {x['cpu_s']:.1f}s")
            out.append(f"mass {x['localisation']['relevance_mass']:.2f} box frac {x['localisation']['box_fraction']:.3f} "
                       f"span-out-band {x['in_span_out_of_band']:.2f} out-span {x['out_of_span']:.2f} "
                       f"pointing {x['localisation']['pointing_game']} peak {x['peak']}")
            d = x["deletion"]
            out.append(f"deletion drop10 {d['drop_at_10']:.3f} vs {d['drop_at_10_random']:.4f}; AUC {d['auc']:.2f}/"
                       f"{d['auc_random']:.2f}; ins {d['insertion_auc']:.2f}/{d['insertion_auc_random']:.2f}")
            out.append(f"SNR top2 {x['snr_db']['top2']:.1f} mixture {x['snr_db']['mixture']:.1f} box {x['snr_db']['box']:.1f}"
                       f"; top-2% energy share {x['top2_energy_share']}")
            out.append("methods: " + ", ".join(f"{m} {v['relevance_mass']:.2f} ({v['cpu_s']:.0f}s)"
                                               for m, v in x["methods"].items()))
    out.append("\n| model | baseline | mass mean / median | pointing | rank acc | chance | in span, out of band | out of span "
               "| steps used (median, max) | completeness max |\n|---|---|---|---|---|---|---|---|---|---|")
    for name in DETECTORS:
        rows = loc_events(res.get(name, {}), max_scene)
        if not rows:
            continue
        for base in BASELINES:
            if not all(base in r for r in rows):
                out.append(f"| {name} | {base} | not measured on all events |")
                continue

            def c(k):
                return np.array([r[base][k] for r in rows], float)
            st = c("steps_used")
            out.append(f"| {name} | {base} | {c('relevance_mass').mean():.2f} / {np.median(c('relevance_mass')):.2f} | "
                       f"{c('pointing_game').mean():.2f} | {c('rank_accuracy').mean():.2f} | {c('box_fraction').mean():.3f} | "
                       f"{c('in_span_out_of_band').mean():.2f} | {c('out_of_span').mean():.2f} | "
                       f"{np.median(st):.0f}, {st.max():.0f} | {c('completeness_error').max():.3f} |")
        det = [r for r in rows if r["noise:-30"]["target_value"] >= 0.5]
        mass = np.array([r["noise:-30"]["relevance_mass"] for r in rows])
        ratio = np.median([r["noise:-30"]["relevance_mass"] / r["noise:-30"]["box_fraction"] for r in rows])
        out.append(f"{name}: {len(rows)} events, detected {len(det)} (mass {np.mean([r['noise:-30']['relevance_mass'] for r in det]):.2f}); "
                   f"mass ≥ 0.7 on {np.mean(mass >= 0.7):.0%}; median mass / box area {ratio:.0f}×; "
                   f"cpu per IG median {np.median([r['noise:-30']['cpu_s'] for r in rows]):.1f}s")
        snr = {k: np.median([r["snr_db"][k] for r in rows]) for k in rows[0]["snr_db"]}
        out.append(f"{name} SNR medians: " + ", ".join(f"{k} {v:.1f}" for k, v in snr.items()))
    out.append("\n| model | drop after 10 % (attr / random) | ratio of mean drops | ≥ 3× random | deletion AUC | "
               "insertion AUC |\n|---|---|---|---|---|---|")
    for name in DETECTORS:
        dels = res.get(name, {}).get("deletion")
        if not dels:
            continue
        m = {k: np.mean([d[k] for d in dels]) for k in dels[0] if k not in ("scene", "event", "label")}
        n3 = sum(d["drop_at_10"] >= 3 * max(d["drop_at_10_random"], 0) for d in dels)
        out.append(f"| {name} | {m['drop_at_10']:.2f} / {m['drop_at_10_random']:.2f} | "
                   f"{m['drop_at_10'] / max(m['drop_at_10_random'], 1e-12):.0f}× | {n3} / {len(dels)} | "
                   f"{m['auc']:.2f} / {m['auc_random']:.2f} | {m['insertion_auc']:.2f} / {m['insertion_auc_random']:.2f} |")
    for name in SEPARATORS:
        rows = res.get(name, {}).get("sep", {}).get("rows")
        if not rows:
            continue
        dl = [r["deletion"] for r in rows if "deletion" in r]
        ds = ""
        if dl:
            ratios = ", ".join("%.1f" % (d["drop_at_10"] / max(d["drop_at_10_random"], 1e-12)) for d in dl)
            ds = (f"; deletion drop10 {np.mean([d['drop_at_10'] for d in dl]):.3f} / "
                  f"{np.mean([d['drop_at_10_random'] for d in dl]):.2f}, ratios {ratios}, AUC "
                  f"{np.mean([d['auc'] for d in dl]):.2f} / {np.mean([d['auc_random'] for d in dl]):.2f}")
        out.append(f"{name}: in IBM {np.mean([r['relevance_in_ibm'] for r in rows]):.2f} (chance "
                   f"{np.mean([r['ibm_fraction'] for r in rows]):.2f}); completeness max "
                   f"{max(r['completeness_error'] for r in rows):.2g}; steps {[r['steps_used'] for r in rows]}; "
                   f"SNR top10 median {np.median([r['snr_db']['10'] for r in rows]):.1f} mixture "
                   f"{np.median([r['snr_db']['mixture'] for r in rows]):.1f} ibm "
                   f"{np.median([r['snr_db']['ibm'] for r in rows]):.1f}{ds}")
    for name in DETECTORS:
        e = res.get(name, {})
        if "random" in e:
            out.append(f"\nrandomisation {name}:")
            for m, r in e["random"].items():
                out.append(f"  {m}: " + ", ".join(f"{k} {v}" for k, v in r.items() if not isinstance(v, (list, dict)))
                           + " | " + str({k: v for k, v in r.items() if isinstance(v, (list, dict))})[:600])
        if "converge" in e:
            out.append(f"converge {name}: {e['converge']}")
        if "chunk" in e:
            out.append(f"chunk {name}: {e['chunk']}")
        if "steps" in e:
            for r in e["steps"]:
                out.append(f"steps {name} scene {r['scene']} {r['baseline']}: auto {r['auto_steps_used']} "
                           f"({r['auto_completeness']:.2%}); linear GL 32/64/128: "
                           + " / ".join(f"{v:.1%}" for v in r["linear"].values()))
        if "figure_event" in e:
            out.append(f"figure event {name}: {e['figure_event']}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DETECTORS + SEPARATORS))
    ap.add_argument("--parts", default=",".join(DETECTOR_PARTS), help="detector parts (see above)")
    ap.add_argument("--scenes", type=int, default=8, help="localisation over test scenes [first-scene, scenes)")
    ap.add_argument("--first-scene", type=int, default=0, help="split the localisation over processes")
    ap.add_argument("--baselines", default=",".join(BASELINES), help="localisation baselines (noise:-30 required)")
    ap.add_argument("--tables", action="store_true", help="only print the tables of the stored results")
    ap.add_argument("--table-scenes", type=int, default=None, help="tables over scenes [0, N) only")
    a = ap.parse_args(argv)
    one_thread()
    if not a.tables:
        for name in a.models.split(","):
            run_model(name, a.parts.split(","), a.scenes, a.first_scene, tuple(a.baselines.split(",")))
    print(tables(load_results(DOC), a.table_scenes))


if __name__ == "__main__":
    main()
