"""Adversarial inputs, as a careful user or an attacker would try them (issue 11).

Each case asserts the exact outcome: exit code 2 with a one-line message naming what is
true, or the warning in the JSON, and that nothing of the user's was lost. Most CLI cases
run ``probe.cli.main`` in this process (same code path as the console script, a second
per case instead of ten); the cases marked ``subprocess`` and the zoo sweep run the
installed ``probe`` script. Set ``PROBE_ADVERSARIAL_SUBPROCESS=1`` to run every case
through the script.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from probe import capture, load_run, save_run
from probe.errors import OutputError, StoreError
from probe.outputs import MARKER, output_dir

SR = 16000
ALL_SUBPROCESS = os.environ.get("PROBE_ADVERSARIAL_SUBPROCESS") == "1"

# ---- a tiny user model written as a spec folder ------------------------------------------------
MODULE = textwrap.dedent('''
    import torch


    class Tiny(torch.nn.Module):
        """(B, 1, F, T) log-mel -> (B, T, 2); an Identity and two Dropouts return their inputs (aliases)."""

        def __init__(self, n_mels=16, mode="ok"):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.act = torch.nn.ReLU(inplace=(mode == "inplace"))
            self.ident = torch.nn.Identity()
            self.drop = torch.nn.Dropout(0.2)
            self.rnn = torch.nn.GRU(4 * n_mels, 8, batch_first=True)
            self.rnn_drop = torch.nn.Dropout(0.1)
            self.out = torch.nn.Linear(8, 2)
            self.mode = mode

        def forward(self, x):
            if self.mode == "raise":
                raise ValueError("expected 3 input channels, got 1")
            h = self.drop(self.ident(self.act(self.conv(x))))
            b, c, f, t = h.shape
            h, _ = self.rnn(h.reshape(b, c * f, t).transpose(1, 2))
            y = torch.sigmoid(self.out(self.rnn_drop(h)))
            if self.mode == "nan":
                y = y * float("nan")
            return y


    def build(n_mels=16, mode="ok"):
        torch.manual_seed(0)
        return Tiny(n_mels, mode)
''')

TOML = textwrap.dedent('''
    [model]
    factory = "tinymod:build"
    {checkpoint}
    [model.kwargs]
    n_mels = {n_mels}
    mode = "{mode}"
    [input]
    kind = "logmel"
    sample_rate = 16000
    n_fft = 512
    hop = 160
    n_mels = {n_mels}
    layout = "bcft"
    [output]
    kind = "frame_probs"
    classes = ["a", "b"]
    layout = "btc"
''')

PAYLOAD_MARK = "probe-adversarial-payload-ran"


class _Evil:
    """Pickles to a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Spec files (ok, in-place, raising, NaN, wrong checkpoint, pickled checkpoint) and sound files."""
    d = tmp_path_factory.mktemp("adversarial")
    (d / "tinymod.py").write_text(MODULE)
    specs = {}
    for mode in ("ok", "inplace", "raise", "nan"):
        specs[mode] = d / f"{mode}.toml"
        specs[mode].write_text(TOML.format(checkpoint="", n_mels=16, mode=mode))
    # a checkpoint saved from the 16-mel model, declared for a 32-mel one: rnn/conv shapes differ
    sys.path.insert(0, str(d))
    try:
        import tinymod  # noqa: F401
        from safetensors.torch import save_file

        save_file(tinymod.build(16).state_dict(), str(d / "w16.safetensors"))
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("tinymod", None)
    specs["wrong_ckpt"] = d / "wrong_ckpt.toml"
    specs["wrong_ckpt"].write_text(TOML.format(checkpoint='checkpoint = "w16.safetensors"', n_mels=32, mode="ok"))
    torch.save({"conv.weight": torch.zeros(1), "extra": _Evil(d / PAYLOAD_MARK)}, d / "evil.pt")
    specs["pickle"] = d / "pickle.toml"
    specs["pickle"].write_text(TOML.format(checkpoint='checkpoint = "evil.pt"', n_mels=16, mode="ok"))

    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    snd = {}

    def write(name, y, sr=SR, **kw):
        snd[name] = d / name
        sf.write(snd[name], y, sr, **kw)

    write("tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    write("zero.wav", np.zeros(SR, np.float32))
    write("faint.wav", (1e-6 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), subtype="FLOAT")
    noise = (0.2 * rng.standard_normal(SR)).astype(np.float32)
    write("cancel.wav", np.stack([noise, -noise], 1), subtype="FLOAT")
    write("stereo.wav", np.stack([noise, (0.2 * rng.standard_normal(SR)).astype(np.float32)], 1), subtype="FLOAT")
    for n in (2, 10, 511):
        write(f"short{n}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32))
    write("big64.wav", np.full(SR, 1e300), subtype="DOUBLE")
    nan = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    nan[100] = np.nan
    write("nan.wav", nan, subtype="FLOAT")
    write("full.wav", (0.1 * rng.standard_normal(2 * SR)).astype(np.float32), subtype="PCM_16")
    raw = (d / "full.wav").read_bytes()
    (d / "trunc.wav").write_bytes(raw[:44 + 2 * 10666])  # header: 2 s; data: 0.667 s
    liar = bytearray(raw)
    claimed = 10 * 3600 * SR * 2
    liar[40:44] = struct.pack("<I", claimed)  # data chunk claims 10 hours
    liar[4:8] = struct.pack("<I", claimed + 36)
    (d / "liar.wav").write_bytes(bytes(liar))
    onehz = bytearray(raw)
    onehz[24:28] = struct.pack("<I", 1)  # sample rate 1 Hz
    onehz[28:32] = struct.pack("<I", 2)
    (d / "onehz.wav").write_bytes(bytes(onehz))
    os.symlink(d / "loop_b.wav", d / "loop_a.wav")
    os.symlink(d / "loop_a.wav", d / "loop_b.wav")
    os.symlink(d / "gone.wav", d / "dangling.wav")
    (d / "empty.wav").write_bytes(b"")
    (d / "notes.wav").write_text("these are not samples\n" * 20)
    (d / "folder.wav").mkdir()
    os.mkfifo(d / "fifo.wav")
    for name in ("trunc.wav", "liar.wav", "onehz.wav", "empty.wav", "notes.wav"):
        snd[name] = d / name
    return {"dir": d, "spec": specs, "snd": snd}


# ---- running the CLI -----------------------------------------------------------------------
class Outcome:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err

    def json(self):
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


def cli(*args, subprocess_run: bool = False) -> Outcome:
    args = [str(a) for a in args]
    if subprocess_run or ALL_SUBPROCESS:
        exe = Path(sys.executable).with_name("probe")
        r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
        return Outcome(r.returncode, r.stdout, r.stderr)
    from probe.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return Outcome(rc, out.getvalue(), err.getvalue())


def assert_user_error(r: Outcome, *fragments, absent=()):
    """Exit 2, one line on stderr naming the command, every fragment present, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("probe ") and ": error: " in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    for f in absent:
        assert f not in lines[0], (f, lines[0])
    return lines[0]


def snapshot_dir(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temp_siblings(folder: Path) -> bool:
    return not [p for p in folder.parent.iterdir() if ".probe-tmp-" in p.name or ".probe-old-" in p.name]


# ================================================================================================
# Item 1: aliased tensors (Dropout/Identity/in-place outputs alias their inputs)
# ================================================================================================
def test_default_capture_stores_aliases_once(kit, tmp_path):
    out = tmp_path / "run"
    res = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", out, "--json").json()
    assert set(res["layers"]) == {"conv", "act", "ident", "drop", "rnn", "rnn/1", "rnn_drop", "out"}
    cache, manifest = load_run(out)
    same = {k: e.get("same_as") for k, e in manifest["layers"].items() if e.get("same_as")}
    # Identity and eval-mode Dropout return their input: stored once, referenced
    assert same == {"ident": "act", "drop": "act", "rnn_drop": "rnn"}
    from safetensors import safe_open

    with safe_open(str(out / "tensors.safetensors"), "pt") as f:
        assert set(f.keys()) == {"conv", "act", "rnn", "rnn/1", "out"}
    for k, ref in same.items():
        assert torch.equal(cache[k].tensor, cache[ref].tensor)
    # and the stored values are the model's: act = relu(conv)
    assert torch.equal(cache["act"].tensor, torch.relu(cache["conv"].tensor))


def test_inplace_model_capture_keeps_pre_activation_values(kit, tmp_path):
    out = tmp_path / "run"
    cli("capture", kit["spec"]["inplace"], kit["snd"]["tone.wav"], "--out", out, "--json").json()
    cache, manifest = load_run(out)
    assert (cache["conv"].tensor < 0).any(), "conv record was rewritten by the in-place ReLU"
    assert torch.equal(cache["act"].tensor, torch.relu(cache["conv"].tensor))
    assert torch.equal(cache["drop"].tensor, cache["act"].tensor)


def _roundtrip(cache, tmp_path):
    run = save_run(cache, tmp_path / "run")
    back, manifest = load_run(run)
    for k in cache:
        assert torch.equal(back[k].tensor, cache[k].tensor), k
        if cache[k].grad is not None:
            assert torch.equal(back[k].grad, cache[k].grad), k
    return back, manifest


class _TwoWays(torch.nn.Module):
    """Outputs that share memory in every way a module can: same tensor twice, a view, an alias."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)
        self.same = torch.nn.Identity()

    def forward(self, x):
        h = self.lin(x)
        return self.same(h)


class _Pair(torch.nn.Module):
    def forward(self, x):
        return x, x  # one tensor under two names


class _Slice(torch.nn.Module):
    def forward(self, x):
        return x[..., :3]  # a view into part of the input's memory


class _Transpose(torch.nn.Module):
    def forward(self, x):
        return x.transpose(0, 1)  # same memory, other strides


@pytest.mark.parametrize("tail", [_Pair, _Slice, _Transpose])
def test_library_store_handles_every_kind_of_shared_memory(tail, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(_TwoWays(), torch.nn.Dropout(0.3), tail()).eval()
    with torch.no_grad(), capture(net, "*") as cache:
        net(torch.randn(2, 6))
    back, manifest = _roundtrip(cache, tmp_path)
    # Identity, the wrapper returning it and eval-mode Dropout all hand back the Linear's output
    assert [manifest["layers"][k].get("same_as") for k in ("0.same", "0", "1")] == ["0.lin"] * 3
    if tail is _Pair:
        assert manifest["layers"]["2"]["same_as"] == manifest["layers"]["2/1"]["same_as"] == "0.lin"


def test_aliased_gradients_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Identity(), torch.nn.Tanh())
    with capture(net, "*", grads=True) as cache:
        net(torch.randn(3, 4)).sum().backward()
    assert cache["1"].grad is not None
    back, manifest = _roundtrip(cache, tmp_path)
    assert manifest["layers"]["1"]["same_as"] == "0"


def test_chunked_capture_to_run_equals_in_memory_capture(kit, tmp_path):
    from probe.adapter import load_spec
    from probe.hooks import capture_audio
    from probe.store import capture_to_run

    spec = load_spec(kit["spec"]["ok"])
    y = (0.1 * np.random.default_rng(1).standard_normal(7 * SR)).astype(np.float32)
    mem = capture_audio(spec, y, chunk_seconds=2.0)
    manifest = capture_to_run(spec, y, tmp_path / "run", chunk_seconds=2.0)
    back, _ = load_run(tmp_path / "run")
    assert manifest["extra"]["chunked"]["chunks"] == 4
    assert list(back) == list(mem)
    for k in mem:
        assert torch.equal(back[k].tensor, mem[k].tensor), k
    assert manifest["layers"]["rnn_drop"]["same_as"] == "rnn"


ZOO = ["dc_blstm", "dc_speech", "chimera", "nmf_ae", "convtasnet_lite", "unfolded_nmf", "crnn_sed", "rawcnn_sed", "partitioned_ae"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_cli_default_capture_on_every_zoo_model(name, tmp_path):
    """`probe capture zoo:NAME example:NAME:0 --out DIR --json` with the default layers '*' (issue 11, item 1)."""
    out = tmp_path / "run"
    r = cli("capture", f"zoo:{name}", f"example:{name}:0", "--out", out, "--json", subprocess_run=True)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    cache, manifest = load_run(out)
    assert list(cache) == list(res["layers"])
    for k, e in res["layers"].items():
        assert list(cache[k].tensor.shape) == e["shape"], k
        ref = manifest["layers"][k].get("same_as")
        if ref:
            assert torch.equal(cache[k].tensor, cache[ref].tensor)


def test_zoo_list_covers_the_sweep(probe_exe):
    """The parametrised sweep above names every zoo model (fails when a model is added and not swept)."""
    r = subprocess.run([probe_exe, "zoo", "list", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(m["name"] for m in json.loads(r.stdout)["models"]) == sorted(ZOO)


# ================================================================================================
# Item 6: the run store trusts nothing
# ================================================================================================
@pytest.fixture
def saved_run(kit, tmp_path):
    out = tmp_path / "run"
    cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", out, "--json").json()
    return out


def _edit_manifest(run, change, *, keep_checksum=False):
    path = run / "manifest.json"
    m = json.loads(path.read_text())
    m = change(m)
    if not keep_checksum and isinstance(m, dict):
        m.pop("manifest_sha256", None)  # so the schema check, not the checksum, must catch it
    path.write_text(json.dumps(m))


def _set_layer(key, value, layer="rnn"):
    def change(m):
        m["layers"][layer][key] = value
        return m
    return change


TAMPER = [
    ("a list", lambda m: [m], "must be a JSON object, found a list"),
    ("no layers", lambda m: {k: v for k, v in m.items() if k != "layers"}, "'layers' must be an object"),
    ("layers a list", lambda m: {**m, "layers": list(m["layers"])}, "'layers' must be an object"),
    ("null layer", lambda m: {**m, "layers": {**m["layers"], "rnn": None}}, "layer 'rnn' must be an object, found null"),
    ("no shape", lambda m: {**m, "layers": {**m["layers"], "rnn": {k: v for k, v in m["layers"]["rnn"].items()
                                                                   if k != "shape"}}}, "needs 'shape'"),
    ("shape of strings", _set_layer("shape", ["1", "101", "8"]), "needs 'shape' as a list of non-negative integers"),
    ("negative shape", _set_layer("shape", [1, -101, 8]), "needs 'shape' as a list of non-negative integers"),
    ("axes too short", _set_layer("axes", ["batch", "time"]), "has 3 axes in its shape [1, 101, 8] but axes lists 2"),
    ("axes not strings", _set_layer("axes", [0, 1, 2]), "'axes' must be a list of strings"),
    ("time axis not time", _set_layer("time_axis", 2), "says time_axis=2 but axes[2] is 'channel'"),
    ("time axis out of range", _set_layer("time_axis", 7), "'time_axis' must be null or an axis index below 3"),
    ("seconds per step a word", _set_layer("seconds_per_step", "fast"), "'seconds_per_step' must be a positive number"),
    ("seconds per step negative", _set_layer("seconds_per_step", -0.01), "'seconds_per_step' must be a positive number"),
    ("seconds per step true", _set_layer("seconds_per_step", True), "'seconds_per_step' must be a positive number"),
    ("time offset a word", _set_layer("time_offset", "soon"), "'time_offset' must be a number"),
    ("same_as unknown", _set_layer("same_as", "nowhere", layer="rnn_drop"), "'same_as' must name an earlier layer"),
    ("same_as other shape", _set_layer("same_as", "out", layer="rnn_drop"), "must name an earlier layer"),
    ("call negative", _set_layer("call", -1), "'call' must be a non-negative integer"),
    ("audio a string", lambda m: {**m, "audio": "tone.wav"}, "'audio' must be an object or null"),
    ("audio hash a number", lambda m: {**m, "audio": {**m["audio"], "hash": 12}}, "audio 'hash' must be a non-empty string"),
    ("audio sr zero", lambda m: {**m, "audio": {**m["audio"], "sr": 0}}, "audio 'sr' must be a positive number"),
    ("unknown format", lambda m: {**m, "format": "probe-run/99"}, "unknown run format 'probe-run/99'"),
]


@pytest.mark.parametrize("what,change,message", TAMPER, ids=[t[0] for t in TAMPER])
def test_tampered_manifest_is_refused_with_one_line(saved_run, what, change, message):
    _edit_manifest(saved_run, change)
    with pytest.raises(StoreError) as info:
        load_run(saved_run)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_changed_audio_hash_is_detected(saved_run):
    _edit_manifest(saved_run, lambda m: {**m, "audio": {**m["audio"], "hash": "0123456789abcdef"}}, keep_checksum=True)
    with pytest.raises(StoreError, match="was edited after the run was saved"):
        load_run(saved_run)


@pytest.mark.parametrize("where", ["header", "data", "end"])
def test_flipped_tensor_byte_is_detected(saved_run, where):
    path = saved_run / "tensors.safetensors"
    raw = bytearray(path.read_bytes())
    pos = {"header": 20, "data": len(raw) // 2, "end": len(raw) - 1}[where]
    raw[pos] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="SHA-256 mismatch"):
        load_run(saved_run)


def test_truncated_tensor_file_is_detected(saved_run):
    path = saved_run / "tensors.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(StoreError, match="SHA-256 mismatch"):
        load_run(saved_run)


def test_shape_lie_without_checksums_is_still_caught(saved_run):
    def change(m):
        m["layers"]["out"]["shape"] = [1, 50, 2]
        m.pop("tensors_sha256")
        return m
    _edit_manifest(saved_run, change)
    with pytest.raises(StoreError, match=r"'out' has shape \[1, 101, 2\], manifest says \[1, 50, 2\]"):
        load_run(saved_run)


def test_invalid_json_and_missing_files(saved_run):
    (saved_run / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="is not valid JSON"):
        load_run(saved_run)
    (saved_run / "manifest.json").unlink()
    with pytest.raises(StoreError, match="is not a probe run"):
        load_run(saved_run)


def test_load_with_other_audio_is_refused(saved_run, kit):
    y, sr = sf.read(kit["snd"]["zero.wav"], dtype="float32")
    with pytest.raises(StoreError, match="was captured from other audio"):
        load_run(saved_run, audio=(y, sr))
    y, sr = sf.read(kit["snd"]["tone.wav"], dtype="float32")
    load_run(saved_run, audio=(y, sr))  # the right audio loads


def test_time_offset_is_persisted(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 3))
    with torch.no_grad(), capture(net, "*") as cache:
        net(torch.ones(1, 3))
    run = save_run(cache, tmp_path / "a")
    back, manifest = load_run(run)
    assert manifest["layers"]["0"]["time_offset"] == 0.0 and back["0"].time_offset == 0.0
    cache["0"].time_offset = 0.8
    back, manifest = load_run(save_run(cache, tmp_path / "b"))
    assert manifest["layers"]["0"]["time_offset"] == 0.8 and back["0"].time_offset == 0.8


# ================================================================================================
# Item 7: output folders
# ================================================================================================
@pytest.mark.parametrize("user_file", ["manifest.json", "tensors.safetensors", "explanation.wav", "points.csv",
                                       "report.html"])
def test_capture_refuses_a_users_folder(kit, tmp_path, user_file):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / user_file).write_bytes(b"the user's own bytes")
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", folder)
    assert_user_error(r, f"output folder {folder} is not empty and is not a probe output", user_file, "--overwrite")
    assert snapshot_dir(folder) == {user_file: b"the user's own bytes"}
    assert no_temp_siblings(folder)


def test_overwrite_replaces_only_probes_file_names(kit, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    (folder / "notes.txt").write_text("keep me")
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", folder, "--overwrite", "--json")
    assert r.returncode == 0, r.stderr
    assert (folder / "notes.txt").read_text() == "keep me"
    load_run(folder)  # the new run is complete
    assert json.loads((folder / MARKER).read_text())["files"] == ["manifest.json", "tensors.safetensors"]


def test_rerun_replaces_an_earlier_output_and_drops_its_stale_files(kit, tmp_path):
    out = tmp_path / "run"
    cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", out, "--json").json()
    # an earlier probe version wrote plotly.min.js here; this run does not: it must not survive
    (out / "plotly.min.js").write_text("bogus")
    marker = json.loads((out / MARKER).read_text())
    marker["files"].append("plotly.min.js")
    (out / MARKER).write_text(json.dumps(marker))
    cli("capture", kit["spec"]["ok"], kit["snd"]["zero.wav"], "--out", out, "--json").json()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "manifest.json", "tensors.safetensors"]
    assert load_run(out)[1]["audio"]["source"].endswith("zero.wav")
    assert no_temp_siblings(out)


def test_rerun_keeps_files_the_user_added_to_an_output(kit, tmp_path):
    out = tmp_path / "run"
    cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", out, "--json").json()
    (out / "my_notes.md").write_text("notes")
    cli("capture", kit["spec"]["ok"], kit["snd"]["zero.wav"], "--out", out, "--json").json()
    assert (out / "my_notes.md").read_text() == "notes"
    assert load_run(out)[1]["audio"]["source"].endswith("zero.wav")


def test_failed_run_leaves_the_earlier_output_untouched(kit, tmp_path):
    out = tmp_path / "run"
    cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", out, "--json").json()
    before = snapshot_dir(out)
    r = cli("capture", kit["spec"]["raise"], kit["snd"]["tone.wav"], "--out", out)
    assert_user_error(r, "the model's forward raised ValueError")
    assert snapshot_dir(out) == before
    assert no_temp_siblings(out)


def test_failed_run_creates_nothing(kit, tmp_path):
    out = tmp_path / "new"
    r = cli("capture", kit["spec"]["nan"], kit["snd"]["tone.wav"], "--out", out)
    assert_user_error(r, "NaN")
    assert not out.exists() and no_temp_siblings(out)


def test_out_is_a_file(kit, tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("mine")
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", f)
    assert_user_error(r, "is a file, not a folder")
    assert f.read_text() == "mine"


def test_out_under_a_file(kit, tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("mine")
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", f / "run")
    assert_user_error(r, "cannot create output folder")
    assert f.read_text() == "mine"


def test_out_is_a_dangling_symlink(kit, tmp_path):
    link = tmp_path / "link"
    os.symlink(tmp_path / "missing", link)
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--out", link)
    assert_user_error(r, "symbolic link to a missing target or a loop")


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_block_leaves_nothing(tmp_path, exc):
    with pytest.raises(exc):
        with output_dir(tmp_path / "out") as tmp:
            (tmp / "half.bin").write_bytes(b"x" * 100)
            raise exc("stop")
    assert list(tmp_path.iterdir()) == []


def test_output_dir_refuses_before_the_block_runs(tmp_path):
    (tmp_path / "keep.txt").write_text("k")
    ran = []
    with pytest.raises(OutputError, match="not a probe output"):
        with output_dir(tmp_path):
            ran.append(1)
    assert ran == [] and (tmp_path / "keep.txt").read_text() == "k"


def test_a_marker_cannot_make_probe_delete_outside_the_folder(tmp_path):
    out = tmp_path / "out"
    with output_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "user.txt").write_text("u")  # forces the file-by-file path
    marker = json.loads((out / MARKER).read_text())
    marker["files"] += ["../victim.txt", str(victim)]
    (out / MARKER).write_text(json.dumps(marker))
    with output_dir(out) as tmp:
        (tmp / "b.txt").write_text("b")
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt", "user.txt"]


FAST = {"attribute": ["--method", "saliency", "--no-deletion"], "embed": ["--layer", "rnn", "--projection", "pca"],
        "report": ["--sections", "overview", "--method", "saliency"]}


@pytest.mark.parametrize("command,user_file", [("attribute", "explanation.wav"), ("embed", "points.csv"),
                                               ("report", "report.html"), ("filters", "filters_conv_gallery.html"),
                                               ("nmf", "plotly.min.js")])
def test_every_writing_command_refuses_a_users_folder(kit, tmp_path, command, user_file):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / user_file).write_bytes(b"mine")
    audio = [] if command == "filters" else [kit["snd"]["tone.wav"]]
    r = cli(command, kit["spec"]["ok"], *audio, *FAST.get(command, []), "--out", folder)
    assert_user_error(r, "is not empty and is not a probe output", user_file)
    assert snapshot_dir(folder) == {user_file: b"mine"}


def test_embed_audio_out_refuses_a_users_folder(kit, tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    (folder / "cluster0.wav").write_bytes(b"mine")
    r = cli("embed", kit["spec"]["ok"], kit["snd"]["tone.wav"], *FAST["embed"], "--audio-out", folder)
    assert_user_error(r, "is not empty and is not a probe output")
    assert snapshot_dir(folder) == {"cluster0.wav": b"mine"}


def test_attribute_overwrite_keeps_other_files_and_writes_a_fresh_plotly(kit, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "explanation.wav").write_bytes(b"old")
    (folder / "plotly.min.js").write_text("/* PROBE-TEST-STALE-ASSET */")
    (folder / "notes.txt").write_text("keep")
    res = cli("attribute", kit["spec"]["ok"], kit["snd"]["tone.wav"], *FAST["attribute"], "--out", folder,
              "--overwrite", "--json").json()
    assert res["outputs"]["explanation"] == str(folder / "explanation.wav")
    assert sf.info(str(folder / "explanation.wav")).frames == SR
    js = (folder / "plotly.min.js").read_text()
    assert "PROBE-TEST-STALE-ASSET" not in js and len(js) > 1_000_000
    assert (folder / "notes.txt").read_text() == "keep"
    assert no_temp_siblings(folder)


# ================================================================================================
# Item 4: degenerate input is said, not silently analysed
# ================================================================================================
@pytest.mark.parametrize("sound,warning", [
    ("zero.wav", "the audio is digital silence (all 16000 samples are zero)"),
    ("faint.wav", "the audio is near-silent (peak -120 dBFS"),
    ("cancel.wav", "the 2 channels cancel in the mix-down to mono"),
])
def test_capture_warns_in_json(kit, tmp_path, sound, warning):
    res = cli("capture", kit["spec"]["ok"], kit["snd"][sound], "--out", tmp_path / "r", "--json").json()
    assert any(w.startswith(warning) for w in res["warnings"]), res["warnings"]
    assert any(w.startswith(warning) for w in load_run(tmp_path / "r")[1]["extra"]["warnings"])


@pytest.mark.parametrize("command", ["attribute", "embed", "report"])
def test_silence_is_warned_by_every_command(kit, tmp_path, command):
    res = cli(command, kit["spec"]["ok"], kit["snd"]["zero.wav"], *FAST[command], "--out", tmp_path / "o",
              "--json").json()
    assert any(w.startswith("the audio is digital silence") for w in res["warnings"]), res.get("warnings")
    if command == "report":
        assert res["sections"][0]["id"] == "warnings"
        assert "digital silence" in (tmp_path / "o" / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["attribute", "embed"])
def test_nan_model_is_an_error_for_every_command(kit, tmp_path, command):
    r = cli(command, kit["spec"]["nan"], kit["snd"]["tone.wav"], *FAST[command], "--out", tmp_path / "o")
    assert_user_error(r, "NaN")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["attribute", "embed", "report"])
def test_too_short_for_every_command(kit, tmp_path, command):
    r = cli(command, kit["spec"]["ok"], kit["snd"]["short10.wav"], *FAST[command], "--out", tmp_path / "o")
    assert_user_error(r, "audio holds 10 samples", "shorter than one analysis frame")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("sound", ["tone.wav", "stereo.wav"])
def test_ordinary_audio_gets_no_warning(kit, tmp_path, sound):
    res = cli("capture", kit["spec"]["ok"], kit["snd"][sound], "--out", tmp_path / "r", "--json").json()
    assert res["warnings"] == []


@pytest.mark.parametrize("n", [2, 10, 511])
def test_shorter_than_one_frame_is_an_error(kit, tmp_path, n):
    r = cli("capture", kit["spec"]["ok"], kit["snd"][f"short{n}.wav"], "--out", tmp_path / "r")
    assert_user_error(r, f"audio holds {n} samples", "shorter than one analysis frame of the model",
                      "n_fft=512 samples = 32.0 ms at 16000 Hz")
    assert not (tmp_path / "r").exists()


def test_truncated_wav_is_an_error_saying_what_is_there(kit, tmp_path):
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["trunc.wav"], "--out", tmp_path / "r")
    assert_user_error(r, "its header says 2.000 s (32000 frames) but the file holds only 0.667 s (10666 frames)",
                      "truncated")


def test_header_claiming_ten_hours_is_an_error(kit, tmp_path):
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["liar.wav"], "--out", tmp_path / "r")
    assert_user_error(r, "its header says 36000.000 s", "holds only 2.000 s", absent=("max_seconds",))


def test_nan_model_output_is_an_error(kit, tmp_path):
    r = cli("capture", kit["spec"]["nan"], kit["snd"]["tone.wav"], "--out", tmp_path / "r", subprocess_run=True)
    assert_user_error(r, "the model output holds 202 NaN", "numerically broken")


# ================================================================================================
# Item 5: every user error is one line, exit 2, and says what is true
# ================================================================================================
AUDIO_ERRORS = [
    ("onehz.wav", ["its header gives a sample rate of 1 Hz", "a corrupt header"], ["32000"]),
    ("big64.wav", ["sample magnitude 1e+300 exceeds the float32 range"], ["non-finite"]),
    ("nan.wav", ["1 non-finite samples (NaN/Inf), first at index 100"], []),
    ("loop_a.wav", ["is a symbolic link that loops back on itself"], ["no such audio file"]),
    ("dangling.wav", ["is a symbolic link to", "gone.wav, which does not exist"], []),
    ("empty.wav", ["audio file is empty (0 bytes)"], []),
    ("notes.wav", ["cannot decode", "corrupt or unsupported format"], []),
    ("folder.wav", ["expected an audio file, given a directory"], []),
    ("fifo.wav", ["expected a regular audio file, given a device, pipe or socket"], []),
    ("missing.wav", ["no such audio file"], []),
]


@pytest.mark.parametrize("name,fragments,absent", AUDIO_ERRORS, ids=[a[0] for a in AUDIO_ERRORS])
def test_bad_audio_files(kit, tmp_path, name, fragments, absent):
    r = cli("capture", kit["spec"]["ok"], kit["dir"] / name, "--out", tmp_path / "r")
    assert_user_error(r, *fragments, absent=absent)
    assert not (tmp_path / "r").exists()


def test_dash_is_not_read_as_stdin(kit, tmp_path):
    r = cli("capture", kit["spec"]["ok"], "-", "--out", tmp_path / "r")
    assert_user_error(r, "reading audio from standard input ('-') is not supported", absent=("no such audio file",))


@pytest.mark.parametrize("ref,fragment", [
    ("example:crnn_sed:-1", "example index must be 0 or more, given -1"),
    ("example:crnn_sed:x", "example index must be an integer, given 'x'"),
    ("example:", "examples are written example:NAME[:i]"),
])
def test_bad_example_references(kit, tmp_path, ref, fragment):
    assert_user_error(cli("capture", kit["spec"]["ok"], ref, "--out", tmp_path / "r"), fragment)


def test_example_minus_one_on_the_zoo_model(tmp_path):
    r = cli("capture", "zoo:crnn_sed", "example:crnn_sed:-1", "--out", tmp_path / "r", subprocess_run=True)
    assert_user_error(r, "example index must be 0 or more, given -1")


@pytest.mark.parametrize("layers,fragment", [
    ("re:[", "layer selector 're:[' is not a valid regular expression"),
    ("re:(", "is not a valid regular expression"),
    ("rnx", "no layer named 'rnx'"),
    ("conv,nothing", "no layer named 'nothing'"),
])
def test_bad_layer_selectors(kit, tmp_path, layers, fragment):
    r = cli("capture", kit["spec"]["ok"], kit["snd"]["tone.wav"], "--layers", layers, "--out", tmp_path / "r")
    assert_user_error(r, fragment)


def test_model_whose_forward_raises(kit, tmp_path):
    r = cli("capture", kit["spec"]["raise"], kit["snd"]["tone.wav"], "--out", tmp_path / "r", subprocess_run=True)
    assert_user_error(r, "the model's forward raised ValueError in Tiny.forward (tinymod.py:",
                      "expected 3 input channels, got 1")


LENGTHS_MODULE = textwrap.dedent('''
    import torch


    class NeedsLengths(torch.nn.Module):
        """forward(x, lengths), as ESPnet-style models take it: probe cannot call it with the input alone."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 2)

        def forward(self, x, lengths):
            return torch.sigmoid(self.lin(x))


    def build():
        return NeedsLengths()
''')


@pytest.mark.parametrize("command", ["inspect", "capture", "attribute", "embed", "filters"])
def test_model_whose_forward_needs_more_than_the_input(kit, tmp_path, command):
    """A forward that needs a second argument is named with the fix, on every command, never as a traceback."""
    (tmp_path / "lengthsmod.py").write_text(LENGTHS_MODULE)
    spec = tmp_path / "lengths.toml"
    spec.write_text('[model]\nfactory = "lengthsmod:build"\n[input]\nkind = "logmel"\nsample_rate = 16000\n'
                    'n_fft = 512\nhop_length = 160\nn_mels = 16\nlayout = "btf"\n[output]\nkind = "frame_probs"\n'
                    'classes = ["a", "b"]\nlayout = "btc"\n')
    args = [command, spec] + ([] if command in ("inspect", "filters") else [kit["snd"]["tone.wav"]])
    args += ["--out", tmp_path / "r"] if command == "capture" else []
    r = cli(*args, subprocess_run=command == "capture")
    assert_user_error(r, "the model's forward cannot be called with the input alone", "missing 1 required positional "
                      "argument: 'lengths'", "wrap the model in a module whose forward(x) supplies the other arguments")


def test_swapped_model_and_audio_say_which_comes_first(kit):
    r = cli("attribute", kit["snd"]["tone.wav"], kit["spec"]["ok"])
    assert_user_error(r, "tone.wav is an audio file, not a model: MODEL comes first", absent=("TOML",))


def test_checkpoint_with_wrong_shapes(kit, tmp_path):
    r = cli("capture", kit["spec"]["wrong_ckpt"], kit["snd"]["tone.wav"], "--out", tmp_path / "r")
    assert_user_error(r, "does not fit the model: rnn.weight_ih_l0 has shape [24, 64] in the checkpoint but [24, 128] "
                         "in the model", absent=("size mismatch",))


def test_refused_pickle_explains_how_to_resave_and_never_runs(kit, tmp_path):
    r = cli("capture", kit["spec"]["pickle"], kit["snd"]["tone.wav"], "--out", tmp_path / "r", subprocess_run=True)
    assert_user_error(r, "refusing to unpickle", "evil.pt", "safetensors.torch.save_file(model.state_dict()",
                      absent=("weights_only=False", "weights_only = False"))
    assert not (kit["dir"] / PAYLOAD_MARK).exists(), "the pickle's payload ran"


def test_missing_spec_and_unknown_zoo_model(kit, tmp_path):
    assert_user_error(cli("capture", kit["dir"] / "none.toml", kit["snd"]["tone.wav"]), "no such spec file")
    assert_user_error(cli("capture", "zoo:nope", kit["snd"]["tone.wav"]), "unknown zoo model 'nope'")


def test_debug_shows_the_traceback(kit, tmp_path):
    r = cli("capture", kit["spec"]["raise"], kit["snd"]["tone.wav"], "--out", tmp_path / "r", "--debug",
            subprocess_run=True)
    assert r.returncode != 0 and "Traceback" in r.stderr and "expected 3 input channels" in r.stderr


def test_probe_bugs_are_not_disguised_as_model_errors():
    """Only an exception raised in the model's own code is blamed on the model; probe's keep their traceback."""
    from probe.diagnostics import model_error_from
    from probe.outputs import _read_marker

    class CallsProbe(torch.nn.Module):
        def forward(self, x):
            return _read_marker(None)  # TypeError raised inside probe, under a user forward

    class Raises(torch.nn.Module):
        def forward(self, x):
            return x.reshape(7, 7)  # RuntimeError raised by torch on behalf of the model

    with pytest.raises(TypeError) as info:
        CallsProbe()(torch.zeros(1))
    assert model_error_from(info.value) is None
    with pytest.raises(RuntimeError) as info:
        Raises()(torch.zeros(3))
    err = model_error_from(info.value)
    assert err is not None and "the model's forward raised RuntimeError in Raises.forward" in str(err)
    with pytest.raises(ValueError) as info:
        int("x")  # not inside any forward
    assert model_error_from(info.value) is None
    # a model from an installed library (here torch's own Linear) raising inside a call probe made
    from probe import ModelSpec, TFGrid
    from probe.hooks import capture_audio

    spec = ModelSpec(torch.nn.Sequential(torch.nn.Linear(5, 2)), input_kind="logmel",
                     grid=TFGrid(SR, 512, 160, n_mels=16))
    with pytest.raises(RuntimeError) as info:
        capture_audio(spec, np.zeros(SR, np.float32))
    err = model_error_from(info.value)
    assert err is not None and "the model's forward raised RuntimeError in Linear.forward (linear.py:" in str(err)


# ================================================================================================
# Item 8: long audio is chunked automatically, with memory bounded
# ================================================================================================
def test_long_audio_is_chunked_automatically_and_said(kit, tmp_path):
    from probe.pipelines.recording import AUTO_CHUNK_SECONDS

    n = int((AUTO_CHUNK_SECONDS + 5) * SR)
    y = (0.1 * np.sin(2 * np.pi * 300 * np.arange(n) / SR)).astype(np.float32)
    wav = tmp_path / "long.wav"
    sf.write(wav, y, SR)
    res = cli("capture", kit["spec"]["ok"], wav, "--layers", "conv,rnn,out", "--out", tmp_path / "r", "--json").json()
    assert res["chunk_seconds"] == AUTO_CHUNK_SECONDS
    assert any("captured in chunks of" in w for w in res["warnings"])
    cache, manifest = load_run(tmp_path / "r")
    assert manifest["extra"]["chunked"]["chunks"] == 2
    assert cache["out"].tensor.shape[1] == res["layers"]["out"]["shape"][1] == n // 160 + 1


def test_another_commands_output_is_kept(tmp_path):
    out = tmp_path / "out"
    with output_dir(out, kind="embed") as tmp:
        (tmp / "points.csv").write_text("embed's")
    with output_dir(out, kind="capture") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert (out / "points.csv").read_text() == "embed's"
    assert json.loads((out / MARKER).read_text())["files"] == ["manifest.json"]
