"""The HTML report: every section present, audio embedded and decodable, nothing fetched from the network."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf

from probe import report as R
from probe.errors import SpecError
from tests._app_fixtures import SR, tone_and_noise, trained_zoo_models, write_tiny_spec


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Tags(HTMLParser):
    """Every tag with its attributes, and the text of every <script>."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _parse(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


def _decode_audio(src: str):
    assert src.startswith("data:audio/wav;base64,")
    y, sr = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), dtype="float32")
    return y, sr


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """The CLI's `probe report SPEC CLIP --out DIR --json` on the tiny spec-file model."""
    import contextlib

    from probe.cli import main

    d = tmp_path_factory.mktemp("report")
    spec = write_tiny_spec(d / "model")
    clip = d / "clip.wav"
    sf.write(str(clip), tone_and_noise(1.5), SR, subtype="FLOAT")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["report", str(spec), str(clip), "--out", str(d / "out"), "--method", "saliency", "--json"])
    assert rc == 0
    out = json.loads(buf.getvalue())
    return out, (d / "out" / "report.html").read_text(encoding="utf-8")


def test_cli_json_lists_every_section(tiny_report):
    out, _ = tiny_report
    assert out["report"].endswith("report.html")
    assert [s["id"] for s in out["sections"]] == list(R.SECTIONS)
    status = {s["id"]: s["status"] for s in out["sections"]}
    # the tiny detector hardly moves between the clip and the silent baseline: the attribution section says so in
    # its status and note (once), not only in a line of text inside it
    assert status.pop("attribution") == "warning" and all(v == "ok" for v in status.values()), out["sections"]
    note = next(s["note"] for s in out["sections"] if s["id"] == "attribution")
    assert note.startswith("Warning: near-zero difference") and "no deletion test" not in note, note
    _, text = tiny_report
    assert text.count("near-zero difference") == 1, "the warning is said once, in the section's note"
    figs = {s["id"]: s["figures"] for s in out["sections"]}
    # spectrogram + outputs; gallery + centres + matched responses; scatter ×2; map + track + deletion; ≥1 heatmap
    assert figs["overview"] == 2 and figs["filters"] == 3 and figs["embeddings"] >= 1
    # the deletion figure only when the target changes between clip and baseline (its AUCs are defined)
    assert figs["attribution"] in (2, 3) and figs["activations"] >= 1
    assert out["bytes"] > 1_000_000  # plotly.js is inside


def test_html_has_the_sections_and_their_content(tiny_report):
    _, text = tiny_report
    p = _parse(text)
    ids = [a.get("id") for t, a in p.tags if t == "section"]
    assert ids == list(R.SECTIONS)
    nav = [a["href"] for t, a in p.tags if t == "a"]
    assert nav == [f"#{s}" for s in R.SECTIONS]
    # the tiny model's 16 log-spaced kernels: the filters section reports the log scale as best
    filters = text[text.index('<section id="filters">'):text.index('<section id="embeddings">')]
    assert "<td>log</td><td>" in filters and "best" in filters
    assert "Plotly.newPlot" in text and text.count("Plotly.newPlot") == sum(
        s.count("Plotly.newPlot") for s in p.scripts)


def test_audio_is_embedded_and_decodes_to_the_clip(tiny_report):
    _, text = tiny_report
    p = _parse(text)
    audios = [a for t, a in p.tags if t == "audio"]
    # clip; 2 cluster players; explanation + complement
    assert len(audios) == 5
    assert all("controls" in a for a in audios)
    y, sr = _decode_audio(audios[0]["src"])
    ref = tone_and_noise(1.5)
    assert sr == SR and y.shape == ref.shape
    scale = 0.99 / np.abs(ref).max()
    assert np.max(np.abs(y - ref * min(1.0, scale))) < 2e-4  # 16-bit PCM of the (peak-normalised) clip
    expl, _ = _decode_audio(audios[3]["src"])
    comp, _ = _decode_audio(audios[4]["src"])
    assert expl.shape == comp.shape == ref.shape
    assert np.abs(expl).max() > 0 and np.abs(comp).max() > 0


def test_report_works_offline(tiny_report):
    _, text = tiny_report
    p = _parse(text)
    for tag, attrs in p.tags:
        for key in ("src", "href"):
            v = (attrs.get(key) or "").strip().lower()
            assert not v.startswith(("http:", "https:", "//")), (tag, key, v[:80])
    scripts = [a for t, a in p.tags if t == "script"]
    assert scripts and not any("src" in a for a in scripts), "every script is inline"
    assert "<link" not in text.lower(), "no external stylesheet"
    # plotly.js is inlined exactly once (before the first figure), not once per figure
    bundles = [s for s in p.scripts if "plotly.js v" in s[:2000] or len(s) > 1_000_000]
    assert len(bundles) == 1
    first_plot = text.index("Plotly.newPlot")
    assert text.index(bundles[0][:200]) < first_plot


def test_sections_that_do_not_apply_are_skipped_with_a_note(tmp_path):
    """A deep-clustering model (log-magnitude → tf_embeddings) has no filter layer: the report says so."""
    import torch

    from probe import ModelSpec, TFGrid
    from probe.audio import AudioExample
    from tests._models import TinyBLSTM

    torch.manual_seed(0)
    grid = TFGrid(SR, n_fft=128, hop_length=32)
    spec = ModelSpec(TinyBLSTM(n_freqs=grid.n_freqs), input_kind="logmag", grid=grid, output_kind="tf_embeddings",
                     input_layout="btf", n_sources=2, name="tiny_dc")
    y = tone_and_noise(1.0)
    stems = np.stack([0.3 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / SR), y - 0.3 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / SR)]).astype(np.float32)
    ex = AudioExample(y=y, sr=SR, name="tone+noise", sources=stems, source_names=["tone", "noise"])
    rep = R.build_report(spec, ex, sections=("overview", "filters", "embeddings"))
    st = {s.id: s for s in rep.sections}
    assert st["filters"].status == "skipped" and "no layer whose kernels" in st["filters"].note
    assert st["embeddings"].status == "ok" and st["overview"].status == "ok"
    text = rep.to_html()
    assert 'class="note skipped"' in text
    # ground-truth stems get players next to the clip
    assert text.count("<audio") == 3 + 2


def test_a_failing_analysis_costs_only_its_section(tmp_path, monkeypatch):
    from probe.resolve import load

    spec = load(str(write_tiny_spec(tmp_path)))
    from probe.audio import AudioExample

    ex = AudioExample(y=tone_and_noise(1.0), sr=SR, name="clip")

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setitem(R._BUILDERS, "filters", boom)
    rep = R.build_report(spec, ex, sections=("filters", "activations"))
    assert [(s.id, s.status) for s in rep.sections] == [("filters", "error"), ("activations", "ok")]
    assert "RuntimeError: simulated bug" in rep.sections[0].note
    with pytest.raises(SpecError, match="unknown report section"):
        R.build_report(spec, ex, sections=("overview", "spectra"))


def test_library_side_never_imports_streamlit():
    import subprocess
    import sys

    code = ("import sys, probe.pipelines.clip, probe.pipelines.layers, probe.report, probe.figures.clip, probe.cli.app, probe.cli.report; "
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


ZOO = trained_zoo_models()


def test_report_on_a_zoo_model(tmp_path):
    assert ZOO, "no zoo checkpoint is shipped: model_zoo/checkpoints/*.safetensors are part of the package"
    name = "crnn_sed" if "crnn_sed" in ZOO else ZOO[0]
    out = R.write_report(f"zoo:{name}", f"example:{name}:0", tmp_path, sections=("overview", "activations"))
    assert [s["status"] for s in out["sections"]] == ["ok", "ok"], out["sections"]
    text = open(out["report"], encoding="utf-8").read()
    assert f"example:{name}:0" in text and "<audio" in text


def test_report_names_separated_sources_by_the_stem_they_match(tmp_path):
    """The report's overview names each separated source as the app's Overview does (best-SI-SDR permutation)."""
    from probe.pipelines import match_sources, model_outputs
    from probe.resolve import load, load_example

    out = R.write_report("zoo:nmf_ae", "example:nmf_ae:0", tmp_path, sections=("overview",))
    sec = out["sections"][0]
    ex = load_example("nmf_ae", 0)
    want = match_sources(model_outputs(load("zoo:nmf_ae"), ex.y).values, ex.sources, ex.source_names, mixture=ex.y)
    assert sec["data"]["source_matches"] == want and sorted(m["name"] for m in want) == sorted(ex.source_names)
    text = open(out["report"], encoding="utf-8").read()
    for j, m in enumerate(want):
        assert f"source {j + 1} ≈ {m['name']} (SI-SDR {m['si_sdr_db']:.1f} dB" in text
