"""Registry of deconvolution backends, by name.

Backends register themselves with ``@register("name")``. Built-in backends live
in modules listed in ``_BUILTIN_MODULES`` and are imported on first lookup; the
PHAE module imports torch only when a PHAE backend is constructed, so listing
the methods (``perfmap --help``, ``--method`` choices) never imports torch.
"""

from __future__ import annotations

import importlib

from ..errors import ParameterError

_REGISTRY: dict[str, type] = {}
_BUILTIN_MODULES = (
    "perfmap.deconv.svd",
    "perfmap.deconv.tikhonov",
    "perfmap.deconv.phae",
)
_loaded = False


def register(name: str):
    """Class decorator that registers a backend under ``name``."""

    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a backend named {name!r} is already registered")
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
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A built-in module not written yet must not break the others.
            if exc.name != module:
                raise


def available() -> list[str]:
    """Names of the registered backends, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_backend(name: str) -> type:
    """Return the backend class registered as ``name``.

    Raises
    ------
    ParameterError
        If no backend has that name; the message lists the valid ones.
    """
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"unknown deconvolution method {name!r}; choose one of: {', '.join(available())}"
        ) from None
