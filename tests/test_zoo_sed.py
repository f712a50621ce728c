"""Sound-event detection in the zoo: scene data, the two detectors, their recipes, scores and cards.

Label functions and scoring are checked on signals built here (tone bursts, band-limited
noise at known boxes). Scene tests need the Debian packages with the recordings
(wesnoth-1.16-data, sound-theme-freedesktop, asterisk-core-sounds-en-wav, alsa-utils), which
``.ci/setup`` installs: where they are missing they fail, naming them (``probe doctor`` lists them).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model_zoo import crnn_sed, rawcnn_sed
from model_zoo.data import scenes as S
from model_zoo.data.scenes import SCENE_CLASSES
from model_zoo.recipes import sed_common as SC
from model_zoo.recipes._common import WeightAverage

SR = 16000
MODELS = [crnn_sed, rawcnn_sed]


@pytest.fixture
def scene_recordings():
    """The recorded sound effects the scenes are built from; ``.ci/setup`` installs them, so missing = failure."""
    try:
        S._catalogue()
    except S.MissingSourceError as e:
        pytest.fail(f"scene recordings missing (bash .ci/setup installs them; `probe doctor` lists them): {e}")


needs_data = pytest.mark.usefixtures("scene_recordings")


def _envelope_bounds(y: np.ndarray, sr: int, top_db: float) -> tuple[float, float]:
    """Slow re-implementation: 20 ms mean-square energy around every millisecond."""
    win = int(0.02 * sr)
    hop = sr // 1000
    e = np.array([np.mean(y[max(0, c - win // 2):c + win // 2].astype(np.float64) ** 2) if c < len(y) else 0
                  for c in range(0, len(y), hop)])
    db = 10 * np.log10(e + 1e-20)
    on = np.flatnonzero(db > db.max() - top_db)
    return on[0] * hop / sr, on[-1] * hop / sr


# ---- label functions on signals with known answers --------------------------------------------
def test_event_bounds_of_a_tone_burst():
    y = np.zeros(2 * SR, np.float32)
    t = np.arange(int(0.6 * SR)) / SR
    y[int(0.7 * SR):int(1.3 * SR)] = 0.3 * np.sin(2 * np.pi * 1000 * t)
    on, off = S.event_bounds(y, SR)
    assert abs(on - 0.7) <= 0.012 and abs(off - 1.3) <= 0.012


def test_event_bounds_ignores_a_faint_tail_and_reports_silence():
    y = np.zeros(SR, np.float32)
    y[1600:4800] = 0.5
    y[4800:8000] = 0.5 * 10 ** (-40 / 20)  # 40 dB down: below the 30 dB threshold
    on, off = S.event_bounds(y, SR)
    assert abs(on - 0.1) <= 0.012 and abs(off - 0.3) <= 0.012
    assert np.isnan(S.event_bounds(np.zeros(SR, np.float32), SR)[0])


def test_event_band_of_band_limited_noise_holds_95_percent(rng):
    from scipy.signal import butter, sosfilt

    sos = butter(8, [1000, 2000], btype="bandpass", fs=SR, output="sos")
    y = sosfilt(sos, rng.standard_normal(SR)).astype(np.float32)
    fmin, fmax = S.event_band(y, SR, 0.0, 1.0)
    assert 700 <= fmin <= 1050 and 1950 <= fmax <= 2300
    f = np.fft.rfftfreq(len(y), 1 / SR)
    p = np.abs(np.fft.rfft(y)) ** 2
    inside = p[(f >= fmin) & (f <= fmax)].sum() / p.sum()
    assert inside >= 0.9


def test_event_roll_marks_frames_inside_events():
    roll = S.event_roll([{"label": "horn", "onset": 0.1, "offset": 0.3}, {"label": "speech", "onset": 0.0, "offset": 0.05}],
                        20)
    assert roll.shape == (len(SCENE_CLASSES), 20)
    h = SCENE_CLASSES.index("horn")
    assert np.flatnonzero(roll[h]).tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert roll[SCENE_CLASSES.index("speech")].sum() == 3 and roll.sum() == 14


# ---- decoding and sed_eval scores ----------------------------------------------------------------
def test_decode_and_median_filter():
    p = np.zeros((len(SCENE_CLASSES), 100), np.float32)
    p[2, 10:40] = 0.9
    p[2, 60] = 0.9  # a one-frame blip
    ev = SC.decode(p)
    assert [(e["label"], round(e["onset"], 2), round(e["offset"], 2)) for e in ev] == [
        ("creature", 0.19, 0.79), ("creature", 1.19, 1.21)]
    ev5 = SC.decode(p, median_frames=5)
    assert len(ev5) == 1 and abs(ev5[0]["onset"] - 0.19) < 0.05 and abs(ev5[0]["offset"] - 0.79) < 0.05


def test_sed_scores_perfect_and_empty():
    ref = [[{"label": "horn", "onset": 1.0, "offset": 3.0}, {"label": "speech", "onset": 5.0, "offset": 6.5}]]
    good = SC.sed_scores(ref, ref, seconds=10.0)
    assert good["segment_f1"] == pytest.approx(1.0) and good["segment_er"] == pytest.approx(0.0)
    assert good["event_f1"] == pytest.approx(1.0)
    none = SC.sed_scores(ref, [[]], seconds=10.0)
    assert none["segment_f1"] == 0.0 and none["segment_er"] == pytest.approx(1.0)
    wrong = SC.sed_scores(ref, [[{"label": "alert", "onset": 1.0, "offset": 3.0}]], seconds=10.0)
    assert wrong["segment_f1"] < 0.01 and wrong["per_class"]["horn"]["segment_f1"] == 0.0


# ---- the scene data ------------------------------------------------------------------------------
@needs_data
def test_scenes_are_deterministic_and_indexed():
    a = S.scene("test", 3)
    b = S.scene("test", 3)
    assert np.array_equal(a["audio"], b["audio"]) and a["events"] == b["events"]
    first2 = S.scene_set("test", n=2, stems=False)
    assert np.array_equal(first2[1]["audio"], S.scene("test", 1)["audio"])
    assert not np.array_equal(first2[0]["audio"], first2[1]["audio"])
    assert a["audio"].dtype == np.float32 and a["audio"].shape == (10 * SR,)
    assert np.abs(a["audio"]).max() <= 0.95 + 1e-6


@needs_data
@pytest.mark.parametrize("split,index", [("test", 0), ("train", 5), ("val", 2)])
def test_scene_labels_sit_where_the_event_energy_is(split, index):
    s = S.scene(split, index)
    stems = s["event_stems"]
    assert stems.shape == (len(s["events"]), len(s["audio"])) and len(s["events"]) >= 3
    np.testing.assert_allclose(s["background"] + stems.sum(0), s["audio"], atol=1e-5)
    for e, stem in zip(s["events"], stems):
        assert e["label"] in SCENE_CLASSES and e["source_file"].startswith("/usr/share/")
        on, off = _envelope_bounds(stem, SR, S.TOP_DB)
        assert abs(e["onset"] - on) <= 0.05 and abs(e["offset"] - off) <= 0.05, (e, on, off)
        # the time-frequency box holds most of the event's energy
        from scipy.signal import stft

        a, b = int(e["onset"] * SR), int(e["offset"] * SR) + 1
        f, _, Z = stft(stem[a:b] if b - a >= 512 else np.pad(stem[a:b], (0, 512)), fs=SR, nperseg=512)
        p = (np.abs(Z) ** 2).sum(1)
        inside = p[(f >= e["fmin"] - SR / 512) & (f <= e["fmax"] + SR / 512)].sum() / p.sum()
        assert inside >= 0.9, (e, inside)
        assert 0 <= e["fmin"] < e["fmax"] <= SR / 2


@needs_data
def test_test_recordings_never_appear_in_train_or_val():
    src = {s: S.scene_sources(s) for s in S.SPLITS}
    files = {s: {f for fs in src[s]["events"].values() for f in fs} for s in S.SPLITS}
    assert not files["test"] & files["train"] and not files["test"] & files["val"] and not files["val"] & files["train"]
    fams = {s: {S._group(f.rsplit("/", 1)[1]) for f in files[s]} for s in S.SPLITS}
    assert not fams["test"] & (fams["train"] | fams["val"])
    assert src["test"]["backgrounds"] == src["train"]["backgrounds"]  # the ambiences are shared, by design
    for c in SCENE_CLASSES:  # every class has recordings on both sides
        assert len(src["train"]["events"][c]) >= 4 and len(src["test"]["events"][c]) >= 3
    used = {e["source_file"] for i in range(3) for e in S.scene("test", i, stems=False)["events"]}
    assert used <= files["test"]
    man = S.scene_manifest()
    assert man["classes"] == SCENE_CLASSES and "wesnoth-1.16-data" in json.dumps(man["packages"])
    assert all(f in man["file_licences"] for f in used)


def test_missing_package_names_it(monkeypatch, tmp_path):
    from model_zoo.data import _sources as SRC

    monkeypatch.setitem(SRC.OVERRIDES, "wesnoth", tmp_path / "nowhere")
    S._catalogue.cache_clear()
    S._splits.cache_clear()
    try:
        with pytest.raises(S.MissingSourceError, match="apt-get install -y wesnoth-1.16-data"):
            S.scene("test", 0)
    finally:
        S._catalogue.cache_clear()
        S._splits.cache_clear()


# ---- the models ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mod", MODELS, ids=lambda m: m.NAME)
def test_model_contract_shapes_and_ranges(mod, rng):
    assert mod.TASK == "detection" and mod.NAME in ("crnn_sed", "rawcnn_sed")
    model = mod.build().eval()
    spec = mod.make_spec(model)
    assert spec.output_kind == "frame_probs" and spec.classes == SCENE_CLASSES and spec.sample_rate == SR
    y = (0.05 * rng.standard_normal((2, SR + 123))).astype(np.float32)
    with torch.no_grad():
        p = spec.forward(y)
    assert tuple(p.shape) == (2, len(SCENE_CLASSES), (SR + 123) // 320 + 1)
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0 and torch.isfinite(p).all()
    times = spec.grid.frames_to_seconds(np.arange(p.shape[-1]))
    assert float(times[1] - times[0]) == pytest.approx(0.02)


def test_raw_cnn_first_layer_is_a_plain_filter_bank():
    from probe.filterbank import filters

    model = rawcnn_sed.build()
    first = next(m for m in model.modules() if m is not model)
    assert isinstance(first, torch.nn.Conv1d) and first.in_channels == 1 and first.stride == (160,)
    banks = filters(rawcnn_sed.make_spec(model))
    assert banks["frontend"].axis == "samples" and banks["frontend"].weights.shape[0] == 64


@pytest.mark.parametrize("mod", MODELS, ids=lambda m: m.NAME)
def test_checkpoint_round_trip_gives_identical_outputs(mod, tmp_path, rng):
    from model_zoo.recipes._common import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = mod.build({"postprocessing": {"threshold": 0.5, "median_frames": 5}})
    model.train()
    spec = mod.make_spec(model)
    with torch.no_grad():  # move the BatchNorm statistics away from their defaults
        spec.forward(torch.as_tensor((0.1 * rng.standard_normal((2, SR))).astype(np.float32)))
    model.eval()
    path = save_checkpoint(model, tmp_path / f"{mod.NAME}.safetensors", name=mod.NAME, config=model.config)
    state, meta = load_checkpoint(path)
    assert meta["name"] == mod.NAME and meta["config"]["postprocessing"]["median_frames"] == 5
    again = mod.build(meta["config"])
    again.load_state_dict(state, strict=True)
    again.eval()
    y = (0.05 * rng.standard_normal((1, SR))).astype(np.float32)
    with torch.no_grad():
        a, b = spec.forward(y), mod.make_spec(again).forward(y)
    assert torch.equal(a, b) and again.postprocessing["median_frames"] == 5


# ---- training augmentation (batch level) -----------------------------------------------------------
def _burst_buffer(n_frames: int = 501):
    """A training buffer of three 10 s scenes, each a loud burst on frames 100-150 and 300-320 of class 0."""
    buf = SC._Buffer.__new__(SC._Buffer)
    buf.n, buf.refresh, buf.sr, buf.n_frames = 3, 0, SR, n_frames
    buf.audio = np.zeros((3, 10 * SR), np.float16)
    buf.targets = np.zeros((3, len(SCENE_CLASSES), n_frames), np.uint8)
    for a, b in ((100, 150), (300, 320)):
        buf.audio[:, a * 320:b * 320] = 0.5
        buf.targets[:, 0, a:b + 1] = 1
    buf.index = np.arange(3)
    return buf


def test_speed_and_shift_augmentation_keep_targets_on_the_sound():
    buf = _burst_buffer()
    aug = {"gain_db": 0.0, "speed": 0.15, "eq_db": 0.0, "shift": True}
    y, t = SC._batch(buf, np.random.default_rng(0), 32, 0.0, 201, aug)
    assert y.shape == (32, 200 * 320) and t.shape == (32, len(SCENE_CLASSES), 201)
    assert t[:, 1:].sum() == 0 and t[:, 0].sum() > 0
    mismatch = []
    for b in range(32):  # a frame is "loud" when the 10 ms around its centre is; targets must agree but at edges
        loud = np.array([np.abs(y[b, max(0, k * 320 - 80):k * 320 + 80]).mean() > 0.25 for k in range(200)])
        mismatch.append(int((loud != (t[b, 0, :200] > 0)).sum()))
    assert max(mismatch) <= 4 and np.mean(mismatch) <= 2.0
    # lengths change with the speed: a 50-frame burst lasts between 50/1.15 and 50*1.15 frames
    widths = [int((t[b, 0] > 0).sum()) for b in range(32)]
    assert len(set(widths)) > 3


def test_random_eq_bounded_and_mixing_keeps_union_of_labels():
    rng = np.random.default_rng(1)
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    out = SC._random_eq(tone, rng, SR, 6.0)
    gain_db = 20 * np.log10(np.std(out) / np.std(tone))
    assert out.shape == tone.shape and abs(gain_db) <= 3 * 6.0 + 0.1  # at most three bumps of +-6 dB
    assert np.array_equal(SC._random_eq(tone, rng, SR, 0.0), tone)
    buf = _burst_buffer()
    buf.targets[1, 0] = 0
    buf.targets[1, 3, 50:400] = 1
    y, t = SC._batch(buf, np.random.default_rng(2), 16, 1.0, 501, {"speed": 0.0, "shift": False})
    assert np.abs(y).max() <= 0.99 + 1e-6
    assert (t[:, 3].sum(axis=1) > 0).any() and (t[:, 0].sum(axis=1) > 0).any()


def test_spec_augment_masks_bands_and_frames_without_touching_the_input():
    X = torch.arange(2 * 64 * 100, dtype=torch.float32).reshape(2, 64, 100)
    Z = SC.spec_augment(X, np.random.default_rng(3), freq_masks=1, freq_width=8, time_masks=1, time_width=10)
    assert torch.equal(X, torch.arange(2 * 64 * 100, dtype=torch.float32).reshape(2, 64, 100))
    for i in range(2):
        changed = Z[i] != X[i]
        rows = changed.all(dim=1).sum().item()
        cols = changed.all(dim=0).sum().item()
        assert rows <= 8 and cols <= 10
        assert torch.all((Z[i] == X[i]) | (Z[i] == X[i].mean()))


def test_weight_average_follows_the_ema_formula_and_swaps_back():
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in m.state_dict().items()}
    ema = WeightAverage(m, 0.9)
    with torch.no_grad():
        m[0].weight.add_(1.0)
        m[1].running_mean.fill_(2.0)
        m[1].num_batches_tracked.fill_(7)
    ema.update(m)
    ema.update(m)
    # two updates towards a constant target b from a: avg = 0.81 a + 0.19 b
    assert torch.allclose(ema.state["0.weight"], 0.81 * start["0.weight"] + 0.19 * (start["0.weight"] + 1.0))
    assert torch.allclose(ema.state["1.running_mean"], torch.full((2,), 0.19 * 2.0))
    assert int(ema.state["1.num_batches_tracked"]) == 7  # integer buffers are copied, not averaged
    live = ema.swap_in(m)
    assert torch.equal(m.state_dict()["0.weight"], ema.state["0.weight"])
    m.load_state_dict(live)
    assert torch.equal(m[0].weight, start["0.weight"] + 1.0)
    with pytest.raises(ValueError):
        WeightAverage(m, 1.0)


# ---- recipes ---------------------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize("mod", MODELS, ids=lambda m: m.NAME)
def test_recipe_smoke_trains_two_steps_and_writes_checkpoint_and_card(mod, tmp_path):
    import importlib

    from model_zoo.recipes._common import load_checkpoint

    recipe = importlib.import_module(f"model_zoo.recipes.{mod.NAME}")
    assert recipe.main(["--smoke", "--out-dir", str(tmp_path), "--eval-seconds", "1000"]) == 0
    state, meta = load_checkpoint(tmp_path / "checkpoints" / f"{mod.NAME}.safetensors")
    model = mod.build(meta["config"])
    model.load_state_dict(state, strict=True)
    card = json.loads((tmp_path / "cards" / f"{mod.NAME}.json").read_text())
    assert card["training"]["steps"] == 2 and card["subset_metrics"]["n_scenes"] == 2
    assert 0.0 <= card["metrics"]["test"]["segment_f1"] <= 1.0
    assert "wesnoth-1.16-data" in card["data"]["debian_packages"]
    assert (tmp_path / "cards" / f"{mod.NAME}.md").read_text().startswith(f"# {mod.NAME}")
    assert not (tmp_path / "_train" / mod.NAME / "state.safetensors").exists()  # cleared after a finished run


@needs_data
def test_card_only_rescores_without_training_and_keeps_hand_written_blocks(tmp_path):
    import hashlib

    from model_zoo.recipes import crnn_sed as recipe

    assert recipe.main(["--smoke", "--out-dir", str(tmp_path), "--eval-seconds", "1000"]) == 0
    ckpt = tmp_path / "checkpoints" / "crnn_sed.safetensors"
    card_path = tmp_path / "cards" / "crnn_sed.json"
    card = json.loads(card_path.read_text())
    true_f1 = card["metrics"]["test"]["segment_f1"]
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    card["notes"].append("hand-written: what was tried in run 7")
    card["selection_vs_previous"] = {"previous": 0.5, "this": 0.6}
    card["metrics"]["test"]["segment_f1"] = 0.123456  # stale number: must be measured again
    card["training"]["steps"] = 99999                   # training facts are kept, not recomputed
    card_path.write_text(json.dumps(card))

    assert recipe.main(["--smoke", "--card-only", "--out-dir", str(tmp_path)]) == 0
    after = json.loads(card_path.read_text())
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before == after["checkpoint_sha256"]  # nothing trained
    assert after["metrics"]["test"]["segment_f1"] == pytest.approx(true_f1, abs=1e-4)
    assert after["training"]["steps"] == 99999
    assert after["selection_vs_previous"] == {"previous": 0.5, "this": 0.6}
    assert "hand-written: what was tried in run 7" in after["notes"]
    assert sum(str(n).startswith("FLOOR NOT MET") for n in after["notes"]) == len(
        [f for f in after["floors"].values() if not f["met"]])
    assert "Selection vs previous" in (tmp_path / "cards" / "crnn_sed.md").read_text()


def test_card_only_without_a_card_is_one_clear_error(tmp_path):
    from model_zoo.recipes import rawcnn_sed as recipe
    from probe.errors import ProbeError

    with pytest.raises(ProbeError, match="needs an existing card"):
        recipe.main(["--card-only", "--out-dir", str(tmp_path)])
    assert not (tmp_path / "checkpoints").exists()  # and it wrote nothing


def test_learning_curves_carry_the_earlier_runs_each_from_its_selected_step(tmp_path):
    from model_zoo.recipes import sed_common as S

    def hist(steps, f1s):
        return [{"step": s, "seconds": s / 10, "loss": None if s == 0 else 0.3, "segment_f1": f, "segment_er": 0.5,
                 "event_f1": 0.2} for s, f in zip(steps, f1s)]

    run1 = {"checkpoint_sha256": "a" * 64, "best_step": 300, "steps": 400, "history": hist([100, 300, 400],
                                                                                               [0.4, 0.5, 0.45])}
    shipped = {"checkpoint_sha256": "b" * 64, "earlier_runs": [run1],
               "training": {"steps": 500, "best_step": 200, "lr": "0.002", "initialised_from": {"sha256": "a" * 64}},
               "data": {"sizes": {"val": 80}}, "metrics": {"test": {"segment_f1": 0.6}},
               "training_history": hist([0, 200, 500], [0.5, 0.55, 0.52])}
    (tmp_path / "m.json").write_text(json.dumps(shipped))
    assert S.earlier_runs_for("m", {"sha256": "c" * 64}, tmp_path) == []  # the card describes other weights
    runs = S.earlier_runs_for("m", {"sha256": "b" * 64}, tmp_path)
    assert [r["checkpoint_sha256"][0] for r in runs] == ["a", "b"]
    assert runs[1]["initialised_from"] == "a" * 64 and runs[1]["n_val"] == 80 and runs[1]["test_segment_f1"] == 0.6
    assert S._run_offsets(runs) == [0, 300, 500]  # run 2 starts at run 1's step 300, run 3 at 300 + 200

    fig = S.learning_curve_figure(hist([0, 100], [0.55, 0.6]), earlier=runs)
    f1 = next(t for t in fig.data if t.name == "segment F1")
    assert list(f1.x) == [100, 300, 400, None, 300, 500, 800, None, 500, 600, None]
    assert list(f1.y)[-3:-1] == [0.55, 0.6]
    assert sorted({s.x0 for s in fig.layout.shapes}) == [300, 500]  # run boundaries, on both panels
    assert len(fig.layout.shapes) == 4


# ---- shipped checkpoints ---------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize("mod", MODELS, ids=lambda m: m.NAME)
def test_shipped_checkpoint_matches_its_card(mod):
    from model_zoo.recipes._common import CARD_DIR, CHECKPOINT_DIR, load_checkpoint

    path, card_path = CHECKPOINT_DIR / f"{mod.NAME}.safetensors", CARD_DIR / f"{mod.NAME}.json"
    assert path.is_file() and card_path.is_file(), f"no shipped checkpoint for {mod.NAME}"
    assert path.stat().st_size <= 10 * 2**20
    card = json.loads(card_path.read_text())
    state, meta = load_checkpoint(path)
    model = mod.build(meta["config"])
    model.load_state_dict(state, strict=True)
    model.eval()
    assert card["checkpoint_bytes"] == path.stat().st_size
    if "checkpoint_sha256" in card:
        import hashlib

        assert card["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    sub = card["subset_metrics"]
    got = SC.evaluate(model, "test", sub["n_scenes"])
    for k in ("segment_f1", "segment_er", "event_f1"):
        assert got[k] == pytest.approx(sub[k], abs=0.02), (k, got[k], sub[k])
    assert card["postprocessing"] == model.postprocessing
