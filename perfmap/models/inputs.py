"""Checks of the arrays given to a model's ``fit`` (one clear sentence per problem)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import InputDataError, ParameterError, ShapeError

#: Fewest frames a dynamic series may have.
MIN_FRAMES = 10


def is_auto(value) -> bool:
    """True for ``None`` or the string ``"auto"`` (automatic mask or AIF)."""
    return value is None or (isinstance(value, str) and value == "auto")


def check_signal(signal) -> np.ndarray:
    """A 4D float array with enough frames and only finite values (not copied)."""
    signal = np.asarray(signal)
    if signal.ndim != 4:
        raise ShapeError(f"the series must be 4D (x, y, z, time), got shape {signal.shape}")
    if signal.shape[-1] < MIN_FRAMES:
        raise ShapeError(f"the series has {signal.shape[-1]} frames; at least {MIN_FRAMES} "
                         "are needed")
    if signal.dtype.kind not in "fiu":
        raise ShapeError(f"the series must hold numbers, got dtype {signal.dtype}")
    if signal.dtype.kind == "f" and not np.isfinite(signal).all():
        raise InputDataError("the series contains NaN or Inf values")
    return signal


def check_mask(mask, signal: np.ndarray, what: str) -> np.ndarray:
    """A non-empty boolean mask on the series' spatial grid."""
    mask = np.asarray(mask)
    if mask.shape != signal.shape[:3]:
        raise ShapeError(f"the {what} has shape {mask.shape} but the series has spatial "
                         f"shape {signal.shape[:3]}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise InputDataError(f"the {what} must hold only 0 and 1 (or booleans)")
        mask = mask.astype(bool)
    if not mask.any():
        raise InputDataError(f"the {what} is empty")
    return mask


def check_aif(aif, signal: np.ndarray) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(arterial mask, curve)``: at most one is set; both None for ``auto``."""
    if is_auto(aif):
        return None, None
    if isinstance(aif, str):
        raise ParameterError(f"aif must be 'auto', a 3D arterial mask or a curve, got {aif!r}")
    arr = np.asarray(aif)
    if arr.ndim == 1:
        if arr.shape[0] != signal.shape[-1]:
            raise ShapeError(f"the AIF curve has {arr.shape[0]} values but the series has "
                             f"{signal.shape[-1]} frames")
        if not np.all(np.isfinite(arr)):
            raise InputDataError("the AIF curve contains NaN or Inf values")
        return None, arr.astype(np.float64)
    return check_mask(arr, signal, "AIF mask"), None


def frame_times_for(signal: np.ndarray, frame_times, tr: Optional[float]) -> np.ndarray:
    """Frame times (s): as given (checked), else ``arange(T) * tr``."""
    n = signal.shape[-1]
    if frame_times is None:
        if tr is None:
            raise ParameterError("the frame interval is unknown: give tr (s) or frame_times")
        return np.arange(n) * float(tr)
    times = np.asarray(frame_times, dtype=np.float64)
    if times.shape != (n,):
        raise ShapeError(f"frame_times has shape {times.shape} but the series has {n} frames")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise InputDataError("frame_times must be finite and strictly increasing")
    return times - times[0]
