"""Orchestration: one subject (compute), cohorts (batch, robustness), training."""

from .compute import ComputeResult, compute, evaluate, output_names, write_result

__all__ = ["ComputeResult", "compute", "evaluate", "output_names", "write_result"]
