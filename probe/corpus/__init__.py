"""Whole corpora, not one clip: unit dissection, layer probing and corpus maps.

One pass over a corpus (:func:`run_corpus`, in-process or on Ray Data) writes per-layer
unit statistics, sampled frames with acoustic concept tracks, and pooled features to a
resumable Parquet run; the analyses read that run:

* :func:`dissect` — which unit follows which concept, against shifted-time and
  random-init nulls with FDR control;
* :func:`probe_layers` — layer-wise linear probes with control task and random-init
  baselines, plus linear CKA with the concept tracks;
* :func:`corpus_map` — a PCA/UMAP map of clips, clusters scored against labels.

Heavy submodules load lazily.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Clip": "probe.corpus.inputs",
    "CorpusError": "probe.corpus.inputs",
    "read_corpus": "probe.corpus.inputs",
    "load_clip": "probe.corpus.inputs",
    "concept_tracks": "probe.corpus.concepts",
    "align_tracks": "probe.corpus.concepts",
    "RunOptions": "probe.corpus.worker",
    "CorpusWorker": "probe.corpus.worker",
    "random_init_copy": "probe.corpus.worker",
    "run_corpus": "probe.corpus.run",
    "open_run": "probe.corpus.run",
    "CorpusRun": "probe.corpus.run",
    "DissectOptions": "probe.corpus.dissection",
    "dissect": "probe.corpus.dissection",
    "ProbeOptions": "probe.corpus.probing",
    "probe_layers": "probe.corpus.probing",
    "linear_cka": "probe.corpus.probing",
    "MapOptions": "probe.corpus.maps",
    "corpus_map": "probe.corpus.maps",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'probe.corpus' has no attribute {name!r}")
