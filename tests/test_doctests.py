"""The examples in visionkit's docstrings run and print what they show.

Each package module's ``>>>`` examples are run with :mod:`doctest` (one test per module, so a
failure names it); a module without examples passes trivially. The examples are part of the
API reference, so an example that stopped being true is a documentation bug.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
from contextlib import redirect_stdout

import pytest

import visionkit

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(visionkit.__path__, prefix="visionkit.")
    if not info.name.endswith("__main__")  # importing it runs the command line
)


def test_every_module_is_found():
    # a broken walk (e.g. a package without __init__.py) would silently run nothing
    assert len(MODULES) > 100
    assert "visionkit.models.balancing" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    for test in finder.find(module, name):
        runner.run(test, out=report.write)
    with redirect_stdout(io.StringIO()):
        failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, (
        f"{name}: {failed} of {attempted} docstring examples failed:\n{report.getvalue()}"
    )
