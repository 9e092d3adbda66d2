"""Registry of 4D-series denoisers, by name.

Denoisers register themselves with ``@register("name")``. The built-in ones
live in the modules of ``_BUILTIN_MODULES`` and are imported on the first
lookup, so listing the names (``--denoise`` choices) imports nothing heavy.
"""

from __future__ import annotations

from ...registry import Registry

_BUILTIN_MODULES = (
    "perfmap.core.denoise.gaussian",
    "perfmap.core.denoise.mppca",
    # The learned denoisers (dae, cae) live in the neural layer, which imports core: they
    # are a plugin named here only as a string, imported lazily on the first lookup (the
    # module itself imports no torch; its denoisers import it when constructed).
    "perfmap.neural.denoisers",
)
_registry = Registry("denoising method", _BUILTIN_MODULES)


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
    >>> _registry.unregister("doc-identity")
    """
    return _registry.register(name)


def available() -> list[str]:
    """Names of the registered denoisers, sorted.

    Examples
    --------
    >>> available()
    ['cae', 'dae', 'gaussian', 'mppca']
    """
    return _registry.available()


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
    return _registry.get(name)
