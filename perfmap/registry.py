"""Registries of named classes (deconvolution backends, kinetic models, denoisers).

Each registry lists the modules that define its built-in classes and imports
them on the first lookup, so listing the names (``--method`` choices, ``perfmap
--help``) imports nothing heavy. Classes register themselves with the
registry's ``register("name")`` decorator, which also sets their ``name``.

Examples
--------
>>> reg = Registry("example thing", ())
>>> @reg.register("one")
... class One: pass
>>> reg.available(), reg.get("one").name
(['one'], 'one')
>>> reg.get("two")
Traceback (most recent call last):
...
perfmap.errors.ParameterError: unknown example thing 'two'; choose one of: one
"""

from __future__ import annotations

import importlib

from .errors import ParameterError


class Registry:
    """Named classes of one kind.

    Parameters
    ----------
    what : str
        What the names are, for messages ("deconvolution method").
    builtin_modules : tuple of str
        Modules imported on the first lookup; one not written yet is skipped.
    """

    def __init__(self, what: str, builtin_modules: tuple):
        self.what = what
        self.builtin_modules = tuple(builtin_modules)
        self._classes: dict = {}
        self._loaded = False

    def register(self, name: str):
        """Class decorator that registers a class under ``name`` (a second class of the
        same name is a ``ValueError``)."""

        def decorator(cls):
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"a {self.what} named {name!r} is already registered")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a class registered by a test or an example)."""
        self._classes.pop(name, None)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin_modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:          # a missing dependency is an error
                    raise

    def available(self) -> list:
        """Registered names, sorted."""
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> type:
        """The class registered as ``name``; an unknown name lists the valid ones."""
        self._load()
        try:
            return self._classes[name]
        except KeyError:
            raise ParameterError(f"unknown {self.what} {name!r}; choose one of: "
                                 f"{', '.join(self.available())}") from None
