"""DCE-MRI tracer-kinetic models (Tofts, extended Tofts, Patlak, 2CXM), a registry by name.

>>> from perfmap.kinetics import available, get_model
>>> model = get_model("patlak")()
"""

from .base import KineticFit, KineticModel
from .registry import DEFAULT_MODEL, available, get_model, register

__all__ = ["KineticFit", "KineticModel", "DEFAULT_MODEL", "available", "get_model", "register"]
