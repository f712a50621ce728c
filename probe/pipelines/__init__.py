"""One pipeline per analysis, shared by every face: the CLI, the HTML report and the app call these.

Each analysis is one function with one frozen options dataclass that holds the only defaults,
and returns a result dataclass with ``warnings`` and ``to_json()``:

=========================  ==========================  ==============================
function                   options                     result
=========================  ==========================  ==============================
:func:`spectrogram`        :class:`SpectrogramOptions`  :class:`Spectrogram`
:func:`model_outputs`      –                           :class:`ModelOutputs`
:func:`model_card`         –                           :class:`ModelCard`
:func:`analyse_filters`    :class:`FilterOptions`      :class:`FilterAnalysis`
:func:`analyse_nmf`        :class:`NMFOptions`         :class:`NMFAnalysis`
:func:`analyse_embeddings` :class:`EmbeddingOptions`   :class:`EmbeddingAnalysis`
:func:`analyse_attribution` :class:`AttributionOptions` :class:`AttributionAnalysis`
:func:`capture_layer`      :class:`ActivationOptions`  :class:`Activation`
:func:`record_activations` :class:`CaptureOptions`     :class:`CaptureRun`
:func:`inspect_model`      :class:`InspectOptions`     :class:`ModelInspection`
=========================  ==========================  ==============================

Functions that run the model take ``lock=`` (any context manager, held around the model's
use) for a model shared between threads; the library itself keeps no shared state.
Submodules load on first use, so ``import probe.pipelines`` is cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Result": "_base", "jsonable": "_base",
    "SpectrogramOptions": "clip", "Spectrogram": "clip", "spectrogram": "clip", "ModelOutputs": "clip",
    "model_outputs": "clip", "match_sources": "clip",
    "ModelCard": "card", "model_card": "card", "card_metrics": "card",
    "FilterOptions": "filterbanks", "FilterAnalysis": "filterbanks", "BankAnalysis": "filterbanks",
    "analyse_filters": "filterbanks", "find_banks": "filterbanks", "analyse_bank": "filterbanks",
    "NMFOptions": "decomposition", "NMFAnalysis": "decomposition", "analyse_nmf": "decomposition",
    "EmbeddingOptions": "embedding", "EmbeddingAnalysis": "embedding", "analyse_embeddings": "embedding",
    "AttributionOptions": "explain", "AttributionAnalysis": "explain", "analyse_attribution": "explain",
    "ActivationOptions": "layers", "Activation": "layers", "capture_layer": "layers", "layer_names": "layers",
    "time_layers": "layers", "default_layer": "layers", "embedding_layers": "layers",
    "CaptureOptions": "recording", "CaptureRun": "recording", "record_activations": "recording",
    "InspectOptions": "inspect", "ModelInspection": "inspect", "inspect_model": "inspect",
    "CorpusRunResult": "corpus", "corpus_run": "corpus", "CorpusDissection": "corpus", "corpus_dissect": "corpus",
    "CorpusProbing": "corpus", "corpus_probe": "corpus", "CorpusMap": "corpus", "corpus_map": "corpus",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"probe.pipelines.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'probe.pipelines' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
