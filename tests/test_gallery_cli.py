"""``probe inspect`` and the time overrides on the command line, on gallery spec folders (subprocess)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.gallery import write_spec_folder


def _run(exe, *args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=900)


def test_inspect_json_shows_exact_seconds_offsets_and_banks(probe_exe, tmp_path):
    toml = write_spec_folder("window_embedder", tmp_path)
    p = _run(probe_exe, "inspect", str(toml), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["input"]["kind"] == "waveform" and out["input"]["min_seconds"] == 1.6
    layers = {e["name"]: e for e in out["layers"]}
    conv = layers["conv"]
    assert conv["axes"] == ["time", "channel", "dim1"] and conv["batch_folded"]
    assert conv["seconds_per_step_exact"] == "1/10" and conv["time_source"] == "inferred"
    assert conv["time_offset"] == pytest.approx(0.8, abs=0.5001 / 16000)  # the window centre, within half a sample
    assert conv["filter_bank"] is True and "frames" in conv["filter_bank_why"]
    assert layers["embed"]["filter_bank"] is False
    assert out["banks"]["conv"]["effective"] is True


def test_inspect_overrides_are_marked_given(probe_exe, tmp_path):
    toml = write_spec_folder("mel_lstm", tmp_path)
    p = _run(probe_exe, "inspect", str(toml), "--json", "--no-banks", "--seconds-per-step", "0.02",
             "--time-offset", "0.5")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    head = {e["name"]: e for e in out["layers"]}["head"]
    assert (head["seconds_per_step"], head["time_offset"], head["time_source"]) == (0.02, 0.5, "given")
    assert out["time_overrides"] == {"seconds_per_step": 0.02, "offset": 0.5, "source": "given"}
    # the h_n state has no time axis and keeps no override; nor is it a mel axis
    hn = {e["name"]: e for e in out["layers"]}["lstm/1/0"]
    assert hn["time_source"] is None and "mel" not in hn["axes"]


def test_inspect_human_table_and_bad_override(probe_exe, tmp_path):
    toml = write_spec_folder("fbank_transformer", tmp_path)
    p = _run(probe_exe, "inspect", str(toml))
    assert p.returncode == 0, p.stderr
    assert "proj: yes" in p.stdout and "block.mlp.0: no" in p.stdout
    bad = _run(probe_exe, "inspect", str(toml), "--seconds-per-step", "-1")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "seconds_per_step must be positive" in bad.stderr


# ---- every command over every gallery model; events land where they are -------------------------
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from tests.gallery import ENTRIES, event_signal  # noqa: E402

COMMANDS = ("inspect", "capture", "filters", "embed", "attribute", "nmf", "report")


def _wav(tmp_path, name: str, at_s: float, seconds: float) -> str:
    path = tmp_path / f"{name}_{at_s:g}.wav"
    sf.write(str(path), event_signal(name, at_s, seconds=seconds), ENTRIES[name].sample_rate, subtype="FLOAT")
    return str(path)


def _json(p):
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _clean(p, what: str):
    """Exit 0, or exit 2 with exactly one line on stderr (a user error), never a traceback."""
    assert "Traceback" not in p.stderr, f"{what}: traceback\n{p.stderr[-3000:]}"
    assert p.returncode in (0, 2), f"{what}: exit {p.returncode}\n{p.stderr[-3000:]}"
    if p.returncode == 2:
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("probe "), f"{what}: not one error line\n{p.stderr}"


def _check_capture_times(name: str, layers: dict, sample_rate: int):
    """The capture JSON's seconds per step and offsets are the gallery's analytic ones (1e-9 rel, half a sample)."""
    for layer, ex in ENTRIES[name].layers.items():
        got = layers.get(layer)
        if got is None:
            continue
        assert got["seconds_per_step"] == pytest.approx(float(ex.seconds_per_step), rel=1e-9), (name, layer, got)
        assert got["time_offset"] == pytest.approx(float(ex.offset), abs=0.5001 / sample_rate), (name, layer, got)
        assert got["time_source"] == "inferred"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_command_on_every_gallery_model(probe_exe, tmp_path, name):
    """inspect, capture, filters, embed, attribute (saliency), nmf and report on each gallery spec folder: each
    passes or fails with one clear line; what passes carries exact seconds and offsets."""
    toml = str(write_spec_folder(name, tmp_path))
    sr = ENTRIES[name].sample_rate
    wav = _wav(tmp_path, name, 1.2, 2.5)
    runs = {
        "inspect": ["inspect", toml, "--json", "--no-banks"],
        "capture": ["capture", toml, wav, "--out", str(tmp_path / "cap"), "--json"],
        "filters": ["filters", toml, "--json"],
        "embed": ["embed", toml, wav, "--layer", next(iter(ENTRIES[name].layers)), "--threshold-db", "0", "--json",
                  "--budget", "300"],
        "attribute": ["attribute", toml, wav, "--method", "saliency", "--no-deletion", "--json"],
        "nmf": ["nmf", toml, wav, "--json", "--max-iter", "50"],
        "report": ["report", toml, wav, "--out", str(tmp_path / "report"), "--method", "saliency"],
    }
    done = {}
    for cmd in COMMANDS:
        p = _run(probe_exe, *runs[cmd])
        _clean(p, f"{name}: probe {cmd}")
        done[cmd] = p
    # the commands every gallery model supports
    for cmd in ("inspect", "capture", "embed"):
        assert done[cmd].returncode == 0, f"{name}: probe {cmd}: {done[cmd].stderr}"
    inspected = {e["name"]: e for e in _json(done["inspect"])["layers"]}
    captured = _json(done["capture"])["layers"]
    _check_capture_times(name, captured, sr)
    for layer, e in captured.items():  # capture and inspect agree on every timed layer
        if e["seconds_per_step"] is not None and layer in inspected:
            assert e["seconds_per_step"] == pytest.approx(inspected[layer]["seconds_per_step"], rel=1e-12)
            assert e["time_offset"] == pytest.approx(inspected[layer]["time_offset"] or 0.0, abs=1e-12)
    emb = _json(done["embed"])
    assert emb["time"]["time_source"] in ("inferred", "grid", "spread")
    if ENTRIES[name].banks:  # a model with a bank: probe filters finds it
        assert done["filters"].returncode == 0, done["filters"].stderr
        assert set(ENTRIES[name].banks) <= {b["name"] for b in _json(done["filters"])["layers"]}
    if done["report"].returncode == 0:
        assert (tmp_path / "report" / "report.html").is_file()


def _event_cluster(out: dict) -> dict:
    """The cluster of the event: the one of shortest time span (the rest is noise all over the clip)."""
    return min((c for c in out["cluster_times"] if c["size"]), key=lambda c: c["last_s"] - c["first_s"])


def test_event_cluster_lands_on_the_event_1p6s_window(probe_exe, tmp_path):
    """1.6 s windows every 0.1 s: the event's frames cluster together and sit at the event (frame k at 0.8 + 0.1 k s),
    not 0.8 s early; an explicit --time-offset 0 moves them there and says so."""
    toml = str(write_spec_folder("window_embedder", tmp_path))
    wav = _wav(tmp_path, "window_embedder", 2.0, 5.0)
    args = ["embed", toml, wav, "--layer", "embed", "--threshold-db", "0", "--json"]
    out = _json(_run(probe_exe, *args))
    assert out["time"]["seconds_per_step"] == pytest.approx(0.1, rel=1e-9)
    assert out["time"]["time_offset"] == pytest.approx(0.8, abs=0.5001 / 16000)
    assert out["time"]["time_source"] == "inferred"
    ev = _event_cluster(out)
    assert 12 <= ev["size"] <= 18  # the ~16 windows [0.1 k, 0.1 k + 1.6) that hold the burst
    assert abs(ev["median_s"] - 2.0) <= 0.1  # within one frame
    # the clip's energy, mapped onto the frames by their times, is loudest on the event's frames
    assert ev["mean_energy_db"] == max(c["mean_energy_db"] for c in out["cluster_times"])
    shifted = _json(_run(probe_exe, *args, "--time-offset", "0"))
    assert shifted["time"]["time_source"] == "given" and shifted["time"]["time_offset"] == 0.0
    assert _event_cluster(shifted)["median_s"] == pytest.approx(ev["median_s"] - 0.8, abs=1e-3)


def test_event_cluster_lands_on_the_event_441_hop(probe_exe, tmp_path):
    """441-sample hop at 44.1 kHz (exactly 10 ms): an event 7.3 s into the clip is found within one frame."""
    toml = str(write_spec_folder("stft441_44100_c", tmp_path))
    wav = _wav(tmp_path, "stft441_44100_c", 7.3, 9.0)
    out = _json(_run(probe_exe, "embed", toml, wav, "--layer", "stft", "--threshold-db", "0", "--json"))
    assert out["time"]["seconds_per_step"] == pytest.approx(0.01, rel=1e-9)
    assert abs(out["time"]["time_offset"]) <= 0.5001 / 44100
    ev = _event_cluster(out)
    assert 3 <= ev["size"] <= 20
    assert abs(ev["median_s"] - 7.3) <= 0.01
    assert ev["first_s"] >= 7.3 - 0.08 and ev["last_s"] <= 7.3 + 0.08


@pytest.mark.slow
def test_attribution_of_an_event_lands_on_it(probe_exe, tmp_path):
    """CRNN (2x2 pooling: output frame j at (2j + 0.5) hops): relevance for the frame at the event sits on the event;
    with --time-offset the same span names an earlier frame, and the relevance moves with it."""
    toml = str(write_spec_folder("mel_crnn", tmp_path))
    wav = _wav(tmp_path, "mel_crnn", 1.5, 3.0)
    frame = 256 / 22050
    args = ["attribute", toml, wav, "--method", "saliency", "--target", "class=a,t=1.49:1.51", "--no-deletion", "--json"]
    out = _json(_run(probe_exe, *args))
    assert abs(out["relevance_time"]["centroid_s"] - 1.5) <= 2 * frame  # within one output frame
    moved = _json(_run(probe_exe, *args, "--time-offset", "0.5"))
    assert abs(moved["relevance_time"]["centroid_s"] - 1.0) <= 2 * frame


def test_capture_json_carries_offsets_and_sources(probe_exe, tmp_path):
    toml = str(write_spec_folder("window_embedder", tmp_path))
    wav = _wav(tmp_path, "window_embedder", 1.0, 2.0)
    out = _json(_run(probe_exe, "capture", toml, wav, "--layers", "conv,embed", "--out", str(tmp_path / "r"), "--json"))
    _check_capture_times("window_embedder", out["layers"], 16000)
    given = _json(_run(probe_exe, "capture", toml, wav, "--layers", "embed", "--out", str(tmp_path / "g"), "--json",
                       "--seconds-per-step", "0.25", "--time-offset", "1"))
    assert given["layers"]["embed"] == {**given["layers"]["embed"], "seconds_per_step": 0.25, "time_offset": 1.0,
                                        "time_source": "given"}


@pytest.mark.slow
def test_filters_force_a_layer_in_or_say_why_not(probe_exe, tmp_path):
    """conv_stack's conv.3 is no bank (its input is not waveform samples): one line with the reason; forced along
    samples it is read at the rate its input runs at (16 kHz / 20 = 800 Hz), or at --rate."""
    toml = str(write_spec_folder("conv_stack", tmp_path))
    p = _run(probe_exe, "filters", toml, "--layer", "conv.3", "--json")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "not a filter bank" in p.stderr and "waveform samples" in p.stderr and "--axis" in p.stderr
    forced = _json(_run(probe_exe, "filters", toml, "--layer", "conv.3", "--axis", "samples", "--json"))
    (layer,) = forced["layers"]
    assert layer["name"] == "conv.3" and layer["sample_rate"] == 800 and layer["n_filters"] == 8
    rated = _json(_run(probe_exe, "filters", toml, "--layer", "conv.3", "--axis", "samples", "--rate", "1600", "--json"))
    assert rated["layers"][0]["sample_rate"] == 1600
    bad = _run(probe_exe, "filters", toml, "--rate", "800", "--json")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--axis samples" in bad.stderr
