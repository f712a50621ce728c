"""Zoo model ``dc_speech``: deep clustering on two REAL speakers (klettres-data + asterisk prompts).

Ground truth by construction: the speaker split is checked on the items' own metadata (no test
speaker, no test language in train or val), stems must add up to the mixture bit for bit, the
mask accuracy is checked on masks built from the stems themselves, and the shipped checkpoint is
re-evaluated on the card's fixed test subset. The data come from the Debian packages
``klettres-data`` and ``asterisk-core-sounds-en-wav`` (installed by ``.ci/setup``); without them the
tests fail with the install command.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model_zoo import dc_speech
from model_zoo.data import MissingSourceError, separation_set
from model_zoo.data import _common as C
from model_zoo.data import _sources as SRC
from model_zoo.data import speakers as SP
from model_zoo.metrics import evaluate_separator
from model_zoo.recipes._common import CARD_DIR, CHECKPOINT_DIR, load_checkpoint
from model_zoo.recipes.dc_speech import mask_accuracy, mask_accuracy_items

#: SI-SDRi (dB) of the shipped checkpoint on example:dc_speech:0, measured on the shipped weights
EXAMPLE0_SI_SDRI = 3.51


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def test_speakers_and_languages_are_disjoint_between_splits():
    spk = {s: set(SP.speakers(s)) for s in C.SPLITS}
    langs = {s: {SP.language_of(x) for x in v} for s, v in spk.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not spk[a] & spk[b], (a, b)
        assert not langs[a] & langs[b], (a, b)  # a language's folders may be one person: whole languages held out
    assert SP.ALLISON in spk["train"] and all(SP.ALLISON not in spk[s] for s in ("val", "test"))
    assert len(spk["test"]) >= 8 and len(spk["val"]) >= 4
    for split, n in (("train", 6), ("val", 6), ("test", 12)):
        for it in separation_set("speakers", split, n=n):
            m = it["meta"]
            assert m["split"] == split and set(m["speakers"]) <= spk[split], (split, m["speakers"])
            assert it["source_names"] == m["speakers"]
            assert m["languages"][0] != m["languages"][1]  # two different people
            assert "klettres-data" in m["package"] and "GPL-2+" in m["licence"]


def test_stems_sum_exactly_and_levels_follow_the_design():
    for it in separation_set("speakers", "test", n=6):
        assert it["sr"] == 8000 and it["mixture"].shape == (32000,) and it["sources"].shape == (2, 32000)
        assert it["mixture"].dtype == np.float32 and it["sources"].dtype == np.float32
        assert np.array_equal(it["sources"][0] + it["sources"][1], it["mixture"])  # exact
        lv = [C.rms_db(s) for s in it["sources"]]
        assert abs(lv[0] - lv[1]) <= 5.0 + 1e-3 and all(-40 < v < -10 for v in lv)
        assert np.max(np.abs(it["mixture"])) <= 0.9 + 1e-6
        for s in it["sources"]:  # real speech: clips with gaps, not a constant signal
            fr = s.reshape(-1, 64)
            active = np.sqrt((fr.astype(np.float64) ** 2).mean(1)) > 1e-4
            assert 0.2 < active.mean() <= 1.0


def test_training_sampler_mixes_exactly():
    mix, src = SP.StreamSampler(4000, np.random.default_rng(0), split="val").batch(3)
    assert mix.shape == (3, 4000) and src.shape == (3, 2, 4000)
    assert np.array_equal(src.sum(1), mix)
    assert not np.array_equal(src[0, 0], src[1, 0])


def _peak_hz(y: np.ndarray, sr: int = 8000) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25])
def test_speed_perturbation_moves_the_pitch_by_the_factor(factor):
    t = np.arange(16000) / 8000
    harm = sum(np.sin(2 * np.pi * k * 180 * t) / k for k in (1, 2, 3)).astype(np.float32)  # f0 180 Hz + 2 harmonics
    z = SP.perturb_speed(harm, factor)
    assert z.dtype == np.float32 and len(z) == round(16000 / factor)
    assert _peak_hz(z[1000:-1000]) == pytest.approx(180 * factor, abs=3.0)  # f0 (and every partial) × factor
    spec = np.abs(np.fft.rfft(z[1000:-1000] * np.hanning(len(z) - 2000)))
    k2 = int(round(2 * 180 * factor * (len(z) - 2000) / 8000))
    assert spec[k2 - 2:k2 + 3].max() > 0.2 * spec.max()  # the 2nd harmonic moved with it


def test_random_eq_is_a_bounded_smooth_gain():
    y = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    z = SP.random_eq(y, np.random.default_rng(3))
    gain_db = 20 * np.log10(np.abs(np.fft.rfft(z)) / np.abs(np.fft.rfft(y)))
    assert np.all(np.abs(gain_db) <= SP.EQ_DB + 1e-3)  # within ±6 dB at every frequency
    assert np.abs(np.diff(gain_db)).max() < 0.05  # smooth: interpolated between 6 anchor frequencies
    assert np.ptp(gain_db) > 1.0  # and not a flat gain


def test_augmentation_and_flite_voices_are_for_training_only():
    for split in ("val", "test"):
        for kw in ({"augment": True}, {"flite": True}, {"prompts": True}):
            with pytest.raises(ValueError, match="training split only"):
                SP.StreamSampler(4000, np.random.default_rng(0), split=split, **kw)
    flite = set(SP.flite_speakers())
    assert len(flite) == 4 and all(SP.split_of(s) == "train" for s in flite)
    for split in C.SPLITS:
        assert not flite & set(SP.speakers(split)), split  # never a speaker of any built split
    for split, n in (("val", 40), ("test", 60)):
        for it in separation_set("speakers", split, n=n):
            assert not any(s.startswith("flite:") for s in it["meta"]["speakers"]), (split, it["meta"]["speakers"])
            assert "flite" not in it["meta"]["package"]


def test_augmented_sampler_mixes_exactly_and_makes_new_speakers():
    sampler = SP.StreamSampler(8000, np.random.default_rng(1), split="train", augment=True, flite=True)
    mix, src = sampler.batch(4)
    assert mix.shape == (4, 8000) and src.shape == (4, 2, 8000) and mix.dtype == np.float32
    assert np.array_equal(src[:, 0] + src[:, 1], mix)  # mixture == s1 + s2 exactly, after augmentation
    allowed = set(SP.speakers("train")) | set(SP.flite_speakers())
    seen, speeds = set(), []
    for _ in range(60):
        sampler.one()
        seen.update(sampler.last["speakers"])
        speeds += sampler.last["speed"]
    assert seen <= allowed and seen & set(SP.flite_speakers())  # flite voices do take part, in training
    lo, hi = SP.SPEED_RANGE
    assert all(lo - 0.005 <= f <= hi + 0.005 for f in speeds) and min(speeds) < 0.9 and max(speeds) > 1.1
    plain = SP.StreamSampler(8000, np.random.default_rng(1), split="train")
    plain.one()
    assert plain.last["speed"] == [1.0, 1.0] and not set(plain.last["speakers"]) & set(SP.flite_speakers())


def test_prompt_voices_are_four_more_real_training_speakers_cut_into_phrases():
    voices = SP.prompt_speakers()
    assert len(voices) == 4 and all(SP.split_of(s) == "train" for s in voices)
    assert len({SP.language_of(s) for s in voices} | {SP.language_of(SP.ALLISON)}) == 5  # each its own speaker
    for split in C.SPLITS:
        assert not set(voices) & set(SP.speakers(split)), split  # never a speaker of any built split
    for split, n in (("val", 40), ("test", 60)):
        for it in separation_set("speakers", split, n=n):
            assert not set(it["meta"]["speakers"]) & set(voices), (split, it["meta"]["speakers"])
    pool = SP.prompt_clips()
    assert sorted(pool) == sorted(voices)
    for spk, phrases in pool.items():
        seconds = np.array([len(c) for c in phrases]) / SP.SR
        assert len(phrases) > 300 and seconds.sum() > 15 * 60, spk  # about 19 minutes of running speech each
        assert 1.0 < np.median(seconds) < 4.0 and seconds.max() < 30, spk  # phrases, not whole prompts
        for c in phrases[::50]:
            assert abs(C.rms_db(c) - SP.CLIP_RMS_DB) < 0.5  # prepared like the klettres clips
    sampler = SP.StreamSampler(8000, np.random.default_rng(2), split="train", prompts=True)
    seen = set()
    for _ in range(60):
        sampler.one()
        seen.update(sampler.last["speakers"])
    assert seen & set(voices) and seen <= set(SP.speakers("train")) | set(voices)
    assert not seen & set(SP.flite_speakers())


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBE_DATA_BUILD", str(tmp_path / "build"))  # no cache: must build from the package
    monkeypatch.setitem(SRC.OVERRIDES, "klettres", str(tmp_path / "no-klettres"))
    with pytest.raises(MissingSourceError, match=r"klettres-data.*apt-get install -y klettres-data"):
        separation_set("speakers", "test", n=1)


def test_mask_accuracy_counts_agreeing_non_silent_bins():
    rng = np.random.default_rng(0)
    S = np.abs(rng.normal(size=(2, 20, 30)))
    label = S.argmax(0)
    ibm = np.stack([label == 0, label == 1]).astype(np.float32)
    mix = S.sum(0)
    assert mask_accuracy(ibm, S, mix) == 1.0
    assert mask_accuracy(ibm[::-1], S, mix) == 1.0  # cluster order is arbitrary
    wrong = ibm.copy()
    flip = np.zeros_like(label, bool)
    flip[:5] = True  # 5 of 20 rows mislabelled
    wrong[:, flip] = wrong[::-1][:, flip]
    assert mask_accuracy(wrong, S, mix) == pytest.approx(0.75)
    quiet = mix.copy()
    quiet[:5] = 1e-9  # those rows are now silent (< -40 dB): they no longer count
    assert mask_accuracy(wrong, S, quiet) == 1.0


def _shipped():
    ckpt, card_path = CHECKPOINT_DIR / "dc_speech.safetensors", CARD_DIR / "dc_speech.json"
    assert ckpt.is_file() and card_path.is_file(), "dc_speech has no shipped checkpoint/card"
    state, meta = load_checkpoint(ckpt)
    model = dc_speech.build(meta["config"]).eval()
    model.load_state_dict(state, strict=True)
    return model, json.loads(card_path.read_text())


def test_example_0_is_separated():
    from model_zoo.metrics import separation_scores
    from model_zoo.registry import load_example, load_model

    spec = load_model("dc_speech")
    ex = load_example("dc_speech", 0)
    assert ex.name == "example:dc_speech:0" and ex.sources.shape == (2, 32000)
    assert set(ex.info["speakers"]) <= set(SP.speakers("test"))
    est = dc_speech.separate(spec.model, ex.y)
    sc = separation_scores(est, ex.sources, ex.y)
    assert sc["si_sdri"] >= EXAMPLE0_SI_SDRI - 1.0, sc  # measured on the shipped weights, 1 dB margin


def test_card_numbers_hold_on_the_fixed_test_subset():
    model, card = _shipped()
    assert sum(p.numel() for p in model.parameters()) == card["params"]
    sub = card["subset_metrics"]
    items = dc_speech.load_items(sub["split"], n=sub["n_items"])
    res = evaluate_separator({"dc_kmeans": lambda y: dc_speech.separate(model, y)}, items, dc_speech.GRID, oracles=())
    for m in ("si_sdri", "sdri"):
        assert res["dc_kmeans"][m] == pytest.approx(sub["systems"]["dc_kmeans"][m], abs=0.3), m
    acc = float(np.mean(mask_accuracy_items(model, items)))
    assert acc == pytest.approx(sub["mask_accuracy"], abs=0.01)
    # the card states its floors as they are
    test = card["metrics"]["test"]
    f = card["floors"]
    assert f["si_sdri"]["met"] == (test["dc_kmeans"]["si_sdri"] >= 0.6 * test["oracle_ibm"]["si_sdri"])
    assert f["mask_accuracy"]["met"] == (card["metrics"]["mask_accuracy"]["dc_kmeans"] >= 0.85)
    assert card["data"]["speakers"]["test"] == SP.speakers("test")


def test_card_names_the_shipped_weights_and_shows_every_run_in_its_learning_curves(tmp_path):
    import hashlib
    import shutil

    from model_zoo.recipes import dc_speech as R
    from model_zoo.recipes.cards import render_card_md

    card = json.loads((CARD_DIR / "dc_speech.json").read_text())
    sha = hashlib.sha256((CHECKPOINT_DIR / "dc_speech.safetensors").read_bytes()).hexdigest()
    assert card["checkpoint_sha256"] == sha
    runs = card["earlier_runs"]
    assert runs and all(len(r["history"]) >= 5 and r["best_step"] for r in runs)
    assert sha not in {r["checkpoint_sha256"] for r in runs}  # earlier runs are other weights
    md = (CARD_DIR / "dc_speech.md").read_text()
    assert md.startswith(render_card_md(card).rstrip("\n"))  # the card's text is its JSON, plus the curves
    assert "![learning curves of dc_speech](dc_speech.curves.png)" in md and (CARD_DIR / "dc_speech.curves.png").is_file()
    table = [ln for ln in md.split("## Learning curves")[1].splitlines() if ln.startswith("| v")]
    assert len(table) == len(runs) + 1 and sha[:12] in table[-1]
    # the section is rebuilt, not appended twice, and a continued run is drawn after the ones before it
    shutil.copy(CARD_DIR / "dc_speech.json", tmp_path)
    shutil.copy(CARD_DIR / "dc_speech.md", tmp_path)
    R.add_learning_curves(tmp_path, png=False)
    again = (tmp_path / "dc_speech.md").read_text()
    assert again.count("## Learning curves") == 1
    # a run continued from these weights names them as the card's table does, and takes the next free number
    cont = R.earlier_runs_for(sha)
    assert [r["label"] for r in cont] == [r["label"] for r in runs] + [f"v{len(runs) + 1}"]
    assert cont[-1]["checkpoint_sha256"] == sha and R.earlier_runs_for("0" * 64) == []
    assert int(R.next_run_label()[1:]) > len(runs) + 1  # the unshipped attempts count too
    fig = R.learning_curve_figure(runs + [R.run_summary(card, sha, label="this")])
    starts = [min(x for x in tr.x) for tr in fig.data if tr.mode == "lines+markers"]
    assert starts == sorted(starts) and len(starts) == len(runs) + 1
