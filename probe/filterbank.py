"""Learned filter banks: find the layers whose kernels span waveform samples or frequency bins.

:func:`filters` walks a model and returns a :class:`FilterBank` for every layer whose
kernels lie on a physical axis, with their sample rate, stride and axis meaning:

* **waveform models** — any layer with its own parameters that sees waveform samples
  (the whole signal, or frames cut from it by ``unfold``/reshapes, batch-folded or not)
  and is linear in them: a ``Conv1d`` front end, a per-frame ``Conv2d`` with ``(k, 1)``
  kernels, a ``Linear`` on frames, or a parametric front end that builds its kernels in
  ``forward`` (SincNet's band-pass kernels from learnable band edges, Gabor filters). Their
  **effective kernels** are measured from the layer's response to unit impulses, so
  generated kernels are analysed like stored ones (and equal the stored weights where
  there are any). A ``ConvTranspose1d`` back to samples is a synthesis bank.
* **spectral models** — a ``Linear``/``Conv1d``/``Conv2d`` is a frequency (or
  spectro-temporal) bank only when the shape probe shows that its input *is* the spec's
  frequency axis (a one-bin change in the input stays at that index), not merely when a
  width equals the number of bins.

:func:`discover` also says why every parametrised layer is or is not a bank (shown by
``probe inspect``); ``filters(spec, layers=[NAME], axis="samples"|"bins")`` forces a layer
in. The response analysis lives in :mod:`probe.analyze.filters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ._shapes import _Stop, _tensors, input_step, run_hooked, steps_to_samples, time_probe
from .errors import AnalysisError, LayerNotFoundError, SpecError

__all__ = ["FilterBank", "filters", "discover", "effective_kernels"]

#: axis meaning of a bank's kernels
AXES = ("samples", "frequency", "spectrotemporal")


@dataclass
class FilterBank:
    """Kernels of one layer, with their physical axis.

    Attributes
    ----------
    name : str
        Module path of the layer (``"encoder"``, ``"front.0"``).
    weights : np.ndarray
        ``axis="samples"``: ``(n_filters, n_taps)`` impulse responses at ``sample_rate``
        (multi-channel input kernels are kept as ``(n_filters, in_channels, n_taps)``).
        ``axis="frequency"``: ``(n_filters, n_bins)`` profiles over ``freqs_hz``
        (or ``(n_filters, n_bins, n_taps)`` when the kernel also spans frames).
        ``axis="spectrotemporal"``: ``(n_filters, in_channels, k_f, k_t)``.
    axis : {"samples", "frequency", "spectrotemporal"}
    sample_rate : int
        Rate of the waveform the layer sees (or of the audio behind the spectrogram).
    stride : int
        Hop of the layer along its time axis, in its own steps.
    role : {"analysis", "synthesis"}
        ``synthesis`` for decoders (ConvTranspose1d to samples, Linear to bins).
    freqs_hz : np.ndarray, optional
        Hz of each bin for frequency kernels.
    module_type : str
    """

    name: str
    weights: np.ndarray = field(repr=False)
    axis: str
    sample_rate: int
    stride: int = 1
    role: str = "analysis"
    freqs_hz: np.ndarray | None = field(default=None, repr=False)
    module_type: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.axis not in AXES:
            raise SpecError(f"unknown filter axis {self.axis!r}; known: {', '.join(AXES)}")
        self.weights = np.asarray(self.weights, dtype=np.float32)

    @property
    def n_filters(self) -> int:
        return int(self.weights.shape[0])

    @property
    def kernels(self) -> np.ndarray:
        """Kernels as ``(n_filters, n_taps_or_bins)``: a single input channel is squeezed, several are summed
        only for display (the analyzers use :attr:`weights`)."""
        w = self.weights
        if self.axis == "samples" and w.ndim == 3:
            return w[:, 0] if w.shape[1] == 1 else w.sum(1)
        if self.axis == "frequency" and w.ndim == 3:
            return w.sum(-1)
        return w

    def to_dict(self) -> dict:
        return {"name": self.name, "axis": self.axis, "n_filters": self.n_filters, "shape": list(self.weights.shape),
                "sample_rate": self.sample_rate, "stride": self.stride, "role": self.role, "module_type": self.module_type}


def filters(spec, *, layers=None, axis: str | None = None, sample_rate: float | None = None,
            n_probe_seconds: float | None = None) -> dict:
    """Filter banks of a model, keyed by module path, in module order.

    Parameters
    ----------
    spec : ModelSpec
        The model and its input meaning; shape probes tell which layers see waveform
        samples or frequency bins (see :mod:`probe._shapes`).
    layers : str or list of str, optional
        Only these layers. With ``axis`` they are forced in even when discovery does not
        find them; without, a named layer that is not a bank raises
        :class:`~probe.errors.LayerNotFoundError` saying why.
    axis : {"samples", "bins"}, optional
        How to read a forced layer's kernels: along samples (effective kernels when the
        layer is linear in the waveform, else its stored weights' last axis) or along the
        spec's frequency bins (stored weights whose input width is the number of bins).
    sample_rate : float, optional
        Rate of a forced ``samples`` layer's taps; default: the rate its input runs at
        (from the shape probe), else the spec's sample rate.
    n_probe_seconds : float, optional
        Ignored (kept for callers of the earlier signature); probe lengths now start from
        the model's minimum accepted length.

    Returns
    -------
    dict of str → FilterBank

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 32, stride=16), torch.nn.ReLU(), torch.nn.Conv1d(8, 4, 3))
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> {k: (v.axis, v.weights.shape) for k, v in filters(spec).items()}
    {'0': ('samples', (8, 1, 32))}
    """
    if isinstance(layers, str):
        layers = [layers]
    if axis is not None and axis not in ("samples", "bins"):
        raise SpecError(f"axis must be 'samples' or 'bins', given {axis!r}")
    if axis is not None and not layers:
        raise SpecError("axis= forces named layers in; give layers=[NAME]")
    if layers and axis is not None:
        names = dict(spec.model.named_modules())
        out = {}
        for name in layers:
            if name not in names or not name:
                _unknown_layer(spec, name)
            out[name] = _forced(spec, name, axis, sample_rate)
        return out
    banks, why = discover(spec)
    if not layers:
        return banks
    out = {}
    for name in layers:
        if name not in banks:
            if name not in dict(spec.model.named_modules()) or not name:
                _unknown_layer(spec, name)
            raise LayerNotFoundError(f"layer {name!r} is not a filter bank: {why.get(name, 'it holds no kernels')}; "
                                     "force it with axis='samples' or axis='bins' (CLI: --layer NAME --axis ...)")
        out[name] = banks[name]
    return out


def _unknown_layer(spec, name):
    import difflib

    names = [n for n, _ in spec.model.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    raise LayerNotFoundError(f"no layer named {name!r} in {spec.name}" +
                             (f"; did you mean {', '.join(map(repr, close))}?" if close else f"; layers: {', '.join(names[:12])}"))


# ---- discovery -------------------------------------------------------------------------
def _norm_types():
    import torch.nn as nn

    return (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _probe_len(tp) -> int:
    hops = [float(r.hop) for r in tp.results.values() if r.hop is not None]
    return tp.min_steps + int(np.ceil(4 * max(hops or [1.0]))) + 16


def _first_calls(spec, x, names=None, stop_after=None) -> dict:
    """``{name: (inputs, outputs)}`` of each module's first call on ``x`` (detached tensors)."""
    seen: dict = {}

    def keep(name, call, inp, out):
        if call == 0:
            seen[name] = ([t.detach() for t in _tensors(inp)], [t.detach() for t in _tensors(out)])

    run_hooked(spec, x, keep, names, stop_after=stop_after)
    return seen


def discover(spec) -> tuple[dict, dict]:
    """``(banks, why)``: the filter banks, and for every layer with parameters why it is or is not one."""
    import torch
    import torch.nn as nn

    key = None
    tp = time_probe(spec)
    res = tp.results
    steps = _probe_len(tp)
    n = steps_to_samples(spec, steps)
    sr = spec.sample_rate
    waveform = spec.input_kind == "waveform"
    modules = dict(spec.model.named_modules())
    order = [m for m in tp.order if m in modules]
    banks: dict = {}
    why: dict = {}
    with torch.no_grad():
        rng = np.random.default_rng(1)
        y = rng.standard_normal(n).astype(np.float32) * 0.1
        x = spec.features(y)
        calls = _first_calls(spec, x)
    params = [name for name in order if name and any(True for _ in modules[name].parameters(recurse=False))]
    if waveform:
        samples = torch.cat([x.detach().flatten().cpu(), torch.zeros(1)])
        seeing = []
        for name in params:
            mod = modules[name]
            ins, outs = calls.get(name, ([], []))
            if isinstance(mod, _norm_types()):
                why[name] = "a normalisation layer, not a filter"
                continue
            if isinstance(mod, nn.ConvTranspose1d) and outs and abs(outs[0].shape[-1] - n) <= mod.kernel_size[0]:
                W = mod.weight.detach().cpu().float().numpy()
                banks[name] = FilterBank(name, W.transpose(1, 0, 2)[0] if W.shape[1] == 1 else W, "samples", sr,
                                         int(mod.stride[0]), "synthesis", module_type=type(mod).__name__)
                why[name] = "transposed convolution back to waveform samples: a synthesis bank (stored kernels)"
                continue
            if not ins or not outs:
                why[name] = "not called on the probe input"
                continue
            if isinstance(mod, nn.Conv1d) and ins[0].ndim == 3 and ins[0].shape[-1] == n:
                # the whole waveform (perhaps normalised first, which an impulse probe cannot see through)
                W = mod.weight.detach().cpu().float().numpy()
                banks[name] = FilterBank(name, W, "samples", sr, int(mod.stride[0]), "analysis", module_type=type(mod).__name__)
                why[name] = "Conv1d over the whole waveform: an analysis bank (stored kernels)"
                continue
            if not bool(torch.isin(ins[0].flatten().cpu(), samples).all()):
                why[name] = "its input is not waveform samples (it follows other processing)"
                continue
            r = res.get((name, 0, "out", 0))
            if r is None or r.time_axis is None:
                why[name] = "sees waveform samples but its output has no time axis"
                continue
            seeing.append(name)
        linear = _affine(spec, seeing, n) if seeing else {}
        for name in seeing:
            mod = modules[name]
            if not linear.get(name):
                why[name] = "sees waveform samples but is not linear in them (no kernels to measure)"
                continue
            ins = calls[name][0]
            r = res[(name, 0, "out", 0)]
            stride = int(r.hop) if r.hop is not None and r.hop.denominator == 1 else int(getattr(mod, "stride", [1])[0])
            K, meta = effective_kernels(spec, name, _checked=True)
            banks[name] = FilterBank(name, K, "samples", sr, stride, "analysis", module_type=type(mod).__name__,
                                     extra={"effective": True, **meta})
            framed = r.batch_folded or (ins[0].ndim >= 2 and ins[0].shape[-1] != n)
            why[name] = ("linear in waveform samples" + (" cut into frames" if framed else "") +
                         "; effective kernels measured from its impulse responses")
        return _done(spec, key, banks, why, order)
    # spectral inputs: kernels over the frequency axis, confirmed by the shape probe
    if spec.input_kind == "logmel":
        n_bins, freqs = int(spec.grid.n_mels), spec.grid.mel_frequencies()
    else:
        n_bins, freqs = spec.grid.n_freqs, spec.grid.bin_frequencies()
    for name in params:
        mod = modules[name]
        kind = type(mod).__name__
        rin = res.get((name, 0, "in", 0))
        fin = None if rin is None else rin.freq_axis
        nd = len(rin.shape) if rin is not None else 0
        w = getattr(mod, "weight", None)
        if isinstance(mod, _norm_types()):
            why[name] = "a normalisation layer, not a filter"
        elif w is None:
            why[name] = "holds no weight tensor"
        elif isinstance(mod, nn.Linear) and mod.in_features == n_bins and fin is not None and fin == nd - 1:
            banks[name] = FilterBank(name, w.detach().cpu().float().numpy(), "frequency", sr, 1, "analysis", freqs,
                                     module_type=kind)
            why[name] = f"Linear whose input's last axis is the {n_bins} frequency bins (confirmed by a one-bin probe)"
        elif isinstance(mod, nn.Conv1d) and mod.in_channels == n_bins and fin == 1:
            banks[name] = FilterBank(name, w.detach().cpu().float().numpy(), "frequency", sr, int(mod.stride[0]),
                                     "analysis", freqs, module_type=kind)
            why[name] = f"Conv1d whose input channels are the {n_bins} frequency bins"
        elif isinstance(mod, nn.Conv2d) and fin is not None and fin - nd in (-2, -1) and rin.time_axis is not None \
                and rin.time_axis - nd in (-2, -1):
            W = w.detach().cpu().float().numpy()
            fa = fin - nd
            banks[name] = FilterBank(name, W if fa == -2 else W.transpose(0, 1, 3, 2), "spectrotemporal", sr,
                                     int(mod.stride[-1 if fa == -2 else 0]), "analysis", freqs, module_type=kind)
            why[name] = "Conv2d over the frequency and time axes of the input spectrogram"
        elif isinstance(mod, nn.Linear) and mod.out_features == n_bins and _feeds_bins(spec, name, n_bins):
            banks[name] = FilterBank(name, w.detach().cpu().float().numpy().T.copy(), "frequency", sr, 1, "synthesis",
                                     freqs, module_type=kind)
            why[name] = f"Linear whose {n_bins} outputs become the model output's frequency bins: a synthesis bank"
        else:
            width = getattr(mod, "in_features", None) or getattr(mod, "in_channels", None)
            if n_bins in (width, getattr(mod, "out_features", None)):
                why[name] = (f"its input is not the frequency axis: a width equals the {n_bins} bins, but a one-bin "
                             "change does not stay at its bin")
            else:
                why[name] = "its input is not the frequency axis (a one-bin change does not stay at its bin)"
    return _done(spec, key, banks, why, order)


def _done(spec, key, banks, why, order):
    return {k: banks[k] for k in order if k in banks}, why


def _affine(spec, names, n) -> dict:
    """Which of ``names`` are affine in the model input: ``f(a) + f(b) - f(0) == f(a + b)``."""
    import torch

    rng = np.random.default_rng(2)
    ya, yb = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(2))
    outs = []
    with torch.no_grad():
        for y in (np.zeros(n, np.float32), ya, yb, ya + yb):
            try:
                calls = _first_calls(spec, spec.features(y), names)
            except Exception:
                return {}
            outs.append({k: v[1][0].double() for k, v in calls.items() if v[1]})
    ok = {}
    for name in names:
        try:
            z, a, b, ab = (o[name] for o in outs)
        except KeyError:
            continue
        if a.shape != ab.shape:
            continue
        lhs, rhs = ab - z, (a - z) + (b - z)
        ok[name] = bool(torch.linalg.vector_norm(lhs - rhs) <= 1e-4 * (torch.linalg.vector_norm(rhs) + 1e-12))
    return ok


def effective_kernels(spec, name: str, *, _checked: bool = False) -> tuple[np.ndarray, dict]:
    """Kernels of a layer that is linear in the waveform, measured from its impulse responses.

    One output step in the middle of the layer's time axis is followed (every channel, the
    middle index of any other axis); a unit impulse is put at each input sample inside
    that step's receptive field and the layer's response, less its response to silence,
    is that sample's tap. For a ``Conv1d`` the result equals the stored weights; for a
    front end that builds its kernels in ``forward`` it is the only way to see them.

    Returns
    -------
    kernels : np.ndarray, shape (n_filters, n_taps)
    meta : dict
        ``first_tap``: input sample of tap 0 relative to the step's start (``k * hop``).

    Raises
    ------
    AnalysisError
        The layer is not linear in the waveform or has no time axis.
    """
    import torch

    if spec.input_kind != "waveform":
        raise AnalysisError(f"effective kernels need a waveform model; {spec.name} takes {spec.input_kind!r}")
    tp = time_probe(spec)
    r = tp.results.get((name, 0, "out", 0))
    if r is None or r.time_axis is None:
        raise AnalysisError(f"layer {name!r} of {spec.name} has no time axis: no kernels to measure")
    from ._shapes import _input_time_axis

    tax_in = _input_time_axis(spec)
    steps = _probe_len(tp)
    for _ in range(8):  # lengthen the probe until the followed step's receptive field lies inside it
        n = steps_to_samples(spec, steps)
        got = _unit_support(spec, name, r, n, tax_in)
        if got is not None and got[0] > 0 and got[1] < n - 1:
            break
        steps *= 4
    if got is None:
        raise AnalysisError(f"layer {name!r} of {spec.name} does not respond to the waveform")
    a, b, idx, k = got
    if not _checked and not _affine(spec, [name], n).get(name):
        raise AnalysisError(f"layer {name!r} of {spec.name} is not linear in the waveform: no kernels to measure")
    x0 = spec.features(np.zeros(n, np.float32)).detach()
    bax = (spec.input_layout or "bn").index("b")

    def response(x, batch=1):
        got = {}

        def keep(nm, call, inp, out):
            if call == 0:
                got["o"] = next(iter(_tensors(out))).detach().double()
        run_hooked(spec, x, keep, [name], stop_after=name)
        o = got["o"]
        if batch == 1:
            return [o]
        if r.batch_folded:  # frames of item i are the i-th block of the folded axis
            size = o.shape[r.time_axis] // batch
            return [o.narrow(r.time_axis, i * size, size) for i in range(batch)]
        bi = r.axes.index("batch")
        return [o.narrow(bi, i, 1) for i in range(batch)]

    def impulse(p):
        x = x0.clone()
        x.select(tax_in, p).fill_(1.0)
        return x

    with torch.no_grad():
        o0 = response(x0)[0]
        cols = []
        positions = list(range(a, b + 1))
        batched = r.batch_folded or "batch" in r.axes
        if batched and len(positions) > 1:  # check the batched responses against single ones once
            pair = positions[:2]
            got = response(torch.cat([impulse(p) for p in pair], dim=bax), batch=2)
            batched = all(g.shape == o0.shape and torch.allclose(g, response(impulse(p))[0], rtol=1e-5, atol=1e-9)
                          for g, p in zip(got, pair))
        step = 64 if batched else 1
        for i in range(0, len(positions), step):
            chunk = positions[i:i + step]
            outs = response(torch.cat([impulse(p) for p in chunk], dim=bax), batch=len(chunk))
            cols += [(o - o0)[idx].reshape(-1) for o in outs]
    K = torch.stack(cols, dim=-1).float().cpu().numpy()
    first = Fraction(a) - k * r.hop if r.hop is not None else None
    return K, {"first_tap": None if first is None else float(first), "n_taps": int(b - a + 1)}


def _unit_support(spec, name, r, n, tax_in):
    """``(first, last, index, k)``: input samples that reach step ``k`` (the middle) of ``name`` on ``n`` samples."""
    import torch

    x = spec.features(np.random.default_rng(3).standard_normal(n).astype(np.float32) * 0.3).detach()
    x.requires_grad_(True)
    held = {}

    def hold(nm, call, inp, out):
        if call == 0:
            held["o"] = next(iter(_tensors(out)))
    run_hooked(spec, x, hold, [name], grad=True, stop_after=name)
    o = held.get("o")
    if o is None or r.time_axis >= o.ndim:
        return None
    axes, tax = r.axes, r.time_axis
    cax = axes.index("channel") if "channel" in axes else None
    idx = tuple(size // 2 if i == tax else slice(None) if i == cax else 0 if axes[i] == "batch" else size // 2
                for i, size in enumerate(o.shape))
    unit = o[idx]
    w = torch.as_tensor(np.random.default_rng(4).standard_normal(tuple(unit.shape)).astype(np.float32))
    (g,) = torch.autograd.grad((unit * w.to(unit.device, unit.dtype)).sum(), x)
    prof = g.abs().movedim(tax_in, -1).reshape(-1, g.shape[tax_in]).sum(0)
    nz = torch.nonzero(prof > 0).flatten()
    if nz.numel() == 0:
        return None
    return int(nz[0]), int(nz[-1]), idx, o.shape[tax] // 2


def _feeds_bins(spec, name: str, n_bins: int) -> bool:
    """Does a change at output bin f of ``name`` reach the model output's frequency axis mostly at bin f?"""
    from ._shapes import feeds_output_bins

    tp = time_probe(spec)
    n = steps_to_samples(spec, _probe_len(tp))
    x = spec.features(np.random.default_rng(5).standard_normal(n).astype(np.float32) * 0.01)
    return feeds_output_bins(spec, name, -1, n_bins, x)


def _forced(spec, name: str, axis: str, sample_rate) -> FilterBank:
    """A layer read as a bank because the user said so."""
    import torch.nn as nn

    mod = spec.model.get_submodule(name)
    kind = type(mod).__name__
    tp = time_probe(spec)
    rin = tp.results.get((name, 0, "in", 0))
    rout = tp.results.get((name, 0, "out", 0))
    w = getattr(mod, "weight", None)
    if axis == "samples":
        rate = sample_rate
        if rate is None and rin is not None and rin.seconds_per_step:
            rate = float(1 / rin.seconds_per_step)
        rate = rate or spec.sample_rate
        stride = int(rout.hop) if rout is not None and rout.hop is not None and rout.hop.denominator == 1 else 1
        if spec.input_kind == "waveform" and rate == spec.sample_rate:
            try:
                K, meta = effective_kernels(spec, name)
                return FilterBank(name, K, "samples", int(round(rate)), stride, "analysis", module_type=kind,
                                  extra={"effective": True, "forced": True, **meta})
            except AnalysisError:
                pass
        if w is None or w.ndim < 2:
            raise AnalysisError(f"layer {name!r} ({kind}) is not linear in the waveform and holds no kernel weights")
        W = w.detach().cpu().float().numpy()
        if isinstance(mod, nn.ConvTranspose1d):
            W = W.transpose(1, 0, 2)
        elif W.ndim == 4:  # Conv2d: the longer kernel axis runs along samples
            W = W[:, :, :, 0] if W.shape[2] >= W.shape[3] else W[:, :, 0, :]
        return FilterBank(name, W, "samples", int(round(rate)), stride, "analysis", module_type=kind,
                          extra={"forced": True})
    if spec.input_kind == "logmel":
        n_bins, freqs = int(spec.grid.n_mels), spec.grid.mel_frequencies()
    else:
        n_bins, freqs = spec.grid.n_freqs, spec.grid.bin_frequencies()
    if w is None:
        raise AnalysisError(f"layer {name!r} ({kind}) holds no kernel weights to read along frequency bins")
    W = w.detach().cpu().float().numpy()
    if isinstance(mod, nn.Linear) and W.shape[1] == n_bins:
        return FilterBank(name, W, "frequency", spec.sample_rate, 1, "analysis", freqs, module_type=kind, extra={"forced": True})
    if isinstance(mod, nn.Linear) and W.shape[0] == n_bins:
        return FilterBank(name, W.T.copy(), "frequency", spec.sample_rate, 1, "synthesis", freqs, module_type=kind,
                          extra={"forced": True})
    if W.ndim == 3 and W.shape[1] == n_bins:
        return FilterBank(name, W, "frequency", spec.sample_rate, int(getattr(mod, "stride", [1])[0]), "analysis", freqs,
                          module_type=kind, extra={"forced": True})
    if W.ndim == 4 and n_bins in W.shape[2:]:
        W = W if W.shape[2] == n_bins else W.transpose(0, 1, 3, 2)
        return FilterBank(name, W[:, :, :, W.shape[3] // 2].sum(1), "frequency", spec.sample_rate, 1, "analysis", freqs,
                          module_type=kind, extra={"forced": True})
    raise AnalysisError(f"layer {name!r} ({kind}, weight {tuple(W.shape)}) has no kernel axis of {n_bins} frequency bins")
