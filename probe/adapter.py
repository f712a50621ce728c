"""Model adapter: what an audio model eats and emits, in time-frequency terms.

A :class:`ModelSpec` wraps any ``nn.Module`` with

* its **input representation** (waveform, magnitude STFT, log-magnitude STFT, log-mel)
  and the :class:`~probe.grid.TFGrid` it lives on, plus the tensor layout the module wants;
* its **output kind** (per-source masks, per-T-F embeddings, per-frame class
  probabilities, separated waveforms, clip scores, or plain features) with class names;
* the preprocessing from audio to model input (:meth:`ModelSpec.features`).

Specs are written in Python or in a TOML file (:meth:`ModelSpec.from_file`)::

    [model]
    factory = "mymodule:build"         # importable callable returning the nn.Module
    checkpoint = "weights.safetensors" # optional, relative to this file
    [input]
    kind = "waveform"                  # waveform | stft | logmag | logmel
    sample_rate = 16000
    [output]
    kind = "frame_probs"               # masks | tf_embeddings | frame_probs | sources | clip_scores | features
    classes = ["speech", "music"]
    [time]                             # optional: overrides of what the shape probe infers
    seconds_per_step = 0.01            # every time axis (exact probes usually make this unnecessary)
    offset = 0.0125                    # seconds of the centre of frame 0
    [time.layers."encoder.3"]          # per layer (wins over the global values)
    seconds_per_step = 0.02

Canonical layouts (time last, as in librosa): inputs ``bn`` (waveform) or ``bft``
(spectral); outputs ``masks`` ``bsft``, ``tf_embeddings`` ``bdft``, ``frame_probs`` ``bct``,
``sources`` ``bsn``, ``clip_scores`` ``bc``. A model with another layout declares it
(``layout = "btf"``, ``"bcn"`` for a singleton channel) and the adapter permutes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import CheckpointError, SpecError
from .grid import TFGrid

__all__ = ["ModelSpec", "INPUT_KINDS", "OUTPUT_LAYOUTS", "load_state_dict", "load_spec"]

INPUT_KINDS = ("waveform", "stft", "logmag", "logmel")
#: canonical axis letters of each output kind (b batch, s source, d embedding dim,
#: f frequency, t frame, n sample, c class); ``features`` has no fixed layout
OUTPUT_LAYOUTS = {"masks": "bsft", "tf_embeddings": "bdft", "frame_probs": "bct", "sources": "bsn",
                  "clip_scores": "bc", "features": None}
#: main-tensor names of dict-like outputs (transformers' ModelOutput) picked when exactly one is present
_USUAL_KEYS = ("logits", "last_hidden_state")
_INPUT_CANONICAL = {"waveform": "bn", "stft": "bft", "logmag": "bft", "logmel": "bft"}


def _permute_to(x, src: str, dst: str):
    """Reorder tensor axes from letters ``src`` to ``dst``; a ``c`` only in one of them is a singleton."""
    if sorted(src) == sorted(dst):
        return x.permute(*[src.index(a) for a in dst]) if src != dst else x
    extra_dst = set(dst) - set(src)
    extra_src = set(src) - set(dst)
    if extra_dst <= {"c"} and not extra_src:
        # the singleton goes straight to its place: unsqueeze at the end plus a permute leaves strides
        # like (n, 1, 1) on a (b, 1, n) tensor, which .contiguous() keeps and CPU conv1d runs ~30 % slower on
        return _permute_to(x, src, dst.replace("c", "")).unsqueeze(dst.index("c"))
    if extra_src <= {"c"} and not extra_dst:
        ci = src.index("c")
        if x.shape[ci] != 1:
            raise SpecError(f"layout {src!r} has a channel axis of size {x.shape[ci]}, expected 1 to drop it for {dst!r}")
        return _permute_to(x.squeeze(ci), src.replace("c", ""), dst)
    raise SpecError(f"cannot map layout {src!r} onto {dst!r}: the letters must match (plus an optional singleton 'c')")


@dataclass
class ModelSpec:
    """An ``nn.Module`` plus the audio meaning of its input and output.

    Parameters
    ----------
    model : torch.nn.Module
    input_kind : {"waveform", "stft", "logmag", "logmel"}
        ``stft`` is the magnitude ``|STFT|``; ``logmag`` is ``log(|STFT| + eps)``;
        ``logmel`` is ``log(mel @ |STFT|**2 + eps)``.
    grid : TFGrid
        The input's grid. Waveform models still get one: it defines the T-F domain in
        which their attributions and embeddings are shown.
    output_kind : str
        One of :data:`OUTPUT_LAYOUTS`.
    classes : list of str, optional
        Class names for ``frame_probs`` / ``clip_scores``.
    n_sources : int, optional
        Number of sources for ``masks`` / ``sources``.
    input_layout, output_layout : str, optional
        Axis letters of the module's own input/output when they differ from the canonical ones.
    output_key : str or int, optional
        Which element of a tuple/dict output is ``output_kind``; a dict keyed by output
        kinds is understood without it.
    eps : float
        Offset inside the logarithm of log inputs.
    name : str
        Identifier used in run manifests and caches.
    info : dict
        Free metadata (model card, provenance).
    time : dict
        Overrides of the inferred time axes: ``seconds_per_step``, ``offset`` (seconds of the
        centre of step 0) and ``time_axis`` for every record with a time axis, and
        ``layers = {module: {...}}`` per layer. Records report ``time_source = "spec"``
        (``"given"`` when ``source = "given"``: values passed on a command line).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 16, stride=8), torch.nn.ReLU())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(16000), input_layout="bcn")
    >>> spec.features(np.zeros(1600, dtype=np.float32)).shape
    torch.Size([1, 1, 1600])
    """

    model: Any
    input_kind: str
    grid: TFGrid
    output_kind: str = "features"
    classes: list | None = None
    n_sources: int | None = None
    input_layout: str | None = None
    output_layout: str | None = None
    output_key: Any = None
    eps: float = 1e-6
    name: str | None = None
    info: dict = field(default_factory=dict)
    time: dict = field(default_factory=dict)
    _axes_cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        import torch

        if not isinstance(self.model, torch.nn.Module):
            raise SpecError(f"model must be a torch.nn.Module, given {type(self.model).__name__}")
        if self.input_kind == "magnitude":
            self.input_kind = "stft"
        if self.input_kind not in INPUT_KINDS:
            raise SpecError(f"unknown input kind {self.input_kind!r}; known: {', '.join(INPUT_KINDS)}")
        if self.output_kind not in OUTPUT_LAYOUTS:
            raise SpecError(f"unknown output kind {self.output_kind!r}; known: {', '.join(OUTPUT_LAYOUTS)}")
        if not isinstance(self.grid, TFGrid):
            raise SpecError(f"grid must be a TFGrid, given {type(self.grid).__name__}")
        if self.input_kind == "logmel" and not self.grid.n_mels:
            raise SpecError("input kind 'logmel' needs n_mels on the grid")
        canon = _INPUT_CANONICAL[self.input_kind]
        if self.input_layout is not None and sorted(self.input_layout.replace("c", "")) != sorted(canon):
            raise SpecError(f"input layout {self.input_layout!r} does not fit input kind {self.input_kind!r} "
                            f"(canonical {canon!r}, optional singleton 'c')")
        out = OUTPUT_LAYOUTS[self.output_kind]
        if self.output_layout is not None and out is not None and sorted(self.output_layout) != sorted(out):
            raise SpecError(f"output layout {self.output_layout!r} does not fit output kind {self.output_kind!r} "
                            f"(canonical {out!r}: same letters, any order)")
        if self.classes is not None:
            self.classes = [str(c) for c in self.classes]
        self.name = self.name or type(self.model).__name__
        self.time = _check_time(self.time)

    # ---- input side ------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.grid.sample_rate)

    @property
    def input_step_seconds(self) -> float:
        """Seconds per step along the model input's time axis (a sample or a frame)."""
        return 1.0 / self.sample_rate if self.input_kind == "waveform" else self.grid.seconds_per_frame

    def input_steps(self, n_samples: int) -> int:
        return int(n_samples) if self.input_kind == "waveform" else self.grid.n_frames(n_samples)

    def representation(self, y):
        """Audio ``(..., n)`` → canonical representation: ``(..., n)`` or ``(..., F, T)`` (no layout change)."""
        import torch

        y = torch.as_tensor(y)
        if self.input_kind == "waveform":
            return y
        if self.input_kind == "stft":
            return self.grid.magnitude(y)
        if self.input_kind == "logmag":
            return self.grid.logmag(y, eps=self.eps)
        return self.grid.logmel(y, eps=self.eps)

    def representation_from_magnitude(self, mag):
        """Magnitude STFT ``(..., F, T)`` → the model's canonical spectral input (for T-F attribution)."""
        import torch

        if self.input_kind == "stft":
            return mag
        if self.input_kind == "logmag":
            return torch.log(mag + self.eps)
        if self.input_kind == "logmel":
            return torch.log(self.grid.mel(mag ** 2) + self.eps)
        raise SpecError("a waveform model has no spectral input; use probe's inverse-STFT path")

    def to_model_layout(self, x):
        """Canonical input (``bn`` / ``bft``) → the module's own layout and floating dtype.

        probe computes in float32; a module whose weights are another floating type
        (``model.double()``) gets its input in that type (differentiably: gradients flow back
        to the float32 input).
        """
        canon = _INPUT_CANONICAL[self.input_kind]
        x = x if not self.input_layout else _permute_to(x, canon, self.input_layout)
        dt = self._model_dtype()
        return x.to(dt) if dt is not None and x.is_floating_point() and x.dtype != dt else x

    def _model_dtype(self):
        """The floating dtype of the module's first floating parameter or buffer (``None``: none)."""
        from itertools import chain

        return next((t.dtype for t in chain(self.model.parameters(), self.model.buffers()) if t.is_floating_point()),
                    None)

    def features(self, y):
        """Audio → the exact tensor the module's ``forward`` takes (batch axis added if absent).

        ``y`` is ``(n,)`` or ``(batch, n)``, numpy or torch, at ``grid.sample_rate``.
        """
        import torch

        y = torch.as_tensor(np.asarray(y, dtype=np.float32) if isinstance(y, np.ndarray) else y)
        if y.ndim == 1:
            y = y.unsqueeze(0)
        p = next(iter(self.model.parameters()), None)
        if p is not None:
            y = y.to(p.device)
        return self.to_model_layout(self.representation(y))

    # ---- output side -----------------------------------------------------------------
    def select_output(self, out, kind: str | None = None):
        """Pick ``kind`` (default ``output_kind``) out of the module's raw output and make it canonical."""
        kind = kind or self.output_kind
        if isinstance(out, dict):
            if kind in out:
                x = out[kind]
            elif self.output_key is not None and self.output_key in out:
                x = out[self.output_key]
            elif self.output_key is None and sum(k in out for k in _USUAL_KEYS) == 1:
                # a transformers ModelOutput: its main tensor has a conventional name
                x = out[next(k for k in _USUAL_KEYS if k in out)]
            else:
                keys = sorted(str(k) for k in out)
                pick = next((k for k in _USUAL_KEYS if k in out), keys[0] if keys else "KEY")
                raise SpecError(f"model output is a dict with keys {keys}; say which one is the {kind!r} output: "
                                f'[output] key = "{pick}" in the spec file (output_key="{pick}" in Python)')
        elif isinstance(out, (tuple, list)):
            x = out[self.output_key if isinstance(self.output_key, int) else 0]
        else:
            x = out
        canon = OUTPUT_LAYOUTS[kind]
        if canon and self.output_layout and kind == self.output_kind:
            x = _permute_to(x, self.output_layout, canon)
        return x

    def forward(self, y, kind: str | None = None):
        """Run the module on audio and return the canonical ``kind`` output."""
        return self.select_output(self.model(self.features(y)), kind)

    __call__ = forward

    # ---- description -----------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able description (no weights), used in run manifests."""
        return {"name": self.name, "input": {"kind": self.input_kind, **self.grid.to_dict(), "layout": self.input_layout},
                "output": {"kind": self.output_kind, "classes": self.classes, "n_sources": self.n_sources,
                           "layout": self.output_layout},
                "params": int(sum(p.numel() for p in self.model.parameters())),
                **({"time": self.time} if self.time else {})}

    @classmethod
    def from_file(cls, path) -> "ModelSpec":
        """Build a spec from a TOML file (see module docstring)."""
        return load_spec(path)


_TIME_KEYS = ("seconds_per_step", "offset", "time_axis")


def _check_time(t) -> dict:
    """Validate a ``[time]`` table: numbers for the known keys, a ``layers`` table of the same."""
    if t is None:
        return {}
    if not isinstance(t, dict):
        raise SpecError(f"[time] must be a table, given {t!r}")
    unknown = sorted(set(t) - set(_TIME_KEYS) - {"layers", "source"})
    if unknown:
        raise SpecError(f"[time] has unknown keys {unknown}; known: {', '.join(_TIME_KEYS)}, layers")
    source = t.get("source", "spec")
    if source not in ("spec", "given"):
        raise SpecError(f"[time] source must be 'spec' or 'given', given {source!r}")

    def num(where, k, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise SpecError(f"{where} {k} must be a number, given {v!r}")
        if k == "seconds_per_step" and v <= 0:
            raise SpecError(f"{where} seconds_per_step must be positive, given {v!r}")
        if k == "time_axis" and int(v) != v:
            raise SpecError(f"{where} time_axis must be an integer, given {v!r}")
        return int(v) if k == "time_axis" else float(v)

    out = {k: num("[time]", k, t[k]) for k in _TIME_KEYS if t.get(k) is not None}
    if source != "spec":
        out["source"] = source
    layers = t.get("layers") or {}
    if not isinstance(layers, dict):
        raise SpecError(f"[time] layers must be a table of layer tables, given {layers!r}")
    if layers:
        out["layers"] = {}
        for name, lt in layers.items():
            if not isinstance(lt, dict) or set(lt) - set(_TIME_KEYS):
                raise SpecError(f"[time.layers.{name!r}] must hold only {', '.join(_TIME_KEYS)}, given {lt!r}")
            out["layers"][str(name)] = {k: num(f"[time.layers.{name!r}]", k, v) for k, v in lt.items()}
    return out


# ---- checkpoints ---------------------------------------------------------------------
def load_state_dict(path) -> dict:
    """Read weights without executing code: safetensors, or ``torch.load(weights_only=True)``.

    Raises
    ------
    CheckpointError
        Missing or corrupt file, or a pickle that needs arbitrary objects (refused).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors checkpoint {path}: {exc}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "pickle" in str(exc).lower():
            import re

            found = re.search(r"(?:Unsupported global: GLOBAL|GLOBAL) ([\w.]+)", str(exc))
            what = f"the Python object {found.group(1)}" if found else "Python objects beyond tensors"
            # torch's own message suggests weights_only=False, which would run the file's code: not repeated here
            raise CheckpointError(f"refusing to unpickle {path}: it needs {what}, and unpickling could run code; "
                                  "where you trust it, re-save only the weights with "
                                  "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')") from None
        raise CheckpointError(f"cannot read checkpoint {path}: {msg}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


def _apply_state_dict(model, state: dict, source) -> None:
    own = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
             if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k, have, want = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise CheckpointError(f"checkpoint {source} does not fit the model: {k} has shape {list(have)} in the checkpoint "
                              f"but {list(want)} in the model{more}; check the spec's [model.kwargs]")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"checkpoint {source} does not fit the model: missing {list(result.missing_keys)[:8]}, "
                              f"unexpected {list(result.unexpected_keys)[:8]}")


# ---- spec files ----------------------------------------------------------------------
def _import_factory(ref: str, folder: Path) -> Callable:
    if ":" not in ref:
        raise SpecError(f"factory must look like 'module:callable', given {ref!r}")
    mod_name, attr = ref.split(":", 1)
    local = folder / (mod_name.replace(".", "/") + ".py")
    try:
        if local.is_file():
            # a unique module name keeps two spec folders with a same-named module apart
            unique = f"_probe_spec_{hashlib.sha1(str(local.resolve()).encode()).hexdigest()[:10]}_{mod_name.replace('.', '_')}"
            module = sys.modules.get(unique)
            if module is None:
                spec = importlib.util.spec_from_file_location(unique, local)
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module
                sys.path.insert(0, str(folder))  # the module may import its siblings
                try:
                    spec.loader.exec_module(module)
                finally:
                    sys.path.remove(str(folder))
        else:
            module = importlib.import_module(mod_name)
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(f"cannot import factory module {mod_name!r} (looked in {folder} and the Python path): {exc}") from None
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise SpecError(f"module {mod_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise SpecError(f"factory {ref!r} is not callable")
    return fn


def load_spec(path) -> ModelSpec:
    """Load a TOML model spec: import the factory, build, load the checkpoint, set eval mode."""
    import tomllib

    import torch

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no such spec file: {path}")
    try:
        cfg = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}") from None
    for section in ("model", "input"):
        if section not in cfg:
            raise SpecError(f"{path} needs a [{section}] section; found sections {sorted(cfg)}")
    m, i, o = cfg["model"], cfg["input"], cfg.get("output", {})
    if "factory" not in m:
        raise SpecError(f"[model] in {path} needs factory = 'module:callable'; found keys {sorted(m)}")
    if "kind" not in i or "sample_rate" not in i:
        raise SpecError(f"[input] in {path} needs kind and sample_rate; found keys {sorted(i)}")
    factory = _import_factory(m["factory"], path.parent)
    try:
        model = factory(**m.get("kwargs", {}))
    except Exception as exc:
        raise SpecError(f"factory {m['factory']!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"factory {m['factory']!r} returned {type(model).__name__}, not a torch.nn.Module")
    if m.get("checkpoint"):
        ckpt = Path(m["checkpoint"])
        ckpt = ckpt if ckpt.is_absolute() else path.parent / ckpt
        _apply_state_dict(model, load_state_dict(ckpt), ckpt)
    if m.get("streaming") is not None:  # a chunk-in / (output, state)-out cell run over the clip
        from .families.streaming import streaming_from_spec

        model = streaming_from_spec(model, m["streaming"])
    model.eval()
    grid = TFGrid.from_dict({k: v for k, v in i.items() if k not in ("kind", "layout", "eps")})
    return ModelSpec(model, input_kind=i["kind"], grid=grid, output_kind=o.get("kind", "features"),
                     classes=o.get("classes"), n_sources=o.get("n_sources"), input_layout=i.get("layout"),
                     output_layout=o.get("layout"), output_key=o.get("key"), eps=float(i.get("eps", 1e-6)),
                     name=m.get("name", path.stem), info={"spec_file": str(path)}, time=cfg.get("time"))
