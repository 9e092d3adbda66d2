"""The docstring examples of the DCE modules run (numpydoc ``Examples`` sections)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["perfmap.core.lsq", "perfmap.core.spgr", "perfmap.core.t1map", "perfmap.core.dce_aif",
           "perfmap.core.dce_arteries",
           "perfmap.kinetics", "perfmap.kinetics.base", "perfmap.kinetics.convolution",
           "perfmap.kinetics.fitting", "perfmap.kinetics.registry", "perfmap.kinetics.tofts",
           "perfmap.kinetics.patlak", "perfmap.kinetics.tcxm"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name != "perfmap.kinetics":
        assert result.attempted > 0, f"{name} has no docstring example"
