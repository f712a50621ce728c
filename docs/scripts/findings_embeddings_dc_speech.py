"""Regenerate the ``dc_speech`` section of docs/findings_embeddings.md (real two-speaker speech).

Runs the same analysis as the instrument model (:func:`tests.benchmarks.bench_embeddings.findings` with
``model="dc_speech"``: embeddings → stratified 4000-bin draw → k-means / GMM → masks → SI-SDRi, clusterability
scores on the 1000 loudest bins, Spearman with bootstrap intervals) over the whole test split of the shipped
``dc_speech`` checkpoint, adds the model card's k-means mask accuracy (unweighted share of non-silent bins, the
floor's definition) per mixture, draws ``docs/img/embed_dc_speech_scores_vs_sisdri.png`` and stores everything in
``docs/scripts/results/embeddings_dc_speech.json`` (stamped with the checkpoint's sha256).

    nice -n 19 .venv/bin/python docs/scripts/findings_embeddings_dc_speech.py          # ~4-7 min CPU
    .venv/bin/python docs/scripts/findings_embeddings_dc_speech.py --print             # numbers of the stored run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import IMG, checkpoint_line, load_results, one_thread, save_results, stamp, write_png  # noqa: E402

DOC = "embeddings_dc_speech"
MODEL = "dc_speech"


def run(n=None) -> dict:
    from model_zoo import dc_speech
    from model_zoo.recipes.dc_speech import mask_accuracy_items
    from model_zoo.registry import load_model
    from probe.figures.embeddings import scores_vs_separation
    from tests.benchmarks.bench_embeddings import SCORES, _spearman_ci, findings

    out = findings(n, model=MODEL, progress=False)
    rows = out["rows"]
    spec = load_model(MODEL)
    items = dc_speech.load_items("test", n=len(rows))
    acc = mask_accuracy_items(spec.model, items)
    for r, a in zip(rows, acc):
        r["card_mask_accuracy"] = float(a)
    si = np.array([r["si_sdri"] for r in rows])
    s = out["summary"]
    s["card_mask_accuracy_mean"] = float(np.mean(acc))
    s["spearman_card_mask_accuracy_vs_si_sdri"] = _spearman_ci(acc, si)
    sil = np.array([r["silhouette"] for r in rows])
    s["pearson_silhouette_vs_si_sdri"] = float(np.corrcoef(sil, si)[0, 1])
    same = [r for r in rows if r["speakers"]]
    s["n_speaker_pairs"] = len({tuple(sorted(r["speakers"])) for r in same})
    fig = scores_vs_separation(rows, scores=SCORES, title=f"dc_speech, {len(rows)} test mixtures (real speakers): "
                                                          "clusterability of the 1000 loudest bins vs k-means SI-SDRi")
    write_png(fig, IMG / "embed_dc_speech_scores_vs_sisdri.png")
    res = {MODEL: {**stamp(MODEL), "summary": s,
                   "rows": [{k: r[k] for k in ("index", "name", "speakers", "si_sdri", "ibm_si_sdri", "silhouette",
                                               "kmeans_ratio", "gmm_ll_gain", "kmeans", "gmm", "card_mask_accuracy")}
                            for r in rows]}}
    save_results(DOC, res)
    return res


def report(e: dict) -> str:
    s, rows = e["summary"], e["rows"]
    lines = [checkpoint_line(MODEL) + f"   (measured {e['measured_utc']} UTC)"]
    for m in ("kmeans", "gmm"):
        x = s[m]
        lines.append(f"{m}: energy-weighted acc mean {x['mask_accuracy_mean']:.3f} median {x['mask_accuracy_median']:.3f}"
                     f" min {x['mask_accuracy_min']:.3f} ≥0.90 {round(x['share_at_least_0.90'] * s['n_mixtures'])}/"
                     f"{s['n_mixtures']} ARI {x['ari_mean']:.2f} NMI {x['nmi_mean']:.2f} SI-SDRi "
                     f"{x['si_sdri_mean']:.1f} ({x['si_sdri_median']:.1f})")
    lines.append(f"card mask accuracy (unweighted, non-silent bins): {s['card_mask_accuracy_mean']:.3f}; "
                 f"rho vs SI-SDRi {s['spearman_card_mask_accuracy_vs_si_sdri']['rho']:.2f}")
    lines.append(f"IBM SI-SDRi mean {s['ibm_si_sdri_mean']:.1f}; pearson(silhouette, SI-SDRi) "
                 f"{s['pearson_silhouette_vs_si_sdri']:.2f}; speaker pairs {s.get('n_speaker_pairs')}")
    for key in ("spearman_vs_si_sdri", "spearman_vs_mask_accuracy", "spearman_vs_gap_to_ibm"):
        lines.append(key + ": " + ", ".join(f"{k} {v['rho']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}] p={v['p']:.1e}"
                                            for k, v in s[key].items()))
    v = s["spearman_level_diff_vs_si_sdri"]
    lines.append(f"level diff: {v['rho']:.2f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]")
    si = np.array([r["si_sdri"] for r in rows])
    sil = np.array([r["silhouette"] for r in rows])
    for lo, hi in ((0.7, 9), (0.6, 0.7), (0.5, 0.6), (-9, 0.5)):
        m = (sil >= lo) & (sil < hi)
        if m.any():
            lines.append(f"silhouette [{lo}, {hi}): n {m.sum()} mean {si[m].mean():.1f} min {si[m].min():.1f} "
                         f"below 5 dB {np.mean(si[m] < 5):.0%}")
    order = np.argsort(si)
    for tag, i in (("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])):
        r = rows[int(i)]
        lines.append(f"{tag}: {r['name']} {' + '.join(r['speakers'] or [])} {r['si_sdri']:.1f} dB sil {r['silhouette']:.2f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--print", action="store_true", help="only print the stored numbers")
    ap.add_argument("-n", type=int, default=None, help="first n test mixtures only (a quick look; the doc uses all)")
    a = ap.parse_args(argv)
    one_thread()
    if not a.print:
        run(a.n)
    print(report(load_results(DOC)[MODEL]))


if __name__ == "__main__":
    main()
