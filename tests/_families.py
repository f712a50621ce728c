"""Tiny models of every family probe reads, each with a planted ground truth, written to a folder.

The planted truth is the same for every family: a 1 kHz tone at 0.4–0.8 s drives the target
("tone"), a 3 kHz tone at 0.9–1.3 s does not. Families with a head of their own (transformers
sequence/audio classifiers) get that head *fitted* (closed-form ridge) on pooled features of
synthetic clips; the hand-built models (ONNX CNN, framed CNN, streaming cell) get band-pass
kernels at 1 kHz by construction. Attribution must then put more relevance in the 1 kHz box
than in the 3 kHz box.

Nothing is downloaded: transformers models are built from configs with tiny sizes and
random weights, then saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

SR = 16000
DUR = 1.5
F_TARGET, T_TARGET = 1000.0, (0.4, 0.8)
F_DISTRACT, T_DISTRACT = 3000.0, (0.9, 1.3)
TARGET_BOX = (T_TARGET[0], T_TARGET[1], 700.0, 1300.0)
DISTRACT_BOX = (T_DISTRACT[0], T_DISTRACT[1], 2600.0, 3400.0)


def need(module: str):
    """Import an optional dependency that .ci/setup installs; fail (not skip) with the set-up hint when missing."""
    import importlib

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{module} is not installed; run `bash .ci/setup` (it installs the hf/onnx extras: "
                    "pip install -c constraints-cpu.txt transformers onnx onnxscript && pip install --no-deps onnx2torch)")


def need_onnx2torch():
    """onnx2torch is installed with --no-deps (it names torchvision for detection ops only): look for it, don't import."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("onnx2torch") is None:
        pytest.fail("onnx2torch is not installed; run `bash .ci/setup` (pip install --no-deps onnx2torch)")


def tone_burst(f, t0, t1, amp=0.3, sr=SR, dur=DUR):
    n = int(dur * sr)
    t = np.arange(n) / sr
    env = np.clip(np.minimum((t - t0) / 0.02, (t1 - t) / 0.02), 0, 1)
    return (amp * env * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_clip(seed=0):
    """The planted clip: target tone, distractor tone, faint noise (no exact digital silence)."""
    rng = np.random.default_rng(seed)
    y = tone_burst(F_TARGET, *T_TARGET) + tone_burst(F_DISTRACT, *T_DISTRACT)
    return (y + 1e-3 * rng.standard_normal(y.size)).astype(np.float32)


def training_clips(n=48, seed=1, *, spans=False):
    """Clips with the target tone, the distractor, both or neither at random times; label = target present.

    With ``spans=True`` also returns each clip's target-tone span ``(t0, t1)`` (``None`` if absent).
    """
    rng = np.random.default_rng(seed)
    X, labels, where = [], [], []
    for k in range(n):
        has_t, has_d = k % 2 == 0, (k // 2) % 2 == 0
        y = 1e-3 * rng.standard_normal(int(DUR * SR)).astype(np.float32)
        span = None
        if has_t:
            t0 = rng.uniform(0.05, DUR - 0.5)
            span = (t0, t0 + rng.uniform(0.25, 0.45))
            y += tone_burst(F_TARGET * rng.uniform(0.99, 1.01), *span, rng.uniform(0.25, 0.35))
        if has_d:
            t0 = rng.uniform(0.05, DUR - 0.5)
            y += tone_burst(F_DISTRACT * rng.uniform(0.99, 1.01), t0, t0 + rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.35))
        X.append(y.astype(np.float32))
        labels.append(1.0 if has_t else -1.0)
        where.append(span)
    return (np.stack(X), np.asarray(labels), where) if spans else (np.stack(X), np.asarray(labels))


def frame_features(spec, X, spans, frame_seconds):
    """Hidden states of every frame of every clip and 1/0 labels (frame centre inside the target tone)."""
    import torch

    feats, labels = [], []
    with torch.no_grad():
        for x, span in zip(X, spans):
            h = spec.forward(x)[0].numpy()          # (T, D)
            t = (np.arange(h.shape[0]) + 0.5) * frame_seconds
            lab = np.zeros(h.shape[0]) if span is None else ((t > span[0] + 0.02) & (t < span[1] - 0.02)).astype(float)
            keep = np.ones(h.shape[0], bool) if span is None else ~((np.abs(t - span[0]) < 0.04) | (np.abs(t - span[1]) < 0.04))
            feats.append(h[keep])
            labels.append(lab[keep])
    return np.concatenate(feats), np.concatenate(labels)


def _fit_frame_head(linear, feats, labels, scale=40.0, threshold=0.05):
    """Head on mean-pooled frames: logit 0 = scale * (mean frame score - threshold), frame score ≈ 1 on tone frames.

    The frame score is a ridge fit on single frames (thousands of rows), so it generalises;
    its mean over a clip is the share of tone frames, positive above ``threshold``.
    """
    import torch

    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    w, b = ridge((feats - mu) / sd, labels)
    w_eff, b_eff = w / sd, b - float((w / sd) @ mu)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0] = torch.as_tensor(scale * w_eff, dtype=torch.float32)
        linear.bias[0] = scale * (b_eff - threshold)
        linear.weight[1] = -linear.weight[0]
        linear.bias[1] = -linear.bias[0]


def ridge(F, y, lam=3.0):
    """Weights ``w, b`` of ``F @ w + b ≈ y`` (closed form, features standardised by the caller)."""
    A = np.hstack([F, np.ones((len(F), 1))])
    w = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ y)
    return w[:-1], w[-1]


# ---- transformers families --------------------------------------------------------------------
_W2V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(64, 4, 4, 4),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, hidden_dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
            layerdrop=0.0, mask_time_prob=0.0, feat_extract_norm="layer", do_stable_layer_norm=True)
_LABELS = dict(num_labels=2, id2label={0: "tone", 1: "other"}, label2id={"tone": 0, "other": 1})


def _fit_linear_head(linear, feats, labels, scale=4.0):
    """Set ``linear`` (out 2) so logit 0 ("tone") is the fitted ridge score and logit 1 its negative."""
    import torch

    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    w, b = ridge((feats - mu) / sd, labels)
    w_eff, b_eff = w / sd, b - float((w / sd) @ mu)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0] = torch.as_tensor(scale * w_eff, dtype=torch.float32)
        linear.bias[0] = scale * b_eff
        linear.weight[1] = -linear.weight[0]
        linear.bias[1] = -linear.bias[0]


def build_waveform_classifier(folder: Path, kind: str = "wav2vec2") -> Path:
    """A wav2vec2 / WavLM sequence classifier whose head detects the 1 kHz tone (fitted on pooled features)."""
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg_cls, model_cls = {"wav2vec2": (T.Wav2Vec2Config, T.Wav2Vec2ForSequenceClassification),
                          "wavlm": (T.WavLMConfig, T.WavLMForSequenceClassification),
                          "hubert": (T.HubertConfig, T.HubertForSequenceClassification)}[kind]
    cfg = cfg_cls(**_W2V, **_LABELS, classifier_proj_size=32)
    model = model_cls(cfg).eval()
    T.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(folder)
    with torch.no_grad():  # projector = identity, so the head is linear in the mean hidden state
        model.projector.weight.copy_(torch.eye(32))
        model.projector.bias.zero_()
        # random self-attention smears every frame over the clip, so no probe finds a 1 kHz tone in it;
        # zeroing the blocks' output projections keeps them running as residual pass-throughs
        for name, p in model.named_parameters():
            if ".encoder.layers." in name and (".out_proj." in name or ".output_dense." in name):
                p.zero_()
    X, _, spans = training_clips(spans=True)
    from probe.families.hf import load_hf

    model.save_pretrained(folder)
    spec = load_hf(folder, output="last_hidden_state")
    _fit_frame_head(model.classifier, *frame_features(spec, X, spans, 320 / SR))
    model.save_pretrained(folder)
    return folder


def build_waveform_encoder(folder: Path) -> tuple[Path, int]:
    """A bare wav2vec2 encoder (no head: a ``features`` model) and the unit of its output that follows the 1 kHz tone.

    The planted truth of an encoder is one of its units: the one whose mean over tone frames
    exceeds its mean elsewhere by the most standard deviations on the training clips.
    """
    import torch
    import transformers as T

    torch.manual_seed(0)
    model = T.Wav2Vec2Model(T.Wav2Vec2Config(**_W2V)).eval()
    with torch.no_grad():  # residual pass-through blocks, as in the classifiers: frames stay local
        for name, p in model.named_parameters():
            if ".layers." in name and (".out_proj." in name or ".output_dense." in name):
                p.zero_()
    T.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(folder)
    model.save_pretrained(folder)
    from probe.families.hf import load_hf

    X, _, spans = training_clips(spans=True)
    feats, labels = frame_features(load_hf(folder), X, spans, 320 / SR)
    on, off = feats[labels > 0.5], feats[labels < 0.5]
    contrast = (on.mean(0) - off.mean(0)) / (feats.std(0) + 1e-6)
    return folder, int(np.argmax(contrast))


def build_ast_classifier(folder: Path) -> Path:
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg = T.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      num_mel_bins=64, max_length=160, patch_size=16, frequency_stride=12, time_stride=12,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **_LABELS)
    model = T.ASTForAudioClassification(cfg).eval()
    T.ASTFeatureExtractor(num_mel_bins=64, max_length=160).save_pretrained(folder)
    model.save_pretrained(folder)
    from probe.families.hf import load_hf

    spec = load_hf(folder, output="pooler_output")
    X, labels = training_clips()
    with torch.no_grad():
        feats = np.stack([model.classifier.layernorm(spec.forward(x))[0].numpy() for x in X])
    _fit_linear_head(model.classifier.dense, feats, labels)
    model.save_pretrained(folder)
    return folder


def build_whisper_classifier(folder: Path) -> Path:
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg = T.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=40,
                          max_source_positions=100, max_target_positions=16, vocab_size=64, pad_token_id=0,
                          bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, classifier_proj_size=32,
                          dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, **_LABELS)
    model = T.WhisperForAudioClassification(cfg).eval()
    T.WhisperFeatureExtractor(feature_size=40, chunk_length=2).save_pretrained(folder)
    with torch.no_grad():
        model.projector.weight.copy_(torch.eye(32))
        model.projector.bias.zero_()
    model.save_pretrained(folder)
    from probe.families.hf import load_hf

    spec = load_hf(folder, output="last_hidden_state")
    X, _, spans = training_clips(spans=True)
    _fit_frame_head(model.classifier, *frame_features(spec, X, spans, 320 / SR))
    model.save_pretrained(folder)
    return folder


# ---- hand-built families ----------------------------------------------------------------------
MODELS_PY = textwrap.dedent('''
    """Hand-built models with a planted 1 kHz detector (probe's conformance families)."""
    import math

    import torch
    import torch.nn as nn

    SR = 16000


    def bandpass(n_taps, f, sr=SR):
        t = torch.arange(n_taps) - (n_taps - 1) / 2
        return torch.hann_window(n_taps, periodic=False) * torch.cos(2 * math.pi * f * t / sr) / n_taps * 4


    class WaveCNN(nn.Module):
        """Waveform (B, 1, n) → (B, 1, T) probability that a 1 kHz tone is present, 8 ms frames."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(1, 2, 256, stride=128, bias=False)
            self.head = nn.Conv1d(2, 1, 1)
            with torch.no_grad():
                self.conv1.weight[0, 0] = bandpass(256, 1000.0)
                self.conv1.weight[1, 0] = bandpass(256, 3000.0)
                self.head.weight[:] = torch.tensor([[[40.0], [-10.0]]])
                self.head.bias[:] = -2.0

        def forward(self, x):
            return torch.sigmoid(self.head(self.conv1(x) ** 2))


    class FramedCNN(nn.Module):
        """Log-magnitude frames (B, F, T) → (B, 1, T): a conv over frequency x 3 frames reading the 1 kHz bins."""

        def __init__(self, n_freqs=257, sr=SR, n_fft=512):
            super().__init__()
            self.conv = nn.Conv1d(n_freqs, 4, 3, padding=1)
            self.head = nn.Conv1d(4, 1, 1)
            hz = torch.arange(n_freqs) * sr / n_fft
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.bias.fill_(0.0)
                band = ((hz - 1000.0).abs() < 80).float()
                self.conv.weight[0, :, 1] = band / band.sum()
                self.conv.bias[0] = 4.0
                self.head.weight.zero_()
                self.head.weight[0, 0, 0] = 1.5
                self.head.bias[:] = -2.0

        def forward(self, x):
            return torch.sigmoid(self.head(torch.relu(self.conv(x))))


    class ToneCell(nn.Module):
        """Streaming cell: (B, context + chunk) samples, state → (probability (B, 1), state)."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(1, 2, 128, stride=64, bias=False)
            self.head = nn.Linear(2, 1)
            with torch.no_grad():
                self.conv1.weight[0, 0] = bandpass(128, 1000.0)
                self.conv1.weight[1, 0] = bandpass(128, 3000.0)
                self.head.weight[:] = torch.tensor([[40.0, -10.0]])
                self.head.bias[:] = -2.0

        def forward(self, x, state):
            e = (self.conv1(x.unsqueeze(1)) ** 2).mean(-1)
            h = e if state is None else 0.3 * state + 0.7 * e
            return torch.sigmoid(self.head(h)), h


    def wave_cnn():
        return WaveCNN().eval()


    def framed_cnn():
        return FramedCNN().eval()


    def tone_cell():
        return ToneCell().eval()


    def scripted_cnn():
        return torch.jit.script(WaveCNN().eval())
''')


def write_specs(folder: Path) -> dict:
    """models.py + spec files of the hand-built families; returns {family: spec path}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.py").write_text(MODELS_PY)
    out = {}
    specs = {
        "framed_cnn": ('factory = "models:framed_cnn"', 'kind = "logmag"\nsample_rate = 16000\nn_fft = 512\nhop_length = 160',
                       'kind = "frame_probs"\nclasses = ["tone"]'),
        "streaming": ('factory = "models:tone_cell"\nstreaming = {chunk = 512, context = 64}',
                      'kind = "waveform"\nsample_rate = 16000\nn_fft = 512\nhop_length = 128',
                      'kind = "frame_probs"\nclasses = ["tone"]'),
        "torchscript": ('factory = "models:scripted_cnn"', 'kind = "waveform"\nsample_rate = 16000\nlayout = "bcn"',
                        'kind = "frame_probs"\nclasses = ["tone"]'),
    }
    for name, (m, i, o) in specs.items():
        p = folder / f"{name}.toml"
        p.write_text(f"[model]\n{m}\n\n[input]\n{i}\n\n[output]\n{o}\n")
        out[name] = str(p)
    return out


def export_onnx(folder: Path) -> Path:
    """The planted waveform CNN exported to ONNX (dynamic length) with its sidecar description."""
    import importlib.util
    import warnings

    import torch

    spec = importlib.util.spec_from_file_location("_fam_models_onnx", folder / "models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.wave_cnn()
    path = folder / "wave_cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 1, 8000),), str(path), input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {2: "n"}, "p": {2: "t"}}, dynamo=False, opset_version=17)
    (folder / "wave_cnn.onnx.toml").write_text(
        '[input]\nkind = "waveform"\nsample_rate = 16000\nn_fft = 512\nhop_length = 128\nlayout = "bcn"\n\n'
        '[output]\nkind = "frame_probs"\nclasses = ["tone"]\n')
    return path


def build_all(root: Path) -> dict:
    """Every conformance family: ``{name: {"model", "target", "layer", "planted"}}`` plus the clip path."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    specs = write_specs(root / "specs")
    onnx_path = export_onnx(root / "specs")
    clip = root / "clip.wav"
    sf.write(str(clip), test_clip(), SR, subtype="FLOAT")
    enc, unit = build_waveform_encoder(root / "wav2vec2_encoder")
    fam = {
        "wav2vec2": {"model": f"hf:{build_waveform_classifier(root / 'wav2vec2', 'wav2vec2')}",
                     "target": "class=tone", "layer": "hf.wav2vec2.encoder.layers.1"},
        "wavlm": {"model": f"hf:{build_waveform_classifier(root / 'wavlm', 'wavlm')}",
                  "target": "class=tone", "layer": "hf.wavlm.encoder.layers.1"},
        "wav2vec2_encoder": {"model": f"hf:{enc}", "target": f"feature={unit},t=0.4:0.8",
                             "layer": "hf.encoder.layers.1"},
        "ast": {"model": f"hf:{build_ast_classifier(root / 'ast')}", "target": "class=tone",
                "layer": "hf.audio_spectrogram_transformer.layers.1"},
        "whisper": {"model": f"hf:{build_whisper_classifier(root / 'whisper')}", "target": "class=tone",
                    "layer": "hf.encoder.layers.1"},
        "onnx_cnn": {"model": f"onnx:{onnx_path}", "target": "class=tone,t=0.4:0.8", "layer": None},
        "torchscript": {"model": specs["torchscript"], "target": "class=tone,t=0.4:0.8", "layer": None},
        "streaming": {"model": specs["streaming"], "target": "class=tone,t=0.4:0.8", "layer": "cell.conv1"},
        "framed_cnn": {"model": specs["framed_cnn"], "target": "class=tone,t=0.4:0.8", "layer": "conv"},
    }
    (root / "families.json").write_text(json.dumps({"clip": str(clip), "families": fam}, indent=1))
    return {"clip": str(clip), "families": fam}


def box_net(map_, times, freqs, box) -> float:
    """Signed sum of relevance inside ``(t0, t1, f0, f1)``."""
    t0, t1, f0, f1 = box
    ti = (times >= t0) & (times <= t1)
    fi = (freqs >= f0) & (freqs <= f1)
    return float(np.asarray(map_, float)[np.ix_(fi, ti)].sum())


def box_mass(map_, times, freqs, box) -> float:
    """Sum of positive relevance inside ``(t0, t1, f0, f1)``."""
    t0, t1, f0, f1 = box
    ti = (times >= t0) & (times <= t1)
    fi = (freqs >= f0) & (freqs <= f1)
    m = np.clip(np.asarray(map_, float), 0, None)
    return float(m[np.ix_(fi, ti)].sum())
