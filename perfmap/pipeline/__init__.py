"""Orchestration of one subject (:func:`compute`) or a cohort."""

from .compute import ComputeResult, compute, output_names

__all__ = ["ComputeResult", "compute", "output_names"]
