"""Registry of tracer-kinetic models, by name.

Models register themselves with ``@register("name")``; the built-in ones live in
the modules of ``_BUILTIN_MODULES`` and are imported on first lookup, so listing
the names (``--method`` choices) stays cheap.
"""

from __future__ import annotations

import importlib

from ..errors import ParameterError

#: The model used when none is named.
DEFAULT_MODEL = "etofts"

_REGISTRY: dict[str, type] = {}
_BUILTIN_MODULES = (
    "perfmap.kinetics.tofts",
    "perfmap.kinetics.patlak",
    "perfmap.kinetics.tcxm",
)
_loaded = False


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

    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a kinetic model named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available() -> list[str]:
    """Names of the registered kinetic models, sorted.

    Examples
    --------
    >>> available()
    ['2cxm', 'etofts', 'patlak', 'tofts']
    """
    _load_builtins()
    return sorted(_REGISTRY)


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
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"unknown kinetic model {name!r}; choose one of: {', '.join(available())}"
        ) from None
