"""Error handling shared by the Click commands."""

from __future__ import annotations

import functools
import sys

import click

from ..errors import PerfmapError


def handle_errors(func):
    """Turn a :class:`PerfmapError` into one line on stderr and exit code 1.

    Two failures that are not perfmap's own also get one line and exit code
    1 instead of a traceback: running out of memory, and an operating-system
    error about a named file (no space left, permission denied), which names
    that file.
    """

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
        except OSError as exc:
            if exc.filename is None:
                raise
            reason = exc.strerror or " ".join(str(exc).split())
            click.echo(f"perfmap: error: {exc.filename}: {reason}", err=True)
            sys.exit(1)

    return wrapper
