"""Local Hugging Face audio models (``hf:PATH``) as a :class:`~probe.adapter.ModelSpec`.

A folder written by ``save_pretrained`` (``config.json`` + weights, and usually
``preprocessor_config.json``) is loaded with ``local_files_only=True`` (nothing is ever
downloaded, no remote code runs) and wrapped in a module that takes what probe feeds and
rebuilds the feature extractor's preprocessing **in torch**, so attribution has a
differentiable path from the time-frequency domain to the output:

=====================  ============  =======================================================
family (model_type)    probe input   front end inside the wrapper
=====================  ============  =======================================================
wav2vec2, HuBERT,      waveform      zero-mean / unit-variance per clip (``do_normalize``);
WavLM, data2vec-audio,               frames every ``prod(conv_stride)`` samples (320 at
UniSpeech, SEW                       16 kHz = 20 ms)
AST                    waveform      Kaldi fbank as the feature extractor computes it (25 ms
                                     Hann frames, 10 ms hop, DC removal, pre-emphasis 0.97,
                                     ``num_mel_bins`` Kaldi-mel bands, log), padded or cut
                                     to ``max_length`` frames, normalised by mean / 2·std
Whisper (encoder)      stft          ``|STFT|`` on the 400/160 grid → Whisper's Slaney mel
                                     (``feature_size`` bands, 0–8 kHz) → log10, floor at
                                     max − 8, ``(x + 4) / 4``; 20 ms per encoder frame
=====================  ============  =======================================================

The module returns one tensor: ``logits`` for classification heads (output kind
``clip_scores`` with class names from ``id2label``), else the encoder's
``last_hidden_state`` (``features``, time on axis 1) — or, for AST (whose tokens are patches,
not frames), the pooled clip embedding. Every transformer layer stays a named submodule
(``hf.encoder.layers.3``), so ``capture`` records hidden states per layer with seconds
attached.

Whisper's encoder was trained on 30-s windows; the wrapper runs it on the clip's own
length (positions ``0 … T−1`` of its position table), so every layer has a real time axis.
Outputs differ slightly from a run padded to 30 s; clips longer than the position table
(``max_source_positions`` × 20 ms) are refused with the chunking option named.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import SpecError

__all__ = ["load_hf", "WAVEFORM_FAMILIES", "kaldi_fbank", "whisper_log_mel"]

#: model types whose models take the raw waveform through a strided conv feature encoder
WAVEFORM_FAMILIES = ("wav2vec2", "wav2vec2-conformer", "wav2vec2-bert", "hubert", "wavlm", "data2vec-audio",
                     "unispeech", "unispeech-sat", "sew", "sew-d")
_SUPPORTED = WAVEFORM_FAMILIES + ("audio-spectrogram-transformer", "whisper")
_INSTALL = "install the optional extra: pip install 'probe-audio[hf]' (transformers>=4.40)"


def _transformers():
    try:
        import transformers
    except ImportError:
        raise SpecError(f"hf: models need the transformers library, which is not installed; {_INSTALL}") from None
    return transformers


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None


# ---- front ends (torch, differentiable) --------------------------------------------------------
def kaldi_fbank(y, *, sample_rate: int, mel_filters, frame_length: int = 400, hop_length: int = 160,
                fft_length: int = 512, preemphasis: float = 0.97, mel_floor: float = 1.192092955078125e-07):
    """Kaldi-style log-mel filterbank of a waveform batch, as Hugging Face's AST feature extractor computes it.

    Parameters
    ----------
    y : torch.Tensor [shape=(B, n)]
    mel_filters : torch.Tensor [shape=(1 + fft_length // 2, n_mels)]
        Kaldi-scale triangular filters (``transformers.audio_utils.mel_filter_bank(..., mel_scale="kaldi")``).

    Returns
    -------
    torch.Tensor [shape=(B, T, n_mels)]
        ``T = 1 + (n - frame_length) // hop_length`` frames (Kaldi's ``snip_edges``).

    Examples
    --------
    >>> import torch
    >>> fb = kaldi_fbank(torch.zeros(1, 16000), sample_rate=16000, mel_filters=torch.ones(257, 8))
    >>> tuple(fb.shape)
    (1, 98, 8)
    """
    import torch

    if y.shape[-1] < frame_length:
        y = torch.nn.functional.pad(y, (0, frame_length - y.shape[-1]))
    frames = y.unfold(-1, frame_length, hop_length)                     # (B, T, L)
    frames = frames - frames.mean(-1, keepdim=True)                      # remove DC offset
    frames = torch.cat([frames[..., :1] * (1 - preemphasis), frames[..., 1:] - preemphasis * frames[..., :-1]], -1)
    window = torch.hann_window(frame_length, periodic=False, device=y.device, dtype=y.dtype)
    power = torch.fft.rfft(frames * window, n=fft_length).abs() ** 2     # (B, T, F)
    mel = power @ mel_filters.to(power.dtype)
    return torch.log(torch.clamp(mel, min=mel_floor))


def whisper_log_mel(mag, *, mel_filters):
    """Whisper's normalised log-mel from a magnitude STFT ``(B, F, T)`` → ``(B, n_mels, T - 1)``.

    Power → Slaney mel → ``log10`` (floored at 1e-10) → floor at the clip's max − 8 →
    ``(x + 4) / 4``; the last frame is dropped as Whisper's feature extractor does.

    Examples
    --------
    >>> import torch
    >>> tuple(whisper_log_mel(torch.ones(1, 201, 11), mel_filters=torch.ones(201, 4)).shape)
    (1, 4, 10)
    """
    import torch

    mel = torch.einsum("fm,bft->bmt", mel_filters.to(mag.dtype), mag[..., :-1] ** 2)
    logm = torch.log10(torch.clamp(mel, min=1e-10))
    logm = torch.maximum(logm, logm.amax(dim=(-2, -1), keepdim=True) - 8.0)
    return (logm + 4.0) / 4.0


# ---- the wrapper module -------------------------------------------------------------------------
def _wrapper_classes():
    import torch
    import torch.nn as nn

    class _Base(nn.Module):
        """Front end + a transformers model, returning one tensor."""

        def __init__(self, hf, *, key: str, family: str):
            super().__init__()
            self.hf = hf
            self.key = key
            self.family = family

        @property
        def net(self):
            """The module to call: the full model for ``logits``, its base model for encoder outputs."""
            base = getattr(self.hf, "base_model", self.hf)
            return self.hf if self.key == "logits" else base

        def _pick(self, out):
            if isinstance(out, torch.Tensor):
                return out
            if self.key not in out or out[self.key] is None:
                raise SpecError(f"{type(self.hf).__name__} returned no {self.key!r}; it gave {sorted(k for k in out.keys())}")
            return out[self.key]

    class WaveformEncoder(_Base):
        def __init__(self, hf, *, key, family, normalize: bool):
            super().__init__(hf, key=key, family=family)
            self.normalize = bool(normalize)

        def forward(self, y):
            if self.normalize:
                y = (y - y.mean(-1, keepdim=True)) / torch.sqrt(y.var(-1, keepdim=True, unbiased=False) + 1e-7)
            return self._pick(self.net(input_values=y))

    class ASTEncoder(_Base):
        def __init__(self, hf, *, key, family, sample_rate, mel_filters, max_length, mean, std, normalize):
            super().__init__(hf, key=key, family=family)
            self.sample_rate, self.max_length = int(sample_rate), int(max_length)
            self.mean, self.std, self.normalize = float(mean), float(std), bool(normalize)
            self.register_buffer("mel_filters", torch.as_tensor(np.asarray(mel_filters, np.float32)), persistent=False)

        def forward(self, y):
            fb = kaldi_fbank(y, sample_rate=self.sample_rate, mel_filters=self.mel_filters)
            t = fb.shape[1]
            if t < self.max_length:   # the feature extractor pads the fbank with zeros, then normalises
                fb = torch.nn.functional.pad(fb, (0, 0, 0, self.max_length - t))
            else:
                fb = fb[:, : self.max_length]
            if self.normalize:
                fb = (fb - self.mean) / (self.std * 2)
            return self._pick(self.net(input_values=fb))

    class WhisperEncoder(_Base):
        def __init__(self, hf, *, key, family, mel_filters):
            super().__init__(hf, key=key, family=family)
            self.register_buffer("mel_filters", torch.as_tensor(np.asarray(mel_filters, np.float32)), persistent=False)

        @property
        def encoder(self):
            return self.hf.get_encoder() if hasattr(self.hf, "get_encoder") else self.hf.encoder

        def forward(self, mag):
            enc = self.encoder
            x = whisper_log_mel(mag, mel_filters=self.mel_filters)
            x = nn.functional.gelu(enc.conv1(x))
            x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
            n_pos = enc.embed_positions.weight.shape[0]
            if x.shape[1] > n_pos:
                raise SpecError(f"this Whisper encoder holds {n_pos} positions ({n_pos * 0.02:g} s); the clip needs "
                                f"{x.shape[1]}: pass --chunk-seconds {n_pos * 0.02:g} or a shorter clip")
            x = x + enc.embed_positions.weight[: x.shape[1]]
            for layer in enc.layers:
                x = layer(x, None)
                if isinstance(x, tuple):
                    x = x[0]
            x = enc.layer_norm(x)
            if self.key == "logits":   # WhisperForAudioClassification without weighted layer sum
                return self.hf.classifier(self.hf.projector(x).mean(dim=1))
            return x

    return {"waveform": WaveformEncoder, "ast": ASTEncoder, "whisper": WhisperEncoder}


# ---- loading ------------------------------------------------------------------------------------
def _model_class(transformers, config, family: str):
    """The architecture named in the config when probe knows its output, else the base model."""
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    known = ("Model", "ForSequenceClassification", "ForAudioClassification", "ForCTC", "ForConditionalGeneration")
    if cls is not None and any(arch.endswith(k) for k in known):
        return cls, arch
    return transformers.AutoModel, f"AutoModel (config names {arch})" if arch else "AutoModel"


def load_hf(path, *, output: str | None = None):
    """Load a local Hugging Face audio model folder as a :class:`~probe.adapter.ModelSpec`.

    Parameters
    ----------
    path : str or Path
        Folder with ``config.json`` and weights (``model.safetensors`` or
        ``pytorch_model.bin``, read without unpickling code), as ``save_pretrained`` writes.
    output : str, optional
        ``"logits"``, ``"last_hidden_state"``, ``"pooler_output"``… to override the choice
        (default: ``logits`` for classification heads, else ``last_hidden_state``; AST's
        base model: ``pooler_output``).

    Returns
    -------
    ModelSpec
        ``info`` records the family, architecture, frame hop in samples and the preprocessing.

    Examples
    --------
    >>> import tempfile, transformers
    >>> cfg = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=16, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4),
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> d = tempfile.mkdtemp(); transformers.Wav2Vec2Model(cfg).save_pretrained(d)
    >>> spec = load_hf(d)
    >>> spec.input_kind, spec.info["frame_hop_samples"], tuple(spec.forward(np.zeros(1600, np.float32)).shape)
    ('waveform', 20, (1, 79, 16))
    """
    from ..adapter import ModelSpec
    from ..grid import TFGrid

    path = Path(path)
    if not (path / "config.json").is_file():
        found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else []
        raise SpecError(f"hf:{path} needs a folder with config.json and weights, as save_pretrained writes; "
                        + (f"found {found}" if path.is_dir() else "no such folder"))
    cfg_json = _read_json(path / "config.json")
    family = cfg_json.get("model_type")
    if family not in _SUPPORTED:
        raise SpecError(f"hf:{path} is a {family!r} model; probe reads audio families {', '.join(_SUPPORTED)}")
    fe = _read_json(path / "preprocessor_config.json") if (path / "preprocessor_config.json").is_file() else {}
    transformers = _transformers()
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tlog = transformers.utils.logging
    verbosity, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()   # probe prints one JSON object or one error line, not loading chatter
    tlog.disable_progress_bar()
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        cls, arch = _model_class(transformers, config, family)
        hf = cls.from_pretrained(str(path), local_files_only=True, attn_implementation="eager")
    except SpecError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"cannot load hf:{path}: {type(exc).__name__}: {first}") from None
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()
    hf.eval()
    id2label = getattr(config, "id2label", None) or {}
    is_classifier = any(arch.endswith(k) for k in ("ForSequenceClassification", "ForAudioClassification"))
    key = output or ("logits" if is_classifier else ("pooler_output" if family == "audio-spectrogram-transformer"
                                                     else "last_hidden_state"))
    wrappers = _wrapper_classes()
    sr = int(fe.get("sampling_rate", 16000))
    info = {"family": family, "architecture": arch, "hf_path": str(path), "output": key, "source": f"hf:{path}"}
    if family in WAVEFORM_FAMILIES:
        hop = int(np.prod(getattr(config, "conv_stride", (320,))))
        model = wrappers["waveform"](hf, key=key, family=family, normalize=fe.get("do_normalize", True))
        grid = TFGrid(sr, n_fft=2 * round(0.0125 * sr), hop_length=round(0.01 * sr))
        input_kind = "waveform"
        info.update(frame_hop_samples=hop, frame_seconds=hop / sr, preprocessing="zero-mean unit-variance per clip"
                    if model.normalize else "none")
    elif family == "audio-spectrogram-transformer":
        from transformers.audio_utils import mel_filter_bank

        n_mels = int(fe.get("num_mel_bins", getattr(config, "num_mel_bins", 128)))
        max_length = int(fe.get("max_length", getattr(config, "max_length", 1024)))
        filt = mel_filter_bank(num_frequency_bins=257, num_mel_filters=n_mels, min_frequency=20,
                               max_frequency=sr // 2, sampling_rate=sr, norm=None, mel_scale="kaldi",
                               triangularize_in_mel_space=True)
        model = wrappers["ast"](hf, key=key, family=family, sample_rate=sr, mel_filters=filt, max_length=max_length,
                                mean=fe.get("mean", -4.2677393), std=fe.get("std", 4.5689974),
                                normalize=fe.get("do_normalize", True))
        grid = TFGrid(sr, n_fft=400, hop_length=160, n_mels=n_mels, fmin=20.0)
        input_kind = "waveform"
        info.update(frame_hop_samples=160, max_frames=max_length, max_seconds=(max_length - 1) * 0.01 + 0.025,
                    preprocessing=f"kaldi fbank {n_mels} bands, pad/cut to {max_length} frames, (x-mean)/(2 std)")
    else:  # whisper
        from transformers.audio_utils import mel_filter_bank

        n_fft, hop = int(fe.get("n_fft", 400)), int(fe.get("hop_length", 160))
        n_mels = int(fe.get("feature_size", getattr(config, "num_mel_bins", 80)))
        filt = mel_filter_bank(num_frequency_bins=1 + n_fft // 2, num_mel_filters=n_mels, min_frequency=0.0,
                               max_frequency=8000.0, sampling_rate=sr, norm="slaney", mel_scale="slaney")
        if getattr(config, "use_weighted_layer_sum", False) and key == "logits":
            raise SpecError(f"hf:{path}: Whisper classification with use_weighted_layer_sum is not supported; "
                            "load the encoder (output='last_hidden_state')")
        model = wrappers["whisper"](hf, key="logits" if key == "logits" else "last_hidden_state", family=family,
                                    mel_filters=filt)
        grid = TFGrid(sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmax=8000.0)
        input_kind = "stft"
        info.update(frame_hop_samples=2 * hop, frame_seconds=2 * hop / sr,
                    max_seconds=getattr(config, "max_source_positions", 1500) * 2 * hop / sr,
                    preprocessing="whisper log-mel (log10, max-8 floor, (x+4)/4), unpadded")
    model.eval()
    classes = None
    if key == "logits" and is_classifier:
        classes = [str(id2label.get(i, id2label.get(str(i), f"class{i}"))) for i in range(int(config.num_labels))]
    output_kind = "clip_scores" if classes else "features"
    return ModelSpec(model, input_kind=input_kind, grid=grid, output_kind=output_kind, classes=classes,
                     name=path.name, info=info)
