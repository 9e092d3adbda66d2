"""Deconvolution backends (oSVD, cSVD, sSVD, Tikhonov, PHAE), chosen by name."""

from .base import Backend, DeconvFit
from .registry import available, get_backend, register

__all__ = ["Backend", "DeconvFit", "available", "get_backend", "register"]
