"""Data builders of the zoo (model_zoo.data): determinism, exact stems, held-out splits, clear errors.

Every test builds a tiny subset (n = 2..4) into a fresh temporary cache, so nothing here reads
or writes model_zoo/data/_build/.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_zoo.data import SEPARATION_KINDS, MissingSourceError, noisy_set, separation_set
from model_zoo.data import _common as C
from model_zoo.data import _sources as SRC
from model_zoo.data import instruments, noisy, speech
from model_zoo.data.manifest import manifest

SR = 8000


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_DATA_BUILD", str(tmp_path / "build"))
    return tmp_path / "build"


def _same(a: list[dict], b: list[dict], keys) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in keys) and [
        x["meta"] for x in a
    ] == [y["meta"] for y in b]


def test_kinds_are_the_public_ones():
    assert SEPARATION_KINDS == ("instruments", "speech")


@pytest.mark.parametrize("kind", SEPARATION_KINDS)
def test_separation_items_are_exact_and_shaped(kind):
    items = separation_set(kind, "train", n=2)
    assert len(items) == 2
    for it in items:
        assert it["sr"] == SR
        assert it["mixture"].dtype == np.float32 and it["mixture"].shape == (4 * SR,)
        assert it["sources"].dtype == np.float32 and it["sources"].shape == (2, 4 * SR)
        assert np.array_equal(it["sources"][0] + it["sources"][1], it["mixture"])  # exact, not approximately
        assert len(it["source_names"]) == 2 and all(isinstance(s, str) for s in it["source_names"])
        assert np.max(np.abs(it["mixture"])) <= 0.9 + 1e-6
        lv = [C.rms_db(s) for s in it["sources"]]
        assert all(-40 < v < -10 for v in lv) and abs(lv[0] - lv[1]) <= 5.0 + 1e-3
        json.dumps(it["meta"])  # plain JSON, no numpy scalars


@pytest.mark.parametrize("kind", SEPARATION_KINDS)
def test_builds_are_deterministic_and_prefix_stable(kind, fresh_cache, monkeypatch, tmp_path):
    a = separation_set(kind, "val", n=2)  # fresh build, cached
    b = separation_set(kind, "val", n=3)  # extends the cache by one item
    monkeypatch.setenv("PROBE_DATA_BUILD", str(tmp_path / "other"))
    c = separation_set(kind, "val", n=3)  # independent fresh build
    keys = ("mixture", "sources")
    assert _same(a, b[:2], keys)
    assert _same(b, c, keys)
    assert not np.array_equal(b[0]["sources"], b[1]["sources"])


def test_instrument_meta_matches_families_and_range():
    for it in separation_set("instruments", "train", n=2):
        m = it["meta"]
        assert it["source_names"] == ["low", "high"]
        assert m["programs"][0] in instruments.programs("low", "train")
        assert m["programs"][1] in instruments.programs("high", "train")
        for program, notes in zip(m["programs"], m["notes"]):
            lo, hi = instruments.note_range(program)
            assert notes, "every stem plays at least one note"
            for note in notes:
                assert lo <= note["pitch"] <= hi and 0 <= note["onset"] < note["offset"] <= 4.0
                assert 1 <= note["velocity"] <= 127
            onsets = [n["onset"] for n in notes]
            assert onsets == sorted(onsets) and all(n1["offset"] <= n2["onset"] for n1, n2 in zip(notes, notes[1:]))  # monophonic


def test_rendered_note_sits_where_and_at_the_pitch_the_meta_says():
    # Known ground truth: A2 (110 Hz) on an acoustic bass from 0.1 to 0.5 s, then nothing.
    y = instruments.render_line(32, [{"pitch": 45, "onset": 0.1, "offset": 0.5, "velocity": 110}], 2 * SR, sr=SR)
    during, before, long_after = y[int(0.15 * SR) : int(0.45 * SR)], y[: int(0.09 * SR)], y[int(1.5 * SR) :]
    assert C.rms_db(during) > -40
    assert C.rms_db(before) < C.rms_db(during) - 60
    assert C.rms_db(long_after) < C.rms_db(during) - 30
    spec = np.abs(np.fft.rfft(during * np.hanning(len(during))))
    freqs = np.fft.rfftfreq(len(during), 1 / SR)
    peak = freqs[np.argmax(spec * (freqs < 1000))]
    harmonic = peak / 110.0
    assert abs(harmonic - round(harmonic)) < 0.05 and round(harmonic) >= 1


def test_test_programs_are_held_out():
    for family in ("low", "high"):
        train, val, test = (set(instruments.programs(family, s)) for s in ("train", "val", "test"))
        assert train == val and not (train & test)
        assert 0.25 <= len(test) / (len(train) + len(test)) <= 0.4  # about a third held out
    train_items = separation_set("instruments", "train", n=3)
    test_items = separation_set("instruments", "test", n=3)
    train_progs = {p for it in train_items for p in it["meta"]["programs"]}
    test_progs = {p for it in test_items for p in it["meta"]["programs"]}
    assert not (train_progs & test_progs)
    assert test_progs <= set(instruments.programs("low", "test")) | set(instruments.programs("high", "test"))


def test_speech_test_texts_are_held_out():
    pools = {s: set(speech.text_pool(s)) for s in C.SPLITS}
    assert not (pools["train"] & pools["test"]) and not (pools["val"] & pools["test"]) and not (pools["train"] & pools["val"])
    held_out_words = set(speech.TEST_NOUNS) | {speech.plural(w) for w in speech.TEST_NOUNS}
    assert all(held_out_words & set(t.split()) for t in pools["test"])  # every test sentence has a held-out noun
    assert not any(held_out_words & set(t.split()) for t in pools["train"] | pools["val"])  # ...that training never hears
    train = separation_set("speech", "train", n=2)
    test = separation_set("speech", "test", n=2)
    for it in train + test:
        assert it["meta"]["voices"][0] != it["meta"]["voices"][1] and it["source_names"] == it["meta"]["voices"]
        assert set(it["meta"]["voices"]) <= set(speech.VOICES)
    train_texts = {t for it in train for t in it["meta"]["texts"]}
    test_texts = {t for it in test for t in it["meta"]["texts"]}
    assert test_texts <= pools["test"] and train_texts <= pools["train"] and not (train_texts & test_texts)


def test_noisy_clips_add_up_and_half_are_noise_only():
    clips = noisy_set("train", n=4)
    assert [c["has_signal"] for c in clips].count(True) == 2
    for k in (0, 2):  # exactly one signal clip per pair
        assert clips[k]["has_signal"] != clips[k + 1]["has_signal"]
    for c in clips:
        assert c["sr"] == SR
        for key in ("noisy", "clean", "noise"):
            assert c[key].dtype == np.float32 and c[key].shape == (2 * SR,)
        assert np.array_equal(c["clean"] + c["noise"], c["noisy"])
        assert np.max(np.abs(c["noisy"])) <= 0.9 + 1e-6 and C.rms_db(c["noise"]) > -60
        if c["has_signal"]:
            assert -5.0 <= c["snr_db"] <= 10.0
            assert C.rms_db(c["clean"]) - C.rms_db(c["noise"]) == pytest.approx(c["snr_db"], abs=0.01)
            assert c["meta"]["signal"]["type"] in ("speech", "instrument")
        else:
            assert c["snr_db"] is None and not np.any(c["clean"]) and c["meta"]["signal"] is None
    again = noisy_set("train", n=4)
    assert _same(clips, again, ("noisy", "clean", "noise"))


def test_noisy_test_split_uses_unseen_recordings_and_signals():
    train_files = noisy.noise_files("train")
    test_files = noisy.noise_files("test")
    assert not (set(train_files["events"]) & set(test_files["events"]))
    assert not (set(train_files["shaped_spectra"]) & set(test_files["shaped_spectra"]))
    train_prompts = {p for p, _, _ in noisy.asterisk_prompts("train")}
    test_prompts = {p for p, _, _ in noisy.asterisk_prompts("test")}
    assert train_prompts and test_prompts and not (train_prompts & test_prompts)
    allowed = set(test_files["events"]) | set(test_files["shaped_spectra"]) | test_prompts
    for c in noisy_set("test", n=4):
        m = c["meta"]
        bed = m["noise"]["bed"]
        used = [f["file"] for f in bed.get("files", [])] + [bed[k] for k in ("file", "spectrum_from") if k in bed]
        if m["noise"]["event"]:
            used.append(m["noise"]["event"]["file"])
        assert set(used) <= allowed
        sig = m["signal"]
        if sig and sig["type"] == "speech":
            assert sig["text"] in speech.text_pool("test")
        elif sig:
            assert sig["program"] in instruments.programs(sig["family"], "test")


def test_missing_soundfont_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(SRC.OVERRIDES, "soundfont", tmp_path / "FluidR3_GM.sf2")
    with pytest.raises(MissingSourceError, match=r"fluid-soundfont-gm.*apt-get install -y fluid-soundfont-gm"):
        separation_set("instruments", "train", n=1)


def test_missing_flite_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(SRC.OVERRIDES, "flite", tmp_path / "flite")
    with pytest.raises(MissingSourceError, match=r"apt-get install -y flite"):
        separation_set("speech", "train", n=1)


def test_missing_noise_recordings_name_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(SRC.OVERRIDES, "asterisk", tmp_path / "asterisk")
    with pytest.raises(MissingSourceError, match=r"apt-get install -y asterisk-core-sounds-en-wav"):
        noisy.asterisk_prompts("train")
    monkeypatch.setitem(SRC.OVERRIDES, "freedesktop", tmp_path / "freedesktop")
    with pytest.raises(MissingSourceError, match=r"apt-get install -y sound-theme-freedesktop"):
        noisy._load(noisy.noise_files("test")["events"][0], SR)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: separation_set("drums", "train", n=1), "unknown separation kind 'drums'"),
        (lambda: separation_set("instruments", "dev", n=1), "unknown split 'dev'"),
        (lambda: separation_set("instruments", "train", n=0), "given n=0"),
        (lambda: noisy_set("train", n=-2), "given n=-2"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_manifest_lists_sources_licences_and_disjoint_test_sources():
    m = manifest("instruments")
    json.dumps(m)
    assert {p["name"] for p in m["packages"]} >= {"fluid-soundfont-gm"} and all(p["licence"] for p in m["packages"])
    train = {s["preset"] for s in m["splits"]["train"]["sources"]}
    test = {s["preset"] for s in m["splits"]["test"]["sources"]}
    assert train and test and not (train & test)
    s = manifest("speech")
    assert "texts" in s["held_out"].lower() or "text" in s["held_out"].lower()
    assert not set(s["splits"]["train"]["texts"]) & set(s["splits"]["test"]["texts"])
    nz = manifest("noisy")
    train_paths = {e["path"] for e in nz["splits"]["train"]["noise"]}
    test_paths = {e["path"] for e in nz["splits"]["test"]["noise"]}
    assert not (train_paths & test_paths)
    assert all(e["licence"] and e["package"] for e in nz["splits"]["test"]["noise"])
