"""Error handling shared by the Click commands."""

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
