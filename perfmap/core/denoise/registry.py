"""Registry of 4D-series denoisers, by name.

Denoisers register themselves with ``@register("name")``. The built-in ones
live in the modules of ``_BUILTIN_MODULES`` and are imported on the first
lookup, so listing the names (``--denoise`` choices) imports nothing heavy.
"""

from __future__ import annotations

import importlib

from ...errors import ParameterError

_REGISTRY: dict[str, type] = {}
_BUILTIN_MODULES = (
    "perfmap.core.denoise.gaussian",
    "perfmap.core.denoise.mppca",
)
_loaded = False


def register(name: str):
    """Class decorator that registers a denoiser under ``name``.

    Examples
    --------
    >>> from perfmap.core.denoise.base import Denoiser
    >>> @register("doc-identity")
    ... class Identity(Denoiser):
    ...     def params(self): return {}
    ...     def _denoise(self, series, mask): ...
    >>> "doc-identity" in available()
    True
    >>> _ = _REGISTRY.pop("doc-identity")
    """

    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a denoiser named {name!r} is already registered")
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
    """Names of the registered denoisers, sorted.

    Examples
    --------
    >>> available()
    ['gaussian', 'mppca']
    """
    _load_builtins()
    return sorted(_REGISTRY)


def get_denoiser(name: str) -> type:
    """Return the denoiser class registered as ``name``.

    Raises
    ------
    ParameterError
        If no denoiser has that name; the message lists the valid ones.

    Examples
    --------
    >>> get_denoiser("gaussian")(sigma=1.5).params()
    {'sigma': [1.5, 1.5, 1.5]}
    """
    _load_builtins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ParameterError(
            f"unknown denoising method {name!r}; choose one of: {', '.join(available())}"
        ) from None
