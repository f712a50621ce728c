"""One analysis, one pipeline, every face: the CLI, the report and the app give the same numbers for the same options.

For filters, NMF, embeddings and attribution, on a user's spec-file model (the tiny detector whose
16 kernels are Hann-windowed cosines at known, log-spaced centres) and on a zoo model:

* the CLI runs as a user meets it (``probe <command> ... --json`` in a subprocess);
* the report builds its sections in process (:func:`probe.report.build_report`), each section
  carrying its pipeline's JSON;
* the app's layer (:mod:`apps.cache`: the Streamlit caches around the pipelines, holding the
  shared model's lock) is called directly, outside a Streamlit run.

All three must agree exactly after JSON rounding; the planted answers (log-spaced centres, the
tone's frames) check that the agreed numbers are also right.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests._app_fixtures import SR, tone_and_noise, trained_zoo_models, wav_bytes, write_tiny_spec

ROOT = Path(__file__).resolve().parents[1]
ZOO_MODEL = "rawcnn_sed"  # waveform front end: filters, NMF, frame embeddings and detection targets in one model


def _cli(exe, *args) -> dict:
    r = subprocess.run([exe, *map(str, args), "--json"], capture_output=True, text=True, timeout=900, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _app_cache():
    pytest.importorskip("streamlit")
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "missing ScriptRunContext": bare mode is intended
    from apps import cache, state

    return cache, state


def _strip(d: dict, drop=("seconds", "total_seconds", "model", "audio", "figures", "outputs", "warnings")) -> dict:
    """The numbers of a pipeline's JSON (timings and face-specific keys removed)."""
    return {k: v for k, v in d.items() if k not in drop}


def _agree(a, b, path="") -> None:
    """Same keys, lists and strings; floats equal to 1e-4 relative or one unit of a 3-decimal rounding (a CLI subprocess and the in-process app
    may sum in another order: the last printed digit can differ, nothing more)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), (path, sorted(a.keys() ^ b.keys()))
        for k in a:
            _agree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            _agree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), (path, a, b)
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1.1e-3), (path, a, b)  # JSON rounds some figures to 3 decimals
    else:
        assert a == b, (path, a, b)


def _all_agree(cli: dict, app: dict, report: dict) -> None:
    _agree(_strip(cli), _strip(app), "cli~app")
    _agree(_strip(cli), _strip(report), "cli~report")


@pytest.fixture(scope="module")
def user_root(tmp_path_factory):
    return tmp_path_factory.mktemp("user").resolve()


@pytest.fixture(autouse=True)
def _app_allows_the_user_folder(user_root, monkeypatch):
    """The app serves spec files only from folders its owner allows (``probe app --allow-models DIR``)."""
    monkeypatch.setenv("PROBE_APP_ALLOW_MODELS", str(user_root))
    monkeypatch.setenv("PROBE_APP_ALLOW_AUDIO", str(user_root))


@pytest.fixture(scope="module")
def user_case(user_root):
    spec = write_tiny_spec(user_root)
    wav = user_root / "clip.wav"
    wav.write_bytes(wav_bytes(tone_and_noise(1.5)))
    return str(spec), str(wav)


@pytest.fixture(scope="module")
def zoo_case():
    if ZOO_MODEL not in trained_zoo_models():
        pytest.fail(f"zoo:{ZOO_MODEL} has no checkpoint: run `bash .ci/setup` (it installs the zoo's checkpoints)")
    return f"zoo:{ZOO_MODEL}", f"example:{ZOO_MODEL}:0"


def _faces(model_ref, audio_ref):
    """(SharedModel from the app's loader, the clip as the CLI resolves it)."""
    from probe.resolve import resolve_audio

    cache, state = _app_cache()
    model = cache.get_model(model_ref)
    return cache, model, resolve_audio(audio_ref, model.sample_rate)


# ---- filters --------------------------------------------------------------------------------------
def _filters_agree(exe, model_ref, audio_ref, layer):
    from probe import report as R
    from probe.pipelines import FilterOptions

    opts = FilterOptions(layers=(layer,), span="full", threshold=0.5)
    cli = _cli(exe, "filters", model_ref, "--layer", layer)
    cache, model, ex = _faces(model_ref, audio_ref)
    app = cache.cached_filter_analysis(model, cache.cached_filter_banks(model)[layer], opts).to_json()
    rep = R.build_report(model.spec, ex, sections=("filters",), options={"filters": {"options": opts}})
    rep_layers = rep.sections[0].data["layers"]
    assert rep.sections[0].status == "ok", rep.sections[0].note
    assert cli["layers"][0] == app == rep_layers[0]
    return app


def test_filters_agree_on_a_user_spec_model(probe_exe, user_case):
    layer = _filters_agree(probe_exe, *user_case, "encoder")
    # the planted bank: 16 log-spaced centres from 200 to 3200 Hz
    assert layer["n_filters"] == 16 and layer["best_scale"] == "log"
    centres = np.sort(np.asarray(layer["centre_hz"], float))
    np.testing.assert_allclose(centres, np.geomspace(200, 3200, 16), rtol=0.08)


@pytest.mark.slow
def test_filters_agree_on_a_zoo_model(probe_exe, zoo_case):
    from probe.resolve import load
    from probe.pipelines import find_banks

    first = next(iter(find_banks(load(zoo_case[0]))))
    layer = _filters_agree(probe_exe, *zoo_case, first)
    assert layer["n_filters"] > 3 and layer["scale_fit"]


# ---- NMF ------------------------------------------------------------------------------------------
def _nmf_agree(exe, model_ref, audio_ref, **kw):
    from probe import report as R
    from probe.pipelines import NMFOptions

    opts = NMFOptions(max_iter=100, **kw)
    args = ["--max-iter", "100"] + [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]
    cli = _cli(exe, "nmf", model_ref, audio_ref, *args)
    cache, model, ex = _faces(model_ref, audio_ref)
    app = cache.cached_nmf(model, ex, opts).to_json()
    rep = R.build_report(model.spec, ex, sections=("nmf",), options={"nmf": {"options": opts}})
    sec = rep.sections[0]
    # the section ran; its status is "warning" exactly when the result carries warnings (the same list the CLI prints)
    assert sec.status == ("warning" if sec.data.get("warnings") else "ok"), sec.note
    assert cli.get("warnings", []) == app.get("warnings", []) == sec.data.get("warnings", [])
    _all_agree(cli, app, sec.data)
    return app


def test_nmf_agrees_on_a_user_spec_model(probe_exe, user_case):
    out = _nmf_agree(probe_exe, *user_case, components=4)
    # the encoder's 16 kernels are the bases; its rectified output (relu) the activations
    assert out["bases_layer"] == "encoder" and out["n_bases"] == 16 and out["activations_layer"] == "relu"
    assert out["nmf_likeness"]["nmf_rank"] == 4


@pytest.mark.slow
def test_nmf_agrees_on_a_zoo_model(probe_exe, zoo_case):
    out = _nmf_agree(probe_exe, *zoo_case, components=8)
    assert out["n_units"] > 0 and out["nmf_likeness"]["nmf_rank"] == 8


# ---- embeddings -----------------------------------------------------------------------------------
def _embeddings_agree(exe, model_ref, audio_ref, layer, budget=400):
    from probe import report as R
    from probe.pipelines import EmbeddingOptions

    opts = EmbeddingOptions(layer=layer, projection="pca", budget=budget, n_clusters=2)
    cli = _cli(exe, "embed", model_ref, audio_ref, "--layer", layer, "--projection", "pca", "--budget", budget,
               "--clusters", 2)
    cache, model, ex = _faces(model_ref, audio_ref)
    app = cache.cached_embeddings(model, ex, opts).to_json()
    rep = R.build_report(model.spec, ex, sections=("embeddings",), options={"embeddings": {"options": opts}})
    sec = rep.sections[0]
    # the section ran; its status is "warning" exactly when the result carries warnings (the same list the CLI prints)
    assert sec.status == ("warning" if sec.data.get("warnings") else "ok"), sec.note
    assert cli.get("warnings", []) == app.get("warnings", []) == sec.data.get("warnings", [])
    _all_agree(cli, app, sec.data)
    return app


def test_embeddings_agree_on_a_user_spec_model(probe_exe, user_case):
    out = _embeddings_agree(probe_exe, *user_case, "act")
    assert out["kind"] == "frame" and out["dim"] == 8 and out["projection"] == "pca"
    assert 0.8 < out["trustworthiness"] <= 1.0


@pytest.mark.slow
def test_embeddings_agree_on_a_zoo_model(probe_exe, zoo_case):
    from probe.pipelines import default_layer
    from probe.resolve import load, resolve_audio

    spec = load(zoo_case[0])
    layer = default_layer(spec, resolve_audio(zoo_case[1], spec.sample_rate).y)
    out = _embeddings_agree(probe_exe, *zoo_case, layer, budget=600)
    assert out["n_points"] > 50 and out["clusters"] == 2


# ---- attribution ----------------------------------------------------------------------------------
def _attribution_agree(exe, model_ref, audio_ref, target, steps=16):
    from probe import report as R
    from probe.pipelines import AttributionOptions

    opts = AttributionOptions(target=target, method="ig", steps=steps, random_orders=1)
    cli = _cli(exe, "attribute", model_ref, audio_ref, "--target", target, "--method", "ig", "--steps", steps,
               "--random-orders", 1)
    cache, model, ex = _faces(model_ref, audio_ref)
    app = cache.cached_attribution(model, ex, opts).to_json()
    rep = R.build_report(model.spec, ex, sections=("attribution",), options={"attribution": {"options": opts}})
    sec = rep.sections[0]
    # the section ran; its status is "warning" exactly when the result carries warnings (the same list the CLI prints)
    assert sec.status == ("warning" if sec.data.get("warnings") else "ok"), sec.note
    assert cli.get("warnings", []) == app.get("warnings", []) == sec.data.get("warnings", [])
    _all_agree(cli, app, sec.data)
    return app


def test_attribution_agrees_on_a_user_spec_model(probe_exe, user_case):
    out = _attribution_agree(probe_exe, *user_case, "class=tone")
    assert out["method"] == "ig" and out["target"] == "class=tone" and out["steps_used"] == 16


@pytest.mark.slow
def test_attribution_agrees_on_a_zoo_model(probe_exe, zoo_case):
    from probe.resolve import resolve_audio

    ev = resolve_audio(zoo_case[1]).events[0]
    out = _attribution_agree(probe_exe, *zoo_case, f"class={ev['label']},t={ev['onset']:.2f}:{ev['offset']:.2f}")
    # the zoo example knows where its event is: relevance is measured inside that box
    assert out["localisation"]["box"]["label"] == ev["label"]


# ---- one place for defaults -----------------------------------------------------------------------
def test_every_face_uses_the_pipeline_defaults():
    """The CLI's flags default to None (the pipeline fills in), and the app pages build options from the dataclasses."""
    from probe.cli import build_parser
    from probe.pipelines import AttributionOptions, EmbeddingOptions

    p = build_parser()
    emb = p.parse_args(["embed", "m.toml", "a.wav"])
    att = p.parse_args(["attribute", "m.toml", "a.wav"])
    assert emb.projection is None and emb.budget is None and emb.clusters is None
    assert att.method is None and att.steps is None and att.spacing is None
    assert AttributionOptions().method == "ig" and AttributionOptions().steps == "auto"
    assert AttributionOptions().spacing == "adaptive" and EmbeddingOptions().projection == "pca"
    pages = (ROOT / "apps" / "views").glob("*.py")
    text = "\n".join(p.read_text() for p in pages)
    assert "appstate" not in text and "figure(\"" not in text  # builders imported directly, no string lookup
    for name in ("AttributionOptions", "EmbeddingOptions", "FilterOptions", "ActivationOptions"):
        assert name in text, name


def test_results_are_json_and_read_by_key(user_case):
    """Every result has warnings and to_json(); old dict-style reads keep working."""
    from probe.pipelines import (SpectrogramOptions, capture_layer, model_card, model_outputs, spectrogram)
    from probe.resolve import load

    spec = load(user_case[0])
    y = tone_and_noise(1.0)
    s = spectrogram(y, spec.grid, SpectrogramOptions(max_frames=50))
    assert s["db"].shape[1] == 50 and s.to_json()["shape"] == [129, 50]
    # the 1 kHz tone is the loudest row
    assert abs(float(s.freqs[s.db.mean(1).argmax()]) - 1000) <= SR / 256
    o = model_outputs(spec, y)
    assert o.kind == "frame_probs" and "values" in o and "spectrograms" not in o and o.labels == ["tone", "noise"]
    json.dumps(o.to_json())
    c = model_card(spec)
    assert c["params"] == c.params > 0 and json.dumps(c.to_json())
    a = capture_layer(spec, y, "act")
    assert a.values.shape[0] == 8 and a.warnings == [] and json.dumps(a.to_json())


def test_write_figures_is_offline(tmp_path):
    """One writer for every face: HTML loads plotly.js from a file written beside it, never from the network."""
    import re

    import plotly
    import plotly.graph_objects as go

    from probe.errors import AnalysisError
    from probe.figures import write_figures

    figs = {"a line": go.Figure(go.Scatter(y=[1, 2, 3])), "skipped": None, "bars": go.Figure(go.Bar(y=[3, 1]))}
    paths = write_figures(figs, tmp_path / "figs", formats=("html", "json"), prefix="t_")
    names = sorted(Path(p).name for p in paths)
    assert names == ["t_a_line.html", "t_a_line.json", "t_bars.html", "t_bars.json"]
    js = (tmp_path / "figs" / "plotly.min.js").read_text(encoding="utf-8")
    assert f"v{plotly.__version__.split('.')[0]}" in js[:500] or len(js) > 1_000_000  # the installed bundle
    for p in paths:
        if p.endswith(".html"):
            text = Path(p).read_text(encoding="utf-8")
            srcs = re.findall(r'<script[^>]*src="([^"]+)"', text)
            assert srcs == ["plotly.min.js"], srcs
            assert "cdn.plot.ly" not in text
    assert not list((tmp_path / "figs").glob(".*tmp")), "temporary files are renamed into place"
    with pytest.raises(AnalysisError, match="unknown figure format"):
        write_figures(figs, tmp_path, formats=("gif",))


def test_no_html_output_under_probe_loads_plotly_from_the_network():
    """Figures reach disk through probe.figures.write_figures (or the report's inline bundle), never a CDN."""
    offenders = []
    for path in sorted((ROOT / "probe").rglob("*.py")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "include_plotlyjs" in line and ("cdn" in line or "http" in line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "use probe.figures.write_figures (offline):\n" + "\n".join(offenders)


def test_logits_declared_as_frame_probs_are_said_and_drawn_on_their_own_scale():
    """A detector that emits logits but is declared ``frame_probs`` was drawn on a fixed 0-1 axis: its curves were
    cut off, silently. The pipeline says so (the report and the app show it) and the figure keeps the scores."""
    import torch

    from probe import ModelSpec, TFGrid
    from probe import report as R
    from probe.audio import AudioExample
    from probe.figures.clip import outputs_figure
    from probe.pipelines import model_outputs

    class Logits(torch.nn.Module):
        def forward(self, x):  # (B, F, T) magnitude -> (B, 2, T) band energies, unsquashed
            return torch.stack([20 * x[:, 30:40].mean(1) - 3, -20 * x[:, 90:100].mean(1)], 1)

    spec = ModelSpec(Logits(), input_kind="stft", grid=TFGrid(8000, n_fft=256, hop_length=64), output_kind="frame_probs",
                     classes=["a", "b"])
    y = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.float32)
    outs = model_outputs(spec, y)
    assert len(outs.warnings) == 1 and "outside [0, 1]" in outs.warnings[0] and "logits" in outs.warnings[0]
    fig = outputs_figure(outs)
    assert fig.layout.yaxis.range is None and "not a probability" in fig.layout.yaxis.title.text
    rep = R.build_report(spec, AudioExample(y=y, sr=8000, name="tone"), sections=("overview",))
    assert rep.sections[0].status == "warning" and "outside [0, 1]" in rep.sections[0].note
    # probabilities stay on the probability axis, without a warning
    spec.model = torch.nn.Sequential(Logits(), torch.nn.Sigmoid())
    outs = model_outputs(spec, y)
    assert not outs.warnings and list(outputs_figure(outs).layout.yaxis.range) == [-0.02, 1.02]
