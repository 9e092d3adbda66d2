"""The ``perfmap`` command group.

Sub-commands are imported lazily: ``perfmap --help`` imports neither numpy's
heavy users nor torch, and a broken optional command cannot break the others.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__
from .options import setup_logging, verbosity_option

#: command name -> "module:attribute" of its click command, and a one-line help.
COMMANDS = {
    "compute": ("perfmap.cli.compute:compute", "Compute perfusion maps for one DSC series."),
    "simulate": ("perfmap.cli.simulate:simulate",
                 "Write DSC phantoms with ground truth (for validation and demos)."),
    "convert": ("perfmap.cli.convert:convert",
                "Convert a DICOM series into a 4D NIfTI with a JSON sidecar."),
    "batch": ("perfmap.cli.batch:batch", "Run compute over a cohort manifest (local or Dask)."),
    "report": ("perfmap.cli.report:report",
               "Glioma-grading report (ROC/AUC, Youden cut-off) from a cohort table."),
    "robustness": ("perfmap.cli.robustness:robustness",
                   "Noise study: degrade a cohort to several SNRs and report AUC vs SNR."),
    "train": ("perfmap.cli.train:train", "Train the PHAE neural encoder (self-supervised)."),
    "denoise": ("perfmap.cli.denoise:denoise",
                "Denoise a 4D series (MP-PCA or Gaussian) into a new NIfTI."),
    "methods": ("perfmap.cli.methods:methods",
                "List each kind's methods and their parameters with defaults."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when used."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        # Short help from the table, so listing commands imports nothing.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="perfmap")
@verbosity_option
def cli():
    """perfmap: DSC-MRI perfusion maps (CBF, CBV, MTT, Tmax, TTP) and glioma-grading ratios."""
    setup_logging()
