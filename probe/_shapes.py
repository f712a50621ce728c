"""Shape probing: what every layer's axes mean, with exact seconds per step and frame offsets.

A model is run on quiet noise of several lengths (forward passes in eval mode under
``no_grad``, every module's train/eval flag restored, hooks removed in ``finally``):

* **minimum length** — the shortest input the model accepts, found by doubling and then
  bisection, so that a model with a 1.6 s analysis window is probed from 1.6 s up;
* **time axis** — the axis of a layer's output that grows with the input;
* **hop, exactly** — a layer's time length ``L(T)`` is a step function of the input length
  ``T`` (in samples, or in STFT frames for spectral inputs). Bisection finds three
  consecutive steps; when they are evenly spaced (``d`` input steps apart, ``j`` output
  steps per jump) the hop is the rational ``d / j`` — no rounding, whatever the hop;
* **offset** — the centre of step ``k``'s receptive field, measured as the support of the
  gradient of that step with respect to the input, minus ``k · hop``. When the support
  spans the whole input (recurrent or attention layers) the offset comes from the length
  arithmetic instead: a layer with ``L(T) = floor((T - W) / hop) + 1`` sees windows of
  ``W`` steps, centred ``(W - 1) / 2`` steps after their start;
* **batch axis** — the axis that doubles with a batch of two; when that axis is also the
  time axis, frames were folded into the batch and the axis is named ``time``;
* **frequency axis** (spectral inputs) — an axis is ``freq``/``mel`` only when a change
  in one input bin changes the layer mostly at that same index (a shape that merely
  equals the number of bins, such as an LSTM state or an MLP width, is not).

The result is cached on the :class:`~probe.adapter.ModelSpec`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

__all__ = ["probe_shapes", "preserved_mode", "LayerTime", "TimeProbe", "time_probe", "steps_to_samples"]

#: attribute set on a model (only while a shape probe runs) holding the probing threads' ids
PROBING_ATTR = "_probe_shape_probe_threads"

#: longest input (seconds of audio) tried when searching for the model's minimum length
MAX_PROBE_SECONDS = 64.0
#: extra audio (seconds, at least twice the minimum length) between the two probes that find each
#: layer's time axis: a layer whose hop is longer than this reads as clip-level (override it in [time])
SPAN_SECONDS = 1.0


@contextmanager
def preserved_mode(model):
    """Switch to eval for the duration and restore each module's own ``training`` flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, f in flags:
            m.training = f


def _tensors(obj):
    """Flatten tuples/lists/dicts/PackedSequence into tensors, in order."""
    import torch
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, PackedSequence):
        yield obj.data
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _leaf_names(obj, prefix=""):
    """Paths (``""``, ``"/1/0"`` …) of the tensors :func:`_tensors` yields, as capture names them."""
    import torch
    from torch.nn.utils.rnn import PackedSequence

    out = []

    def walk(o, p):
        if isinstance(o, (torch.Tensor, PackedSequence)):
            out.append("" if not out else p)
        elif isinstance(o, (tuple, list)):
            for i, v in enumerate(o):
                walk(v, f"{p}/{i}")
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, f"{p}/{k}")

    walk(obj, prefix)
    return out


@contextmanager
def _probing(model):
    """Mark this thread as probing so that captures already active on ``model`` ignore these forwards."""
    tid = threading.get_ident()
    probing = model.__dict__.setdefault(PROBING_ATTR, set())
    probing.add(tid)
    try:
        yield
    finally:
        probing.discard(tid)
        if not probing:
            model.__dict__.pop(PROBING_ATTR, None)


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the layer of interest has run."""


def _noise(n_samples: int, batch: int = 1, seed: int = 0, scale: float = 0.01) -> np.ndarray:
    y = np.random.default_rng(seed).standard_normal((batch, int(n_samples))).astype(np.float32) * scale
    return y[0] if batch == 1 else y


def run_hooked(spec, x, on_output, names=None, *, grad: bool = False, on_input=None, stop_after=None):
    """Run ``spec.model`` on the model-ready tensor ``x`` with a forward hook on each module.

    ``on_output(name, call, inputs, output)`` is called for every call of a hooked module.
    ``stop_after`` names a module after whose first call the forward is abandoned (the
    rest of the model is not needed). Returns the model output (``None`` if stopped).
    """
    import torch

    model = spec.model
    wanted = dict(model.named_modules()) if names is None else {n: model.get_submodule(n) for n in names}
    calls: dict = {}
    handles = []

    def make(name):
        def hook(mod, inp, out):
            c = calls.get(name, 0)
            calls[name] = c + 1
            on_output(name, c, inp, out)
            if stop_after is not None and name == stop_after:
                raise _Stop
        return hook

    out = None
    with _probing(model):
        try:
            for n, m in wanted.items():
                handles.append(m.register_forward_hook(make(n)))
            with torch.set_grad_enabled(grad), preserved_mode(model):
                try:
                    out = model(x)
                except _Stop:
                    out = None
        finally:
            for h in handles:
                h.remove()
    return out


def probe_shapes(spec, n_samples: int, names=None, seed: int = 0, *, batch: int = 1) -> dict:
    """Run ``spec`` on ``n_samples`` of quiet noise; return ``{name: [(in_shapes, out_shapes), ...]}``.

    One entry per call of the module (modules called twice get two).
    """
    seen: dict = {}

    def record(name, call, inp, out):
        seen.setdefault(name, []).append(([tuple(t.shape) for t in _tensors(inp)], [tuple(t.shape) for t in _tensors(out)]))

    run_hooked(spec, spec.features(_noise(n_samples, batch, seed)), record, names)
    return seen


# ---- input steps ---------------------------------------------------------------------------
def steps_to_samples(spec, steps: int) -> int:
    """Samples of audio whose model input has exactly ``steps`` time steps (samples or STFT frames)."""
    if spec.input_kind == "waveform":
        return int(steps)
    g = spec.grid
    steps = max(1, int(steps))
    return (steps - 1) * g.hop_length if g.center else g.n_fft + (steps - 1) * g.hop_length


def input_step(spec) -> Fraction:
    """Seconds per input step as an exact fraction (one sample, or one STFT hop)."""
    sr = int(spec.sample_rate)
    return Fraction(1, sr) if spec.input_kind == "waveform" else Fraction(int(spec.grid.hop_length), sr)


def input_offset(spec) -> Fraction:
    """Seconds of the centre of input step 0 (0 for samples and centred STFT frames)."""
    if spec.input_kind == "waveform" or spec.grid.center:
        return Fraction(0)
    return Fraction(int(spec.grid.n_fft), 2 * int(spec.sample_rate))


def _input_time_axis(spec) -> int:
    """Axis of the model-ready input tensor that runs along time."""
    if spec.input_kind == "waveform":
        lay = spec.input_layout or "bn"
        return lay.index("n")
    lay = spec.input_layout or "bft"
    return lay.index("t")


def _input_freq_axis(spec) -> int | None:
    if spec.input_kind == "waveform":
        return None
    lay = spec.input_layout or "bft"
    return lay.index("f")


# ---- results -------------------------------------------------------------------------------
@dataclass
class LayerTime:
    """What one tensor's axes mean.

    Attributes
    ----------
    shape : tuple
        Shape on the probe input where the axes were named.
    axes : list of str
        ``batch``, ``time``, ``freq``/``mel``, ``channel``, ``dim1``…
    time_axis : int or None
    hop : Fraction or None
        Input steps per step of this tensor's time axis (exact).
    seconds_per_step : Fraction or None
    offset : Fraction or None
        Seconds of the centre of step 0; step ``k`` lies at ``offset + k * seconds_per_step``.
    method : str
        How the hop was found: ``"exact"`` (evenly spaced length steps) or ``"estimate"``.
    offset_method : str
        ``"receptive field"`` (gradient support of one step), ``"length"`` (window from the
        length arithmetic; the layer sees the whole input) or ``""``.
    batch_folded : bool
        The batch was folded into the time axis (framed models).
    freq_local : bool
        The frequency axis was confirmed by a one-bin perturbation.
    """

    shape: tuple
    axes: list
    time_axis: int | None = None
    hop: Fraction | None = None
    seconds_per_step: Fraction | None = None
    offset: Fraction | None = None
    method: str = ""
    offset_method: str = ""
    batch_folded: bool = False
    freq_axis: int | None = None
    window: Fraction | None = None
    support: tuple | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "axes": list(self.axes), "time_axis": self.time_axis,
                "seconds_per_step": None if self.seconds_per_step is None else float(self.seconds_per_step),
                "seconds_per_step_exact": None if self.seconds_per_step is None else str(self.seconds_per_step),
                "time_offset": None if self.offset is None else float(self.offset),
                "time_offset_exact": None if self.offset is None else str(self.offset),
                "hop_input_steps": None if self.hop is None else str(self.hop),
                "method": self.method or None, "offset_method": self.offset_method or None,
                "batch_folded": self.batch_folded}


# ---- the probe -----------------------------------------------------------------------------
class TimeProbe:
    """Model-wide axis inference for one spec; forward passes are cached by input length.

    Keys are ``(module, call, side, j)``: ``side`` is ``"out"`` or ``"in"`` and ``j`` the
    position among the call's tensor leaves.
    """

    def __init__(self, spec):
        self.spec = spec
        self._shapes: dict = {}   # steps -> {key: shape} or None when the model refused the input
        self._errors: dict = {}
        self.min_steps: int | None = None
        self.results: dict | None = None
        self.order: list = []     # module names in first-call order
        self.paths: dict = {}     # (module, call, j) -> capture name suffix of that output leaf

    # -- forward passes --
    def shapes(self, steps: int, batch: int = 1):
        key = (int(steps), batch)
        if key in self._shapes:
            return self._shapes[key]
        spec = self.spec
        seen: dict = {}
        order: list = []

        def record(name, call, inp, out):
            if call == 0:
                order.append(name)
            for j, t in enumerate(_tensors(out)):
                seen[(name, call, "out", j)] = tuple(t.shape)
            if (name, call, 0) not in self.paths:
                for j, p in enumerate(_leaf_names(out)):
                    self.paths[(name, call, j)] = p
            for j, t in enumerate(_tensors(inp)):
                seen[(name, call, "in", j)] = tuple(t.shape)

        n = steps_to_samples(spec, steps)
        try:
            y = _noise(n, batch)
            x = spec.features(y)
            if x.shape[_input_time_axis(spec)] != steps:
                raise ValueError(f"input has {x.shape[_input_time_axis(spec)]} steps, expected {steps}")
            run_hooked(spec, x, record)
        except Exception as exc:  # the model refused this length: remember why
            if isinstance(exc, TypeError) and "forward()" in str(exc) and "argument" in str(exc):
                from .diagnostics import model_error_from

                err = model_error_from(exc)  # a signature no input length can satisfy: say so now
                if err is not None:
                    raise err from exc
            self._shapes[key] = None
            self._errors[key] = f"{type(exc).__name__}: {exc}"
            return None
        if batch == 1 and not self.order:
            self.order = order
        self._shapes[key] = seen
        return seen

    def length(self, key, steps: int, axis: int):
        s = self.shapes(steps)
        if s is None or key not in s or len(s[key]) <= axis:
            return None
        return s[key][axis]

    def find_min_steps(self) -> int:
        """Shortest accepted input, in input steps (doubling, then bisection)."""
        if self.min_steps is not None:
            return self.min_steps
        from .errors import CaptureError

        spec = self.spec
        cap = max(2, int(MAX_PROBE_SECONDS / float(input_step(spec))))
        lo, hi = 0, 1
        while self.shapes(hi) is None:
            lo = hi
            hi *= 2
            if hi > cap:
                last = self._errors.get((lo, 1), "")
                raise CaptureError(f"{spec.name}: the model refused every probe input up to {MAX_PROBE_SECONDS:g} s "
                                   f"(last error: {last})")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.shapes(mid) is None:
                lo = mid
            else:
                hi = mid
        self.min_steps = hi
        return hi

    # -- the whole inference --
    def run(self) -> dict:
        if self.results is not None:
            return self.results
        spec = self.spec
        t0 = self.find_min_steps()
        span = max(2 * t0, int(round(SPAN_SECONDS / float(input_step(spec)))))
        t_big = t0 + span
        a, b = self.shapes(t0), self.shapes(t_big)
        if b is None:
            b = a
        results: dict = {}
        timed = []  # (key, time_axis, rough hop)
        for key, sa in a.items():
            sb = b.get(key)
            tax = None
            if sb is not None and len(sb) == len(sa):
                changed = [i for i, (p, q) in enumerate(zip(sa, sb)) if p != q]
                if changed:
                    tax = max(changed, key=lambda i: sb[i] - sa[i])
            results[key] = LayerTime(shape=sa, axes=[], time_axis=tax)
            if tax is not None and sb[tax] > sa[tax]:
                timed.append((key, tax, Fraction(t_big - t0, sb[tax] - sa[tax])))
        self._exact_hops(timed, results, t0, t_big)
        self._offsets(results, t0)
        self._name_axes(results, t0)
        self.results = results
        return results

    def _first_rise(self, key, axis, start: int, guess: int):
        """Smallest ``T > start`` with ``L(T) > L(start)``."""
        base = self.length(key, start, axis)
        if base is None:
            return None
        lo, step = start, max(1, guess)
        hi = start + step
        while True:
            v = self.length(key, hi, axis)
            if v is None:
                return None
            if v > base:
                break
            lo, step = hi, step * 2
            hi = start + step
            if step > 1 << 22:
                return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            v = self.length(key, mid, axis)
            if v is None:
                return None
            if v > base:
                hi = mid
            else:
                lo = mid
        return hi

    def _exact_hops(self, timed, results, t0: int, t_big: int) -> None:
        step_s = input_step(self.spec)
        groups: list = []  # (rep key, axis, hop, method, window)
        for key, tax, rough in timed:
            rep = None
            for g in groups:
                gk, gax = g[0], g[1]
                if all(self._same_length(key, tax, gk, gax, t) for t in list(self._shapes)):
                    rep = g
                    break
            if rep is None:
                rep = self._hop_of(key, tax, rough, t0, t_big)
                groups.append(rep)
            _, _, hop, method, window = rep
            r = results[key]
            r.hop, r.method, r.window = hop, method, window
            r.seconds_per_step = hop * step_s

    def _same_length(self, k1, ax1, k2, ax2, tkey) -> bool:
        s = self._shapes.get(tkey)
        if s is None or tkey[1] != 1:
            return True
        a, b = s.get(k1), s.get(k2)
        if a is None or b is None:
            return a is b
        return len(a) > ax1 and len(b) > ax2 and a[ax1] == b[ax2]

    def _hop_of(self, key, tax, rough: Fraction, t0: int, t_big: int):
        guess = max(1, int(np.ceil(float(rough))))
        rises = []
        start = t0
        for _ in range(3):
            r = self._first_rise(key, tax, start, guess)
            if r is None:
                break
            rises.append(r)
            start = r
        hop, method, window = rough, "estimate", None
        if len(rises) == 3:
            d1, d2 = rises[1] - rises[0], rises[2] - rises[1]
            j1 = self.length(key, rises[1], tax) - self.length(key, rises[0], tax)
            j2 = self.length(key, rises[2], tax) - self.length(key, rises[1], tax)
            if d1 == d2 and j1 == j2 and j1 > 0:
                cand = Fraction(d1, j1)
                # the long-span count must agree with this hop to within one step
                la, lb = self.length(key, t0, tax), self.length(key, t_big, tax)
                if la is not None and lb is not None and abs((lb - la) - (t_big - t0) / cand) <= 1 + 1e-9:
                    hop, method = cand, "exact"
                    # L(T) = floor((T - W) / hop) + 1 at the first rise T = rises[0]
                    window = Fraction(rises[0]) - (self.length(key, rises[0], tax) - 1) * hop
        if method != "exact":
            hop = Fraction(rough).limit_denominator(64)
        return key, tax, hop, method, window

    def _offsets(self, results, t0: int) -> None:
        """Centre of a middle step's receptive field (gradient support), else the length window."""
        spec = self.spec
        step_s, off0 = input_step(spec), input_offset(spec)
        todo = [k for k, r in results.items() if r.hop is not None and k[2] == "out"]
        if not todo:
            return
        max_hop = max(float(results[k].hop) for k in todo)
        t_g = t0 + int(np.ceil(24 * max_hop)) + 32
        # the support must be the same, relative to its step, on two lengths: otherwise the
        # layer sees the whole input (recurrence, attention) and the length arithmetic decides
        s1, s2 = self._supports(todo, results, t_g), self._supports(todo, results, 3 * t_g)
        support = {}
        for k in todo:
            a, b = s1.get(k), s2.get(k)
            if isinstance(a, tuple) and isinstance(b, tuple):
                ra = (a[0] - a[2] * results[k].hop, a[1] - a[2] * results[k].hop)
                rb = (b[0] - b[2] * results[k].hop, b[1] - b[2] * results[k].hop)
                if ra == rb:
                    support[k] = a
        for k, r in results.items():
            if r.hop is None:
                continue
            sup = support.get(k)
            if isinstance(sup, tuple):
                first, last, kk = sup
                centre = Fraction(first + last, 2) - kk * r.hop
                r.offset, r.offset_method, r.support = off0 + centre * step_s, "receptive field", (first - kk * r.hop,
                                                                                                  last - kk * r.hop)
            elif r.window is not None:
                r.offset, r.offset_method = off0 + (r.window - 1) / 2 * step_s, "length"
            else:
                r.offset, r.offset_method = None, ""

    def _supports(self, keys, results, steps: int, seeds=(0, 1, 2)) -> dict:
        """``{key: (first, last, k)}`` input-step support of step ``k`` of each key; ``"edge"`` when it touches an end.

        The support is the union over noise draws, so that a unit silent on one draw (a ReLU
        below threshold) does not shrink it.
        """
        out: dict = {}
        for seed in seeds:
            for k, v in self._support_once(keys, results, steps, seed).items():
                if k not in out or v == "edge" or out[k] == "edge":
                    out[k] = "edge" if "edge" in (v, out.get(k)) else v
                else:
                    out[k] = (min(out[k][0], v[0]), max(out[k][1], v[1]), v[2])
        return out

    def _support_once(self, keys, results, steps: int, seed: int) -> dict:
        import torch

        spec = self.spec
        out: dict = {}
        try:
            # audio-level noise (not the shapes probe's whisper) keeps units above their biases' thresholds
            x = spec.features(_noise(steps_to_samples(spec, steps), seed=seed, scale=0.3)).detach().clone()
            x.requires_grad_(True)
        except Exception:
            return out
        tax_in = _input_time_axis(spec)
        if x.shape[tax_in] != steps:
            return out
        want = {(k[0], k[1], k[3]): k for k in keys}
        names = sorted({k[0] for k in keys})
        held: dict = {}

        def keep(name, call, inp, o):
            for j, t in enumerate(_tensors(o)):
                k = want.get((name, call, j))
                if k is not None and isinstance(t, torch.Tensor) and t.requires_grad:
                    held[k] = t

        try:
            run_hooked(spec, x, keep, names, grad=True)
        except Exception:
            return out
        gen = torch.Generator().manual_seed(seed)
        for k, t in held.items():
            r = results[k]
            tax = r.time_axis
            if tax is None or tax >= t.ndim or t.shape[tax] < 1:
                continue
            kk = t.shape[tax] // 2
            sl = t.select(tax, kk)
            w = torch.randn(sl.shape, generator=gen).to(sl.device, sl.dtype)
            try:
                (g,) = torch.autograd.grad((sl * w).sum(), x, retain_graph=True, allow_unused=True)
            except Exception:
                continue
            if g is None:
                continue
            prof = g.detach().abs().float().movedim(tax_in, -1).reshape(-1, steps).sum(0)
            nz = torch.nonzero(prof > 0).flatten()
            if nz.numel() == 0:
                continue
            first, last = int(nz[0]), int(nz[-1])
            out[k] = "edge" if first == 0 or last == steps - 1 else (first, last, kk)
        return out

    def _name_axes(self, results, t0: int) -> None:
        spec = self.spec
        # batch axis: the axis that doubles with a batch of two
        t_b = t0 + max(1, int(np.ceil(max([float(r.hop) for r in results.values() if r.hop is not None] or [1])))) * 2
        one, two = self.shapes(t_b), self.shapes(t_b, batch=2)
        freq = self._freq_axes(t_b) if spec.input_kind != "waveform" else {}
        label = "mel" if spec.input_kind == "logmel" else "freq"
        for key, r in results.items():
            axes = ["dim"] * len(r.shape)
            tax = r.time_axis
            if tax is not None:
                axes[tax] = "time"
            bax = None
            s1 = None if one is None else one.get(key)
            s2 = None if two is None else two.get(key)
            if s1 is not None and s2 is not None and len(s1) == len(s2) == len(r.shape):
                doubled = [i for i, (p, q) in enumerate(zip(s1, s2)) if q == 2 * p and p > 0]
                if doubled:
                    bax = doubled[0]
                    if bax == tax:
                        r.batch_folded, bax = True, None
            elif s1 is not None and len(s1) == len(r.shape):
                bax = next((i for i, a in enumerate(s1) if a == 1 and i != tax), None)
            if bax is not None:
                axes[bax] = "batch"
            fax = freq.get(key)
            if fax is not None and axes[fax] == "dim":
                axes[fax] = label
                r.freq_axis = fax
            n = 0
            for i in range(len(axes)):
                if axes[i] == "dim":
                    axes[i] = "channel" if n == 0 else f"dim{n}"
                    n += 1
            r.axes = axes

    def _freq_axes(self, steps: int) -> dict:
        """Axes that carry the input's frequency bins: a one-bin change stays at that index."""
        import torch

        spec = self.spec
        fax_in = _input_freq_axis(spec)
        n_bins = spec.grid.n_mels if spec.input_kind == "logmel" else spec.grid.n_freqs
        if fax_in is None or not n_bins or n_bins < 4:
            return {}
        try:
            x = spec.features(_noise(steps_to_samples(spec, steps))).detach()
        except Exception:
            return {}
        f0 = n_bins // 3
        delta = torch.zeros_like(x)
        delta.select(fax_in, f0).fill_(1.0 + float(x.std()))
        runs = []
        for xx in (x, x + delta):
            seen: dict = {}

            def keep(name, call, inp, o, seen=seen):
                for j, t in enumerate(_tensors(o)):
                    seen[(name, call, "out", j)] = t.detach().float().clone()
                for j, t in enumerate(_tensors(inp)):
                    seen[(name, call, "in", j)] = t.detach().float().clone()

            try:
                run_hooked(spec, xx, keep)
            except Exception:
                return {}
            runs.append(seen)
        out: dict = {}
        tol = max(2, n_bins // 16)
        later: list = []
        for key, t0 in runs[0].items():
            t1 = runs[1].get(key)
            if t1 is None or t1.shape != t0.shape:
                continue
            d = (t1 - t0).abs()
            for ax in range(d.ndim):
                if d.shape[ax] != n_bins:
                    continue
                prof = d.movedim(ax, 0).reshape(n_bins, -1).sum(1)
                if not torch.isfinite(prof).all() or float(prof.max()) <= 0:
                    continue
                if _local(prof, f0, tol):
                    out[key] = ax
                    break
            else:
                # not carried over from the input: maybe produced for the output's bins (a mask head)
                if key[2] == "out" and key[3] == 0 and n_bins in t0.shape:
                    later.append((key, [i for i in range(t0.ndim) if t0.shape[i] == n_bins]))
        for key, axes in later:
            for ax in axes:
                if feeds_output_bins(spec, key[0], ax, n_bins, x):
                    out[key] = ax
                    break
        return out


def _local(prof, f0: int, tol: int) -> bool:
    """A change profile over bins that peaks at ``f0`` (± ``tol``) and stands 8× above its median."""
    import torch

    if not bool(torch.isfinite(prof).all()) or float(prof.max()) <= 0:
        return False
    return abs(int(prof.argmax()) - f0) <= tol and float(prof.max()) >= 8 * float(prof.median())


def feeds_output_bins(spec, name: str, axis: int, n_bins: int, x=None) -> bool:
    """Does a change at index ``f`` of ``name``'s output (along ``axis``) reach the model output's bins mostly at ``f``?

    The model output's frequency axis is its kind's ``f`` (masks, T-F embeddings) or, for
    plain features, any axis as long as the bins.
    """
    import torch

    from .adapter import OUTPUT_LAYOUTS

    canon = OUTPUT_LAYOUTS.get(spec.output_kind)
    if canon is not None and "f" not in canon:
        return False
    if x is None:
        x = spec.features(_noise(steps_to_samples(spec, 16), scale=0.3))
    f0 = n_bins // 3
    outs = []
    for bump in (0.0, 1.0):
        def hook(mod, inp, out, bump=bump):
            if bump and isinstance(out, torch.Tensor) and out.ndim > axis and out.shape[axis] == n_bins:
                out = out.clone()
                out.select(axis, f0).add_(bump)
                return out
            return None
        h = spec.model.get_submodule(name).register_forward_hook(hook)
        try:
            with _probing(spec.model), torch.no_grad(), preserved_mode(spec.model):
                outs.append(spec.select_output(spec.model(x)).detach().double())
        except Exception:
            return False
        finally:
            h.remove()
    d = (outs[1] - outs[0]).abs()
    cands = [canon.index("f")] if canon is not None else [i for i in range(d.ndim) if d.shape[i] == n_bins]
    for fax in cands:
        if d.ndim > fax and d.shape[fax] == n_bins and _local(d.movedim(fax, 0).reshape(n_bins, -1).sum(1), f0,
                                                              max(2, n_bins // 16)):
            return True
    return False


def time_probe(spec) -> TimeProbe:
    """The spec's cached :class:`TimeProbe` (run on first use)."""
    cache = spec._axes_cache
    tp = cache.get("__time_probe__")
    if tp is None:
        tp = TimeProbe(spec)
        tp.run()
        cache["__time_probe__"] = tp
    return tp
