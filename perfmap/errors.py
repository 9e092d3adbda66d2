"""Exception hierarchy.

Every error a user can cause is a :class:`PerfmapError`. Subclasses also inherit
the matching builtin so that library callers can catch ``ValueError`` or
``OSError`` as usual. The command line turns any ``PerfmapError`` into one line
on stderr and exit code 1.
"""


class PerfmapError(Exception):
    """Base class of every error perfmap raises on bad input or a failed run."""


class ShapeError(PerfmapError, ValueError):
    """An array or image has the wrong shape, dimensionality or grid."""


class InputDataError(PerfmapError, ValueError):
    """Input values are unusable (NaN/Inf, non-positive baseline, empty mask, ...)."""


class ParameterError(PerfmapError, ValueError):
    """A required acquisition or processing parameter is missing or invalid."""


class ImageReadError(PerfmapError, OSError):
    """A file could not be read or parsed (missing, corrupt, truncated)."""


class OutputExistsError(PerfmapError, FileExistsError):
    """An output file exists and ``overwrite`` was not requested."""


class ModelError(PerfmapError, ValueError):
    """Model weights are unreadable, unsafe, or do not fit the architecture or data."""
