"""One layer's activations over seconds: which layers have a time axis, which to show first, and the heatmap."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import AnalysisError
from ._base import Result, locked

__all__ = ["ActivationOptions", "Activation", "capture_layer", "layer_names", "time_layers", "default_layer",
           "embedding_layers"]


@dataclass(frozen=True)
class ActivationOptions:
    """How a captured layer becomes a rows × time heatmap.

    Attributes
    ----------
    view : {"auto", "channels", "frequency", "all"}
        With both a channel-like and a frequency axis: ``channels`` averages over frequency,
        ``frequency`` averages over channels, ``all`` keeps every (channel, bin) row; ``auto``
        picks ``channels``.
    max_rows : int
        Rows beyond this are averaged in groups (keeps the heatmap light).
    max_steps : int
        Time steps beyond this are averaged in blocks (``times`` then hold block centres).
    """

    view: str = "auto"
    max_rows: int = 512
    max_steps: int = 2000


@dataclass
class Activation(Result):
    """One captured layer flattened to a heatmap over seconds.

    Attributes
    ----------
    name : str
    values : np.ndarray [shape=(rows, T)]
        Rows: the layer's non-time axes (per ``view``), time last.
    times : np.ndarray [shape=(T,)] or None
        Seconds of each column (``None`` when the step is unknown).
    axes : list of str
        The record's axes.
    shape : tuple
        The record's full shape.
    row_label : str
        What a row is (``channel``, ``freq``, ``channel × freq`` …).
    row_freqs : np.ndarray or None
        Hz of each row when rows are a frequency axis.
    seconds_per_step : float or None
    time_offset : float or None
        Seconds of step 0's centre (``times = time_offset + k * seconds_per_step``).
    time_source : str or None
        ``inferred`` / ``spec`` / ``given`` (see :class:`probe.hooks.Record`).
    module_type : str
    views : list of str
        The views this layer offers (empty when it has only one).
    """

    name: str
    values: np.ndarray
    times: np.ndarray | None
    axes: list
    shape: tuple
    row_label: str
    row_freqs: np.ndarray | None = None
    seconds_per_step: float | None = None
    module_type: str = ""
    views: list = field(default_factory=list)
    time_offset: float | None = None
    time_source: str | None = None

    def to_json(self) -> dict:
        return {"layer": self.name, "shape": list(self.shape), "axes": list(self.axes), "rows": int(self.values.shape[0]),
                "steps": int(self.values.shape[1]), "row_label": self.row_label,
                "seconds_per_step": self.seconds_per_step, "time_offset": self.time_offset,
                "time_source": self.time_source, "module_type": self.module_type, "views": list(self.views),
                "warnings": list(self.warnings)}


def layer_names(spec) -> list:
    """Module paths that :func:`probe.capture` can record, in module order."""
    return [n for n, _ in spec.model.named_modules() if n]


def embedding_layers(spec) -> list:
    """Layers to map: ``"output"`` first for a ``tf_embeddings`` model, then every module path."""
    head = ["output"] if spec.output_kind == "tf_embeddings" else []
    return head + layer_names(spec)


def time_layers(spec, y, *, lock=None) -> list:
    """Module paths whose output has a time axis on clip ``y`` (one capture of every layer)."""
    from ..hooks import capture_audio

    names = set(layer_names(spec))
    y = np.asarray(y, np.float32)[: 2 * spec.sample_rate]  # axes come from shape probes; a short piece is enough
    with locked(lock):
        cache = capture_audio(spec, y, "*", max_steps=4)
    out = []
    for k, rec in cache.items():
        if k in names and rec.time_axis is not None and k not in out:
            out.append(k)
    return out


def default_layer(spec, y, *, purpose: str = "activations", lock=None) -> str | None:
    """A sensible first layer to show: the last time-resolved layer before the output head.

    ``purpose="embeddings"`` returns ``"output"`` for a ``tf_embeddings`` model.
    """
    if purpose == "embeddings" and spec.output_kind == "tf_embeddings":
        return "output"
    layers = time_layers(spec, y, lock=lock)
    if not layers:
        return None
    # drop leaves of the last module (the head) and containers of everything
    top = [n for n in layers if not any(o != n and o.startswith(n + ".") for o in layers)]
    return top[-2] if len(top) >= 2 else top[-1]


def _freq_hz(spec, n: int):
    from .clip import _freq_hz as f

    return f(spec, n)


def capture_layer(spec, y, layer: str, options: ActivationOptions = ActivationOptions(), *, lock=None) -> Activation:
    """Capture ``layer`` on clip ``y`` and arrange it as rows × time.

    Parameters
    ----------
    spec : ModelSpec
    y : np.ndarray [shape=(n,)]
    layer : str
        Module path.
    options : ActivationOptions
    lock : context manager, optional
        Held around the capture (a model shared between threads).

    Raises
    ------
    LayerNotFoundError
        Unknown layer (with close matches).
    AnalysisError
        A layer whose output has no time axis.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 16, stride=8), torch.nn.ReLU())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000), input_layout="bcn")
    >>> capture_layer(spec, np.zeros(8000, np.float32), "0").values.shape
    (4, 999)
    """
    from ..analyze.model_nmf import activation_matrix
    from ..hooks import capture_audio

    y = np.asarray(y, np.float32)
    with locked(lock):
        cache = capture_audio(spec, y, [layer])
    if layer not in cache:
        raise AnalysisError(f"layer {layer!r} produced no tensor output to show")
    rec = cache[layer]
    x = rec.numpy()
    axes = list(rec.axes or [f"dim{i}" for i in range(x.ndim)])
    if "batch" in axes:
        x = np.take(x, 0, axis=axes.index("batch"))
        axes = [a for a in axes if a != "batch"] if axes.count("batch") == 1 else axes[1:]
    if "time" not in axes:
        raise AnalysisError(f"layer {layer!r} has no time axis (axes {axes}, shape {tuple(x.shape)}): nothing to show over "
                            "seconds; pick a layer before the model pools over time")
    tax = axes.index("time")
    fax = next((i for i, a in enumerate(axes) if a in ("freq", "mel")), None)
    rest = [i for i in range(x.ndim) if i not in (tax, fax)]
    views = ["channels", "frequency", "all"] if fax is not None and rest else []
    view = options.view
    if view == "auto" or (view not in views and views):
        view = "channels" if views else "auto"
    row_freqs = None
    if fax is not None and rest:
        z = x.transpose(rest + [fax, tax]).reshape(-1, x.shape[fax], x.shape[tax])  # (C, F, T)
        if view == "frequency":
            z2, row_label, row_freqs = np.abs(z).mean(0), axes[fax], _freq_hz(spec, x.shape[fax])
        elif view == "all":
            z2, row_label = z.reshape(-1, z.shape[-1]), "channel × " + axes[fax]
        else:
            z2, row_label = z.mean(1), "channel"
    elif fax is not None:
        z2, row_label, row_freqs = x.transpose([fax, tax]), axes[fax], _freq_hz(spec, x.shape[fax])
    else:  # every non-time axis flattened into rows, time last: the same matrix NMF compares with H
        z2 = activation_matrix(x, time_axis=tax, batch_axis=None) if rest else x.reshape(1, -1)
        row_label = " × ".join(axes[i] for i in rest) or "value"
    z2 = np.asarray(z2, np.float32)
    max_rows, max_steps = int(options.max_rows), int(options.max_steps)
    if z2.shape[0] > max_rows:
        g = int(np.ceil(z2.shape[0] / max_rows))
        pad = (-z2.shape[0]) % g
        z2 = np.pad(z2, ((0, pad), (0, 0)), constant_values=np.nan)
        z2 = np.nanmean(z2.reshape(-1, g, z2.shape[1]), axis=1)
        row_label += f" (groups of {g})"
        row_freqs = None
    times = rec.times() if rec.seconds_per_step else None
    if times is not None and len(times) != z2.shape[1]:
        times = None
    if z2.shape[1] > max_steps:  # average blocks of steps: the heatmap stays light, the seconds stay right
        k = int(np.ceil(z2.shape[1] / max_steps))
        n = z2.shape[1] // k * k
        z2 = z2[:, :n].reshape(z2.shape[0], -1, k).mean(-1)
        times = None if times is None else times[:n].reshape(-1, k).mean(-1)
    return Activation(name=layer, values=z2, times=times, axes=list(rec.axes or []), shape=tuple(rec.shape),
                      row_label=row_label, row_freqs=row_freqs, seconds_per_step=rec.seconds_per_step,
                      module_type=rec.module_type, views=views,
                      time_offset=(float(rec.time_offset or 0.0) if rec.seconds_per_step else None),
                      time_source=getattr(rec, "time_source", None) if rec.seconds_per_step else None)
