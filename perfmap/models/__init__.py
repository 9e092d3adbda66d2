"""The array API: models fitted to arrays, with lazily derived maps (no files).

>>> from perfmap.models import DSCModel
>>> DSCModel("osvd", te=0.03, tr=1.5).backend.name
'osvd'
"""

from .base import Fit, Step, Work
from .dsc import DSCFit, DSCModel

__all__ = ["DSCFit", "DSCModel", "Fit", "Step", "Work"]
