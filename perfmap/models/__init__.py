"""The array API: models fitted to arrays, with lazily derived maps (no files).

>>> from perfmap.models import DSCModel
>>> DSCModel("osvd", te=0.03, tr=1.5).backend.name
'osvd'
"""

from .base import Fit, Step, Work
from .dsc import DSCFit, DSCModel


def __getattr__(name):
    # DCE needs the kinetic models; imported on first use
    if name in ("DCEModel", "DCEFit"):
        from . import dce

        return getattr(dce, name)
    raise AttributeError(f"module 'perfmap.models' has no attribute {name!r}")


__all__ = ["DCEFit", "DCEModel", "DSCFit", "DSCModel", "Fit", "Step", "Work"]
