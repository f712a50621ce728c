"""The Streamlit app, driven headless with AppTest: every page renders, selections switch, bad uploads explain themselves.

The tiny spec-file model (tests/_app_fixtures.py) makes these tests independent of zoo
training; when a zoo checkpoint exists, one test also walks every page with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest  # noqa: E402  (a core dependency: no skip)

from tests._app_fixtures import tone_and_noise, trained_zoo_models, wav_bytes, write_tiny_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "probe_app.py"
PAGES = ("views/filters.py", "views/embeddings.py", "views/attribution.py", "views/activations.py", "views/nmf.py")
TIMEOUT = 90

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from apps.ui import AUDIO_KEY, MODEL_KEY, UPLOAD_KEY  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def allowed_root(tmp_path_factory):
    """The folder the server's owner allows spec files from (``probe app --allow-models DIR``)."""
    return tmp_path_factory.mktemp("allowed").resolve()


@pytest.fixture(autouse=True)
def _allow_models(allowed_root, monkeypatch):
    from apps.policy import ENV_AUDIO, ENV_MODELS

    monkeypatch.setenv(ENV_MODELS, str(allowed_root))
    monkeypatch.delenv(ENV_AUDIO, raising=False)


@pytest.fixture(scope="module")
def tiny_spec(allowed_root):
    return str(write_tiny_spec(allowed_root / "tiny"))


def _errors(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _plotly_titles(at) -> list[str]:
    import json

    out = []
    for el in at.get("plotly_chart"):
        fig = json.loads(el.proto.spec)
        out.append(((fig.get("layout") or {}).get("title") or {}).get("text") or "")
    return out


def _app_with_upload(spec_path: str, data: bytes, name: str = "clip.wav") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = spec_path
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    up = at.file_uploader
    assert len(up) == 1, "a spec-file model has no examples: the Overview offers an upload"
    up[0].set_value((name, data, "audio/wav")).run()
    return at


def test_every_page_renders_for_a_spec_file_model_and_an_upload(tiny_spec):
    at = _app_with_upload(tiny_spec, wav_bytes(tone_and_noise()))
    assert not _errors(at), _errors(at)
    titles = _plotly_titles(at)
    assert any("Spectrogram" in t for t in titles), titles
    assert any("Model output" in t for t in titles), titles
    assert len(at.get("audio")) >= 1
    assert any("tiny_detector" in m.value for m in at.subheader)
    assert at.session_state[AUDIO_KEY] == "upload"

    expected = {"views/filters.py": ("filter_gallery", 1), "views/embeddings.py": ("embedding_scatter", 1),
                # map + track (+ the deletion curves when f(clip) and f(baseline) differ enough to define them)
                "views/attribution.py": ("attribution_figure", 2), "views/activations.py": ("activation", 2),
                "views/nmf.py": ("bases_side_by_side", 2)}
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        n_charts = len(at.get("plotly_chart"))
        assert n_charts >= expected[page][1], (page, n_charts, [i.value for i in at.info])
    # the filters page found the tiny model's 16 log-spaced kernels and fitted their scale
    at.switch_page("views/filters.py").run()
    assert any(m.label == "Best scale" and m.value == "log" for m in at.metric), [(m.label, m.value) for m in at.metric]
    # one tab per topic, drawn only when open: each tab shows its one chart and offers that chart's downloads
    for tab, title, fig_name in (("Responses and spacing", "response", "Responses"),
                                 ("Reference matching", "mean matched cosine", "Matching"), ("Gallery", "", "Gallery")):
        at.session_state["w_filter_tab"] = tab
        at.run()
        assert not _errors(at), (tab, _errors(at))
        assert len(at.get("plotly_chart")) == 1, (tab, _plotly_titles(at))
        assert any(title in t for t in _plotly_titles(at)), (tab, _plotly_titles(at))
        assert {f"{fig_name} (PNG)", f"{fig_name} (HTML)"} <= {b.proto.label for b in at.get("download_button")}, tab
    # attribution plays the explanation and its complement
    at.switch_page("views/attribution.py").run()
    assert len(at.get("audio")) == 3
    # no events in an upload: the page starts from the library's default, the class that scores highest on the clip
    from probe.attribution import default_target_for
    from probe.resolve import load

    assert at.selectbox(key="w_attr_target").value == str(default_target_for(load(tiny_spec), tone_and_noise())) \
        == "class=noise"
    assert any(m.label.startswith("Target f(clip)") for m in at.metric)
    # the defaults: IG, steps chosen until the map adds up (completeness ≤ 1 %), the steps used shown
    assert at.selectbox(key="w_attr_method").value == "ig" and at.selectbox(key="w_attr_steps").value == "auto"
    comp = next(m for m in at.metric if m.label == "Completeness error")
    warned = [w.value for w in at.warning]
    assert comp.proto.delta.endswith(" steps"), comp.proto.delta
    # ≤ 1 %, or a visible warning that says why not (a near-zero f(clip) − f(baseline) makes the ratio meaningless)
    assert float(comp.value.rstrip("%")) <= 1.0 or any("completeness" in w or "near-zero" in w for w in warned), \
        (comp.value, warned)
    # downloads: the map as safetensors and CSV, the explanation as WAV, the figure as HTML
    assert {b.proto.label for b in at.get("download_button")} >= {"Map (safetensors)", "Map (CSV)",
                                                                   "Explanation (WAV)", "Map figure (HTML)",
                                                                   "Map figure (PNG)"}
    # compare mode: a second method side by side, each with its completeness / deletion figures
    at.toggle(key="w_attr_compare").set_value(True).run()
    assert not _errors(at), _errors(at)
    assert at.selectbox(key="w_attr_method_b").value == "saliency"
    assert len([m for m in at.metric if m.label.startswith("Target f(clip)")]) == 2
    assert len([c for c in at.get("plotly_chart")]) >= 4
    at.toggle(key="w_attr_compare").set_value(False).run()
    # embeddings: one player per cluster
    at.switch_page("views/embeddings.py").run()
    assert len(at.get("audio")) == 2
    # every page with figures offers them as PNG (rendered on the click) and a report of the view
    assert {"Map (PNG)", "Mask of cluster 1 (PNG)", "Points + clusters (CSV)"} <= \
        {b.proto.label for b in at.get("download_button")}
    assert any(b.label == "Report of this view" for b in at.button)
    at.switch_page("views/filters.py").run()
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Filters (CSV)", "Gallery (PNG)"} <= labels, labels
    assert any(b.label == "Report of this view" for b in at.button)
    at.switch_page("views/activations.py").run()
    assert {"Activations (safetensors)", "Heat map (PNG)"} <= {b.proto.label for b in at.get("download_button")}
    assert any(b.label == "Report of this view" for b in at.button)


@pytest.mark.parametrize("name, data, message", [
    ("broken.wav", b"RIFF\x00\x00\x00\x00this is not audio", "'broken.wav' is not an audio file"),
    ("random.wav", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
     "'random.wav' is not an audio file"),
    ("empty.flac", b"", "'empty.flac' is empty"),
    ("notes.txt", b"hello", "not a supported audio file"),
])
def test_invalid_upload_shows_a_clear_error(tiny_spec, name, data, message):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = tiny_spec
    at.run()
    if name.endswith(".txt"):
        # the browser refuses other extensions; the library still checks (a renamed file, a direct call)
        from apps.uploads import load_upload
        from probe.errors import AudioError

        with pytest.raises(AudioError, match=message):
            load_upload(name, data, 8000)
        return
    at.file_uploader[0].set_value((name, data, "audio/wav")).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Cannot use this file: ") and message in errors[0], errors
    assert "/tmp" not in errors[0], "the message names the user's file, not the temporary copy"
    assert not at.get("plotly_chart"), "nothing is drawn for a clip that failed validation"
    # the other pages say the upload failed instead of silently analysing an example
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert not at.exception and not at.get("plotly_chart"), page
        assert any("was not accepted" in w.value and message in w.value for w in at.warning), page


def test_too_long_upload_offers_to_crop(tiny_spec):
    from apps.uploads import MAX_UPLOAD_SECONDS

    n = int((MAX_UPLOAD_SECONDS + 30) * 8000)
    long = 0.1 * np.sin(2 * np.pi * 500 * np.arange(n) / 8000).astype(np.float32)
    at = _app_with_upload(tiny_spec, wav_bytes(long), "long.wav")
    errors = [e.value for e in at.error]
    assert errors and f"'long.wav' lasts {MAX_UPLOAD_SECONDS + 30:.1f} s" in errors[0], errors
    assert "max_seconds" not in errors[0], "no internal names in a user's message"
    assert not at.get("plotly_chart")
    at.checkbox(key="w_upload_crop").check().run()
    assert not _errors(at), _errors(at)
    ex = at.session_state[UPLOAD_KEY]
    assert ex.y.size == int(MAX_UPLOAD_SECONDS * 8000) and ex.info["cropped"]["of"] == MAX_UPLOAD_SECONDS + 30
    assert any("Spectrogram" in t for t in _plotly_titles(at))


def test_unknown_spec_file_is_reported(allowed_root):
    missing = str(allowed_root / "missing.toml")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = missing
    at.run()
    assert not at.exception
    assert any("is not a model this server offers" in e.value for e in at.error), [e.value for e in at.error]
    # other pages say the same instead of crashing
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = missing
    at.switch_page("views/filters.py").run()
    assert not at.exception and any("is not a model this server offers" in e.value for e in at.error)


def test_switching_model_and_example(tiny_spec, allowed_root):
    # a second spec file (same module, other name) stands in for "another model"
    other = write_tiny_spec(allowed_root / "other")
    other.write_text(other.read_text().replace('name = "tiny_detector"', 'name = "tiny_other"'))
    at = _app_with_upload(tiny_spec, wav_bytes(tone_and_noise(1.0)))
    assert any("tiny_detector" in m.value for m in at.subheader)
    at.selectbox(key="w_spec_file").set_value(str(other)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[MODEL_KEY] == str(other)
    assert any("tiny_other" in m.value for m in at.subheader)
    # the new model wants a new clip: the upload widget is offered again and another clip is accepted
    at.file_uploader[0].set_value(("other.wav", wav_bytes(tone_and_noise(0.8, seed=1)), "audio/wav")).run()
    assert not _errors(at), _errors(at)
    at.switch_page("views/activations.py").run()
    assert not _errors(at) and any("tiny_other" in c.value for c in at.caption)


def test_shared_model_is_locked_and_left_unchanged_under_concurrent_sessions(tiny_spec):
    """st.cache_resource hands one SharedModel to every session: every use holds its lock, nothing leaks."""
    import threading

    import numpy as np

    from apps.state import load_shared_model
    from probe.audio import AudioExample
    from probe.pipelines import AttributionOptions, analyse_attribution, capture_layer
    from tests._models import assert_unchanged, n_hooks, snapshot

    shared = load_shared_model(tiny_spec)
    opts = AttributionOptions(target="class=tone", method="saliency", deletion=False)

    def attribute_shared():
        return analyse_attribution(shared.spec, ex, opts, lock=shared.lock)

    def capture_shared():
        return capture_layer(shared.spec, ex.y, "embed", lock=shared.lock)

    ex = AudioExample(y=tone_and_noise(1.0), sr=8000, name="clip")
    snap = snapshot(shared.spec.model)
    unlocked = []
    inner = shared.spec.model.forward

    def guarded(x):  # every forward the app triggers runs with the lock held by the calling thread
        if not shared.lock._is_owned():
            unlocked.append(threading.current_thread().name)
        return inner(x)

    shared.spec.model.forward = guarded
    try:
        serial = (attribute_shared().attribution.map, capture_shared().values)
        results, errors = [], []

        def session(i):
            try:
                for _ in range(2):
                    a, c = attribute_shared(), capture_shared()
                    results.append((a.attribution.map, c.values))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=session, args=(i,), name=f"session-{i}") for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        del shared.spec.model.forward
    assert not errors, errors
    assert not unlocked, f"forward passes without the lock from {sorted(set(unlocked))}"
    assert len(results) == 8
    for amap, act in results:
        np.testing.assert_array_equal(amap, serial[0])
        np.testing.assert_array_equal(act, serial[1])
    assert_unchanged(shared.spec.model, snap)
    assert n_hooks(shared.spec.model) == 0
    assert all(p.requires_grad for p in shared.spec.model.parameters())


def test_probe_app_command(capsys):
    """`probe app --port P` runs `streamlit run apps/probe_app.py` headless on that port."""
    from probe.cli import main

    assert main(["app", "--port", "8765", "--dry-run", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    cmd = out["command"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("apps/probe_app.py")
    assert cmd[cmd.index("--server.headless") + 1] == "true" and cmd[cmd.index("--server.port") + 1] == "8765"
    assert out["url"] == "http://localhost:8765"
    assert main(["app", "--port", "0", "--dry-run"]) == 2  # a clear error, not a traceback
    assert "--port must lie in 1..65535" in capsys.readouterr().err


ZOO = trained_zoo_models()


def test_untrained_zoo_model_explains_itself(monkeypatch, tmp_path):
    """A zoo model without its checkpoint (every shipped one is trained: hide one) explains itself in the app."""
    from model_zoo import registry

    name = "partitioned_ae"
    for p in registry.CHECKPOINTS.glob("*.safetensors"):
        if p.stem != name:
            (tmp_path / p.name).symlink_to(p)
    monkeypatch.setattr(registry, "CHECKPOINTS", tmp_path)
    monkeypatch.setattr("apps.state.CATALOGUE_TTL", 0.0)  # read the catalogue again now
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = f"zoo:{name}"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    msgs = [e.value for e in at.error] + [i.value for i in at.info]
    assert any(f"zoo:{name}" in m and ("not available yet" in m or "no shipped checkpoint" in m) for m in msgs), msgs
    assert any("not trained yet" in o for o in at.selectbox(key="w_zoo_model").options)


def test_every_page_renders_for_a_zoo_model_and_example():
    assert ZOO, "no zoo checkpoint is shipped: model_zoo/checkpoints/*.safetensors are part of the package"
    name = "crnn_sed" if "crnn_sed" in ZOO else ZOO[0]
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = f"zoo:{name}"
    at.run()
    assert not _errors(at), _errors(at)
    assert at.session_state[AUDIO_KEY] == f"example:{name}:0"
    assert any("Spectrogram" in t for t in _plotly_titles(at))
    sel = at.selectbox(key="w_example")
    sel.set_value(f"example:{name}:1").run()
    assert not _errors(at), _errors(at)
    assert at.session_state[AUDIO_KEY] == f"example:{name}:1"
    for page in PAGES:
        at.switch_page(page).run()
        assert not _errors(at), (page, _errors(at))
        assert at.get("plotly_chart") or (page == "views/nmf.py" and at.info), page  # NMF: no bank → says so
    # switch to another trained zoo model from the Overview's selectbox
    others = [z for z in ZOO if z != name]
    if others:
        at.switch_page("views/overview.py").run()
        at.selectbox(key="w_zoo_model").set_value(f"zoo:{others[0]}").run()
        assert not _errors(at), _errors(at)
        assert at.session_state[MODEL_KEY] == f"zoo:{others[0]}"


def test_picked_points_resynthesise_their_own_cells(tiny_spec):
    """Frames picked on the map play back exactly their span of the clip (mixture phase), nothing else."""
    from apps import selection as sel
    from apps.state import load_shared_model
    from probe.audio import AudioExample
    from probe.pipelines import EmbeddingOptions, analyse_embeddings

    shared = load_shared_model(tiny_spec)
    sr = 8000
    t = np.arange(int(1.5 * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    res = analyse_embeddings(shared.spec, AudioExample(y=y, sr=sr, name="two tones"),
                             EmbeddingOptions(layer="embed", budget=500, clusterability=False), lock=shared.lock)
    pts, clip = res.points, res.clip
    inside = sel.filter_mask(pts, time=(0.5, 1.0))
    assert 0 < inside.sum() < len(pts)
    # a lasso that took exactly these points, as plotly reports them (positions on the map)
    # (with its hover data: seconds, Hz, dB — identical frames of a steady tone share a map position)
    event = {"selection": {"points": [{"x": float(x), "y": float(yv), "customdata": [float(t_), float(f_), 0.0]}
                                      for (x, yv), t_, f_ in zip(res.coords[inside], pts.time[inside],
                                                                 pts.freq[inside])]}}
    idx = sel.picked_indices(event, res.coords, pts)
    assert set(idx.tolist()) == set(np.flatnonzero(inside).tolist())
    audio, m = sel.resynthesise(clip, sel.cell_mask(clip, pts, idx))
    assert audio.shape == y.shape and m.shape == clip.stft.shape
    frames = np.unique(pts.frame[idx])
    t0, t1 = clip.times[frames.min()], clip.times[frames.max()]
    lo, hi = int((t0 + 0.05) * sr), int((t1 - 0.05) * sr)
    np.testing.assert_allclose(audio[lo:hi], y[lo:hi], atol=1e-3)  # the picked span is the clip itself
    assert np.abs(audio[: int(max(t0 - 0.1, 0) * sr)]).max(initial=0) < 1e-3  # and nothing before it
    # a single click hears a neighbourhood: its frame and one frame either side
    one = sel.cell_mask(clip, pts, idx[:1], spread=1)
    assert one.sum() == min(3, clip.shape[1]) * clip.shape[0] or one[:, pts.frame[idx[0]]].all()
    # filters: label and frequency (frame embeddings have no frequency: the band keeps them all)
    assert sel.filter_mask(pts, freq=(0, 100)).all()
    sub = sel.subset_points(pts, inside)
    assert len(sub) == inside.sum() and np.array_equal(sub.time, pts.time[inside])


def test_probe_zoo_list_is_a_table_and_json_has_input_kinds(probe_exe):
    import json
    import subprocess

    from model_zoo.registry import MODELS, read_card

    text = subprocess.run([probe_exe, "zoo", "list"], capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["name", "task", "input"] and set(lines[1]) <= {"-", " "}
    assert [ln.split()[0] for ln in lines[2:]] == list(MODELS)
    assert max(map(len, lines)) <= 120, "one readable row per model, not one truncated line"
    js = subprocess.run([probe_exe, "zoo", "list", "--json"], capture_output=True, text=True, timeout=300)
    models = json.loads(js.stdout)["models"]
    for m in models:  # the cards record the kinds the models were trained with
        card = read_card(m["name"])
        assert m["input"] == card["input_kind"], m["name"]
        assert card["output_kind"].split(" ")[0] == m["output"], m["name"]  # a card may add "(2: [names])"
        assert f"{m['input']} → {m['output']}" in next(ln for ln in lines if ln.startswith(m["name"] + " "))


@pytest.mark.parametrize("name, heading", [("chimera", "each mask applied to the mixture"),
                                           ("dc_blstm", "its embeddings clustered"),
                                           ("nmf_ae", "separated sources")])
def test_overview_plays_what_each_separation_model_separates(name, heading):
    """Oracle stems and the model's own sources (masks applied to the mixture, clusters, waveforms) are playable."""
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.session_state[MODEL_KEY] = f"zoo:{name}"
    at.run()
    assert not _errors(at), _errors(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Ground-truth sources" in text and heading in text, text
    # the clip, two oracle stems, two separated sources
    assert len(at.get("audio")) == 5, len(at.get("audio"))
    assert len([b for b in at.get("download_button")]) >= 2
    if name in ("chimera", "nmf_ae"):  # each output named by the stem it matches, with its SI-SDR over the mixture's
        from probe.pipelines import match_sources, model_outputs
        from probe.resolve import load, load_example

        ex = load_example(name, 0)
        caps = [c.value for c in at.caption if c.value.startswith("source ")]
        assert len(caps) == 2 and sorted(c.split(" ≈ ")[1].split(" ")[0] for c in caps) == sorted(ex.source_names), caps
        if name == "nmf_ae":  # the caption's figures are the pipeline's, and the trained model beats the mixture
            m = match_sources(model_outputs(load(f"zoo:{name}"), ex.y).values, ex.sources, ex.source_names,
                              mixture=ex.y)
            assert all(d["si_sdr_db"] > d["si_sdr_mixture_db"] for d in m), m
            assert [f"SI-SDR {d['si_sdr_db']:.1f} dB" in c for d, c in zip(m, caps)] == [True, True], (m, caps)
    if name == "dc_blstm":  # T-F embeddings: the Embeddings page (frequency filter included) numbers clusters alike
        overview = sorted(c.value for c in at.caption if c.value.startswith("cluster "))
        at.switch_page("views/embeddings.py").run()
        assert not _errors(at), _errors(at)
        assert at.slider(key="w_emb_freq").value == (0.0, 4000.0)
        emb = sorted(m.value.strip("*").lower() for m in at.markdown if m.value.startswith("**Cluster "))
        # one clustering: numbered by decreasing energy, named from the example's stems (the louder is "high")
        assert overview == emb == ["cluster 1 (high)", "cluster 2 (low)"], (overview, emb)


def test_masks_applied_to_the_mixture_add_up_to_it():
    """Softmax masks (chimera) sum to one in every bin: the played sources sum back to the clip."""
    from apps.selection import masked_mixture
    from probe.pipelines import model_outputs
    from probe.resolve import load, load_example

    spec = load("zoo:chimera")
    ex = load_example("chimera", 0)
    outs = model_outputs(spec, ex.y)
    np.testing.assert_allclose(outs.values.sum(0), 1.0, atol=1e-4)
    audio = masked_mixture(spec.grid, ex.y, outs.values)
    assert audio.shape == (2, ex.y.size)
    np.testing.assert_allclose(audio.sum(0), ex.y, atol=1e-3)
    assert masked_mixture(spec.grid, ex.y, outs.values[:, :10]) is None  # masks off the STFT grid: nothing played


def test_attribution_sanity_panel_and_report_of_this_view(tiny_spec):
    """Cascading randomisation runs from the page (maps change as layers are randomised); the report downloads."""
    at = _app_with_upload(tiny_spec, wav_bytes(tone_and_noise()))
    at.switch_page("views/attribution.py").run()
    assert not _errors(at), _errors(at)
    at.selectbox(key="w_attr_sanity_method").set_value("saliency")
    at.button(key="w_attr_sanity_run").click().run()
    assert not _errors(at), _errors(at)
    cap = next(c.value for c in at.caption if c.value.startswith("After randomising all"))
    # the tiny detector has 3 parameterised layers; with all of them random the map is another map
    assert cap.startswith("After randomising all 3 layers") and "spearman" in cap, cap
    rho = float(cap.split("spearman ")[1].split(",")[0])
    assert rho < 0.9, cap
    at.button(key="w_attr_report").click().run()
    assert not _errors(at), _errors(at)
    assert any(b.proto.label == "Download report" for b in at.get("download_button"))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh on-disk result cache for this test (never the user's ~/.cache/probe/app)."""
    from apps import diskcache

    folder = tmp_path / "probe-cache"
    monkeypatch.setenv(diskcache.ENV, str(folder))
    return folder


def test_disk_cache_round_trips_pipeline_results_without_pickle(tiny_spec, cache_dir):
    """Embeddings and attribution come back from disk with the same JSON, arrays and clustering; nothing else is built."""
    import json

    from apps import diskcache
    from apps.state import load_shared_model
    from probe import pipelines as P
    from probe.audio import AudioExample

    shared = load_shared_model(tiny_spec)
    ex = AudioExample(y=tone_and_noise(1.5), sr=8000, name="clip")
    results = {"embeddings": P.analyse_embeddings(shared.spec, ex, P.EmbeddingOptions(n_clusters=2)),
               "attribution": P.analyse_attribution(shared.spec, ex, P.AttributionOptions(target="class=tone"))}
    for kind, res in results.items():
        key = diskcache.make_key(kind, "tiny", "clip")
        assert diskcache.store(key, res), kind
        files = list(cache_dir.rglob("*.safetensors"))
        assert files and not list(cache_dir.rglob("*.tmp")), files  # written to a temporary name, then renamed
        back = diskcache.load(key)
        assert type(back) is type(res)
        assert json.dumps(back.to_json(), default=str) == json.dumps(res.to_json(), default=str), kind
    emb = diskcache.load(diskcache.make_key("embeddings", "tiny", "clip"))
    X = results["embeddings"].points.X
    assert np.array_equal(emb.clusters.predict(X), results["embeddings"].clusters.predict(X))
    assert np.array_equal(emb.cluster_audio, results["embeddings"].cluster_audio)
    att = diskcache.load(diskcache.make_key("attribution", "tiny", "clip"))
    assert np.array_equal(att.attribution.map, results["attribution"].attribution.map)
    assert att.attribution.grid == results["attribution"].attribution.grid
    # a file naming a class outside probe/scikit-learn is a miss, never an import or a call
    from safetensors.numpy import save_file

    evil = diskcache.make_key("evil", "x")
    path = cache_dir / evil[:2] / f"{evil}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"_empty": np.zeros(1, np.uint8)}, str(path), metadata={
        "format": str(diskcache.FORMAT), "tree": json.dumps({"$obj": "os:system", "state": {}})})
    assert diskcache.load(evil) is diskcache.MISS
    # a changed option or model content is another key
    assert diskcache.make_key("attribution", "tiny", P.AttributionOptions(steps=16)) != \
        diskcache.make_key("attribution", "tiny", P.AttributionOptions())


def test_disk_cache_key_of_a_zoo_model_follows_its_weights_and_model_code(tmp_path, monkeypatch):
    """A changed network or grid file of the zoo makes new cache keys; a recipe or data builder does not."""
    from apps import policy, state

    zoo = tmp_path / "zoo"
    (zoo / "checkpoints").mkdir(parents=True)
    (zoo / "recipes").mkdir()
    ckpt = zoo / "checkpoints" / "net.safetensors"
    ckpt.write_bytes(b"weights v1")
    (zoo / "net.py").write_text("HOP = 128\n")
    (zoo / "recipes" / "net.py").write_text("EPOCHS = 3\n")
    monkeypatch.setattr(state, "_catalogue", lambda: [{"name": "net", "checkpoint": str(ckpt)}])
    monkeypatch.setattr(policy, "_zoo_names", lambda: {"net"})
    key = state.model_content_key("zoo:net")
    (zoo / "recipes" / "net.py").write_text("EPOCHS = 30\n")
    assert state.model_content_key("zoo:net") == key  # training code does not change what inference computes
    (zoo / "net.py").write_text("HOP = 1600\n")  # another size: two mtimes can tie
    assert state.model_content_key("zoo:net") != key
    key2 = state.model_content_key("zoo:net")
    ckpt.write_bytes(b"weights v22")
    assert state.model_content_key("zoo:net") not in (key, key2)
    ckpt.unlink()
    assert state.model_content_key("zoo:net").endswith("#untrained")


def test_warmup_covers_every_page(tiny_spec, cache_dir, tmp_path, monkeypatch):
    """After the warm-up, every page's defaults come from the caches: no page computes anything new.

    The memory caches are cleared after the warm-up (as after a server restart), so the pages
    must find the warm-up's results on disk under the same keys.
    """
    import soundfile as sf
    import streamlit as st

    from apps import diskcache, warmup
    from apps.policy import ENV_AUDIO

    audio = tmp_path / "audio"
    audio.mkdir()
    clip = audio / "clip.wav"
    sf.write(str(clip), tone_and_noise(1.5), 8000, subtype="PCM_16")
    monkeypatch.setenv(ENV_AUDIO, str(audio.resolve()))
    st.cache_data.clear()
    warmup.run([(tiny_spec, str(clip.resolve()))])
    failed = [x for x in warmup.LOG if x[1] == tiny_spec and not isinstance(x[2], float)]
    assert not failed, failed
    stored = diskcache.STATS["store"]
    assert diskcache.STATS["skip"] == 0, "a warm-up result could not be written to disk"
    assert stored >= 6, warmup.LOG  # outputs, layers, embeddings, filters, activations, nmf, attribution
    st.cache_data.clear()  # as a restarted server: only the disk remains
    hits = diskcache.STATS["hit"]
    at = _app_with_upload(tiny_spec, clip.read_bytes())  # the same samples as the server file: the same key
    assert not _errors(at), _errors(at)
    for page in PAGES:
        at.switch_page(page).run()
        assert not _errors(at), (page, _errors(at))
    assert diskcache.STATS["store"] == stored and diskcache.STATS["skip"] == 0, \
        f"a page computed what the warm-up did not: {diskcache.STATS}"
    assert diskcache.STATS["hit"] - hits >= 6, diskcache.STATS


def test_warmup_imports_shared_modules_alone_and_pages_wait_for_them(tmp_path, monkeypatch):
    """The warm-up imports the shared third-party modules one at a time, never while a page script runs,
    and a page that starts meanwhile waits for the import under way (two threads importing pandas at
    once handed a page a half-initialised module in a browser walk)."""
    import threading
    import time

    from apps import warmup

    (tmp_path / "probe_slow_mod_a.py").write_text("import time\ntime.sleep(0.6)\nVALUE = 1\n")
    (tmp_path / "probe_slow_mod_b.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("probe_slow_mod_a", "probe_slow_mod_b"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    running = {"n": 1}  # a page script is running when the warm-up starts
    events = []
    monkeypatch.setattr(warmup, "visitors_running", lambda: running["n"])
    monkeypatch.setattr(warmup, "YIELD_S", 5.0)

    worker = threading.Thread(target=lambda: events.append(("done", warmup._import_shared(
        ("probe_slow_mod_a", "probe_slow_mod_b")))))
    worker.start()
    time.sleep(0.3)
    assert "probe_slow_mod_a" not in sys.modules, "imported while a page script ran"
    running["n"] = 0  # the page ends: the warm-up imports the first module (0.6 s)
    time.sleep(0.2)
    t0 = time.perf_counter()
    assert warmup.wait_for_imports(timeout=5.0)  # a new page waits for the import under way
    waited = time.perf_counter() - t0
    assert "probe_slow_mod_a" in sys.modules and sys.modules["probe_slow_mod_a"].VALUE == 1
    assert waited >= 0.2, waited
    worker.join(5.0)
    assert events == [("done", ["probe_slow_mod_a", "probe_slow_mod_b"])]
    assert warmup.wait_for_imports(timeout=0.1)  # nothing under way: no wait


ENCODER_MODULE = '''
import torch


class BandEncoder(torch.nn.Module):
    """An encoder without a head: per frame, the |STFT| energy of 800-1200 Hz and of 2800-3200 Hz (B, T, 2)."""

    def forward(self, x):
        f = torch.linspace(0, 4000, x.shape[1])
        bands = torch.stack([((f >= 800) & (f <= 1200)).float(), ((f >= 2800) & (f <= 3200)).float()])
        return torch.einsum("kf,bft->btk", bands, x)


def build():
    return BandEncoder()
'''


def _stft_spec_folder(root, name: str, module: str, output: str) -> str:
    """A spec-file model in ``root/name``: ``module`` (its source, with ``build()``) on an 8 kHz STFT grid
    (n_fft 256, hop 64); ``output`` is the ``[output]`` table's body. Returns the TOML's path."""
    folder = root / name
    folder.mkdir(exist_ok=True)
    (folder / f"{name}_model.py").write_text(module)
    toml = folder / f"{name}.toml"
    toml.write_text(f'[model]\nfactory = "{name}_model:build"\nname = "{name}"\n[input]\nkind = "stft"\n'
                    f'sample_rate = 8000\nn_fft = 256\nhop_length = 64\n[output]\n{output}')
    return str(toml)


def test_attribution_page_explains_an_encoder_without_a_head(allowed_root):
    """A ``features`` model (an encoder) gets a target (its most varying unit, as the CLI) and a map, not an error box."""
    enc = _stft_spec_folder(allowed_root, "band_encoder", ENCODER_MODULE, 'kind = "features"\nlayout = "btc"\n')
    at = _app_with_upload(enc, wav_bytes(tone_and_noise()))
    at.switch_page("views/attribution.py").run()
    assert not _errors(at), _errors(at)
    # the 1 kHz tone lasts the whole clip, the noise burst (unit 1's band among others) comes and goes
    from probe.attribution import default_target_for
    from probe.resolve import load

    want = str(default_target_for(load(enc), tone_and_noise()))
    assert at.selectbox[0].value == want == "feature=1" and "feature=norm" in at.selectbox[0].options
    assert any("completeness" in m.label.lower() for m in at.metric), [m.label for m in at.metric]
    assert len(at.get("plotly_chart")) >= 2  # the map and the target over time


SCORER_MODULE = '''
import torch


class Scorer(torch.nn.Module):
    """Clip scores of three classes; "b" wins on any clip (a bias of 3), so the top class is not the first."""

    def forward(self, x):  # (B, F, T) magnitude
        e = x.mean((1, 2))
        return torch.sigmoid(torch.stack([e - 2.0, e + 3.0, e], 1))


def build():
    return Scorer()
'''


def test_attribution_page_starts_from_the_clis_default_target(allowed_root):
    """Without events, a detector's default target is its top class on the clip, in the app as in the CLI."""
    from probe.pipelines import AttributionOptions, analyse_attribution
    from probe.resolve import load

    toml = _stft_spec_folder(allowed_root, "scorer", SCORER_MODULE, 'kind = "clip_scores"\nclasses = ["a", "b", "c"]\n')
    y = tone_and_noise()
    cli = analyse_attribution(load(str(toml)), y, AttributionOptions(method="saliency", deletion=False))
    assert cli.target == "class=b"
    at = _app_with_upload(str(toml), wav_bytes(y))
    at.switch_page("views/attribution.py").run()
    assert not _errors(at), _errors(at)
    assert at.selectbox[0].value == "class=b", at.selectbox[0].options
    assert at.selectbox[0].options.count("class=b") == 1


def test_a_silent_or_broken_clip_plays_as_it_is():
    """st.audio scales by the peak: an all-zero stem (partitioned_ae's noise-only examples) gave 0/0 → NaN → int16."""
    import warnings

    def script():
        import numpy as np

        from apps.ui import play

        play(np.zeros(800, np.float32), 8000)
        play(np.array([0.0, np.nan, 0.5, np.inf], np.float32), 8000)
        play(np.sin(np.arange(800) / 3.0).astype(np.float32), 8000)

    at = AppTest.from_function(script, default_timeout=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the 0/0 and the NaN cast were RuntimeWarnings
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("audio")) == 3


LENGTHS_MODULE = '''
import torch


class NeedsLengths(torch.nn.Module):
    """A detector whose forward wants (x, lengths), as many padded-batch models do."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(129, 2)

    def forward(self, x, lengths):  # (B, F, T) magnitude
        return torch.sigmoid(self.lin(x.transpose(1, 2))).transpose(1, 2)


def build():
    return NeedsLengths()
'''


def test_a_model_whose_forward_needs_two_arguments_gets_one_error_box_per_page(allowed_root):
    """probe calls forward(x): every page says so in one error box (the Overview, Embeddings, Attribution and
    Activations pages showed a TypeError traceback)."""
    toml = _stft_spec_folder(allowed_root, "needs_lengths", LENGTHS_MODULE, 'kind = "frame_probs"\nclasses = ["a", "b"]\n')
    at = _app_with_upload(toml, wav_bytes(tone_and_noise()))
    for page in (None,) + PAGES:
        if page is not None:
            at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        if page != "views/nmf.py":  # NMF needs no forward pass when the model has no spectral bank to compare
            assert len(at.error) == 1 and "forward(x)" in at.error[0].value, (page, [e.value for e in at.error])
