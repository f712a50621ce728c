"""One clustering per (model, clip, layer, k): Embeddings, Attribution and the CLI share cluster numbers and names.

Ground truth: zoo dc_blstm example 0 is built from two stems named "low" and "high"; the oracle
dominant source of every STFT bin is known by construction.
"""

import json
import pickle
import subprocess

import numpy as np
import pytest

import probe
from probe.errors import AnalysisError
from probe.pipelines import AttributionOptions, EmbeddingOptions, analyse_attribution, analyse_embeddings

BUDGET = 800


@pytest.fixture(scope="module")
def dc():
    spec = probe.load("zoo:dc_blstm")
    ex = probe.load_example("dc_blstm", 0)
    emb = analyse_embeddings(spec, ex, EmbeddingOptions(budget=BUDGET, clusterability=False))
    return spec, ex, emb


def test_clusters_ordered_by_energy_and_named_from_oracle(dc):
    spec, ex, emb = dc
    clip = emb.clip
    power = np.abs(clip.stft) ** 2
    energy = [float((power * m).sum()) for m in emb.cluster_masks]
    assert energy == sorted(energy, reverse=True), "cluster 1 must be the loudest"
    assert emb.cluster_numbers == [1, 2]
    # names: the oracle source holding most of each cluster's energy, computed here from the stems
    dom = clip.dominant_stft
    expect = []
    for m in emb.cluster_masks.astype(bool):
        w = np.bincount(dom[m], weights=power[m], minlength=len(ex.source_names))
        expect.append(ex.source_names[int(np.argmax(w))])
    assert emb.cluster_names == expect
    assert sorted(emb.cluster_names) == sorted(ex.source_names) == ["high", "low"]
    # the clustering is good on this example, so each named cluster's mask is mostly that stem's bins
    for m, name in zip(emb.cluster_masks.astype(bool), emb.cluster_names):
        s = ex.source_names.index(name)
        assert power[m & (dom == s)].sum() / power[m].sum() > 0.9
    # labels_ follow the same order as the masks
    sizes = np.bincount(emb.clusters.labels_, minlength=2)
    assert emb.to_json()["cluster_sizes"] == sizes.tolist()
    assert emb.colourings["cluster"]["names"][0].startswith("1: ")
    # the renumbered clustering survives a pickle round trip (the app's st.cache_data stores pickles)
    again = pickle.loads(pickle.dumps(emb.clusters))
    assert np.array_equal(again.predict_clip(clip), emb.clusters.predict_clip(clip))


@pytest.fixture(scope="module")
def dc_default(dc):
    """The clustering every face uses by default: analyse_embeddings with its default options."""
    spec, ex, _ = dc
    return analyse_embeddings(spec, ex, EmbeddingOptions(clusterability=False))


def test_shared_clustering_defaults_are_the_pipeline_defaults():
    from probe.analyze.embedding_clusters import SHARED_CLUSTERING

    d = EmbeddingOptions()
    assert SHARED_CLUSTERING == {"threshold_db": d.threshold_db, "budget": d.budget, "seed": d.seed, "method": d.method}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_library_cluster_target_is_the_shared_clustering(dc, dc_default):
    """``probe.attribute(..., "cluster=j")`` (no pipeline) takes cluster j of the same clustering as the
    Embeddings page / ``probe embed``: the same bins, the same name, every centroid for its soft mask."""
    spec, ex, _ = dc
    for j in (2,):  # the quieter cluster: a numbering from 0 or by another order would pick the other one
        a = probe.attribute(spec, ex, f"cluster={j}", method="saliency")
        assert np.array_equal(np.asarray(a.target.bins, bool), dc_default.cluster_bins[j - 1]), j
        assert a.target.name == dc_default.cluster_names[j - 1] and a.target.describe() == \
            f"cluster={j} ({dc_default.cluster_names[j - 1]})"
        C = np.asarray(dc_default.clusters.centers_, np.float64)
        assert np.allclose(np.asarray(a.target.centroids), C / np.linalg.norm(C, axis=1, keepdims=True), atol=1e-6)


def test_attribution_cluster_target_is_the_embedding_cluster(dc):
    spec, ex, emb = dc
    eo = EmbeddingOptions(budget=BUDGET)
    for j in (1, 2):
        res = analyse_attribution(spec, ex, AttributionOptions(target=f"cluster={j}", method="saliency",
                                                               deletion=False, clusters=eo))
        bins = np.asarray(res.attribution.target.bins, bool)
        assert bins.shape == emb.cluster_bins[j - 1].shape
        assert np.array_equal(bins, emb.cluster_bins[j - 1]), f"cluster={j}: attribution bins differ from the Embeddings clustering"
        assert res.target == f"cluster={j}" and res.target_name == emb.cluster_names[j - 1]
    # the default target of an embedding model is cluster 1 (the louder) of the same clustering
    res = analyse_attribution(spec, ex, AttributionOptions(method="saliency", deletion=False, clusters=eo))
    assert res.target == "cluster=1" and np.array_equal(np.asarray(res.attribution.target.bins), emb.cluster_bins[0])
    # a cached clustering passed in gives the same bins without recomputing
    res2 = analyse_attribution(spec, ex, AttributionOptions(target="cluster=2", method="saliency", deletion=False),
                               clustering=emb)
    assert np.array_equal(np.asarray(res2.attribution.target.bins), emb.cluster_bins[1])


def test_cluster_out_of_range(dc):
    spec, ex, emb = dc
    with pytest.raises(AnalysisError, match="1..2"):
        analyse_attribution(spec, ex, AttributionOptions(target="cluster=3", method="saliency", deletion=False),
                            clustering=emb)


def _json(probe_exe, *args):
    r = subprocess.run([probe_exe, *args, "--json"], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_cli_embed_and_attribute_agree(probe_exe, tmp_path):
    emb = _json(probe_exe, "embed", "zoo:dc_blstm", "example:dc_blstm:0", "--audio-out", str(tmp_path / "wav"),
                "--out", str(tmp_path / "fig"))
    att = _json(probe_exe, "attribute", "zoo:dc_blstm", "example:dc_blstm:0", "--target", "cluster=1",
                "--method", "saliency", "--no-deletion")
    assert emb["cluster_numbers"] == [1, 2]
    assert sorted(emb["cluster_names"]) == ["high", "low"]
    assert att["target"] == "cluster=1" and att["target_name"] == emb["cluster_names"][0]
    assert att["target_bins"] == emb["cluster_bins"][0]
    assert emb["cluster_times"][0]["cluster"] == 1
    # wav files and mask figures carry the same numbers (from 1) and the ground-truth names
    names = emb["cluster_names"]
    assert [p.split("/")[-1] for p in emb["audio_files"]] == [f"cluster_{j}_{n}.wav" for j, n in enumerate(names, 1)]
    figs = {p.split("/")[-1] for p in emb["figures"]}
    assert {"mask_cluster1.html", "mask_cluster2.html"} <= figs and "mask_cluster0.html" not in figs
    html = (tmp_path / "fig" / "mask_cluster1.html").read_text()
    assert f"cluster 1 ({names[0]})" in html


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_cli_library_report_and_app_agree_on_numbers_and_deletion(probe_exe, dc, dc_default, tmp_path, monkeypatch):
    """The same options through every face: the CLI (a subprocess), probe.attribute + deletion_test, the
    pipeline, the HTML report's data and the app's cache functions give one target, one name, one set of
    bins and one deletion AUC."""
    from probe.analyze.faithfulness import deletion_test
    from probe.report import build_report

    spec, ex, _ = dc
    opts = AttributionOptions(target="cluster=2", method="saliency", random_orders=2)
    cli = _json(probe_exe, "attribute", "zoo:dc_blstm", "example:dc_blstm:0", "--target", "cluster=2",
                "--method", "saliency", "--random-orders", "2")
    lib = probe.attribute(spec, ex, "cluster=2", method="saliency")
    lib_del = deletion_test(spec, lib, n_random=2, seed=0)
    pipe = analyse_attribution(spec, ex, opts)
    rep = build_report(spec, ex, sections=("attribution",), options={"attribution": {"options": opts}})
    rep_data = next(s for s in rep.sections if s.id == "attribution").data
    assert rep_data is not None, [s.describe() for s in rep.sections]

    from apps import diskcache
    from apps.cache import cached_attribution, cached_clustering
    from apps.state import load_shared_model

    monkeypatch.setenv(diskcache.ENV, str(tmp_path / "app-cache"))
    shared = load_shared_model("zoo:dc_blstm")
    app_clusters = cached_clustering(shared, ex)
    app = cached_attribution(shared, ex, opts)

    name = dc_default.cluster_names[1]
    bins = int(dc_default.cluster_bins[1].sum())
    assert app_clusters.cluster_numbers == [1, 2] and app_clusters.cluster_names == dc_default.cluster_names
    assert np.array_equal(app_clusters.cluster_bins, dc_default.cluster_bins)
    for face, js in (("cli", cli), ("pipeline", pipe.to_json()), ("report", rep_data), ("app", app.to_json())):
        assert js["target"] == "cluster=2" and js["target_name"] == name and js["target_bins"] == bins, face
    assert lib.target.name == name and int(np.asarray(lib.target.bins).sum()) == bins
    auc = lib_del["auc"]
    assert auc is not None  # saliency need not beat random here (it does not on cluster 2); the faces must agree
    for face, d in (("cli", cli["deletion"]), ("pipeline", pipe.deletion), ("report", rep_data["deletion"]),
                    ("app", app.deletion)):
        assert d["auc"] == pytest.approx(auc, abs=2e-6), face
        assert d["auc_random"] == pytest.approx(lib_del["auc_random"], abs=2e-6), face
