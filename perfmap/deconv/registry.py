"""Registry of deconvolution backends, by name.

Backends register themselves with ``@register("name")``. Built-in backends live
in modules listed in ``_BUILTIN_MODULES`` and are imported on first lookup; the
PHAE module imports torch only when a PHAE backend is constructed, so listing
the methods (``perfmap --help``, ``--method`` choices) never imports torch.
"""

from __future__ import annotations

import inspect

from ..errors import ParameterError
from ..registry import Registry

_BUILTIN_MODULES = (
    "perfmap.deconv.svd",
    "perfmap.deconv.tikhonov",
    "perfmap.deconv.phae",
    "perfmap.deconv.phae2",
)
_registry = Registry("deconvolution method", _BUILTIN_MODULES)


def register(name: str):
    """Class decorator that registers a backend under ``name``."""
    return _registry.register(name)


def available() -> list[str]:
    """Names of the registered backends, sorted."""
    return _registry.available()


def get_backend(name: str) -> type:
    """Return the backend class registered as ``name``.

    Raises
    ------
    ParameterError
        If no backend has that name; the message lists the valid ones.
    """
    return _registry.get(name)


def backend_parameters(name: str) -> dict:
    """Hyper-parameters a backend accepts, ``key -> default`` (its ``__init__`` keywords).

    Examples
    --------
    >>> backend_parameters("osvd")["oi_limit"]
    0.095
    """
    cls = get_backend(name)
    params = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params[p.name] = p.default if p.default is not p.empty else None
    return params


def check_parameter_names(name: str, params) -> None:
    """Raise :class:`ParameterError` naming the first key backend ``name`` does not take."""
    valid = backend_parameters(name)
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise ParameterError(f"unknown parameter {unknown[0]!r} for method {name}; valid: "
                             f"{', '.join(sorted(valid))}")


def make_backend(name: str, **params):
    """Construct backend ``name`` with ``params``, checking every key and value.

    Raises
    ------
    ParameterError
        Unknown method, a key the backend does not take (the message lists the
        valid ones) or a value it refuses.

    Examples
    --------
    >>> make_backend("osvd", oi_limit=0.1).params()["oi_limit"]
    0.1
    >>> make_backend("osvd", threshold=0.1)
    Traceback (most recent call last):
    ...
    perfmap.errors.ParameterError: unknown parameter 'threshold' for method osvd; valid: ...
    """
    check_parameter_names(name, params)
    try:
        return get_backend(name)(**params)
    except ParameterError:
        raise
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in params.items()
                          if k not in ("device", "model"))
        raise ParameterError(f"invalid parameter for method {name}"
                             + (f" ({given})" if given else "") + f": {exc}") from None
