"""Deep clustering on two REAL speakers at 8 kHz: :mod:`model_zoo.dc_blstm`'s network, trained on speech.

Same architecture, grid, loss and k-means separation as ``dc_blstm`` (BLSTM → unit-norm
T-F embeddings, ``tf_embeddings`` output ``(batch, D, F, T)``); only the data differ: two
real speakers of different languages from ``klettres-data`` (plus the asterisk prompt voice
in training), test speakers never heard in training (:mod:`model_zoo.data.speakers`).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from probe.adapter import ModelSpec
from probe.audio import AudioExample

from . import dc_blstm as _dc
from .dc_blstm import EPS, GRID, DeepClustering, build, embed, kmeans_masks, separate  # noqa: F401  (same network)

__all__ = ["NAME", "TASK", "SYSTEMS", "DEFAULT_CONFIG", "GRID", "DATASET", "build", "make_spec", "example", "separate",
           "load_items"]

NAME = "dc_speech"
TASK = "separation"
DATASET = "speakers"
DEFAULT_CONFIG = dict(_dc.DEFAULT_CONFIG)
SYSTEMS = {"dc_kmeans": separate}


def make_spec(model: nn.Module) -> ModelSpec:
    """Wrap the network for probe: log-magnitude input on :data:`GRID`, ``tf_embeddings`` output."""
    return ModelSpec(model, input_kind="logmag", grid=GRID, output_kind="tf_embeddings", n_sources=2, eps=EPS,
                     name=NAME, info={"task": TASK, "config": getattr(model, "config", None)})


def load_items(split: str = "test", n: int | None = None, *, dataset: str = DATASET) -> list[dict]:
    """Items of the real two-speaker set (8 kHz, 4 s)."""
    return _dc.load_items(split, n, dataset=dataset)


def example(i: int = 0, split: str = "test", *, dataset: str = DATASET) -> AudioExample:
    """Mixture ``i`` of the ``split`` split of the real-speech set, with its exact sources attached.

    Examples
    --------
    >>> ex = example(0)                                   # doctest: +SKIP
    >>> ex.sr, ex.sources.shape                           # doctest: +SKIP
    (8000, (2, 32000))
    """
    ex = _dc.example(i, split, dataset=dataset)
    ex.y = np.asarray(ex.y, np.float32)
    return ex
