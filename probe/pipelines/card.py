"""What a model is: identity, input, output, size and the metrics its card records."""

from __future__ import annotations

from dataclasses import dataclass

from ._base import Result, jsonable

__all__ = ["ModelCard", "model_card", "card_metrics"]

#: the task an output kind usually serves, for models without a card
_TASKS = {"frame_probs": "detection", "clip_scores": "classification", "masks": "separation", "sources": "separation",
          "tf_embeddings": "separation (embeddings)", "features": None}


def _flatten(d, prefix=""):
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        elif isinstance(v, (int, float, str, bool)) or v is None:
            yield key, v


def card_metrics(card: dict | None) -> list:
    """``[(name, value)]`` of a model card's ``metrics`` and ``oracle`` entries, flattened (``a.b``).

    Examples
    --------
    >>> card_metrics({"metrics": {"f1": {"event": 0.5}}, "oracle": {"sdr": 9.0}})
    [('f1.event', 0.5), ('oracle.sdr', 9.0)]
    """
    if not card:
        return []
    rows = list(_flatten(card.get("metrics") or {}))
    rows += [(f"oracle.{k}", v) for k, v in _flatten(card.get("oracle") or {})]
    return rows


@dataclass
class ModelCard(Result):
    """Identity, input, output, size and card metrics of a model (read it by attribute or key)."""

    name: str
    task: str | None
    input_kind: str
    output_kind: str
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int | None
    frame_seconds: float
    classes: list
    n_sources: int | None
    params: int
    checkpoint: str | None
    metrics: list
    data: object = None
    licence: object = None

    def __getitem__(self, key):  # the card is also read as the dict it used to be
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        return key in self._names()

    def items(self):
        return [(k, getattr(self, k)) for k in self._names()]

    def to_json(self) -> dict:
        return jsonable({k: v for k, v in self.items()})


def model_card(spec) -> ModelCard:
    """What the overview shows about a model: identity, input, output, size, card metrics.

    Parameters
    ----------
    spec : ModelSpec

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> spec = ModelSpec(torch.nn.Conv1d(1, 2, 4), input_kind="waveform", grid=TFGrid(8000), input_layout="bcn")
    >>> model_card(spec).params
    10
    """
    g = spec.grid
    card = spec.info.get("card") or {}
    return ModelCard(
        name=spec.name, task=spec.info.get("task") or card.get("task") or _TASKS.get(spec.output_kind),
        input_kind=spec.input_kind, output_kind=spec.output_kind, sample_rate=int(g.sample_rate), n_fft=int(g.n_fft),
        hop_length=int(g.hop_length), n_mels=g.n_mels, frame_seconds=float(g.seconds_per_frame),
        classes=list(spec.classes or []), n_sources=spec.n_sources,
        params=int(sum(p.numel() for p in spec.model.parameters())),
        checkpoint=spec.info.get("checkpoint") or spec.info.get("spec_file"), metrics=card_metrics(card),
        data=card.get("data"), licence=card.get("licence") or card.get("license"))
