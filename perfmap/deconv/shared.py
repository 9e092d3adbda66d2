"""One regularisation for several curves: ``fit_shared`` of the per-voxel backends.

oSVD and Tikhonov choose their regularisation (threshold, weight) curve by
curve from the data. When two curves are to be *compared*, as the tumour and
reference ROI-mean curves of a grading ratio
(:func:`perfmap.core.roi.mean_curve_ratios`), choosing separately smooths the
noisier curve more and biases the ratio. On perfmap's phantoms
(``benchmarks/ratio_bias.py`` cohorts, 12 subjects, SNR 50 / 20 / 10) oSVD
chose 2.3-4 times larger thresholds for the reference mean curve (fewer
voxels, lower CNR) than for the tumour's, and the ratio of the separately
deconvolved curves was 7-13 % higher (mixed residues: +13 / +13 / +12 %
against +6 / +6 / +5 % shared; one residue shape for the whole brain: +8 /
+11 / +7 % against -2 / -3 / -4 %). A shared fit chooses per curve as usual
and then deconvolves every curve with the strongest choice, the weakest
regularisation all of them accept.
"""

from __future__ import annotations

import numpy as np


class SharedChoice:
    """Mixin of backends that pick one regularisation index per row.

    The backend's ``_solve(conc, state, shared)`` applies, when ``shared`` is
    true, the largest index chosen by a row that is not all zero to every row.
    """

    _shared = False

    def fit_shared(self, conc, aif, dt):
        """Deconvolve the rows of ``conc`` with one regularisation, the strongest any row chooses.

        Parameters and result as :meth:`perfmap.deconv.Backend.fit`; rows with
        NaN or Inf are failed and take no part in the choice. Meant for a few
        curves (ROI means), not for images: one noisy row sets the
        regularisation of all.
        """
        saved = self.chunk_size
        self._shared, self.chunk_size = True, max(1, len(conc))     # one chunk: one choice
        try:
            return self.fit(conc, aif, dt)
        finally:
            self._shared, self.chunk_size = False, saved


def shared_index(choice: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``choice`` replaced by its largest value over the rows that are not all zero."""
    live = np.any(rows != 0, axis=1)
    if not live.any():
        return choice
    return np.full_like(choice, choice[live].max())
