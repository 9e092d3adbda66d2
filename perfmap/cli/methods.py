"""``perfmap methods``: every method of every kind, with its parameters and defaults."""

from __future__ import annotations

import click

from .options import verbosity_option


def method_table() -> list[tuple[str, str, dict]]:
    """``(kind, method, {parameter: default})`` for every registered method."""
    from ..pipeline.kinds import available_kinds, get_kind

    rows = []
    for kind_name in available_kinds():
        kind = get_kind(kind_name)
        for method in kind.methods():
            rows.append((kind_name, method, kind.parameters(method)))
    return rows


@click.command()
@verbosity_option
def methods():
    """List each kind's methods and the --param keys they take, with defaults."""
    for kind, method, params in method_table():
        click.echo(f"{kind} {method}")
        for key, default in params.items():
            click.echo(f"    {key} = {default!r}")
