"""Dependencies point one way: nothing under probe/ imports the CLI, the app, the zoo, streamlit or the tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "probe"
#: packages the library must never import (the CLI may import the library, not the reverse)
FORBIDDEN = ("apps", "model_zoo", "streamlit", "tests")


def _imports(path: Path):
    """``(line, absolute module name)`` of every import in a file, relative imports resolved."""
    package = list(path.relative_to(ROOT).parts[:-1])  # the package a relative import starts from
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:  # `from probe import cli` imports probe.cli
                yield node.lineno, f"{mod}.{a.name}"
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def _bad(mod: str, own: str) -> bool:
    if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN):
        return True
    # probe.cli may import itself, and `python -m probe` (probe/__main__.py) is the CLI's entry; nothing else may
    return (mod == "probe.cli" or mod.startswith("probe.cli.")) and not own.startswith(("probe.cli", "probe.__main__"))


def test_the_import_walker_sees_what_it_should(tmp_path):
    """The walker itself: planted imports of every forbidden kind are found (absolute, relative, from-import)."""
    pkg = ROOT / "probe" / "_walker_probe_tmp.py"
    try:
        pkg.write_text("import streamlit\nfrom .cli import main\nfrom . import cli\nfrom model_zoo.registry import x\n"
                       "import importlib\nimportlib.import_module('apps.state')\nimport numpy\n")
        found = [m for _, m in _imports(pkg) if _bad(m, "probe._walker_probe_tmp")]
        assert set(found) >= {"streamlit", "probe.cli", "probe.cli.main", "model_zoo.registry", "apps.state"}
        assert "numpy" not in found
    finally:
        pkg.unlink()


def test_no_module_under_probe_imports_cli_apps_zoo_streamlit_or_tests():
    offenders = []
    for path in sorted(PROBE.rglob("*.py")):
        own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, mod in _imports(path):
            if _bad(mod, own):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not offenders, "the library must not import these (zoo only via probe.resolve entry points):\n" + \
        "\n".join(offenders)


def test_public_functions_are_not_shadowed_by_submodules():
    """``import probe, probe.store, probe.analyze.embeddings; probe.capture(...)`` works (the name trap)."""
    code = """
import numpy as np, torch
import probe, probe.store, probe.analyze.embeddings, probe.hooks, probe.filterbank, probe.pipelines
from probe import ModelSpec, TFGrid
spec = ModelSpec(torch.nn.Sequential(torch.nn.Conv1d(1, 4, 16, stride=8), torch.nn.ReLU()), input_kind="waveform",
                 grid=TFGrid(8000), input_layout="bcn")
x = spec.features(np.zeros(800, np.float32))
with probe.capture(spec, layers="*") as cache:
    spec.model(x)
banks = probe.filters(spec)
assert callable(probe.capture) and callable(probe.filters), (probe.capture, probe.filters)
print(sorted(cache), list(banks))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("]")[0].count("'0'") == 1 and "'1'" in out.stdout


def test_no_function_shares_its_name_with_a_sibling_submodule():
    """In every package under probe/, no public attribute (function/class) is named like one of its submodules."""
    import importlib
    import pkgutil

    clashes = []
    for pkg_dir in sorted(p.parent for p in PROBE.rglob("__init__.py")):
        name = ".".join(pkg_dir.relative_to(ROOT).parts)
        subs = {m.name for m in pkgutil.iter_modules([str(pkg_dir)])}
        pkg = importlib.import_module(name)
        lazy = getattr(pkg, "_LAZY", {})
        for attr in set(lazy) | {a for a in vars(pkg) if not a.startswith("_")}:
            if attr in subs:
                value = getattr(pkg, attr, None)
                if callable(value) and not isinstance(value, type(pkg)):
                    clashes.append(f"{name}.{attr}")
    assert not clashes, f"functions named like a submodule of their package: {clashes}"
