"""Deconvolution backends (oSVD, cSVD, sSVD, Tikhonov, PHAE), chosen by name."""

from .base import Backend, DeconvFit
from .registry import available, backend_parameters, get_backend, make_backend, register

__all__ = ["Backend", "DeconvFit", "available", "backend_parameters", "get_backend",
           "make_backend", "register"]
