"""Shared helpers for the zoo's training recipes: seeding, checkpoints, model cards, resumable training.

Every recipe in :mod:`model_zoo.recipes` follows the same life cycle::

    args = parse_args(argv, name=NAME, minutes=12.0)      # --minutes --steps --smoke --resume ...
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)                   # 1 by default: the machine's cores are shared
    state = TrainState(NAME, model, optimizer)            # model_zoo/_train/NAME/ (gitignored)
    start = state.restore() if args.resume else {}        # pickle-free: safetensors + JSON
    ... train, call state.save(step=..., best=...) now and then ...
    save_checkpoint(model, paths.checkpoint, name=NAME, config=config)
    write_card(NAME, card, out_dir=paths.cards)

Nothing here unpickles: tensors travel through safetensors, everything else through JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import CheckpointError

__all__ = [
    "ZOO_DIR", "CHECKPOINT_DIR", "CARD_DIR", "TRAIN_DIR",
    "seed_everything", "limit_threads", "count_params", "save_checkpoint", "load_checkpoint", "write_card", "render_card_md",
    "TrainState", "make_parser", "parse_args", "ZooPaths", "zoo_paths", "device_description", "software_versions",
    "Timer", "synthetic_separation_set", "load_separation_set", "MixtureSampler",
    "cosine_lr", "train_loop", "previous_training", "restore_trained", "WeightAverage",
]

ZOO_DIR = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = ZOO_DIR / "checkpoints"
CARD_DIR = ZOO_DIR / "cards"
TRAIN_DIR = ZOO_DIR / "_train"


# ---- reproducibility -------------------------------------------------------------------
def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a fresh ``np.random.Generator`` on the same seed.

    Parameters
    ----------
    seed : int

    Returns
    -------
    rng : np.random.Generator
        Use it for data sampling in the recipe, so the stream is explicit and restorable.
    """
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return np.random.default_rng(seed)


def limit_threads(n: int = 1) -> None:
    """Use ``n`` threads in torch and in every BLAS/OpenMP pool (NumPy, scikit-learn, fast_bss_eval).

    The machines are shared: a BLAS pool spinning two threads on two busy cores can make
    small solves ~50x slower, and it slows everyone else down too.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(n))
    threadpool_limits(int(n))  # global: stays in force for the process


def count_params(model, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (all of them, or only those with ``requires_grad``)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def device_description() -> str:
    """One line naming the hardware training ran on (CPU model and threads, or the CUDA device)."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu ({cpu}), torch threads={torch.get_num_threads()}"


def software_versions() -> dict:
    """Versions of the libraries a checkpoint depends on (goes into cards)."""
    import sys

    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("scikit-learn", "librosa", "fast-bss-eval", "safetensors", "tinysoundfont"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - optional
            pass
    return out


class Timer:
    """Wall-clock budget: ``Timer(minutes).left()`` seconds remaining, ``.elapsed()`` seconds spent."""

    def __init__(self, minutes: float | None, *, already: float = 0.0):
        self.budget = None if minutes is None else float(minutes) * 60.0
        self.t0 = time.perf_counter() - float(already)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return float("inf") if self.budget is None else self.budget - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


# ---- checkpoints and cards live in their own modules ---------------------------------------
from .cards import _jsonable, render_card_md, write_card  # noqa: E402
from .checkpoints import _contiguous_state, load_checkpoint, save_checkpoint  # noqa: E402


# ---- weight averaging ------------------------------------------------------------------
class WeightAverage:
    """Exponential moving average of a model's floating-point state (weights and norm statistics).

    ``update`` after each optimiser step: ``avg <- decay * avg + (1 - decay) * current``; integer buffers
    (BatchNorm's step counters) are copied.  ``swap_in`` loads the average into the model and returns the live
    state, which the caller loads back.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(1, 1, bias=False)
    >>> _ = torch.nn.init.constant_(m.weight, 0.0)
    >>> avg = WeightAverage(m, 0.5)
    >>> _ = torch.nn.init.constant_(m.weight, 1.0); avg.update(m)
    >>> live = avg.swap_in(m); float(m.weight), float(live["weight"])
    (0.5, 1.0)
    """

    def __init__(self, model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model) -> None:
        import torch

        with torch.no_grad():
            for k, v in model.state_dict().items():
                a = self.state[k]
                if a.is_floating_point():
                    a.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    a.copy_(v)

    def swap_in(self, model) -> dict:
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state, strict=True)
        return live


# ---- resumable training ----------------------------------------------------------------
class TrainState:
    """Save and restore model + optimizer + scalars under ``model_zoo/_train/NAME/`` without pickle.

    Tensors go to ``state.safetensors`` (keys ``model.*`` and ``optim.<param-index>.<slot>``);
    the optimizer's param groups and the caller's scalars (step, best score, RNG state, …)
    go to ``state.json``. Writes are atomic (temp file + rename), so a kill mid-save
    leaves the previous state intact.

    Parameters
    ----------
    name : str
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer, optional
    root : path, optional
        Defaults to ``model_zoo/_train``.
    """

    def __init__(self, name: str, model, optimizer=None, *, root=None, scheduler=None, average=None):
        self.name = name
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.average = average  # an optional WeightAverage, saved and restored with the model
        self.dir = Path(root if root is not None else TRAIN_DIR) / name

    @property
    def tensor_path(self) -> Path:
        return self.dir / "state.safetensors"

    @property
    def json_path(self) -> Path:
        return self.dir / "state.json"

    def exists(self) -> bool:
        return self.tensor_path.is_file() and self.json_path.is_file()

    def save(self, **scalars) -> None:
        """Write the current state; ``scalars`` must be JSON-able (numpy scalars are converted)."""
        import torch
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v for k, v in _contiguous_state(self.model).items()}
        meta: dict[str, Any] = {"scalars": _jsonable(scalars)}
        tensors["rng.torch"] = torch.get_rng_state().clone()
        if self.average is not None:
            tensors.update({f"average.{k}": v for k, v in _contiguous_state(self.average.state).items()})
        if self.optimizer is not None:
            osd = self.optimizer.state_dict()
            slots = {}
            for pid, st in osd["state"].items():
                for slot, val in st.items():
                    if isinstance(val, torch.Tensor):
                        tensors[f"optim.{pid}.{slot}"] = val.detach().cpu().contiguous().clone()
                    else:
                        slots.setdefault(str(pid), {})[slot] = val
            meta["optim_param_groups"] = _jsonable(osd["param_groups"])
            meta["optim_scalar_slots"] = _jsonable(slots)
        if self.scheduler is not None:
            meta["scheduler"] = _jsonable({k: v for k, v in self.scheduler.state_dict().items()
                                          if isinstance(v, (int, float, str, list, bool)) or v is None})
        tmp_t = self.dir / "state.tmp.safetensors"
        tmp_j = self.dir / "state.tmp.json"
        save_file(tensors, str(tmp_t))
        tmp_j.write_text(json.dumps(meta))
        os.replace(tmp_t, self.tensor_path)
        os.replace(tmp_j, self.json_path)

    def restore(self) -> dict:
        """Load the saved state into model/optimizer; return the saved scalars (``{}`` when nothing saved)."""
        import torch
        from safetensors.torch import load_file

        if not self.exists():
            return {}
        try:
            tensors = load_file(str(self.tensor_path))
            meta = json.loads(self.json_path.read_text())
        except Exception as exc:
            raise CheckpointError(f"cannot read training state in {self.dir}: {exc}") from None
        model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        res = self.model.load_state_dict(model_sd, strict=True)
        del res
        if self.average is not None:
            avg_sd = {k[len("average."):]: v for k, v in tensors.items() if k.startswith("average.")}
            if avg_sd:
                if set(avg_sd) != set(self.average.state):
                    raise CheckpointError(f"training state in {self.dir}: its weight average does not match the model")
                for k, v in avg_sd.items():
                    self.average.state[k].copy_(v)
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        if self.optimizer is not None and "optim_param_groups" in meta:
            state: dict[int, dict] = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, pid, slot = k.split(".", 2)
                    state.setdefault(int(pid), {})[slot] = v
            for pid, slots in meta.get("optim_scalar_slots", {}).items():
                state.setdefault(int(pid), {}).update(slots)
            groups = meta["optim_param_groups"]
            for g in groups:  # JSON turned tuples into lists
                for key in ("betas",):
                    if key in g and isinstance(g[key], list):
                        g[key] = tuple(g[key])
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        if self.scheduler is not None and meta.get("scheduler"):
            sd = self.scheduler.state_dict()
            sd.update(meta["scheduler"])
            self.scheduler.load_state_dict(sd)
        return meta.get("scalars", {})

    def clear(self) -> None:
        """Delete the saved state (after a finished run)."""
        for p in (self.tensor_path, self.json_path):
            if p.exists():
                p.unlink()


# ---- recipe command line ---------------------------------------------------------------
def make_parser(name: str, *, minutes: float = 12.0, batch_size: int = 12, lr: float = 1e-3,
                segment_seconds: float = 2.0, dataset: str = "instruments", description: str | None = None
                ) -> argparse.ArgumentParser:
    """The standard recipe command line (recipes may add their own options).

    Options: ``--minutes`` (training budget), ``--steps`` (hard step cap), ``--smoke`` (2 steps on a
    tiny synthetic set, outputs in a temp folder: for tests), ``--resume`` (continue from
    ``model_zoo/_train/NAME``), ``--seed``, ``--batch-size``, ``--lr``, ``--segment-seconds``,
    ``--dataset``, ``--n-test``, ``--out-dir`` (where checkpoint + card go; default the zoo),
    ``--threads``, ``--no-eval``, ``--card-only``.
    """
    p = argparse.ArgumentParser(prog=f"model_zoo.recipes.{name}", description=description or f"Train zoo model {name}.")
    p.add_argument("--minutes", type=float, default=minutes, help="wall-clock training budget (default %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--smoke", action="store_true", help="2 steps on a tiny set; writes into a temp folder")
    p.add_argument("--resume", action="store_true", help="continue from model_zoo/_train/NAME if present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--segment-seconds", type=float, default=segment_seconds)
    p.add_argument("--dataset", default=dataset, help="separation set for training (instruments|speech)")
    p.add_argument("--n-test", type=int, default=None, help="number of test mixtures to evaluate (default all)")
    p.add_argument("--out-dir", default=None, help="folder for checkpoint + card (default: the zoo's own folders)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (keep 1: cores are shared)")
    p.add_argument("--no-eval", action="store_true", help="skip test evaluation and card")
    p.add_argument("--card-only", action="store_true",
                   help="no training: re-evaluate the saved checkpoint and re-write its card (training facts are "
                        "kept from the previous card)")
    return p


def parse_args(argv=None, *, name: str, extra=None, **defaults) -> argparse.Namespace:
    """Parse a recipe command line; ``--smoke`` forces ``steps=2`` and a temporary ``out_dir``.

    ``extra(parser)`` may add recipe-specific options.
    """
    parser = make_parser(name, **defaults)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps = 2 if args.steps is None else args.steps
        if args.out_dir is None:
            args.out_dir = tempfile.mkdtemp(prefix=f"zoo_smoke_{name}_")
    return args


def previous_training(name: str, cards_dir) -> dict:
    """Training facts of an existing card, in :func:`train_loop`'s return format (for ``--card-only``)."""
    path = Path(cards_dir) / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"--card-only needs an existing card, none at {path}")
    card = json.loads(path.read_text())
    tr = card.get("training", {})
    return {"steps": tr.get("steps"), "train_seconds": tr.get("train_seconds"),
            "best_val": tr.get("best_val_si_sdri", float("nan")),
            "best_step": int(str(tr.get("selection", "step -1")).rsplit("step", 1)[-1].strip() or -1),
            "history": card.get("val_history", []), "training_block": tr}


def restore_trained(name: str, build, paths) -> tuple:
    """``(model, config)`` from the saved checkpoint (for ``--card-only``)."""
    state, meta = load_checkpoint(paths.checkpoint)
    model = build(meta["config"])
    model.load_state_dict(state, strict=True)
    return model.eval(), meta["config"]


@dataclass
class ZooPaths:
    checkpoint: Path
    cards: Path
    train_root: Path


def zoo_paths(name: str, out_dir=None) -> ZooPaths:
    """Where a recipe writes: the zoo's ``checkpoints/`` + ``cards/`` + ``_train/``, or all inside ``out_dir``."""
    if out_dir is None:
        return ZooPaths(CHECKPOINT_DIR / f"{name}.safetensors", CARD_DIR, TRAIN_DIR)
    out = Path(out_dir)
    return ZooPaths(out / "checkpoints" / f"{name}.safetensors", out / "cards", out / "_train")


# ---- separation data -------------------------------------------------------------------
def synthetic_separation_set(split: str = "train", n: int | None = 16, *, sr: int = 8000, seconds: float = 4.0,
                             seed: int = 0) -> list[dict]:
    """Stand-in two-source set of synthetic notes: a low-register and a high-register "instrument".

    Each source is a sequence of harmonic notes (random f0, decaying envelopes, a few
    harmonics with random spectral tilt), the low one with f0 in 55–220 Hz, the high one
    in 330–1320 Hz. For smoke tests and for developing before the real data exists; items
    follow :func:`model_zoo.data.separation_set`'s layout.

    Returns
    -------
    list of dict
        ``{"mixture" (N,), "sources" (2, N), "sr", "source_names", "meta"}``.
    """
    n = 16 if n is None else int(n)
    base = {"train": 0, "val": 1, "test": 2}.get(split, 3)
    N = int(round(sr * seconds))
    t = np.arange(N) / sr
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, base, i])
        srcs = []
        for lo, hi, nh in ((55.0, 220.0, 8), (330.0, 1320.0, 4)):
            s = np.zeros(N)
            pos = 0
            while pos < N:
                dur = int(rng.uniform(0.15, 0.8) * sr)
                f0 = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
                seg = np.arange(min(dur, N - pos)) / sr
                env = np.exp(-seg * rng.uniform(1.0, 6.0)) * np.minimum(1.0, seg / 0.01)
                tilt = rng.uniform(0.5, 1.5)
                note = sum((1.0 / k ** tilt) * np.sin(2 * np.pi * f0 * k * seg + rng.uniform(0, 2 * np.pi))
                           for k in range(1, nh + 1) if f0 * k < sr / 2)
                if rng.random() > 0.15:  # some rests
                    s[pos:pos + len(seg)] += env * note
                pos += dur
            s *= 10 ** (rng.uniform(-25, -15) / 20) / (np.sqrt(np.mean(s ** 2)) + 1e-9)
            srcs.append(s)
        sources = np.stack(srcs).astype(np.float32)
        items.append({"mixture": sources.sum(0), "sources": sources, "sr": sr, "source_names": ["low", "high"],
                      "meta": {"synthetic": True, "split": split, "index": i, "t": float(t[-1])}})
    return items


def load_separation_set(dataset: str, split: str, n: int | None = None, *, sr: int = 8000, seconds: float = 4.0,
                        synthetic: bool = False) -> tuple[list[dict], dict]:
    """Items of a zoo separation set, or the synthetic stand-in.

    Parameters
    ----------
    dataset : {"instruments", "speech"}
    split : {"train", "val", "test"}
    n : int, optional
    synthetic : bool
        Use :func:`synthetic_separation_set` (smoke tests), and also when ``model_zoo.data``
        is not importable.

    Returns
    -------
    items : list of dict
    provenance : dict
        ``{"dataset", "synthetic": bool, "licences": ...}`` as far as known.
    """
    if not synthetic:
        try:
            from model_zoo.data import separation_set
        except ImportError:
            synthetic = True
    if synthetic:
        items = synthetic_separation_set(split, n if n is not None else 16, sr=sr, seconds=seconds)
        return items, {"dataset": f"synthetic-{dataset}", "synthetic": True,
                       "licences": ["synthetic harmonic notes generated in code (no third-party audio)"]}
    items = separation_set(dataset, split, n=n, sr=sr, seconds=seconds)
    prov: dict = {"dataset": dataset, "synthetic": False}
    try:
        from model_zoo import data as _data

        for attr in ("LICENCES", "PROVENANCE", "licences", "provenance"):
            if hasattr(_data, attr):
                prov["licences"] = getattr(_data, attr)
                break
    except Exception:  # pragma: no cover
        pass
    lic = set()
    for it in items:
        m = it.get("meta") or {}
        if isinstance(m.get("package"), str) and isinstance(m.get("licence"), str):
            files = ", ".join(map(str, m.get("source_files") or []))
            lic.add(f"{m['package']} ({m['licence']})" + (f": {files}" if files else "")
                    + (f"; rendered with {m['renderer']}" if m.get("renderer") else ""))
            continue
        for key in ("licence", "license", "licences"):
            v = m.get(key)
            if isinstance(v, str):
                lic.add(v)
            elif isinstance(v, (list, tuple)):
                lic.update(map(str, v))
            elif isinstance(v, dict):
                lic.update(f"{k}: {vv}" for k, vv in v.items())
    if lic and "licences" not in prov:
        prov["licences"] = sorted(lic)
    return items, prov


class MixtureSampler:
    """Random training segments with dynamic mixing (sources re-paired across items, random gains).

    Parameters
    ----------
    items : list of dict
        Each with ``"sources"`` (S, N).
    segment : int
        Samples per segment.
    rng : np.random.Generator
    remix : float
        Probability that a segment's sources come from different items (dynamic mixing);
        otherwise the item's own sources, as mixed.
    gain_db : float
        Uniform random gain of each source in ±gain_db when remixed.
    min_rms_db : float
        Retry a crop whose quietest source is this many dB below the loudest (avoids
        nearly one-source segments dominating).

    Examples
    --------
    >>> items = synthetic_separation_set("train", 4, seconds=2.0)
    >>> mix, src = MixtureSampler(items, 4000, np.random.default_rng(0)).batch(3)
    >>> mix.shape, src.shape
    ((3, 4000), (3, 2, 4000))
    """

    def __init__(self, items, segment: int, rng: np.random.Generator, *, remix: float = 0.5, gain_db: float = 5.0,
                 min_rms_db: float = -30.0):
        self.sources = [np.asarray(it["sources"], np.float32) for it in items]
        self.segment = int(segment)
        self.rng = rng
        self.remix = float(remix)
        self.gain_db = float(gain_db)
        self.min_rms_db = float(min_rms_db)
        self.n_src = self.sources[0].shape[0]

    def _crop(self, x: np.ndarray) -> np.ndarray:
        N = x.shape[-1]
        if N <= self.segment:
            return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, self.segment - N)])
        o = int(self.rng.integers(0, N - self.segment + 1))
        return x[..., o:o + self.segment]

    def one(self) -> np.ndarray:
        for _ in range(8):
            if self.rng.random() < self.remix:
                idx = self.rng.integers(0, len(self.sources), self.n_src)
                src = np.stack([self._crop(self.sources[j][s]) for s, j in enumerate(idx)])
                src = src * (10 ** (self.rng.uniform(-self.gain_db, self.gain_db, (self.n_src, 1)) / 20)).astype(np.float32)
            else:
                src = self._crop(self.sources[int(self.rng.integers(0, len(self.sources)))])
            rms = np.sqrt(np.mean(src.astype(np.float64) ** 2, axis=1)) + 1e-12
            if 20 * np.log10(rms.min() / rms.max()) > self.min_rms_db:
                break
        return src.astype(np.float32)

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mixtures (B, n), sources (B, S, n))``."""
        src = np.stack([self.one() for _ in range(int(batch_size))])
        return src.sum(1), src


# ---- a generic, resumable, time-budgeted training loop ---------------------------------
def cosine_lr(lr0: float, frac: float, *, floor: float = 0.05, warmup: float = 0.02) -> float:
    """Learning rate at training fraction ``frac`` in [0, 1]: linear warm-up, cosine decay to ``floor * lr0``."""
    frac = min(max(float(frac), 0.0), 1.0)
    if frac < warmup:
        return lr0 * (0.1 + 0.9 * frac / warmup)
    f = (frac - warmup) / max(1e-9, 1 - warmup)
    return lr0 * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * f)))


def train_loop(*, name: str, model, optimizer, step_fn, sampler: "MixtureSampler", args, val_fn,
               train_root=None, eval_every_s: float = 60.0, clip: float | None = 5.0, post_step=None,
               average_decay: float | None = None, log=print) -> dict:
    """Train until ``args.minutes`` or ``args.steps`` run out; keep the state with the best validation score.

    Parameters
    ----------
    step_fn : callable ``(model, mix (B, n) tensor, src (B, S, n) tensor) -> loss tensor``
    sampler : MixtureSampler
        Draws ``args.batch_size`` training segments per step.
    args : argparse.Namespace
        From :func:`parse_args` (``minutes``, ``steps``, ``lr``, ``batch_size``, ``resume``, ``smoke``).
    val_fn : callable ``(model) -> float``
        Validation score, higher is better (computed on the VAL split only).
    train_root : path, optional
        Root of the resumable state (``model_zoo/_train`` by default).
    eval_every_s : float
        Seconds of training between validations (and state saves).
    clip : float, optional
        Gradient-norm clipping.
    post_step : callable ``(model) -> None``, optional
        Called after each optimiser step (e.g. projection onto constraints).
    average_decay : float, optional
        When given, keep an exponential moving average of the weights (:class:`WeightAverage`, decay
        per step, e.g. 0.999); validation scores and model selection then use the AVERAGED weights,
        which are what the model holds on return.

    Returns
    -------
    dict
        ``{"steps", "train_seconds", "best_val", "best_step", "history": [(step, seconds, loss, val)]}``;
        the model holds the best-validation weights on return.
    """

    import torch
    from tqdm import tqdm

    average = WeightAverage(model, float(average_decay)) if average_decay is not None else None
    state = TrainState(name, model, optimizer, root=train_root, average=average)
    scal = state.restore() if getattr(args, "resume", False) else {}
    step = int(scal.get("step", 0))
    spent = float(scal.get("seconds", 0.0))
    history = list(scal.get("history", []))
    best_val = float(scal.get("best_val", float("-inf")))
    best_step = int(scal.get("best_step", -1))
    if "sampler_rng" in scal:
        sampler.rng.bit_generator.state = scal["sampler_rng"]
    best_path = state.dir / "best.safetensors"
    best_state = None
    if scal and best_path.is_file():
        from safetensors.torch import load_file

        best_state = load_file(str(best_path))
    if scal:
        log(f"[{name}] resumed at step {step} after {spent:.0f} s (best val {best_val:.3f} at step {best_step})")
    budget_s = None if args.minutes is None else float(args.minutes) * 60.0
    timer = Timer(args.minutes, already=spent)
    total = args.steps
    bar = tqdm(total=total, initial=step, desc=name, mininterval=5.0, disable=getattr(args, "smoke", False))
    losses: list[float] = []
    last_eval = timer.elapsed()

    def _validate_and_save(final: bool = False):
        nonlocal best_val, best_step, best_state, last_eval
        live = average.swap_in(model) if average is not None else None  # score the average, then train on
        model.eval()
        with torch.no_grad():
            v = float(val_fn(model))
        history.append([step, round(timer.elapsed(), 1), float(np.mean(losses)) if losses else None, v])
        losses.clear()
        if v > best_val:
            best_val, best_step = v, step
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            if not getattr(args, "smoke", False):
                from safetensors.torch import save_file

                state.dir.mkdir(parents=True, exist_ok=True)
                save_file({k: t.contiguous() for k, t in best_state.items()}, str(best_path))
        if live is not None:
            model.load_state_dict(live)
        model.train()
        log(f"[{name}] step {step} t={timer.elapsed():.0f}s loss={history[-1][2]} val={v:.3f} "
            f"(best {best_val:.3f} @ {best_step})")
        if not getattr(args, "smoke", False):
            state.save(step=step, seconds=timer.elapsed(), history=history, best_val=best_val, best_step=best_step,
                       sampler_rng=sampler.rng.bit_generator.state)
        last_eval = timer.elapsed()

    model.train()
    while True:
        if total is not None and step >= total:
            break
        if budget_s is not None and timer.elapsed() >= budget_s:
            break
        frac = (step / total) if total else (timer.elapsed() / budget_s if budget_s else 0.0)
        if budget_s is not None and total is not None:
            frac = max(step / total, timer.elapsed() / budget_s)
        for g in optimizer.param_groups:
            g["lr"] = cosine_lr(args.lr, frac)
        mix, src = sampler.batch(args.batch_size)
        loss = step_fn(model, torch.from_numpy(mix), torch.from_numpy(src))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if post_step is not None:
            post_step(model)
        if average is not None:
            average.update(model)
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        if timer.elapsed() - last_eval >= eval_every_s:
            _validate_and_save()
    bar.close()
    _validate_and_save(final=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"steps": step, "train_seconds": round(timer.elapsed(), 1), "best_val": best_val, "best_step": best_step,
            "history": history}
