"""Conformance table: every model family × every command, through the installed ``probe`` script.

Each cell either passes (exit 0, one JSON object without NaN, outputs that load) or fails
with one clear line (exit 2, ``probe CMD: error: …``) — never a traceback. Cells that must
pass are listed in :data:`MUST_PASS`; TorchScript must fail everywhere with the same line.
Attribution is checked against the planted ground truth of :mod:`tests._families`: net
positive relevance (as a share of all |relevance|) in the 1 kHz / 0.4–0.8 s box that drives
the target, more than in the 3 kHz distractor box; at least half of it for the hand-built
band-pass models (the zoo model: relevance inside the example's true event box above the
box's share of the grid).

The README's conformance table is this test's outcome (``PROBE_CONFORMANCE_OUT=file.json``
writes every cell's result).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import _families as F

FAMILIES = ["wav2vec2", "wavlm", "wav2vec2_encoder", "ast", "whisper", "onnx_cnn", "torchscript", "streaming",
            "framed_cnn", "zoo_crnn"]
COMMANDS = ["inspect", "capture", "filters", "embed", "attribute", "report"]
#: cells that must pass; every other cell may pass or fail with one line
MUST_PASS = {(f, c) for f in FAMILIES if f != "torchscript" for c in ("capture", "attribute", "report")} | \
    {(f, "embed") for f in ("wav2vec2", "wavlm", "wav2vec2_encoder", "whisper", "onnx_cnn", "streaming", "framed_cnn",
                            "zoo_crnn")} | \
    {(f, "filters") for f in ("wav2vec2", "wavlm", "onnx_cnn", "streaming", "zoo_crnn")}
#: per-clip normalising front ends (wav2vec2's do_normalize) turn a silent baseline into unit-variance noise
#: along the IG path; these families are attributed from a quiet-noise baseline
NOISE_BASELINE = {"wav2vec2", "wavlm", "wav2vec2_encoder"}
RESULTS: dict = {}


@pytest.fixture(scope="module")
def fams(tmp_path_factory):
    F.need("transformers")
    F.need("onnx")
    F.need_onnx2torch()
    root = tmp_path_factory.mktemp("families")
    built = F.build_all(root)
    fam = dict(built["families"])
    labels = root / "labels.csv"   # the planted clip's segments, for embed --labels
    labels.write_text("start,end,label\n0.0,0.35,quiet\n0.4,0.8,tone\n0.9,1.3,distractor\n1.35,1.5,quiet\n")
    for v in fam.values():
        v["audio"] = built["clip"]
        v["labels"] = str(labels)
    fam["zoo_crnn"] = {"model": "zoo:crnn_sed", "audio": "example:crnn_sed:0", "target": None, "layer": None}
    return {"root": root, "families": fam}


@pytest.fixture(scope="module")
def has_inspect():
    from pathlib import Path

    r = subprocess.run([str(Path(sys.executable).with_name("probe")), "inspect", "--help"], capture_output=True, text=True)
    return r.returncode == 0


def _args(command, fam, out):
    m, a = fam["model"], fam["audio"]
    if command == "inspect":
        return ["inspect", m]
    if command == "capture":
        return ["capture", m, a, "--out", str(out)]
    if command == "filters":
        return ["filters", m]
    if command == "embed":
        extra = ["--layer", fam["layer"]] if fam.get("layer") else []
        if fam.get("labels"):
            extra += ["--labels", fam["labels"]]
        return ["embed", m, a, "--projection", "pca", "--clusters", "2", "--budget", "600", *extra]
    if command == "attribute":
        extra = ["--target", fam["target"]] if fam.get("target") else []
        if fam.get("name") in NOISE_BASELINE:
            extra += ["--baseline", "noise:-40"]
        return ["attribute", m, a, "--steps", "16", "--random-orders", "2", "--out", str(out), *extra]
    if command == "report":
        return ["report", m, a, "--out", str(out), "--steps", "8"]
    raise AssertionError(command)


def _walk_floats(obj, path=""):
    if isinstance(obj, float):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_floats(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_floats(v, f"{path}[{i}]")


def _torchscript_line(command):
    from probe.families.torchscript import TorchScriptError  # noqa: F401  (the message below is its text)
    from probe.resolve import load

    try:
        load(FAMS_CACHE["torchscript"])
    except Exception as exc:  # noqa: BLE001
        return f"probe {command}: error: {exc}"
    raise AssertionError("the TorchScript spec loaded")


FAMS_CACHE: dict = {}


def _check_attribution(name, out_dir, result):
    from safetensors.numpy import load_file

    a = load_file(str(out_dir / "attribution.safetensors"))
    assert np.isfinite(a["map"]).all(), f"{name}: attribution map has non-finite values"
    if name == "zoo_crnn":
        loc = result.get("localisation")
        assert loc, f"zoo example without localisation: {sorted(result)}"
        assert loc["relevance_mass"] > loc["box_fraction"], loc
        return {"relevance_mass": loc["relevance_mass"], "box_fraction": loc["box_fraction"]}
    total = float(np.abs(a["map"]).sum())
    hit = F.box_net(a["map"], a["times"], a["freqs"], F.TARGET_BOX) / total
    miss = F.box_net(a["map"], a["times"], a["freqs"], F.DISTRACT_BOX) / total
    assert total > 0, f"{name}: the attribution map is all zeros"
    # the tone that drives the target gets net positive relevance, more than the distractor; the hand-built
    # band-pass models (nothing else in them) put at least half of all relevance on it
    assert hit > 0 and hit > miss, f"{name}: net relevance {hit:.3f} in the target box vs {miss:.3f} in the distractor box"
    if name in ("onnx_cnn", "framed_cnn", "streaming"):
        assert hit > 0.5, f"{name}: only {hit:.3f} of the relevance in the target box"
    return {"target_net": round(hit, 3), "distractor_net": round(miss, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_conformance_cell(family, command, fams, probe_exe, has_inspect, tmp_path):
    if command == "inspect" and not has_inspect:
        pytest.fail("probe inspect is not available in this build")
    fam = dict(fams["families"][family], name=family)
    FAMS_CACHE.update({k: v["model"] for k, v in fams["families"].items()})
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fams["root"] / "specs"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([probe_exe, *_args(command, fam, out), "--json"], capture_output=True, text=True, timeout=1500,
                       env=env)
    err = r.stderr.strip()
    cell = {"rc": r.returncode}
    assert "Traceback" not in r.stderr, f"{family} × {command}: traceback\n{r.stderr[-3000:]}"
    if r.returncode == 0:
        result = json.loads(r.stdout)
        bad = [p for p, v in _walk_floats(result) if not math.isfinite(v)]
        assert not bad, f"{family} × {command}: non-finite numbers at {bad[:5]}"
        if command == "capture":
            import probe

            run, _ = probe.load_run(out)
            assert len(run) > 0
            for k in run:
                rec = run[k]
                assert np.isfinite(rec.numpy()).all(), f"{family}: record {k} not finite"
                if rec.time_axis is not None:
                    assert rec.seconds_per_step and rec.seconds_per_step > 0
            if family == "streaming":  # one time series per layer, chunk/sr seconds per step
                assert not any("@" in k for k in run), list(run)
                assert run["cell.conv1"].seconds_per_step == pytest.approx(512 / F.SR)
            cell["records"] = len(run)
        if command == "attribute":
            cell.update(_check_attribution(family, out, result))
        if command == "embed":
            assert result["n_points"] > 0 and math.isfinite(result["trustworthiness"])
            if fam.get("labels"):
                lab = result["labels"]
                assert lab["n_labelled"] > 0 and set(lab["label_counts"]) <= {"quiet", "tone", "distractor"}
                cell["labels_ari"] = lab["ari"]
        cell["outcome"] = "pass"
    else:
        assert r.returncode == 2, f"{family} × {command}: exit {r.returncode}\n{err[-2000:]}"
        assert len(err.splitlines()) == 1, f"{family} × {command}: more than one line\n{err}"
        assert err.startswith(f"probe {command}: error: "), err
        assert (family, command) not in MUST_PASS, f"{family} × {command} must pass: {err}"
        if family == "torchscript":
            assert err == _torchscript_line(command)
        cell.update(outcome="fail", message=err.split("error: ", 1)[1][:160])
    RESULTS[(family, command)] = cell
    dest = os.environ.get("PROBE_CONFORMANCE_OUT")
    if dest:
        with open(dest, "a") as fh:
            fh.write(json.dumps({"family": family, "command": command, **cell}) + "\n")


def test_torchscript_fails_the_same_way_in_process(tmp_path):
    """Without the CLI: the loader, not each command, refuses TorchScript (fast companion of the table)."""
    import torch

    import probe
    from probe.families.torchscript import TorchScriptError

    specs = F.write_specs(tmp_path / "specs")
    sys.path.insert(0, str(tmp_path / "specs"))
    try:
        with pytest.raises(TorchScriptError, match="is a TorchScript module; probe needs the eager nn.Module"):
            probe.load(specs["torchscript"])
    finally:
        sys.path.remove(str(tmp_path / "specs"))
    assert isinstance(torch.jit.script(torch.nn.Identity()), torch.jit.ScriptModule)
