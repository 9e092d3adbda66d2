"""Shared pieces of the Click commands: error handling and common options."""

from __future__ import annotations

import functools
import sys

import click

from ..errors import PerfmapError


def handle_errors(func):
    """Turn a :class:`PerfmapError` into one line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PerfmapError as exc:
            click.echo(f"perfmap: error: {exc}", err=True)
            sys.exit(1)
        except MemoryError:
            click.echo("perfmap: error: out of memory", err=True)
            sys.exit(1)

    return wrapper


def verbosity_options(func):
    """``-v/--verbose`` and ``-q/--quiet`` (count), combined into ``verbosity``."""
    func = click.option("-q", "--quiet", count=True, help="Print less (repeatable).")(func)
    func = click.option("-v", "--verbose", count=True, help="Print more (repeatable).")(func)
    return func


def overwrite_option(func):
    return click.option("--overwrite", is_flag=True,
                        help="Replace existing output files (refused by default).")(func)
