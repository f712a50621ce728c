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


def test_library_cluster_target_still_runs_its_own_kmeans(dc):
    """``probe.attribute(..., "cluster=1")`` (no pipeline) keeps its own k-means, also ordered by energy."""
    spec, ex, emb = dc
    a = probe.attribute(spec, ex, "cluster=1", method="saliency")
    bins = np.asarray(a.target.bins, bool)
    # the same loud cells and mostly the same members as the shared clustering's cluster 1
    overlap = (bins & emb.cluster_bins[0]).sum() / max(bins.sum(), 1)
    assert overlap > 0.9, overlap


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
    r = subprocess.run([probe_exe, *args, "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_cli_embed_and_attribute_agree(probe_exe):
    emb = _json(probe_exe, "embed", "zoo:dc_blstm", "example:dc_blstm:0")
    att = _json(probe_exe, "attribute", "zoo:dc_blstm", "example:dc_blstm:0", "--target", "cluster=1",
                "--method", "saliency", "--no-deletion")
    assert emb["cluster_numbers"] == [1, 2]
    assert sorted(emb["cluster_names"]) == ["high", "low"]
    assert att["target"] == "cluster=1" and att["target_name"] == emb["cluster_names"][0]
    assert att["target_bins"] == emb["cluster_bins"][0]
    assert emb["cluster_times"][0]["cluster"] == 1
