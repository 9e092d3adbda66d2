"""perfmap: DSC-MRI perfusion maps and glioma-grading ratios.

The top-level package imports nothing heavy: ``import perfmap`` and
``perfmap --help`` stay fast and never import torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
