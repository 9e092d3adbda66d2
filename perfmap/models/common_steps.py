"""Steps shared by the kinds' step lists.

**denoise** (optional; DESIGN section 2): a registered denoiser
(:mod:`perfmap.core.denoise`, e.g. Marchenko-Pastur PCA) applied to the brain's
4D *signal*, after the brain mask and before the baseline and concentration
steps. The signal is where the denoisers' noise model holds (additive noise of
one standard deviation, estimated from the data); after ``-ln(S/S0)`` or the
SPGR inversion the noise depends on the signal level. ``perfmap denoise``
writes the same denoised series to a file.
"""

from __future__ import annotations

from ..errors import ParameterError
from .base import Step, Work


def make_denoiser(name: str, params: dict):
    """The denoiser registered as ``name``, constructed (and its parameters checked)."""
    from ..core.denoise import available, get_denoiser

    if name not in available():
        raise ParameterError(f"unknown denoising method {name!r}; choose one of: "
                             f"{', '.join(['none', *available()])}")
    try:
        return get_denoiser(name)(**params)
    except TypeError as exc:
        raise ParameterError(f"invalid parameter for denoising method {name}: {exc}") from None


def _denoise_step(model, w: Work) -> None:
    result = model.denoiser.denoise(w.data, w.brain_mask)
    w.data = result.data
    w.info["denoise"] = result.info


DENOISE_STEP = Step("denoise", _denoise_step, applies=lambda model: model.denoiser is not None)
