"""ONNX models (``onnx:PATH``), converted to an eager PyTorch module with ``onnx2torch``.

An ONNX graph says nothing about audio, so its meaning comes from a small TOML file beside
it — ``model.onnx.toml`` or ``model.toml`` — with the same ``[input]`` / ``[output]``
sections as a model spec (no ``[model]`` section needed)::

    [input]
    kind = "logmel"          # waveform | stft | logmag | logmel
    sample_rate = 16000
    n_fft = 512
    hop_length = 160
    n_mels = 64
    layout = "bcft"          # the graph's input layout, if not canonical
    [output]
    kind = "frame_probs"
    classes = ["speech"]

The converted module is a ``torch.fx.GraphModule`` whose submodules are named after the
ONNX nodes (``Conv_0``…), so capture, filters and attribution work on it like on any
eager model. Conversion failures name the ONNX operator that onnx2torch cannot convert.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SpecError

__all__ = ["load_onnx", "sidecar_path"]

_INSTALL = ("install the optional extra: pip install 'probe-audio[onnx]' and then pip install --no-deps onnx2torch "
            "(onnx2torch lists torchvision only for detection operators)")


def sidecar_path(path) -> Path | None:
    """The TOML that describes ``path``'s input and output, if one exists."""
    path = Path(path)
    for cand in (path.with_name(path.name + ".toml"), path.with_suffix(".toml")):
        if cand.is_file():
            return cand
    return None


def _op_of(exc: Exception) -> str | None:
    m = re.search(r"operation_type='([^']+)'", str(exc)) or re.search(r"op_type[=:]\s*'?(\w+)", str(exc))
    return m.group(1) if m else None


def _unsupported_ops(model) -> list[str]:
    """ONNX operators in the graph that onnx2torch has no converter for (best effort)."""
    try:
        from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY
    except Exception:
        return []
    known = {(d.domain or "", d.operation_type) for d in _CONVERTER_REGISTRY}
    ops = []
    for node in model.graph.node:
        if (node.domain or "", node.op_type) not in known and node.op_type not in ops:
            ops.append(node.op_type)
    return ops


def _import_convert():
    """``onnx2torch.convert``; when torchvision is absent, its two detection operators get stand-ins that refuse.

    onnx2torch imports torchvision at import time only for NonMaxSuppression and RoiAlign.
    The stand-ins live in ``sys.modules`` just for the import, so nothing else sees them.
    """
    import importlib.util
    import sys
    import types

    if "onnx2torch" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        from onnx2torch import convert

        return convert

    def refuse(op):
        def f(*args, **kwargs):
            raise SpecError(f"the ONNX operator {op} needs torchvision, which is not installed (pip install torchvision "
                            "matching your torch)")
        return f

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms, ops.box_convert, ops.roi_align = refuse("NonMaxSuppression"), refuse("NonMaxSuppression"), refuse("RoiAlign")
    tv.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        from onnx2torch import convert
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
    return convert


def _plain_names(gm):
    """Rename submodules like ``/encoder/Conv`` to ``encoder_Conv``: probe reserves ``/`` and ``@`` in record names."""
    import re as _re

    renames = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and _re.search(r"[/@.:\s]", node.target):
            new = _re.sub(r"[^0-9A-Za-z_]+", "_", node.target).strip("_") or "node"
            while new in renames.values() or (new != node.target and hasattr(gm, new)):
                new += "_"
            renames.setdefault(node.target, new)
            node.target = renames[node.target]
    for old, new in renames.items():
        mod = gm._modules.pop(old, None)
        gm.add_submodule(new, mod if mod is not None else gm.get_submodule(old))
    if renames:
        gm.recompile()
    return gm


def load_onnx(path, *, meta: dict | None = None):
    """Convert an ONNX file with onnx2torch and describe it with its sidecar TOML.

    Parameters
    ----------
    path : str or Path
        ``.onnx`` file.
    meta : dict, optional
        ``{"input": {...}, "output": {...}}`` instead of a sidecar file.

    Returns
    -------
    ModelSpec

    Raises
    ------
    SpecError
        onnx / onnx2torch missing, an unreadable graph, an operator onnx2torch cannot convert
        (named), or no description of the input.

    Examples
    --------
    >>> spec = load_onnx("cnn.onnx", meta={"input": {"kind": "waveform", "sample_rate": 16000,
    ...                                               "layout": "bcn"}})   # doctest: +SKIP
    """
    import tomllib

    from ..adapter import ModelSpec
    from ..grid import TFGrid

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no such ONNX file: {path}")
    if meta is None:
        side = sidecar_path(path)
        if side is None:
            raise SpecError(f"onnx:{path} needs its audio meaning: write {path.name}.toml beside it with "
                            "[input] kind and sample_rate (and [output] kind), as in a model spec")
        try:
            meta = tomllib.loads(side.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{side} is not valid TOML: {exc}") from None
    i, o = meta.get("input", {}), meta.get("output", {})
    if "kind" not in i or "sample_rate" not in i:
        raise SpecError(f"the description of onnx:{path} needs [input] kind and sample_rate; found keys {sorted(i)}")
    try:
        import onnx

        convert = _import_convert()
    except ImportError as exc:
        raise SpecError(f"onnx: models need {exc.name or 'onnx/onnx2torch'}, which is not installed; {_INSTALL}") from None
    try:
        graph = onnx.load(str(path))
    except Exception as exc:
        raise SpecError(f"cannot read ONNX file {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    try:
        model = convert(graph)
    except Exception as exc:
        ops = _unsupported_ops(graph)
        if ops:
            raise SpecError(f"onnx2torch cannot convert operator {', '.join(ops)} in {path.name}; re-export the model "
                            "without it (replace the op) or write a spec with its PyTorch code") from None
        op = _op_of(exc)
        if op:
            ver = re.search(r"version=(\d+)", str(exc))
            at = f" at opset {ver.group(1)}" if ver else ""
            raise SpecError(f"onnx2torch cannot convert operator {op}{at} in {path.name}; re-export with an older "
                            "opset (torch.onnx.export(..., opset_version=17)) or write a spec with its PyTorch code") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"onnx2torch cannot convert {path.name}: {type(exc).__name__}: {first}") from None
    model = _plain_names(model)
    model.eval()
    grid = TFGrid.from_dict({k: v for k, v in i.items() if k not in ("kind", "layout", "eps")})
    return ModelSpec(model, input_kind=i["kind"], grid=grid, output_kind=o.get("kind", "features"),
                     classes=o.get("classes"), n_sources=o.get("n_sources"), input_layout=i.get("layout"),
                     output_layout=o.get("layout"), output_key=o.get("key"), eps=float(i.get("eps", 1e-6)),
                     name=meta.get("name", path.stem), info={"source": f"onnx:{path}", "family": "onnx"})
