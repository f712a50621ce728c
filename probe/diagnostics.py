"""Degenerate input: say so, instead of printing figures that look fine.

Every pipeline passes its audio and model outputs through these checks and puts the
returned strings in its result's ``warnings`` list (shown in ``--json``, the report and
the app). Problems that make a result meaningless raise instead:

* :func:`audio_warnings` — digital silence, near-silence, stereo channels that cancel in
  the mix-down (from the facts :func:`probe.audio.load_audio` records in ``info=``);
* :func:`check_frame_length` — audio shorter than one analysis frame raises
  :class:`~probe.errors.AudioError`;
* :func:`check_finite_output` — NaN/Inf in a model output raises
  :class:`~probe.errors.ModelError`;
* :func:`model_error_from` — turns an exception raised inside a model's own ``forward``
  into a one-line :class:`~probe.errors.ModelError` (probe's own bugs stay tracebacks).
"""

from __future__ import annotations

import os
import threading
import traceback
from contextlib import contextmanager

import numpy as np

from .errors import AudioError, ModelError

__all__ = ["audio_warnings", "silence_warning", "mixdown_warning", "check_frame_length", "check_finite_output",
           "finite_outputs", "model_error_from", "input_warnings", "SILENCE_DBFS", "CANCEL_DB"]

#: Peak level (dBFS) below which audio counts as near-silent.
SILENCE_DBFS = -80.0
#: A mix-down this many dB below the mean channel energy means the channels cancel.
CANCEL_DB = -20.0


def silence_warning(y) -> str | None:
    """A warning when ``y`` is all zeros or its peak lies below :data:`SILENCE_DBFS`, else ``None``.

    Examples
    --------
    >>> silence_warning(np.zeros(16000, dtype=np.float32))
    'the audio is digital silence (all 16000 samples are zero): activations, attributions and clusters describe the model on no sound at all'
    >>> silence_warning(0.5 * np.ones(10)) is None
    True
    """
    y = np.asarray(y)
    if y.size == 0:
        return None
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        return (f"the audio is digital silence (all {y.size} samples are zero): activations, attributions and "
                "clusters describe the model on no sound at all")
    db = 20 * np.log10(peak)
    if db < SILENCE_DBFS:
        return f"the audio is near-silent (peak {db:.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS): results reflect noise-floor input"
    return None


def mixdown_warning(info: dict | None) -> str | None:
    """A warning when the mix-down to mono lost most of the channels' energy (they cancel).

    ``info`` is the dict :func:`probe.audio.load_audio` filled (``mixdown_db``, ``channels``).

    Examples
    --------
    >>> mixdown_warning({"channels": 2, "mixdown_db": -60.0})[:45]
    'the 2 channels cancel in the mix-down to mono'
    >>> mixdown_warning({"channels": 2, "mixdown_db": -3.0}) is None
    True
    """
    if not info or info.get("mixdown_db") is None:
        return None
    db = float(info["mixdown_db"])
    if db < CANCEL_DB:
        return (f"the {info.get('channels', 'several')} channels cancel in the mix-down to mono (the mix holds {db:.0f} dB "
                "of the channels' energy; opposite polarity?): analyse one channel instead")
    return None


def audio_warnings(y, sr: int | None = None, *, info: dict | None = None) -> list[str]:
    """Every warning about the analysed audio: silence and channel cancellation.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int, optional
        Unused today; accepted so callers pass the audio as one pair.
    info : dict, optional
        Facts recorded at load time (``load_audio(..., info=)``, ``AudioExample.info["load"]``).

    Returns
    -------
    list of str

    Examples
    --------
    >>> audio_warnings(np.zeros(100, dtype=np.float32), 16000)[0][:35]
    'the audio is digital silence (all 1'
    """
    out = [w for w in (silence_warning(y), mixdown_warning(info)) if w]
    if info:
        out += [str(w) for w in info.get("warnings", [])]
    return out


def input_warnings(spec, example) -> list[str]:
    """What every pipeline does first: refuse a clip shorter than one frame, return the audio's warnings.

    Parameters
    ----------
    spec : ModelSpec
    example : AudioExample or np.ndarray [shape=(n,)]
        An :class:`~probe.audio.AudioExample` carries the load-time facts (``info["load"]``).

    Returns
    -------
    list of str
        :func:`audio_warnings` of the clip.

    Examples
    --------
    >>> import torch
    >>> from probe import ModelSpec, TFGrid
    >>> spec = ModelSpec(torch.nn.Identity(), input_kind="logmag", grid=TFGrid(16000, 512, 128))
    >>> input_warnings(spec, np.zeros(16000, np.float32))[0][:28]
    'the audio is digital silence'
    """
    y = np.asarray(getattr(example, "y", example))
    sr = int(getattr(example, "sr", None) or spec.sample_rate)
    check_frame_length(y, sr, n_fft=spec.grid.n_fft)
    info = (getattr(example, "info", None) or {}).get("load")
    return audio_warnings(y, sr, info=info)


def check_frame_length(y, sr: int, *, n_fft: int, name: str = "audio") -> None:
    """Raise :class:`AudioError` when ``y`` is shorter than one analysis frame of ``n_fft`` samples.

    Examples
    --------
    >>> check_frame_length(np.zeros(10, dtype=np.float32), 16000, n_fft=512)
    Traceback (most recent call last):
    ...
    probe.errors.AudioError: audio holds 10 samples (0.6 ms), shorter than one analysis frame of the model (n_fft=512 samples = 32.0 ms at 16000 Hz)
    """
    n = int(np.asarray(y).shape[-1])
    if n < int(n_fft):
        raise AudioError(f"{name} holds {n} samples ({1000 * n / sr:.1f} ms), shorter than one analysis frame of the model "
                         f"(n_fft={int(n_fft)} samples = {1000 * n_fft / sr:.1f} ms at {sr} Hz)")


def _leaves(x):
    import torch

    if isinstance(x, torch.Tensor):
        yield "", x
    elif isinstance(x, np.ndarray):
        yield "", x
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            for p, t in _leaves(v):
                yield f"[{i}]{p}", t
    elif isinstance(x, dict):
        for k, v in x.items():
            for p, t in _leaves(v):
                yield f"[{k!r}]{p}", t


def check_finite_output(out, *, what: str = "model output") -> None:
    """Raise :class:`ModelError` when any tensor/array in ``out`` holds NaN or Inf.

    Examples
    --------
    >>> check_finite_output(np.array([0.0, np.nan]))
    Traceback (most recent call last):
    ...
    probe.errors.ModelError: the model output holds 1 NaN and 0 infinite value(s) out of 2: the model is numerically broken on this input, so no result is computed
    """
    import torch

    for path, t in _leaves(out):
        if isinstance(t, torch.Tensor):
            if not t.is_floating_point() and not t.is_complex():
                continue
            t = t.detach()
            if bool(torch.isfinite(t).all()):  # one pass in the usual case; count only when something is wrong
                continue
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            size = t.numel()
        else:
            if not np.issubdtype(t.dtype, np.inexact) or np.isfinite(t).all():
                continue
            n_nan, n_inf, size = int(np.isnan(t).sum()), int(np.isinf(t).sum()), t.size
        if n_nan or n_inf:
            raise ModelError(f"the {what}{path} holds {n_nan} NaN and {n_inf} infinite value(s) out of {size}: "
                             "the model is numerically broken on this input, so no result is computed")


@contextmanager
def finite_outputs(model, *, what: str = "model output"):
    """Within the block, a forward of ``model`` (from this thread) whose output holds NaN/Inf raises :class:`ModelError`.

    A forward hook on the model's root module, removed on exit; forwards from other
    threads sharing the model are not checked (nor disturbed).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 2)
    >>> with finite_outputs(net):
    ...     net(torch.tensor([[float("nan"), 0.0]]))
    Traceback (most recent call last):
    ...
    probe.errors.ModelError: the model output holds 2 NaN and 0 infinite value(s) out of 2: the model is numerically broken on this input, so no result is computed
    """
    owner = threading.get_ident()

    def hook(module, inputs, output):
        if threading.get_ident() == owner:
            check_finite_output(output, what=what)

    handle = model.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


def _frame_kind(filename: str) -> str:
    """``"probe"`` for probe's own code, ``"lib"`` for installed libraries and the standard library, else ``"user"``."""
    import sysconfig

    f = os.path.abspath(filename)
    if f.startswith(os.path.dirname(os.path.abspath(__file__)) + os.sep):
        return "probe"
    libs = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    if filename.startswith("<frozen") or any(f.startswith(os.path.abspath(r) + os.sep) for r in libs):
        return "lib"
    return "user"


def model_error_from(exc: BaseException) -> ModelError | None:
    """A one-line :class:`ModelError` when ``exc`` was raised inside a model's own ``forward``, else ``None``.

    The traceback decides: the exception counts as the model's when the innermost frame
    outside installed libraries is a user's ``forward`` (or code it calls), or when probe
    called a module and the error rose inside that call without passing through probe's
    own code again (a model installed as a library, a bare torch layer). Errors in probe's
    own code, hooks included, return ``None``: they are bugs and keep their traceback.

    Examples
    --------
    >>> import torch
    >>> class Broken(torch.nn.Module):
    ...     def forward(self, x):
    ...         raise ValueError("expected 3 channels")
    >>> try:
    ...     Broken()(torch.zeros(1))
    ... except ValueError as exc:
    ...     print(model_error_from(exc))
    the model's forward raised ValueError in Broken.forward (<doctest ...>:3): expected 3 channels
    """
    if isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)):
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    kinds = [_frame_kind(fr.filename) for fr in frames]
    # the innermost frame that is not a library decides whose error it is
    decider = next((k for k in reversed(kinds) if k != "lib"), None)
    where = None
    if decider == "user":
        for fr, kind in zip(frames, kinds):
            if fr.name == "forward" and kind == "user":
                where = fr
    elif decider == "probe":
        # probe called a module (a model installed as a library, or a bare torch layer) and it raised
        # inside; a probe hook raising would itself be the innermost probe frame, below any module call
        last = max(i for i, k in enumerate(kinds) if k == "probe")
        deeper = list(zip(frames[last + 1:], kinds[last + 1:]))
        if any(fr.name in ("_call_impl", "_wrapped_call_impl") for fr, _ in deeper):
            forwards = [fr for fr, _ in deeper if fr.name == "forward"]
            where = forwards[-1] if forwards else None
            if where is None and isinstance(exc, TypeError) and "forward()" in str(exc):
                # the call itself failed (forward was never entered): a signature that takes more than the input
                msg = (str(exc).strip().splitlines() or [""])[0][:300]
                return ModelError(f"the model's forward cannot be called with the input alone ({msg}); probe calls "
                                  "forward(x) with one tensor: wrap the model in a module whose forward(x) supplies "
                                  "the other arguments (e.g. lengths), and point the spec's factory at it")
    if where is None:
        return None
    owner = ""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "forward" and tb.tb_frame.f_code.co_filename == where.filename:
            self_obj = tb.tb_frame.f_locals.get("self")
            if self_obj is not None:
                owner = type(self_obj).__name__ + "."
        tb = tb.tb_next
    msg = (str(exc).strip().splitlines() or [""])[0]
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return ModelError(f"the model's forward raised {type(exc).__name__} in {owner}forward "
                      f"({os.path.basename(where.filename)}:{where.lineno}): {msg or '(no message)'}")
