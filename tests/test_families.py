"""Model families: hf:PATH, onnx:PATH, TorchScript refusal, streaming cells, user labels.

Transformers models are tiny, randomly initialised and saved to tmp (never downloaded);
each front end is checked against the library's own feature extractor, each output
against the library's own forward.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._families import SR, need, need_onnx2torch

torch = pytest.importorskip("torch")


def _tiny_w2v(T, **extra):
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4),
                num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, **extra)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    T = need("transformers")
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    T.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(root / "w2v")
    T.Wav2Vec2Model(T.Wav2Vec2Config(**_tiny_w2v(T))).save_pretrained(root / "w2v")
    labels = dict(num_labels=3, id2label={0: "dog", 1: "bell", 2: "speech"}, label2id={"dog": 0, "bell": 1, "speech": 2})
    T.WavLMForSequenceClassification(T.WavLMConfig(**_tiny_w2v(T), **labels, classifier_proj_size=8)).save_pretrained(root / "wavlm")
    T.HubertModel(T.HubertConfig(**_tiny_w2v(T))).save_pretrained(root / "hubert")
    T.ASTFeatureExtractor(num_mel_bins=32, max_length=120).save_pretrained(root / "ast")
    T.ASTForAudioClassification(T.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=32, num_mel_bins=32, max_length=120, patch_size=16,
                                            frequency_stride=16, time_stride=16, **labels)).save_pretrained(root / "ast")
    T.WhisperFeatureExtractor(feature_size=40).save_pretrained(root / "whisper")
    T.WhisperModel(T.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                   decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=40,
                                   max_source_positions=100, max_target_positions=16, vocab_size=64, pad_token_id=0,
                                   bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)).save_pretrained(root / "whisper")
    return root


def _clip(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 1000 * t) * (t > 0.3) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# ---- hf: ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_hf_wav2vec2_spec_inferred_and_matches_transformers(hf_dirs):
    import probe

    T = need("transformers")
    spec = probe.load(f"hf:{hf_dirs / 'w2v'}")
    assert (spec.input_kind, spec.sample_rate, spec.output_kind) == ("waveform", 16000, "features")
    assert spec.info["frame_hop_samples"] == 320 and spec.info["family"] == "wav2vec2"
    y = _clip()
    fe = T.Wav2Vec2FeatureExtractor.from_pretrained(hf_dirs / "w2v")
    ref = T.Wav2Vec2Model.from_pretrained(hf_dirs / "w2v").eval()
    with torch.no_grad():
        want = ref(torch.as_tensor(fe(y, sampling_rate=SR, return_tensors="np").input_values)).last_hidden_state
        got = spec.forward(y)
    assert got.shape == want.shape == (1, 49, 32)
    assert torch.allclose(got, want, atol=1e-4)


@pytest.mark.slow
def test_hf_hidden_states_per_layer_have_seconds(hf_dirs):
    import probe

    spec = probe.load(f"hf:{hf_dirs / 'hubert'}")
    with probe.capture(spec, "hf.encoder.layers.*") as cache:
        spec.forward(_clip(1.0))
    layers = [k for k in cache if k.startswith("hf.encoder.layers.") and k.count(".") == 3]
    assert len([k for k in layers]) >= 2, list(cache)
    for k in layers:
        rec = cache[k]
        assert rec.axes[rec.time_axis] == "time" and rec.shape[rec.time_axis] == 49
        assert rec.seconds_per_step == pytest.approx(0.02)


@pytest.mark.slow
def test_hf_classifier_gets_class_names_from_id2label(hf_dirs):
    import probe

    T = need("transformers")
    spec = probe.load(f"hf:{hf_dirs / 'wavlm'}")
    assert spec.output_kind == "clip_scores" and spec.classes == ["dog", "bell", "speech"]
    y = _clip()
    ref = T.WavLMForSequenceClassification.from_pretrained(hf_dirs / "wavlm").eval()
    x = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
    with torch.no_grad():
        assert torch.allclose(spec.forward(y), ref(torch.as_tensor(x)[None]).logits, atol=1e-4)


@pytest.mark.slow
def test_ast_front_end_equals_feature_extractor(hf_dirs):
    import probe

    T = need("transformers")
    from probe.families.hf import kaldi_fbank

    spec = probe.load(f"hf:{hf_dirs / 'ast'}")
    assert spec.input_kind == "waveform" and spec.classes == ["dog", "bell", "speech"]
    fe = T.ASTFeatureExtractor.from_pretrained(hf_dirs / "ast")
    y = _clip(1.0)
    want = fe._extract_fbank_features(y, max_length=10_000)[:98]
    got = kaldi_fbank(torch.as_tensor(y)[None], sample_rate=SR, mel_filters=spec.model.mel_filters)[0].numpy()
    assert got.shape == want.shape == (98, 32)
    assert np.abs(got - want).max() < 1e-3
    ref = T.ASTForAudioClassification.from_pretrained(hf_dirs / "ast").eval()
    with torch.no_grad():
        logits = ref(torch.as_tensor(fe(y, sampling_rate=SR, return_tensors="np").input_values)).logits
        assert torch.allclose(spec.forward(y), logits, atol=1e-4)


@pytest.mark.slow
def test_whisper_front_end_and_encoder_time_axis(hf_dirs):
    import probe

    T = need("transformers")
    from probe.families.hf import whisper_log_mel

    spec = probe.load(f"hf:{hf_dirs / 'whisper'}")
    assert (spec.input_kind, spec.grid.n_fft, spec.grid.hop_length) == ("stft", 400, 160)
    y = _clip(1.0)
    fe = T.WhisperFeatureExtractor.from_pretrained(hf_dirs / "whisper")
    want = fe(y, sampling_rate=SR, return_tensors="np").input_features[0][:, :100]
    got = whisper_log_mel(spec.representation(torch.as_tensor(y)[None]), mel_filters=spec.model.mel_filters)[0].numpy()
    assert got.shape == (40, 100)
    # the edges differ (Whisper reflect-pads, probe zero-pads); the interior is the same feature
    assert np.abs(got[:, 2:-2] - want[:, 2:-2]).max() < 2e-3
    with probe.capture(spec, "hf.encoder.layers.*") as cache:
        out = spec.forward(y)
    assert out.shape == (1, 50, 32)
    rec = cache["hf.encoder.layers.1"]
    assert rec.seconds_per_step == pytest.approx(0.02) and rec.shape[rec.time_axis] == 50


@pytest.mark.slow
def test_whisper_longer_than_its_positions_is_one_line(hf_dirs):
    import probe
    from probe.errors import SpecError

    spec = probe.load(f"hf:{hf_dirs / 'whisper'}")
    with pytest.raises(SpecError, match=r"holds 100 positions \(2 s\).*--chunk-seconds 2"):
        spec.forward(_clip(3.0))


def test_hf_folder_errors_are_one_line(tmp_path):
    import probe
    from probe.errors import SpecError

    T = need("transformers")
    with pytest.raises(SpecError, match="needs a folder with config.json"):
        probe.load(f"hf:{tmp_path}")
    T.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(SpecError, match="'bert' model; probe reads audio families wav2vec2"):
        probe.load(f"hf:{tmp_path}")


def test_dict_output_picks_the_main_tensor_or_names_the_fix():
    from probe.adapter import ModelSpec
    from probe.errors import SpecError
    from probe.grid import TFGrid

    class Net(torch.nn.Module):
        def __init__(self, keys):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 4, 64, stride=32)
            self.keys = keys

        def forward(self, x):
            h = self.conv(x)
            return {k: h * (i + 1) for i, k in enumerate(self.keys)}

    spec = ModelSpec(Net(["extract_features", "last_hidden_state"]), input_kind="waveform", grid=TFGrid(SR),
                     input_layout="bcn")
    y = _clip(0.5)
    assert torch.allclose(spec.forward(y), 2 * spec.model.conv(torch.as_tensor(y)[None, None]))
    spec = ModelSpec(Net(["a", "b"]), input_kind="waveform", grid=TFGrid(SR), input_layout="bcn")
    with pytest.raises(SpecError, match=r"dict with keys \['a', 'b'\]; say which one .*\[output\] key = \"a\""):
        spec.forward(y)


# ---- onnx: -------------------------------------------------------------------------------------
def _export(net, path, opset=17):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 1, 4000),), str(path), input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {2: "n"}, "p": {2: "t"}}, dynamo=False, opset_version=opset)


def test_onnx_cnn_converts_and_matches(tmp_path):
    import probe

    need("onnx")
    need_onnx2torch()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 64, stride=16), torch.nn.ReLU(), torch.nn.Conv1d(8, 2, 4),
                              torch.nn.Sigmoid()).eval()
    _export(net, tmp_path / "cnn.onnx")
    (tmp_path / "cnn.onnx.toml").write_text('[input]\nkind = "waveform"\nsample_rate = 16000\nlayout = "bcn"\n'
                                            '[output]\nkind = "frame_probs"\nclasses = ["a", "b"]\n')
    spec = probe.load(f"onnx:{tmp_path / 'cnn.onnx'}")
    assert spec.classes == ["a", "b"] and spec.info["family"] == "onnx"
    for n in (8000, 12345):  # any length: the time axis stayed dynamic
        y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        with torch.no_grad():
            assert torch.allclose(spec.forward(y), net(torch.as_tensor(y)[None, None]), atol=1e-5)
    assert all("/" not in n for n, _ in spec.model.named_modules())   # probe reserves '/' in record names
    with probe.capture(spec, "*") as cache:
        spec.forward(np.zeros(8000, np.float32) + 0.1)
    conv = next(k for k in cache if "Conv" in k)
    assert cache[conv].seconds_per_step == pytest.approx(16 / SR)


def test_onnx_errors_name_the_fix(tmp_path):
    import probe
    from probe.errors import SpecError

    onnx = need("onnx")
    need_onnx2torch()
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 8))
    _export(net, tmp_path / "a.onnx")
    with pytest.raises(SpecError, match=r"write a.onnx.toml beside it with \[input\] kind and sample_rate"):
        probe.load(f"onnx:{tmp_path / 'a.onnx'}")
    # an operator onnx2torch does not know
    from onnx import TensorProto, helper

    node = helper.make_node("FancyWarp", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "b.onnx"))
    (tmp_path / "b.onnx.toml").write_text('[input]\nkind = "waveform"\nsample_rate = 16000\n')
    with pytest.raises(SpecError, match="cannot convert operator FancyWarp in b.onnx"):
        probe.load(f"onnx:{tmp_path / 'b.onnx'}")
    # an operator at an opset onnx2torch does not cover yet (Constant, from the exponent of x ** 2, at opset 20)
    class Square(torch.nn.Module):
        def forward(self, x):
            return x ** 2

    _export(Square(), tmp_path / "c.onnx", opset=20)
    (tmp_path / "c.onnx.toml").write_text('[input]\nkind = "waveform"\nsample_rate = 16000\nlayout = "bcn"\n')
    with pytest.raises(SpecError, match=r"cannot convert operator Constant at opset \d+ in c.onnx; re-export with an "
                                        r"older opset \(torch.onnx.export\(..., opset_version=17\)\)"):
        probe.load(f"onnx:{tmp_path / 'c.onnx'}")


# ---- TorchScript ---------------------------------------------------------------------------------
def test_torchscript_refused_at_load_with_one_message(tmp_path):
    import probe
    from probe.families.torchscript import TorchScriptError

    (tmp_path / "m.py").write_text("import torch\n\ndef build():\n    return torch.jit.script(torch.nn.Conv1d(1, 2, 3))\n")
    (tmp_path / "spec.toml").write_text('[model]\nfactory = "m:build"\n[input]\nkind = "waveform"\nsample_rate = 16000\n'
                                        'layout = "bcn"\n')
    with pytest.raises(TorchScriptError, match=r"is a TorchScript module; probe needs the eager nn.Module") as e1:
        probe.load(tmp_path / "spec.toml")
    assert "\n" not in str(e1.value)
    torch.jit.save(torch.jit.script(torch.nn.Conv1d(1, 2, 3)), str(tmp_path / "model.pt"))
    with pytest.raises(TorchScriptError, match=r"model.pt is a TorchScript archive"):
        probe.load(tmp_path / "model.pt")


# ---- streaming -------------------------------------------------------------------------------------
class _Cell(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv1d(1, 3, 32, stride=16)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x, state):
        e = torch.relu(self.conv1(x.unsqueeze(1))).mean(-1)
        h = e if state is None else 0.5 * state + 0.5 * e
        return torch.sigmoid(self.head(h)), h


def test_streaming_module_one_time_series_per_layer():
    import probe
    from probe.adapter import ModelSpec
    from probe.families.streaming import StreamingModule
    from probe.grid import TFGrid

    cell = _Cell().eval()
    m = StreamingModule(cell, chunk=400, context=32).eval()
    spec = ModelSpec(m, input_kind="waveform", grid=TFGrid(SR), output_kind="frame_probs", classes=["on"])
    y = _clip(1.0)
    with probe.capture(spec, "*") as cache:
        out = spec.forward(y)
    # the hand-written loop it replaces
    x = np.concatenate([np.zeros(32, np.float32), y])
    state, want = None, []
    with torch.no_grad():
        for k in range(40):
            p, state = cell(torch.as_tensor(x[k * 400: k * 400 + 432])[None], state)
            want.append(p)
    assert torch.allclose(out, torch.stack(want, -1), atol=1e-6) and out.shape == (1, 1, 40)
    assert not any("@" in k for k in cache), list(cache)   # one record per layer, not conv1@0 … conv1@39
    rec = cache["cell.conv1"]
    assert rec.shape[-1] == 40 and rec.time_axis == rec.tensor.ndim - 1
    assert rec.seconds_per_step == pytest.approx(400 / SR)
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())


def test_streaming_module_copies_cleanly():
    """Attribution runs a deep copy of the model (its shadow model): the copy has its own lock, same outputs."""
    import copy

    from probe.families.streaming import StreamingModule

    m = StreamingModule(_Cell().eval(), chunk=400).eval()
    c = copy.deepcopy(m)
    assert c._lock is not m._lock
    y = torch.as_tensor(_clip(0.5))[None]
    with torch.no_grad():
        assert torch.equal(c(y), m(y))


def test_streaming_from_spec_file(tmp_path):
    import probe

    (tmp_path / "cell.py").write_text("from tests.test_families import _Cell\n\ndef build():\n    return _Cell()\n")
    (tmp_path / "spec.toml").write_text('[model]\nfactory = "cell:build"\nstreaming = {chunk = 512, context = 64}\n'
                                        '[input]\nkind = "waveform"\nsample_rate = 16000\n'
                                        '[output]\nkind = "frame_probs"\nclasses = ["on"]\n')
    spec = probe.load(tmp_path / "spec.toml")
    assert spec.model.chunk == 512 and spec.model.context == 64
    assert tuple(spec.forward(_clip(1.0)).shape) == (1, 1, 32)
    (tmp_path / "bad.toml").write_text('[model]\nfactory = "cell:build"\nstreaming = {chunks = 512}\n'
                                       '[input]\nkind = "waveform"\nsample_rate = 16000\n')
    from probe.errors import SpecError

    with pytest.raises(SpecError, match="streaming must be a table with chunk"):
        probe.load(tmp_path / "bad.toml")


# ---- labels ---------------------------------------------------------------------------------------
def test_read_labels_every_shape(tmp_path):
    from probe.analyze.labels import read_labels
    from probe.errors import AnalysisError

    (tmp_path / "a.csv").write_text("start,end,label\n0,1,speech\n1,2.5,music\n")
    (tmp_path / "b.csv").write_text("0.0,1.0,speech\n1.0,2.5,music\n")
    (tmp_path / "c.json").write_text(json.dumps([{"start": 0, "end": 1, "label": "speech"},
                                                 {"start": 1, "end": 2.5, "label": "music"}]))
    for name in ("a.csv", "b.csv", "c.json"):
        lab = read_labels(tmp_path / name)
        assert lab.names == ["speech", "music"]
        assert lab.label_at([0.5, 1.5, 3.0]).tolist() == [0, 1, -1]
    (tmp_path / "files.json").write_text(json.dumps({"dog1.wav": "dog", "bell.wav": "bell"}))
    lab = read_labels(tmp_path / "files.json")
    assert lab.label_at([0.1, 9.0], clip="dog1.wav").tolist() == [0, 0]
    assert lab.label_at([0.1], clip="other.wav").tolist() == [-1]
    (tmp_path / "bad.csv").write_text("start,end,label\n2,1,x\n")
    with pytest.raises(AnalysisError, match="end 1.0 is not after start 2.0"):
        read_labels(tmp_path / "bad.csv")


def test_label_scores_against_planted_clusters():
    from probe.analyze.labels import label_scores, purity

    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 100)
    same = label_scores(truth[::-1].copy() * 0 + (2 - truth), truth)       # same partition, other names
    assert same["ari"] == 1.0 and same["nmi"] == 1.0 and same["purity"] == 1.0
    noise = label_scores(rng.integers(0, 3, truth.size), truth)
    assert abs(noise["ari"]) < 0.05 and noise["purity"] < 0.45
    half = truth.copy()
    half[::2] = -1                                                          # unlabelled points are left out
    s = label_scores(truth, half)
    assert s["n_labelled"] == 150 and s["ari"] == 1.0
    assert purity([0, 0, 0, 1], [0, 0, 1, 1]) == 0.75


def test_labels_colour_embedding_points(tmp_path):
    from probe.adapter import ModelSpec
    from probe.analyze.embeddings import EmbeddingClusters, embeddings_from_layer, select_points
    from probe.analyze.labels import apply_labels, label_scores, read_labels
    from probe.grid import TFGrid

    # a frame model whose output separates tone from noise: clusters must agree with labels that say so
    class Square(torch.nn.Module):
        def forward(self, x):
            return x ** 2

    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 64, stride=32), Square())
    with torch.no_grad():
        t = torch.arange(64) / SR
        net[0].weight[0, 0] = torch.sin(2 * np.pi * 1000 * t) * torch.hann_window(64)
        net[0].weight[1, 0] = torch.cos(2 * np.pi * 1000 * t) * torch.hann_window(64)
        net[0].bias.zero_()
    spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(SR, 512, 128), input_layout="bcn",
                     output_kind="features")
    y = _clip(1.0)  # tone after 0.3 s, noise before
    clip = embeddings_from_layer(spec, y, "output")
    pts = select_points(clip, threshold_db=None, budget=None)
    (tmp_path / "l.csv").write_text("start,end,label\n0,0.28,noise\n0.32,1.0,tone\n")
    labelled = apply_labels(pts, read_labels(tmp_path / "l.csv"))
    assert labelled.class_names == ["noise", "tone"]
    clusters = EmbeddingClusters(2, random_state=0).fit(pts)
    s = label_scores(clusters, labelled.label, names=labelled.class_names)
    assert s["ari"] > 0.9 and s["label_counts"]["tone"] > s["label_counts"]["noise"]


def test_embed_cli_labels_colour_and_score(tmp_path, probe_exe):
    import subprocess

    import soundfile as sf

    from tests._families import test_clip, write_specs

    specs = write_specs(tmp_path / "specs")
    sf.write(str(tmp_path / "clip.wav"), test_clip(), SR, subtype="FLOAT")
    (tmp_path / "labels.csv").write_text("start,end,label\n0.4,0.8,tone\n0.9,1.3,distractor\n")
    base = [probe_exe, "embed", specs["framed_cnn"], str(tmp_path / "clip.wav"), "--layer", "conv", "--projection", "pca"]
    r = subprocess.run(base + ["--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "fig"), "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lab = json.loads(r.stdout)["labels"]
    # the planted head fires on the 1 kHz tone only: two clusters = tone vs distractor frames
    assert lab["label_counts"] == {"tone": 40, "distractor": 40} and lab["ari"] == 1.0 and lab["purity"] == 1.0
    assert (tmp_path / "fig" / "map_class.html").is_file()
    (tmp_path / "late.csv").write_text("start,end,label\n5,6,x\n")
    r = subprocess.run(base + ["--labels", str(tmp_path / "late.csv")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no point falls inside a labelled segment" in r.stderr
