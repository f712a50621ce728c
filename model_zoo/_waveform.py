"""Pieces shared by the zoo's waveform separators (Conv-TasNet-lite, the NMF-like autoencoder)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def waveform_spec(model, name: str, *, info: dict | None = None):
    """ModelSpec of a waveform separator: waveform in (``bcn``), separated sources out (``bsn``), 8 kHz display grid."""
    from probe.adapter import ModelSpec
    from probe.grid import TFGrid

    return ModelSpec(model, input_kind="waveform", grid=TFGrid(8000, n_fft=256, hop_length=64), input_layout="bcn",
                     output_kind="sources", n_sources=model.n_sources, name=name, info=dict(info or {}))


@lru_cache(maxsize=4)
def _items(dataset: str, split: str, n: int):
    from model_zoo.data import separation_set

    return separation_set(dataset, split, n=n)


def mixture_example(name: str, dataset: str, i: int, split: str = "test"):
    """Mixture ``i`` of ``dataset``'s ``split``, with its exact sources, as an AudioExample."""
    from probe.audio import AudioExample

    item = _items(dataset, split, int(i) + 1)[int(i)]
    return AudioExample(np.asarray(item["mixture"], np.float32), int(item["sr"]), name=f"{name}:{dataset}:{split}:{i}",
                        sources=np.asarray(item["sources"], np.float32), source_names=list(item["source_names"]),
                        info={"split": split, "dataset": dataset, **dict(item.get("meta", {}))})
