"""Dual-echo DSC: dR2* free of T1 effects (Vonken et al. 1999).

With two gradient echoes of the same excitation, ``S_k(t) = S_k0 f_T1(t)
exp(-TE_k dR2*(t))``, the T1-dependent factor ``f_T1`` (the same for both
echoes) cancels in their ratio (DESIGN section 4)::

    dR2*(t) = ln((S1(t) / S1_0) / (S2(t) / S2_0)) / (TE2 - TE1)        [1/s]

``S1_0`` and ``S2_0`` are the means of the same pre-bolus baseline frames.
Since ``ln(S_k / S_k0) = -TE_k c_k`` with ``c_k`` the single-echo dR2* of
echo ``k``, this is computed as::

    dR2* = (TE2 c2 - TE1 c1) / (TE2 - TE1)

from two calls of :func:`perfmap.core.concentration.dsc_concentration`, so
the baseline window, the signal floor (samples at or below
``SIGNAL_FLOOR * S0`` are raised to it) and the invalid-voxel rule (baseline
not positive and finite, or non-finite samples: NaN rows, flagged) are that
function's, applied to each echo; a voxel invalid in either echo is invalid.

References
----------
Vonken EPA, van Osch MJP, Bakker CJG, Viergever MA. Measurement of cerebral
    perfusion with dual-echo multi-slice quantitative dynamic susceptibility
    contrast MRI. JMRI 1999;10:109-117.
Paulson ES, Schmainda KM. Comparison of dynamic susceptibility-weighted
    contrast-enhanced MR methods: recommendations for measuring relative
    cerebral blood volume in brain tumors. Radiology 2008;249:601-613.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError, ShapeError
from .concentration import dsc_concentration


def dual_echo_concentration(signal1, signal2, te1: float, te2: float,
                            window) -> tuple[np.ndarray, np.ndarray]:
    """Dual-echo dR2* (1/s), free of T1 effects (Vonken 1999).

    Parameters
    ----------
    signal1, signal2 : array_like, shape (..., T)
        Signals of the first (shorter) and second (longer) echo, time last
        (``(X, Y, Z, T)``, ``(n, T)`` or ``(T,)``), same shape. Not modified.
    te1, te2 : float
        Echo times in seconds, ``te2 > te1 > 0``.
    window : BaselineWindow or (int, int)
        Baseline frames ``[start, stop)`` averaged into ``S1_0`` and ``S2_0``
        (as for :func:`perfmap.core.concentration.dsc_concentration`).

    Returns
    -------
    conc : ndarray, shape (..., T), float32
        ``ln((S1/S1_0) / (S2/S2_0)) / (TE2 - TE1)``; NaN rows where invalid.
    invalid : ndarray of bool, shape (...)
        Voxels invalid in either echo (baseline not positive and finite, or
        non-finite samples).

    Raises
    ------
    ShapeError
        The two echoes differ in shape.
    ParameterError
        An echo time is not positive, or ``te2`` is not longer than ``te1``.
    InputDataError
        The baseline window is outside the series.

    Examples
    --------
    A T1 factor of 1.3 after the bolus (both echoes) leaves the dual-echo
    dR2* at its true 20 1/s, while the second echo alone reads 11.3 1/s:

    >>> import numpy as np
    >>> r2 = np.array([0.0, 0.0, 20.0]); f_t1 = np.array([1.0, 1.0, 1.3])
    >>> s1 = 500 * f_t1 * np.exp(-0.01 * r2); s2 = 300 * f_t1 * np.exp(-0.03 * r2)
    >>> conc, bad = dual_echo_concentration(s1, s2, 0.01, 0.03, (0, 2))
    >>> np.round(conc, 3).tolist(), bool(bad)
    ([0.0, 0.0, 20.0], False)
    """
    s1, s2 = np.asarray(signal1), np.asarray(signal2)
    if s1.shape != s2.shape:
        raise ShapeError(f"the two echoes must have the same shape, got {s1.shape} and "
                         f"{s2.shape}")
    for name, te in (("first", te1), ("second", te2)):
        if not (np.isfinite(te) and te > 0):
            raise ParameterError(f"the {name} echo time must be a positive number of seconds, "
                                 f"got {te}")
    if not te2 > te1:
        raise ParameterError(f"the second echo time ({te2} s) must be longer than the first "
                             f"({te1} s)")
    c1, bad1 = dsc_concentration(s1, te1, window)
    c2, bad2 = dsc_concentration(s2, te2, window)
    w1, w2 = np.float32(te1 / (te2 - te1)), np.float32(te2 / (te2 - te1))
    c2 *= w2
    c2 -= w1 * c1
    return c2, bad1 | bad2
