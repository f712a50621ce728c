"""Deep-clustering findings on the zoo (docs/findings_embeddings.md).

The speed benchmarks moved to :mod:`probe.benchmarks.embeddings` (run by ``probe bench``).
Run: ``python -m tests.benchmarks.bench_embeddings --findings``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from probe.benchmarks.embeddings import (SR, pipeline, synthetic_embeddings, synthetic_example,  # noqa: E402,F401
                                         bench)


SCORES = ("silhouette", "gmm_ll_gain", "bic_gain", "kmeans_ratio")


def _spearman_ci(x, y, *, n_boot: int = 2000, seed: int = 0):
    """Spearman's ρ with a percentile bootstrap 95 % interval and the permutation-free p-value from scipy."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    res = spearmanr(x, y)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        boot.append(spearmanr(x[i], y[i]).statistic)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {"rho": float(res.statistic), "ci95": [float(lo), float(hi)], "p": float(res.pvalue), "n": int(len(x))}


def findings(n: int | None = None, *, img_dir=None, json_path=None, budget: int = 4000, progress: bool = True,
             model: str = "dc_blstm") -> dict:
    """Deep clustering (zoo ``dc_blstm``, or ``model="dc_speech"``) on its test split: mask accuracy vs the IBM, and how well
    reference-free clusterability scores rank mixtures by SI-SDRi.

    For every test mixture: embeddings → non-silent bins (−40 dB) → 4000-point stratified
    draw → k-means (k = 2) and a 2-component GMM in the 20-D space → masks on every bin →
    resynthesis → SI-SDRi (``model_zoo.metrics.separation_scores``); clusterability scores on
    the 1000 loudest drawn bins; the IBM's SI-SDRi as the ceiling.

    Returns the per-mixture rows and the summary; with ``img_dir`` also draws the figures
    ``embed_*.png`` there, with ``json_path`` saves everything as JSON (figures alone, from a
    saved JSON: ``_write_findings(json.load(...), img_dir)``).
    """
    import importlib

    import torch
    from tqdm.auto import tqdm

    M = importlib.import_module(f"model_zoo.{model}")
    from model_zoo.metrics import oracle_masks, separation_scores
    from model_zoo.registry import load_example, load_model
    from probe.analyze.embeddings import (EmbeddingClusters, clusterability, embeddings_from_model, oracle_agreement,
                                          select_points)

    torch.set_num_threads(1)
    spec = load_model(model)
    n_items = len(M.load_items("test"))
    n = n_items if n is None else min(int(n), n_items)
    rows = []
    for i in tqdm(range(n), disable=not progress, desc=f"{model} test"):
        ex = load_example(model, i)
        t0 = time.perf_counter()
        clip = embeddings_from_model(spec, ex)
        pts = select_points(clip, budget=budget, seed=0)
        row = {"index": i, "name": ex.name, "families": ex.info.get("families"), "presets": ex.info.get("preset_names"),
               "level_diff_db": ex.info.get("level_diff_db"), "n_nonsilent": int(round(pts.weight.sum())),
               "speakers": ex.info.get("speakers")}
        for method in ("kmeans", "gmm"):
            km = EmbeddingClusters(2, method=method, random_state=0).fit(pts)
            agree = oracle_agreement(km, pts)
            sc = separation_scores(km.separate(clip), ex.sources, ex.y)
            row[method] = {"mask_accuracy": agree["mask_accuracy"], "ari": agree["ari"], "nmi": agree["nmi"],
                           "si_sdri": sc["si_sdri"], "sdri": sc["sdri"]}
        row.update(clusterability(pts, n_clusters=2, random_state=0))
        _, ibm_est = oracle_masks(ex.y, ex.sources, spec.grid, "ibm")
        row["ibm_si_sdri"] = separation_scores(ibm_est, ex.sources, ex.y)["si_sdri"]
        row["si_sdri"] = row["kmeans"]["si_sdri"]
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)

    def col(key, sub=None):
        return np.array([r[sub][key] if sub else r[key] for r in rows], float)

    summary = {"model": model, "n_mixtures": n, "budget": budget, "threshold_db": 40.0,
               "card_metrics": (spec.info.get("card") or {}).get("metrics")}
    for method in ("kmeans", "gmm"):
        acc = col("mask_accuracy", method)
        summary[method] = {"mask_accuracy_mean": float(acc.mean()), "mask_accuracy_median": float(np.median(acc)),
                           "mask_accuracy_min": float(acc.min()), "share_at_least_0.90": float((acc >= 0.9).mean()),
                           "ari_mean": float(col("ari", method).mean()), "nmi_mean": float(col("nmi", method).mean()),
                           "si_sdri_mean": float(col("si_sdri", method).mean()),
                           "si_sdri_median": float(np.median(col("si_sdri", method)))}
    summary["ibm_si_sdri_mean"] = float(col("ibm_si_sdri").mean())
    y = col("si_sdri")
    summary["spearman_vs_si_sdri"] = {s: _spearman_ci(col(s), y) for s in SCORES}
    summary["spearman_vs_mask_accuracy"] = {s: _spearman_ci(col(s), col("mask_accuracy", "kmeans")) for s in SCORES}
    summary["spearman_level_diff_vs_si_sdri"] = _spearman_ci(np.abs(col("level_diff_db")), y)
    # does the score add anything once the oracle gap is known? rank correlation with the gap to the IBM
    summary["spearman_vs_gap_to_ibm"] = {s: _spearman_ci(col(s), y - col("ibm_si_sdri")) for s in SCORES}
    out = {"summary": summary, "rows": rows}
    if img_dir is not None:
        _write_findings(out, Path(img_dir), json_path, spec)
    elif json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1, default=float))
    return out


def _by_instrument(rows) -> dict:
    """Mean k-means SI-SDRi, mask accuracy and silhouette per low / high instrument."""
    out = {}
    for slot, name in ((0, "low"), (1, "high")):
        groups: dict = {}
        for r in rows:
            groups.setdefault((r["presets"] or ["?", "?"])[slot], []).append(r)
        out[name] = {k: {"n": len(v), "si_sdri": float(np.mean([r["si_sdri"] for r in v])),
                         "mask_accuracy": float(np.mean([r["kmeans"]["mask_accuracy"] for r in v])),
                         "silhouette": float(np.mean([r["silhouette"] for r in v]))}
                     for k, v in sorted(groups.items(), key=lambda kv: np.mean([r["si_sdri"] for r in kv[1]]))}
    return out


def _write_findings(out: dict, img: Path, json_path: Path | None = None, spec=None) -> None:
    """JSON and figures for the findings page (PNGs kept under 200 KB: 3000-point maps, decimated spectrograms)."""
    from model_zoo.registry import load_example, load_model
    from probe.analyze.embeddings import (EmbeddingClusters, EmbeddingMap, embeddings_from_model, enable_jit_cache,
                                          select_points)
    from probe.figures.embeddings import cluster_mask_figure, embedding_scatter, scores_vs_separation

    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    spec = spec or load_model("dc_blstm")
    img = Path(img)
    img.mkdir(parents=True, exist_ok=True)
    rows = out["rows"]
    out["summary"]["by_instrument"] = _by_instrument(rows)
    scores_vs_separation(rows, scores=SCORES, title=f"dc_blstm, {len(rows)} test mixtures: clusterability of the "
                                                   "1000 loudest bins vs k-means SI-SDRi").write_image(
        str(img / "embed_scores_vs_sisdri.png"), scale=1)
    order = np.argsort([r["si_sdri"] for r in rows])
    enable_jit_cache()
    figures = {}
    for tag, i in (("best", int(order[-1])), ("median", int(order[len(order) // 2])), ("worst", int(order[0]))):
        r = rows[i]
        ex = load_example("dc_blstm", r["index"])
        clip = embeddings_from_model(spec, ex)
        pts = select_points(clip, budget=3000, seed=0)
        km = EmbeddingClusters(2).fit(pts)
        variants = [("umap", EmbeddingMap("umap"))]
        if tag == "best":  # umap-learn's own defaults, and the linear preview, for comparison
            variants += [("umap15", EmbeddingMap("umap", n_neighbors=15, min_dist=0.1)), ("pca", EmbeddingMap("pca"))]
        for vname, emap in variants:
            emap.fit(pts)
            label = {"umap": "UMAP (probe defaults: 30 neighbours, min_dist 0.3)",
                     "umap15": "UMAP (umap-learn defaults: 15 neighbours, min_dist 0.1)", "pca": "PCA"}[vname]
            title = (f"{ex.name} ({' + '.join(r['presets'] or [])}): SI-SDRi {r['si_sdri']:.1f} dB, mask acc "
                     f"{r['kmeans']['mask_accuracy']:.2f}, silhouette {r['silhouette']:.2f}<br>{label}, "
                     f"trustworthiness {emap.trustworthiness_:.3f}")
            axis = ("PCA 1", "PCA 2") if vname == "pca" else ("UMAP 1", "UMAP 2")
            for colour in (("source", "freq") if (tag, vname) == ("best", "umap") else ("source",)):
                fig = embedding_scatter(pts, emap.embedding_, color=colour, clusters=km, title=title, axis_names=axis,
                                        marker_size=3)
                fig.update_layout(title=dict(font=dict(size=12)), width=640, height=520)
                name = f"embed_map_{tag}_{vname}_{colour}.png"
                fig.write_image(str(img / name), scale=1)
                figures[name] = {"mixture": r["index"], "trustworthiness": float(emap.trustworthiness_)}
        if tag in ("best", "worst"):
            masks = km.masks(clip)
            hi = int(np.argmax([(masks[j] * (clip.dominant_stft == 1) * np.abs(clip.stft) ** 2).sum() for j in range(2)]))
            fig = cluster_mask_figure(clip, masks, hi, max_frames=260,
                                      title=f"{ex.name}: the k-means cluster matched to the high source "
                                            f"({(r['presets'] or ['', ''])[1]}), mask accuracy "
                                            f"{r['kmeans']['mask_accuracy']:.2f}")
            fig.update_layout(width=900, height=360, title=dict(font=dict(size=13)))
            fig.write_image(str(img / f"embed_mask_{tag}.png"), scale=1)
    out["summary"]["figures"] = figures
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":  # pragma: no cover
    if "--findings" in sys.argv and "--model" in sys.argv:  # e.g. --model dc_speech: numbers only, no figures
        name = sys.argv[sys.argv.index("--model") + 1]
        res = findings(model=name, json_path=ROOT / "runs" / f"findings_embeddings_{name}.json")
        print(json.dumps(res["summary"], indent=1, default=float))
    elif "--findings" in sys.argv:
        res = findings(img_dir=ROOT / "docs" / "img", json_path=ROOT / "runs" / "findings_embeddings.json")
        print(json.dumps(res["summary"], indent=1, default=float))
    else:
        print(json.dumps(bench(quick="--quick" in sys.argv), indent=2))
