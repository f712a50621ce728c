"""Ground truth for dissection, probing and maps: a planted model on synthetic corpora.

The planted model (probe.corpus.synthetic) has unit 3 = onset detector, unit 7 = 1–2 kHz
band energy, unit 9 = spectral flatness, every other unit noise; its ``code`` layer
carries the label of the label corpus (a faint 3 kHz tone) that a random projection
cannot see.
"""

from __future__ import annotations

import numpy as np
import pytest

from probe.corpus import (DissectOptions, MapOptions, ProbeOptions, RunOptions, corpus_map, dissect, linear_cka,
                          open_run, probe_layers, run_corpus)
from probe.corpus.dissection import bh_qvalues
from probe.corpus.synthetic import PLANTED, make_event_corpus, make_label_corpus, planted_spec

pytestmark = pytest.mark.slow  # a corpus run (and Ray start-up) per module


@pytest.fixture(scope="module")
def event_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dissect")
    corpus = make_event_corpus(root / "clips", n_clips=24, seed=0)
    run_corpus(planted_spec, corpus, root / "run", options=RunOptions(layers=("units",), batch_size=8))
    return open_run(root / "run")


@pytest.fixture(scope="module")
def dissection(event_run):
    return dissect(event_run, options=DissectOptions(permutations=1000, fdr=0.05))


def test_dissection_labels_exactly_the_planted_units(dissection):
    labels = {u["unit"]: u["label"] for u in dissection["units"] if u["label"]}
    assert labels == PLANTED


def test_no_noise_unit_passes_either_null(dissection):
    noise = [u for u in dissection["units"] if u["unit"] not in PLANTED]
    assert all(u["q_unit"] > 0.05 for u in noise)
    assert not any(r["passes"] for r in dissection["pairs"] if r["unit"] not in PLANTED)


def test_planted_alignment_scores_and_null_statistics(dissection):
    pairs = {(r["unit"], r["concept"]): r for r in dissection["pairs"]}
    assert pairs[(7, "band_1000_2000")]["score"] > 0.9
    assert pairs[(9, "flatness")]["score"] > 0.9
    assert pairs[(3, "onset")]["score"] > 0.4
    for key in [(3, "onset"), (7, "band_1000_2000"), (9, "flatness")]:
        r = pairs[key]
        assert r["p"] == pytest.approx(1 / 1001)  # beats every one of 1000 shifted-time permutations
        assert r["score"] > r["random_max"]  # and every unit of the random-init model
        # shifts keep each clip's level, so the null is not centred on 0, but far below the real alignment
        assert r["null_mean"] < 0.5 * r["score"]


def test_shuffled_null_is_calibrated_for_noise_units(dissection):
    p = np.array([r["p"] for r in dissection["pairs"] if r["unit"] not in PLANTED and r["kind"] == "corr"])
    # noise units: shift-null p-values spread over (0, 1] instead of piling up near 0
    assert 0.3 < np.median(p) < 0.7
    assert np.mean(p < 0.05) < 0.12


def test_random_init_control_rejects_what_a_random_network_also_does(event_run):
    """Without the shift null's help: a loudness-like alignment shared by random weights is not labelled."""
    res = dissect(event_run, options=DissectOptions(permutations=200))
    pairs = {(r["unit"], r["concept"]): r for r in res["pairs"]}
    # the band unit follows loudness significantly, yet labels go to what beats the random network most
    assert pairs[(7, "loudness")]["q"] <= 0.05
    assert {u["unit"]: u["label"] for u in res["units"] if u["label"]} == PLANTED


def test_dissection_without_random_variant_is_refused(tmp_path):
    from probe.corpus import CorpusError

    corpus = make_event_corpus(tmp_path / "c", n_clips=3, seconds=0.5)
    run_corpus(planted_spec, corpus, tmp_path / "r", options=RunOptions(layers=("units",), concepts=("loudness",),
                                                                         random_init=False))
    with pytest.raises(CorpusError, match="no random-init variant"):
        dissect(tmp_path / "r")
    res = dissect(tmp_path / "r", options=DissectOptions(random_init=False, permutations=20))
    assert res["summary"]["random_init_control"] is False


def test_bh_qvalues_match_the_textbook_procedure():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=50) ** 3
    q = bh_qvalues(p)
    m = len(p)
    for alpha in (0.01, 0.05, 0.2):
        order = np.sort(p)
        below = np.flatnonzero(order <= alpha * np.arange(1, m + 1) / m)
        k = below.max() + 1 if below.size else 0
        assert int((q <= alpha).sum()) == k


# ---- probing and maps --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def label_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    manifest = make_label_corpus(root / "clips", n_clips=40)
    run_corpus(planted_spec, manifest, root / "run",
               options=RunOptions(layers=("units", "code"), concepts=("loudness", "bands"), frames_per_clip=16))
    return open_run(root / "run")


def test_probe_reads_the_planted_label_and_baselines_sit_at_chance(label_run):
    res = probe_layers(label_run, options=ProbeOptions(label="label"))
    code = next(r for r in res["layers"] if r["layer"] == "code")
    assert res["grouped_by"] == "group" and code["chance"] == 0.5
    assert code["score"] >= 0.95
    assert code["random_init"] <= 0.75
    assert code["control"] <= 0.7


def test_group_folds_never_split_a_group(label_run):
    from sklearn.model_selection import GroupKFold

    from probe.corpus.probing import _groups

    X, idx = label_run.pooled("code")
    groups = _groups(label_run, idx)
    for tr, te in GroupKFold(n_splits=5).split(X, groups=groups):
        assert not set(groups[tr]) & set(groups[te])


def test_probe_continuous_concept_and_cka(label_run):
    res = probe_layers(label_run, options=ProbeOptions(label="band_2000_4000", control_repeats=2))
    code = next(r for r in res["layers"] if r["layer"] == "code")
    # a 3 kHz narrow band predicts the 2-4 kHz octave much better than its own time-shifted copy
    assert code["metric"] == "r2" and code["score"] > 0.5 > code["control"] + 0.3
    assert 0 <= code["cka"] <= 1


def test_linear_cka_invariances():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6))
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert linear_cka(X, X @ Q * 5 + 3) == pytest.approx(1.0)
    assert linear_cka(X, rng.standard_normal((300, 6))) < 0.1


def test_corpus_map_clusters_follow_an_obvious_label(tmp_path):
    import soundfile as sf

    from probe.corpus.synthetic import SR

    rng = np.random.default_rng(3)
    t = np.arange(SR) / SR
    for kind in ("tone", "noise"):
        (tmp_path / "clips" / kind).mkdir(parents=True)
        for i in range(8):
            y = (0.2 * np.sin(2 * np.pi * rng.uniform(1200, 1800) * t) if kind == "tone"
                 else rng.uniform(0.05, 0.2) * rng.standard_normal(SR))
            sf.write(tmp_path / "clips" / kind / f"{i}.wav", y.astype(np.float32), SR)
    run_corpus(planted_spec, tmp_path / "clips", tmp_path / "run",
               options=RunOptions(layers=("units",), concepts=(), random_init=False))
    res = corpus_map(tmp_path / "run", options=MapOptions(layer="units"))
    assert res["coords"].shape == (16, 2) and res["n_clusters"] == 2
    # band energy (unit 7) and flatness (unit 9) split tones from noise; nine noise units do not blur it
    assert res["ari"] == pytest.approx(1.0) and res["nmi"] == pytest.approx(1.0)


def test_figures_render(label_run, tmp_path):
    from probe.corpus.figures import cka_figure, map_figure, probe_figure

    res = probe_layers(label_run, options=ProbeOptions(label="label", control_repeats=1))
    fig = probe_figure(res)
    assert [t.name for t in fig.data] == ["trained", "random-init", "control task", "chance"]
    assert list(fig.data[0].x) == ["units", "code"]
    assert cka_figure(res).data[0].y[0] == pytest.approx(res["layers"][0]["cka"])
    m = map_figure(corpus_map(label_run, options=MapOptions(layer="code")))
    assert sum(len(t.x) for t in m.data) == 40
