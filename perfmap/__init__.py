"""perfmap: DSC-MRI perfusion maps and glioma-grading ratios, from files or arrays.

The top-level package imports nothing heavy: ``import perfmap`` and
``perfmap --help`` stay fast and never import torch. The array API and
:func:`compute` are imported on first use:

>>> import perfmap
>>> perfmap.DSCModel.__name__
'DSCModel'
"""

__version__ = "0.1.0"

#: name -> module of the lazily imported public objects
_LAZY = {"DSCModel": "perfmap.models", "DSCFit": "perfmap.models",
         "DCEModel": "perfmap.models", "DCEFit": "perfmap.models",
         "compute": "perfmap.pipeline"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'perfmap' has no attribute {name!r}")
