"""What probe inferred about a model, in one place: input, grid, and every layer's axes, time step and offset.

:func:`inspect_model` runs the shape probe (:mod:`probe._shapes`) and filter-bank discovery
(:func:`probe.filterbank.discover`) and lists, for every module, its output shapes, axis
names, seconds per step (exact fraction and float), the centre of step 0 in seconds,
how each was found, and whether the module is a filter bank and why — so a user can see
what probe will assume and correct it (``[time]`` in the spec, ``--seconds-per-step`` /
``--time-offset`` on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._base import Result, jsonable, locked

__all__ = ["InspectOptions", "ModelInspection", "inspect_model"]


@dataclass(frozen=True)
class InspectOptions:
    """Options of :func:`inspect_model`.

    Attributes
    ----------
    banks : bool
        Also run filter-bank discovery (impulse responses of linear front ends); off, the
        listing only has axes and times.
    """

    banks: bool = True


@dataclass
class ModelInspection(Result):
    """Result of :func:`inspect_model`.

    Attributes
    ----------
    model : str
    input : dict
        ``kind``, ``layout``, ``sample_rate``, the grid, the shortest input the model accepts
        (``min_seconds``) and the seconds of one input step.
    layers : list of dict
        One entry per module output (``name`` is the capture key): ``module``, ``type``,
        ``shape`` (on ``input["shapes_for_seconds"]`` of audio), ``axes``, ``time_axis``, ``seconds_per_step`` (+ ``_exact`` fraction),
        ``time_offset`` (+ ``_exact``), ``time_source`` (``inferred`` / ``spec`` / ``given``),
        ``method`` / ``offset_method`` and ``filter_bank`` with ``filter_bank_why``.
    banks : dict
        ``{module: {axis, role, n_filters, effective}}``.
    overrides : dict
        The spec's ``[time]`` table as applied.
    """

    model: str
    input: dict
    layers: list
    banks: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return jsonable({"model": self.model, "input": self.input, "layers": self.layers, "banks": self.banks,
                         "time_overrides": self.overrides, "warnings": self.warnings})


def _key_name(tp, module: str, call: int, j: int) -> str:
    # the names capture gives records: parts of tuple outputs as /i/j, extra calls as @k
    return module + tp.paths.get((module, call, j), f"/{j}" if j else "") + (f"@{call}" if call else "")


def inspect_model(spec, options: InspectOptions | None = None, *, lock=None) -> ModelInspection:
    """Describe what probe infers for ``spec``.

    Parameters
    ----------
    spec : ModelSpec
    options : InspectOptions, optional
    lock : context manager, optional
        Held while the model runs (a model shared between threads).

    Returns
    -------
    ModelInspection

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 400, stride=160), torch.nn.ReLU())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> res = inspect_model(spec)
    >>> layer = res.layers[0]
    >>> layer["name"], layer["axes"], layer["seconds_per_step_exact"], layer["time_offset_exact"]
    ('0', ['batch', 'channel', 'time'], '1/100', '399/32000')
    >>> layer["filter_bank"], res.input["min_seconds"]
    (True, 0.025)
    """
    from .._shapes import input_step, steps_to_samples, time_probe
    from ..hooks import _spec_time

    options = options or InspectOptions()
    warnings: list = []
    with locked(lock):
        tp = time_probe(spec)
        banks, why = ({}, {})
        if options.banks:
            from ..filterbank import discover

            try:
                banks, why = discover(spec)
            except Exception as exc:  # discovery is a help, the listing must still come
                warnings.append(f"filter-bank discovery failed: {type(exc).__name__}: {exc}")
    modules = dict(spec.model.named_modules())
    step = input_step(spec)
    g = spec.grid.to_dict()
    inp = {"kind": spec.input_kind, "layout": spec.input_layout, **g,
           "input_step_seconds": float(step), "input_step_seconds_exact": str(step),
           "min_steps": tp.min_steps,
           "min_seconds": round(steps_to_samples(spec, tp.min_steps) / spec.sample_rate, 6)}
    # shapes as on one second of audio (or the shortest accepted input, if longer)
    show = max(tp.min_steps, int(round(1.0 / float(step))))
    with locked(lock):
        shown = tp.shapes(show) or {}
    inp["shapes_for_seconds"] = round(steps_to_samples(spec, show) / spec.sample_rate, 6)
    outs = [(k, r) for k, r in tp.results.items() if k[2] == "out" and k[0]]
    order = {n: i for i, n in enumerate(tp.order)}
    outs.sort(key=lambda kr: (order.get(kr[0][0], 1 << 30), kr[0][1], kr[0][3]))
    layers = []
    source = (spec.time or {}).get("source", "spec")
    for (name, call, _, j), r in outs:
        mod = modules.get(name)
        d = r.to_dict()
        entry = {"name": _key_name(tp, name, call, j), "module": name, "type": type(mod).__name__ if mod is not None else None,
                 **d, "time_source": "inferred" if r.seconds_per_step is not None else None}
        if shown.get((name, call, "out", j)) is not None:
            entry["shape"] = list(shown[(name, call, "out", j)])
        given = _spec_time(spec, name)
        if entry["time_axis"] is not None or given.get("time_axis") is not None:
            if given.get("time_axis") is not None:
                entry["time_axis"] = int(given["time_axis"]) % len(r.shape)
                entry["axes"] = ["channel" if a == "time" else a for a in entry["axes"]]
                entry["axes"][entry["time_axis"]] = "time"
            for k_spec, k_out in (("seconds_per_step", "seconds_per_step"), ("offset", "time_offset")):
                if given.get(k_spec) is not None:
                    entry[k_out], entry[k_out + "_exact"], entry["time_source"] = float(given[k_spec]), None, source
        if j == 0 and call == 0:
            entry["filter_bank"] = name in banks
            entry["filter_bank_why"] = why.get(name, "no parameters of its own" if mod is not None and
                                               not any(True for _ in mod.parameters(recurse=False)) else None)
        if r.time_axis is None and entry["time_source"] is None:
            entry["time_note"] = "no axis grows with the input: clip-level (or a hop longer than the probe span)"
        layers.append(entry)
    never = [n for n in modules if n and n not in order]
    for n in never:
        layers.append({"name": n, "module": n, "type": type(modules[n]).__name__, "shape": None, "axes": None,
                       "time_axis": None, "note": "not called on the probe input"})
    bank_info = {k: {"axis": b.axis, "role": b.role, "n_filters": b.n_filters, "shape": list(b.weights.shape),
                     "sample_rate": b.sample_rate, "stride": b.stride, "effective": bool(b.extra.get("effective"))}
                 for k, b in banks.items()}
    inexact = [e["name"] for e in layers if e.get("method") == "estimate"]
    if inexact:
        warnings.append(f"seconds per step estimated, not exact, for {', '.join(inexact[:6])}: "
                        "give [time] seconds_per_step in the spec or --seconds-per-step")
    return ModelInspection(model=spec.name, input=inp, layers=layers, banks=bank_info,
                           overrides=dict(spec.time or {}), warnings=warnings)
