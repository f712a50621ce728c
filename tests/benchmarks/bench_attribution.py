"""Attribution studies on the zoo (docs/findings_attribution.md) and the CUDA-vs-CPU check.

The speed benchmarks moved to :mod:`probe.benchmarks.attribution` (run by ``probe bench``);
this script keeps what needs the zoo or the test models.
Run: ``.venv/bin/python tests/benchmarks/bench_attribution.py [--zoo NAMES | --gpu-check | --quick | --full]``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from probe.benchmarks.attribution import _child, _clip, _crnn_spec, _overhead, _wave_spec, bench  # noqa: E402,F401


# ---- zoo findings (docs/findings_attribution.md) ------------------------------------------------------
def _event_target(ev):
    from probe.attribution import ClassTarget

    return ClassTarget(ev["label"], t=(float(ev["onset"]), float(ev["offset"])))


def _share_outside(a, ev):
    """Positive relevance: inside the box, in the event's span but outside its band, outside the span."""
    R = np.maximum(a.map.astype(np.float64), 0)
    tot = R.sum() or 1.0
    box = a.box_mask(ev)
    span = a.box_mask({"onset": ev["onset"], "offset": ev["offset"]})
    return {"in_box": float(R[box].sum() / tot), "in_span_out_of_band": float(R[span & ~box].sum() / tot),
            "out_of_span": float(R[~span].sum() / tot)}


def study_detector(name: str, n_scenes: int = 8, n_deletion: int = 6, steps: int = 64, figure_dir=None) -> dict:
    """Localisation, deletion, explanation SNR, randomisation and IG steps for a zoo detector."""
    import torch

    from model_zoo.registry import load_example, load_model
    from probe.analyze.faithfulness import (deletion_test, ig_steps_for_completeness, localisation,
                                            randomisation_test)
    from probe.attribution import attribute, listen, snr_db

    torch.set_num_threads(1)
    spec = load_model(name)
    rows, dels, skipped = [], [], []
    t0 = time.perf_counter()
    for i in range(n_scenes):
        ex = load_example(name, i)
        for k, ev in enumerate(ex.events):
            if ev["label"] not in spec.classes:  # the data set's labels and the checkpoint's classes disagree
                skipped.append(ev["label"])
                continue
            row = {"scene": i, "event": k, "label": ev["label"], "seconds": round(ev["offset"] - ev["onset"], 3)}
            for base in ("silence", "noise:-30"):
                a = attribute(spec, ex.y, _event_target(ev), method="ig", steps=steps, baseline=base)
                loc = localisation(a, ev)
                row[base] = {"relevance_mass": loc["relevance_mass"], "pointing_game": loc["pointing_game"],
                             "rank_accuracy": loc["rank_accuracy"], "box_fraction": loc["box_fraction"],
                             "completeness_error": a.completeness_error, "target_value": a.target_value,
                             **_share_outside(a, ev)}
                if base == "noise:-30":
                    stem = ex.event_stems[k]
                    row["snr_db"] = {str(p): snr_db(listen(a, top_percent=p)[0], stem) for p in (1, 2, 5, 10)}
                    row["snr_db"]["mixture"] = snr_db(ex.y, stem)
                    row["snr_db"]["box_mask"] = snr_db(listen(a, mask=a.box_mask(ev))[0], stem)
                    # deletion needs something to delete: the first event per scene the model detects
                    if a.target_value >= 0.5 and not any(d["scene"] == i for d in dels) and len(dels) < n_deletion:
                        d = deletion_test(spec, a, n_random=3)
                        dels.append({"scene": i, "event": k, **{kk: d[kk] for kk in ("auc", "auc_random", "drop_at_10",
                                                                          "drop_at_10_random", "drop_ratio",
                                                                          "insertion_auc", "insertion_auc_random")}})
                        if figure_dir is not None and len(dels) == 1:
                            _worked_example_figures(name, a, ex, ev, d, figure_dir)
            rows.append(row)
    out: dict = {"model": name, "grid": spec.grid.to_dict(), "n_events": len(rows), "steps": steps, "events": rows,
                 "deletion": dels, "skipped_labels": skipped,
                 "seconds_localisation_deletion": round(time.perf_counter() - t0, 1)}

    def agg(base, key, fn=np.mean):
        return float(fn([r[base][key] for r in rows]))

    out["summary"] = {base: {"relevance_mass_mean": agg(base, "relevance_mass"),
                             "relevance_mass_median": agg(base, "relevance_mass", np.median),
                             "pointing_game": agg(base, "pointing_game"), "rank_accuracy": agg(base, "rank_accuracy"),
                             "box_fraction": agg(base, "box_fraction"),
                             "in_span_out_of_band": agg(base, "in_span_out_of_band"),
                             "out_of_span": agg(base, "out_of_span"),
                             "completeness_error_max": agg(base, "completeness_error", np.max),
                             "relevance_mass_detected": float(np.mean([r[base]["relevance_mass"] for r in rows
                                                                       if r[base]["target_value"] >= 0.5] or [np.nan])),
                             "n_detected": int(sum(r[base]["target_value"] >= 0.5 for r in rows))}
                      for base in ("silence", "noise:-30")}
    out["summary"]["snr_db_median"] = {k: float(np.median([r["snr_db"][k] for r in rows]))
                                       for k in rows[0]["snr_db"]}
    if dels:
        keys = [k for k in dels[0] if k not in ("scene", "event", "drop_ratio")]
        dsum = {k: float(np.mean([d[k] for d in dels])) for k in keys}
        dsum["ratio_of_mean_drops"] = dsum["drop_at_10"] / max(dsum["drop_at_10_random"], 1e-12)
        dsum["share_with_drop_3x_random"] = float(np.mean([d["drop_at_10"] >= 3 * max(d["drop_at_10_random"], 0)
                                                           for d in dels]))
        dsum["n"] = len(dels)
        out["summary"]["deletion"] = dsum
    # randomisation (cascade, top-down) on scene 0's first usable event
    ex = load_example(name, 0)
    ev = next(e for e in ex.events if e["label"] in spec.classes)
    rand = {}
    for method in ("saliency", "ig", "ixg", "gradcam"):
        kw = {"steps": 16} if method == "ig" else {}
        r = randomisation_test(spec, ex.y, _event_target(ev), method=method, baseline="noise:-30",
                               return_maps=figure_dir is not None and method in ("saliency", "ig"), **kw)
        if figure_dir is not None and "maps" in r:
            from probe.figures.attribution import randomisation_figure

            randomisation_figure(r).write_image(str(Path(figure_dir) / f"attr_{name}_randomisation_{method}.png"),
                                                scale=1)
            r.pop("maps")
        rand[method] = r
    out["randomisation"] = rand
    # chunking a model with a bidirectional RNN (whole-clip receptive field): how far from the unchunked map?
    full = attribute(spec, ex.y, _event_target(ev), method="ig", steps=16, baseline="noise:-30")
    ch = attribute(spec, ex.y, _event_target(ev), method="ig", steps=16, baseline="noise:-30", chunk_seconds=4.0,
                   overlap_seconds=2.0)
    from probe.analyze.faithfulness import spearman

    out["chunking"] = {"chunk_seconds": 4.0, "overlap_seconds": 2.0, "spearman": spearman(full.map, ch.map),
                       "relative_l2": float(np.linalg.norm(ch.map - full.map) / np.linalg.norm(full.map)),
                       "relevance_mass_full": localisation(full, ev)["relevance_mass"],
                       "relevance_mass_chunked": localisation(ch, ev)["relevance_mass"]}
    # IG steps for <= 1 % completeness
    st = {}
    for base in ("silence", "noise:-30"):
        for spacing in ("linear", "adaptive"):
            key = f"{base}|{spacing}"
            st[key] = []
            for i in range(3):
                ex = load_example(name, i)
                ev = next(e for e in ex.events if e["label"] in spec.classes)
                st[key].append(ig_steps_for_completeness(spec, ex.y, _event_target(ev), baseline=base, spacing=spacing,
                                                         steps=(8, 16, 32, 64, 128, 256, 512)))
    out["ig_steps"] = st
    out["seconds_total"] = round(time.perf_counter() - t0, 1)
    return out


def _worked_example_figures(name, a, ex, ev, d, figure_dir):
    from probe.figures.attribution import attribution_figure, deletion_figure, target_track_figure

    fd = Path(figure_dir)
    fd.mkdir(parents=True, exist_ok=True)
    attribution_figure(a, boxes=[ev], fmax=6000, max_frames=300, max_bins=160, width=800).write_image(
        str(fd / f"attr_{name}_map.png"), scale=1)
    if a.track is not None:
        target_track_figure(a).write_image(str(fd / f"attr_{name}_track.png"), scale=1)
    deletion_figure(d).write_image(str(fd / f"attr_{name}_deletion.png"), scale=1)


def study_separator(name: str, n_items: int = 4, steps: int = 32) -> dict:
    """Source (or cluster) targets on a zoo separator: relevance inside the matched source's ideal binary mask,
    explanation SNR, deletion on the first item."""
    import torch

    from model_zoo.registry import load_example, load_model
    from probe.analyze.faithfulness import deletion_test
    from probe.attribution import SourceTarget, attribute, listen, snr_db

    torch.set_num_threads(1)
    spec = load_model(name)
    g = spec.grid
    rows = []
    t0 = time.perf_counter()
    for i in range(n_items):
        ex = load_example(name, i)
        S = np.abs(g.stft(torch.as_tensor(ex.sources)).numpy())  # (n_src, F, T)
        with torch.no_grad():
            out = spec.forward(ex.y)
        for k in range(min(2, ex.sources.shape[0])):
            model_snr = None
            if spec.output_kind == "sources":
                est = out[0, k].cpu().numpy()[: len(ex.y)]
                match = int(np.argmax([abs(np.corrcoef(est, s)[0, 1]) for s in ex.sources]))
                model_snr = snr_db(est * (est @ ex.sources[match]) / max(est @ est, 1e-12), ex.sources[match])
            elif spec.output_kind == "masks":
                m = out[0, k].cpu().numpy()
                X = np.abs(g.stft(torch.as_tensor(ex.y)).numpy())
                match = int(np.argmax([np.corrcoef((m * X).ravel(), s.ravel())[0, 1] for s in S]))
            target = SourceTarget(k) if spec.output_kind != "tf_embeddings" else f"cluster={k + 1}"
            a = attribute(spec, ex.y, target, method="ig", steps=steps, baseline="noise:-30")
            if spec.output_kind == "tf_embeddings":  # the cluster's bins decide which true source it is
                bins = a.target.bins
                match = int(np.argmax([(bins & (S[j] > np.max(np.delete(S, j, axis=0), axis=0))).sum()
                                       for j in range(len(S))]))
            ibm = S[match] > np.max(np.delete(S, match, axis=0), axis=0)
            R = np.maximum(a.map, 0)
            row = {"item": i, "source": k + 1, "matched_true_source": match + 1,
                   "relevance_in_ibm": float(R[ibm].sum() / max(R.sum(), 1e-30)), "ibm_fraction": float(ibm.mean()),
                   "completeness_error": a.completeness_error, "reconstruction_error_db": a.reconstruction_error_db,
                   "model_si_snr_db": model_snr,
                   "snr_db": {str(p): snr_db(listen(a, top_percent=p)[0], ex.sources[match]) for p in (10, 20, 40)}}
            row["snr_db"]["mixture"] = snr_db(ex.y, ex.sources[match])
            row["snr_db"]["ibm"] = snr_db(listen(a, mask=ibm)[0], ex.sources[match])
            if i == 0:
                d = deletion_test(spec, a, n_random=3, insertion=False)
                row["deletion"] = {kk: d[kk] for kk in ("auc", "auc_random", "drop_at_10", "drop_at_10_random", "drop_ratio")}
            rows.append(row)
    return {"model": name, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
            "summary": {"relevance_in_ibm_mean": float(np.mean([r["relevance_in_ibm"] for r in rows])),
                        "ibm_fraction_mean": float(np.mean([r["ibm_fraction"] for r in rows])),
                        "snr_db_median": {k: float(np.median([r["snr_db"][k] for r in rows])) for k in rows[0]["snr_db"]},
                        "completeness_error_max": float(np.max([r["completeness_error"] for r in rows]))}}


# ---- GPU check (run on a CUDA machine: python tests/benchmarks/bench_attribution.py --gpu-check) ----------------
def gpu_check(device: str = "cuda", overhead: bool = True) -> dict:
    """Same maps on CUDA as on CPU for every method; models stay on their device; SSIM vs scikit-image."""
    import torch

    from probe.analyze.faithfulness import deletion_test, randomisation_test, ssim
    from probe.attribution import SourceTarget, attribute, listen
    from tests.test_attribution import (GRID, LocalConv, MaskNet, WaveNet, box_spec, crnn_spec, scene)
    from probe.adapter import ModelSpec

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(device)
    y, _ = scene()
    out: dict = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else device, "torch": torch.__version__,
                 "maps": {}}

    def both(make, target, name, **kw):
        a = attribute(make(), y, target, **kw)
        spec = make()
        spec.model.to(dev)
        t0 = time.perf_counter()
        b = attribute(spec, y, target, **kw)
        dt = time.perf_counter() - t0
        on_dev = all(p.device.type == dev.type for p in spec.model.parameters())
        scale = float(np.abs(a.map).max()) or 1.0
        out["maps"][name] = {"max_rel_diff": float(np.abs(a.map - b.map).max() / scale), "model_stays_on_cuda": on_dev,
                             "gpu_seconds": round(dt, 3), "completeness_cpu": a.completeness_error,
                             "completeness_gpu": b.completeness_error}
        return spec, b

    box_t = "class=beep,t=0.5:1.0"
    for m in ("saliency", "ixg", "ig", "gradshap", "deeplift", "occlusion", "ablation"):
        both(box_spec, box_t, f"box_{m}", method=m, steps=16, patch=(8, 8))
    both(crnn_spec, "class=a,t=0.5:1.0", "crnn_gradcam", method="gradcam")
    both(crnn_spec, "class=a,t=0.5:1.0", "crnn_ig", method="ig", steps=16)

    def wave():
        return ModelSpec(WaveNet().eval(), input_kind="waveform", grid=GRID, input_layout="bcn",
                         output_kind="clip_scores", classes=["a", "b"])

    both(wave, "class=a", "wave_ig", method="ig", steps=16)

    def local():
        return ModelSpec(LocalConv().eval(), input_kind="logmag", grid=GRID, output_kind="frame_probs", classes=["a", "b"])

    both(local, "class=a", "local_ig_chunked", method="ig", steps=8, chunk_seconds=0.8, overlap_seconds=0.3)

    def masks():
        return ModelSpec(MaskNet().eval(), input_kind="logmag", grid=GRID, output_kind="masks", n_sources=2)

    both(masks, SourceTarget(1, f=(2000, 4000)), "mask_source_ig", method="ig", steps=16)
    spec, a = both(box_spec, box_t, "box_ig_smoothgrad", method="ig", steps=8, smooth="smoothgrad", nt_samples=2)
    spec, a = both(box_spec, box_t, "box_ig_listen", method="ig", steps=16)
    d = deletion_test(spec, a, n_random=2)
    out["deletion_gpu"] = {"drop_at_10": d["drop_at_10"], "drop_at_10_random": d["drop_at_10_random"]}
    cspec = crnn_spec()
    cspec.model.to(dev)
    r = randomisation_test(cspec, y, "class=a,t=0.5:1.0", method="saliency")
    out["randomisation_gpu"] = {"spearman": r["spearman"], "ssim": r["ssim"],
                                "model_stays_on_cuda": all(p.device.type == dev.type for p in cspec.model.parameters())}
    expl, _ = listen(a)
    out["listen_finite"] = bool(np.isfinite(expl).all())
    try:
        from skimage.metrics import structural_similarity

        rng = np.random.default_rng(0)
        A = rng.random((60, 80))
        B = np.clip(A + 0.3 * rng.standard_normal(A.shape), 0, 1)
        out["ssim_vs_skimage"] = {"probe": ssim(A, B, data_range=1.0),
                                  "skimage": float(structural_similarity(A, B, data_range=1.0))}
    except ImportError:
        out["ssim_vs_skimage"] = "scikit-image not installed"
    if not overhead:
        return out
    # overhead on the GPU: probe's pipeline vs Captum's bare call (zoo-shaped CRNN, 10 s)
    spec = _crnn_spec()
    spec.model.to(dev)
    out["attribution_overhead_gpu"] = _overhead(spec, steps=32, batch=32, repeats=5)
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true", help="long audio up to 10 minutes")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--zoo", default=None, help="comma-separated zoo models to study (findings document)")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--figures", default=None, help="write the worked example's PNGs here")
    ap.add_argument("--gpu-check", action="store_true", help="compare CUDA and CPU maps (needs a GPU)")
    a = ap.parse_args()
    if a.gpu_check:
        print(json.dumps(gpu_check(), indent=1, default=float))
    elif a.child is not None:
        print(json.dumps(_child(a.child, a.steps)))
    elif a.zoo:
        for name in a.zoo.split(","):
            fn = study_separator if name in ("convtasnet_lite", "chimera", "dc_blstm") else study_detector
            res = fn(name, a.scenes) if fn is study_separator else fn(name, a.scenes, figure_dir=a.figures)
            print(json.dumps(res, default=float), flush=True)
    else:
        print(json.dumps(bench(quick=a.quick, full=a.full), indent=1))
