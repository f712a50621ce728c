"""Model families researchers already have, brought to a :class:`~probe.adapter.ModelSpec`.

* :mod:`probe.families.hf` — a local Hugging Face folder (``hf:PATH``): wav2vec2, HuBERT,
  WavLM, Data2VecAudio, AST and Whisper's encoder, spec inferred from the configs;
* :mod:`probe.families.onnx` — an ONNX graph converted to PyTorch with ``onnx2torch``
  (``onnx:PATH``);
* :mod:`probe.families.streaming` — a chunk-in / (output, state)-out cell run over a clip
  as one module with a time axis (:class:`~probe.families.streaming.StreamingModule`);
* :mod:`probe.families.torchscript` — the one error every command gives for TorchScript.

The optional libraries (``transformers``, ``onnx``, ``onnx2torch``) are imported only when a
family that needs them is loaded; install them with ``pip install probe-audio[hf]`` /
``probe-audio[onnx]`` (onnx2torch itself with ``--no-deps``).
"""

from __future__ import annotations

__all__ = ["load_hf", "load_onnx", "StreamingModule", "check_eager"]


def __getattr__(name):
    if name == "load_hf":
        from .hf import load_hf

        return load_hf
    if name == "load_onnx":
        from .onnx import load_onnx

        return load_onnx
    if name == "StreamingModule":
        from .streaming import StreamingModule

        return StreamingModule
    if name == "check_eager":
        from .torchscript import check_eager

        return check_eager
    raise AttributeError(f"module 'probe.families' has no attribute {name!r}")
