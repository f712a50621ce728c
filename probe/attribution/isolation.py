"""Running attribution on a model that other threads use at the same time.

Attribution needs the model in eval mode, attaches Captum's hooks (DeepLift, GradCAM)
and Captum's temporary ``input`` / ``output`` attributes, and draws random numbers
(GradientShap, NoiseTunnel). Done on the user's model, each of these is visible to
every other thread using it: a hook removed by one thread was another thread's capture
hook, an ``eval()`` flips a flag another thread's forward relies on.

So nothing here touches the user's model. :func:`preserved_model` yields a *shadow*: a
copy of the module tree whose parameters, buffers and tensor attributes are the very
same tensors (no memory is copied, weights are shared, nothing can drift), in eval mode.
Hooks, flags and Captum attributes land on the shadow's own module objects and vanish
with it. Parameters keep their ``requires_grad``: Captum asks autograd only for the
input's gradient (``torch.autograd.grad``), so no parameter's ``.grad`` is written.

Recurrent layers in the shadow run in training mode with ``dropout = 0`` (identical
outputs to eval mode): cuDNN computes RNN backward only in training mode, and
switching cuDNN off instead (``torch.backends.cudnn.flags``) is process-wide state.

Random draws go through :func:`seeded`, which holds a process-wide lock: Captum draws
GradientShap's baselines and NoiseTunnel's noise from numpy's and torch's global
generators, so two threads drawing at once would see each other's numbers.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["preserved_model", "shadow_model", "seeded", "RNG_LOCK"]

#: held while a method draws from the global numpy / torch generators (GradientShap, NoiseTunnel)
RNG_LOCK = threading.RLock()


def shadow_model(model):
    """An eval-mode copy of ``model``'s module tree sharing every tensor with it.

    Parameters, buffers and any tensor stored as a module attribute are the same
    objects in both (``copy.deepcopy`` with a memo that maps each to itself); only the
    ``nn.Module`` objects, their hook dictionaries and flags are new. Hooks registered
    on the user's model before the call are kept (a weight-norm pre-hook is part of the
    computation); hooks registered on the shadow never reach the user's model.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        In eval mode; recurrent layers in training mode with dropout 0 (see module notes).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5)).train()
    >>> s = shadow_model(net)
    >>> s[0].weight is net[0].weight, s.training, net.training
    (True, False, True)
    """
    import torch

    for attempt in range(20):
        try:
            shadow = _copy_tree(model)
            break
        except RuntimeError as exc:  # another thread added or removed a hook while we walked the dicts
            if "during iteration" not in str(exc) or attempt == 19:
                raise
    shadow.eval()
    for m in shadow.modules():
        if isinstance(m, torch.nn.RNNBase):
            m.dropout = 0.0
            m.training = True
    return shadow


def _copy_tree(model):
    import torch

    memo: dict = {}
    for m in model.modules():
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if t is not None:
                memo[id(t)] = t
        for k, v in list(m.__dict__.items()):
            if isinstance(v, torch.Tensor):
                memo[id(v)] = v
            elif k.startswith("_") and k.endswith("hooks") and isinstance(v, dict):
                for h in list(v.values()):  # hook callables are shared, never copied (a bound method's owner)
                    memo[id(h)] = h
    return copy.deepcopy(model, memo)


@contextmanager
def preserved_model(model):
    """Yield a shadow of ``model`` to run attribution on; ``model`` itself is never touched.

    The shadow (:func:`shadow_model`) is in eval mode and shares every weight with
    ``model``. Flags, hooks and Captum's temporary attributes set on it during the block
    stay on it, so a model shared by several threads (the app's sessions, a capture in
    another thread) sees no change at any time: its ``training`` flags, its parameters'
    ``requires_grad`` and ``.grad``, and its hooks are exactly as before, during the block
    and after it.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1).train()
    >>> with preserved_model(net) as m:
    ...     m.training, net.training
    (False, True)
    """
    shadow = shadow_model(model)
    try:
        yield shadow
    finally:
        del shadow


def _cuda_devices():
    import torch

    return [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []


@contextmanager
def seeded(seed: int, *, draws: bool = True):
    """Seed torch and numpy for Captum's draws under :data:`RNG_LOCK`, restoring both after.

    With ``draws=False`` (a method that draws nothing) this does nothing, so
    deterministic methods never wait for, or disturb, the global generators.
    """
    if not draws:
        yield
        return
    import torch

    with RNG_LOCK:
        state = np.random.get_state()
        with torch.random.fork_rng(devices=_cuda_devices()):
            torch.manual_seed(seed)
            np.random.seed(seed)
            try:
                yield
            finally:
                np.random.set_state(state)
