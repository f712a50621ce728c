"""Every Examples section in probe's docstrings runs and prints what it shows (numpydoc examples are promises).

Each module of ``probe`` (and the app's modules that are not Streamlit pages) is imported and its
docstring examples are run with :mod:`doctest`; a module whose example fails names the example and
the difference. A module that cannot be imported fails too: an optional extra that ``.ci/setup``
installs is missing (``bash .ci/setup``; ``probe doctor`` lists what is).
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import probe

#: the app's modules with examples (its page scripts run Streamlit on import and are not collected)
APP_MODULES = ["apps.diskcache", "apps.policy"]
MODULES = sorted(m.name for m in pkgutil.walk_packages(probe.__path__, "probe.")
                 if not m.name.endswith("__main__")) + ["probe"] + APP_MODULES


def _examples(module) -> list:
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, module.__name__) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _examples(module):
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed\n{out.getvalue()[-4000:]}"


def test_the_examples_are_many():
    """The sweep finds the examples (a finder that saw none would pass every module above)."""
    found = {name: sum(len(t.examples) for t in _examples(importlib.import_module(name))) for name in MODULES}
    with_examples = [n for n, k in found.items() if k]
    assert len(with_examples) >= 30 and sum(found.values()) >= 150, (len(with_examples), sum(found.values()))
    for name in ("probe.audio", "probe.analyze.filters", "apps.diskcache"):
        assert found.get(name, 0) > 0, f"{name} lost its examples"
