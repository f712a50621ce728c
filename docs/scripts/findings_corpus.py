"""Regenerate the zoo sections of docs/findings_corpus.md: unit dissection and layer probes on the SED detectors.

Writes the first 16 SED test scenes (``load_example("crnn_sed", i)``, 10 s, 16 kHz, events from the scene
builder) as a JSONL corpus, then for each detector runs ``corpus_run`` → ``corpus_dissect`` → ``corpus_probe``
(the pipelines behind ``probe corpus run|dissect|probe``) and stores the numbers in
``docs/scripts/results/corpus.json`` (stamped with the checkpoint's sha256); prints the doc's tables.

    nice -n 19 .venv/bin/python docs/scripts/findings_corpus.py --models crnn_sed
    nice -n 19 .venv/bin/python docs/scripts/findings_corpus.py --models rawcnn_sed --permutations 200
    .venv/bin/python docs/scripts/findings_corpus.py --tables

The doc's settings are the defaults (16 scenes, 128 frames per scene and layer, 1000 circular-shift permutations,
BH at 0.05, random-init control, 5 grouped folds). CPU: ~10–20 min per detector on one thread. The dc_blstm
section uses its own 24-mixture corpus (``--models dc_blstm``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checkpoint_line, load_results, one_thread, save_results, stamp  # noqa: E402

DOC = "corpus"
LAYERS = {"crnn_sed": ("conv.0", "conv.1", "conv.2", "rnn", "classifier"),
          "rawcnn_sed": ("frontend", "body.2", "body.5", "body.8", "body.10", "classifier"),
          "dc_blstm": ("blstm", "embed")}
PROBE = {"crnn_sed": {"layers": (), "control_repeats": 2, "folds": 5},
         "rawcnn_sed": {"layers": ("frontend", "body.5", "body.10", "classifier"), "control_repeats": 2, "folds": 5},
         "dc_blstm": {"layers": (), "control_repeats": 2, "folds": 4}}
FRAMES = {"crnn_sed": 128, "rawcnn_sed": 128, "dc_blstm": 64}
CONCEPTS = ("loudness", "onset", "event:horn", "event:speech", "event:cry")


def sed_corpus(folder: Path, n: int = 16) -> Path:
    """The first ``n`` SED test scenes as wavs plus a JSONL manifest with their events."""
    import soundfile as sf

    from model_zoo.registry import load_example

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        ex = load_example("crnn_sed", i)
        name = f"scene{i:03d}.wav"
        sf.write(folder / name, np.asarray(ex.y, np.float32), ex.sr, subtype="FLOAT")
        ev = [{"start": float(e["onset"]), "end": float(e["offset"]), "label": e["label"]} for e in ex.events]
        lines.append(json.dumps({"path": name, "events": ev, "group": f"scene{i}"}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def dc_corpus(folder: Path, n: int = 24) -> Path:
    """``n`` dc_blstm test mixtures; each frame (32 ms) labelled by the stem with more energy (low / high)."""
    import soundfile as sf

    from model_zoo.registry import load_example

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        ex = load_example("dc_blstm", i)
        name = f"mix{i:03d}.wav"
        sf.write(folder / name, np.asarray(ex.y, np.float32), ex.sr, subtype="FLOAT")
        hop = int(0.032 * ex.sr)
        ev = []
        for s in range(0, len(ex.y) - hop + 1, hop):
            e = [float(np.sum(src[s:s + hop] ** 2)) for src in ex.sources[:2]]
            ev.append({"start": s / ex.sr, "end": (s + hop) / ex.sr, "label": "low" if e[0] >= e[1] else "high"})
        lines.append(json.dumps({"path": name, "events": ev, "group": f"mix{i}"}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_model(name: str, permutations: int, n_scenes: int, keep: Path | None, layers=None, control_repeats=None) -> dict:
    from probe.corpus.dissection import DissectOptions
    from probe.corpus.probing import ProbeOptions
    from probe.corpus.worker import RunOptions
    from probe.pipelines.corpus import corpus_dissect, corpus_probe, corpus_run

    layers = tuple(layers) if layers else LAYERS[name]
    p = dict(PROBE[name])
    if control_repeats:
        p["control_repeats"] = control_repeats
    if layers != LAYERS[name]:
        p["layers"] = tuple(x for x in (p["layers"] or layers) if x in layers)
    work = Path(tempfile.mkdtemp(prefix=f"findings_corpus_{name}_"))
    t0 = time.perf_counter()
    manifest = dc_corpus(work / "clips") if name == "dc_blstm" else sed_corpus(work / "clips", n_scenes)
    run = corpus_run(f"zoo:{name}", manifest, work / "run",
                     options=RunOptions(layers=layers, frames_per_clip=FRAMES[name]))
    t_run = time.perf_counter() - t0
    entry = {**stamp(name), "settings": {"clips": n_scenes if name != "dc_blstm" else 24, "layers": layers,
                                         "frames_per_clip": FRAMES[name], "permutations": permutations, **p}}
    if name != "dc_blstm":
        d = corpus_dissect(work / "run", options=DissectOptions(permutations=permutations, excerpts=0))
        entry["dissect"] = summarise_dissection(d.pairs, d.units)
    pr = corpus_probe(work / "run", options=ProbeOptions(label="event", layers=p["layers"], folds=p["folds"],
                                                         control_repeats=p["control_repeats"]))
    entry["probe"] = [{k: row.get(k) for k in ("layer", "n", "dim", "score", "random_init", "control", "chance", "cka",
                                              "cka_random")} for row in pr.result["layers"]]
    entry["wall_s"] = {"run": round(t_run, 1), "total": round(time.perf_counter() - t0, 1)}
    if keep is not None:
        shutil.copytree(work, keep / name, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return entry


def summarise_dissection(pairs, units) -> dict:
    from collections import Counter

    out = {}
    layers = list(dict.fromkeys(u["layer"] for u in units))
    for layer in layers:
        us = [u for u in units if u["layer"] == layer]
        lab = [u for u in us if u["label"]]
        ev = [u for u in lab if u["label"].startswith("event:")]
        best = {}
        for c in CONCEPTS:
            ps = [r for r in pairs if r["layer"] == layer and r["concept"] == c]
            if ps:
                best[c] = {"trained": max(r["score"] for r in ps), "random": ps[0]["random_max"]}
        out[layer] = {"units": len(us), "pass_shift": sum(u["q_unit"] <= 0.05 for u in us), "labelled": len(lab),
                      "acoustic": len(lab) - len(ev), "event": len(ev),
                      "top_labels": Counter(u["label"] for u in lab).most_common(3), "best": best,
                      "labels": {str(u["unit"]): u["label"] for u in lab} if layer == "classifier" else None}
    return out


def tables(res: dict) -> str:
    out = [checkpoint_line(n) + f"   (stored {res[n]['checkpoint_sha256'][:12]}, {res[n]['measured_utc']}, "
           f"{res[n]['settings']})" for n in res]
    for name, e in res.items():
        if "dissect" in e:
            out.append(f"\n### {name}\n| layer | units | pass shift null only | labelled (both nulls) | acoustic / event "
                       "| most frequent labels |\n|---|---|---|---|---|---|")
            for layer, d in e["dissect"].items():
                top = ", ".join(f"{k} {v}" for k, v in d["top_labels"])
                out.append(f"| {layer} | {d['units']} | {d['pass_shift']} | {d['labelled']} | {d['acoustic']} / "
                           f"{d['event']} | {top} |")
            out.append("\n| concept | " + " | ".join(e["dissect"]) + " |\n|---|" + "---|" * len(e["dissect"]))
            for c in CONCEPTS:
                cells = []
                for layer, d in e["dissect"].items():
                    b = d["best"].get(c)
                    cells.append("–" if not b else f"{b['trained']:.2f} vs {b['random']:.2f}")
                out.append(f"| {c} | " + " | ".join(cells) + " |")
            cls = e["dissect"].get("classifier", {}).get("labels")
            if cls is not None:
                out.append(f"classifier unit labels: {cls}")
        out.append(f"\n{name} probes\n| layer | trained | random-init | control | chance | CKA (trained / random) |\n"
                   "|---|---|---|---|---|---|")
        for r in e["probe"]:
            def f(x):
                return "–" if x is None else f"{x:.2f}"
            out.append(f"| {r['layer']} | {f(r['score'])} | {f(r['random_init'])} | {f(r['control'])} | "
                       f"{f(r['chance'])} | {f(r['cka'])} / {f(r['cka_random'])} |")
        out.append(f"wall: {e['wall_s']}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="crnn_sed,rawcnn_sed")
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--keep", default=None, help="copy the corpus and run folders here")
    ap.add_argument("--layers", default=None, help="comma-separated layers (default: the doc's)")
    ap.add_argument("--control-repeats", type=int, default=None, help="control-task draws (default: the doc's)")
    ap.add_argument("--tables", action="store_true")
    a = ap.parse_args(argv)
    one_thread()
    if not a.tables:
        for name in a.models.split(","):
            print(f"[corpus] {name} …", file=sys.stderr, flush=True)
            entry = run_model(name, a.permutations, a.scenes, Path(a.keep) if a.keep else None,
                              a.layers.split(",") if a.layers else None, a.control_repeats)
            res = load_results(DOC)
            res[name] = entry
            save_results(DOC, res)
    print(tables(load_results(DOC)))


if __name__ == "__main__":
    main()
