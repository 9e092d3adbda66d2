"""Registry of tracer-kinetic models, by name.

Models register themselves with ``@register("name")``; the built-in ones live in
the modules of ``_BUILTIN_MODULES`` and are imported on first lookup, so listing
the names (``--method`` choices) stays cheap.
"""

from __future__ import annotations

from ..registry import Registry

#: The model used when none is named.
DEFAULT_MODEL = "etofts"

_BUILTIN_MODULES = (
    "perfmap.kinetics.tofts",
    "perfmap.kinetics.patlak",
    "perfmap.kinetics.tcxm",
)
_registry = Registry("kinetic model", _BUILTIN_MODULES)


def register(name: str):
    """Class decorator that registers a kinetic model under ``name``.

    Raises ``ValueError`` if another class already holds the name.

    Examples
    --------
    >>> from perfmap.kinetics import KineticModel
    >>> @register("tofts")
    ... class Copy(KineticModel): pass
    Traceback (most recent call last):
    ...
    ValueError: a kinetic model named 'tofts' is already registered
    """
    return _registry.register(name)


def available() -> list[str]:
    """Names of the registered kinetic models, sorted.

    Examples
    --------
    >>> available()
    ['2cxm', 'etofts', 'patlak', 'tofts']
    """
    return _registry.available()


def get_model(name: str) -> type:
    """Return the kinetic model class registered as ``name``.

    Raises
    ------
    ParameterError
        If no model has that name; the message lists the valid ones.

    Examples
    --------
    >>> get_model("etofts")().fit_delay
    False
    """
    return _registry.get(name)
