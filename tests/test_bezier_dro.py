"""Accuracy on the Bezier DSC DRO (Chakwizira et al. 2022), one test per data folder.

The DRO's signal images (SNR 20 per voxel) are converted with the authors'
relaxivities and deconvolved with perfmap's backends; ROI means over the
grey- and white-matter halves are compared with the truth in the file names.
The CBF bands below are regression guards: the accuracy these methods reach
(README "Accuracy" table, measured from perfmap's own output) with a margin for
platform rounding, not tuned to pass and not a statement of correctness: at SNR 20 the
noise-induced bias of truncated and regularised deconvolution is large, and
what must hold is CBV (an integral ratio, unbiased), the GM/WM contrast,
delay insensitivity of oSVD and the known direction of dispersion errors.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import bezier
from perfmap.core.maps import perfusion_maps
from perfmap.deconv import get_backend


@pytest.fixture(scope="module")
def results(shared_data):
    out = {}
    for method in ("osvd", "tikhonov", "ssvd"):
        backend = get_backend(method)()
        for rel, name, conc, aif, gm, cbf, cbv in bezier.cases(shared_data):
            if method == "ssvd" and rel != "delay_dispersion":
                continue  # sSVD is only the delay-sensitive contrast
            fit = backend.fit(conc, aif, bezier.TR)
            maps = perfusion_maps(conc, aif, bezier.TR, fit, kh=1.0, rho=1.0)
            out[(method, rel, name)] = (maps, gm, cbf, cbv)
    return out


def _errors(results, method, folder):
    rows = []
    for (m, rel, name), (maps, gm, cbf, cbv) in results.items():
        if m != method or rel != folder:
            continue
        for region in ([gm] if gm.all() else [gm, ~gm]):
            rows.append((np.nanmean(maps["cbf"][region]) / cbf[region][0] - 1.0,
                         np.nanmean(maps["cbv"][region]) / cbv[region][0] - 1.0))
    return np.array(rows)


VARYING_CBF = ["varying_cbf/exponential_residue_function",
               "varying_cbf/sigmoid_residue_function",
               "varying_cbf/boxcar_residue_function"]

#: Regression guard: median relative CBF error band per method, measured from perfmap's
#: own output (oSVD -19..+23 %, Tikhonov -22..+19 %; with its earlier default, standard-form
#: GCV, Tikhonov measured -42..-9 %)
CBF_BAND = {"osvd": (-0.30, 0.35), "tikhonov": (-0.30, 0.35)}


@pytest.mark.shared_data
@pytest.mark.parametrize("method", ["osvd", "tikhonov"])
@pytest.mark.parametrize("folder", VARYING_CBF + ["varying_residue_function"])
def test_cbf_and_cbv_per_folder(results, method, folder):
    err = _errors(results, method, folder)
    assert len(err) >= 3
    lo, hi = CBF_BAND[method]
    assert lo <= np.median(err[:, 0]) <= hi, np.median(err[:, 0])
    # CBV is an integral ratio: no deconvolution bias (measured median -6..+2 %).
    assert abs(np.median(err[:, 1])) <= 0.08, np.median(err[:, 1])


@pytest.mark.shared_data
@pytest.mark.parametrize("method, tol", [("osvd", 0.10), ("tikhonov", 0.10)])
@pytest.mark.parametrize("folder", VARYING_CBF)
def test_grey_to_white_contrast(results, method, tol, folder):
    """The GM/WM CBF ratio (truth 2) survives the noise: what ratios in grading need.

    Measured median errors: oSVD -3.6..-2.0 %, Tikhonov -1.3..+1.2 % (standard-form GCV,
    the earlier Tikhonov default, regularised white matter more: +22..+27 %).
    """
    ratios = []
    for (m, rel, name), (maps, gm, cbf, cbv) in results.items():
        if m == method and rel == folder:
            ratios.append(np.nanmean(maps["cbf"][gm]) / np.nanmean(maps["cbf"][~gm]) / 2.0 - 1)
    assert abs(np.median(ratios)) <= tol, ratios


def _pure_delay_changes(results, method):
    """CBF with a delayed bolus over CBF without, for the dispersion-free files."""
    base, changes = {}, []
    for (m, rel, name), (maps, *_rest) in results.items():
        if m != method or rel != "delay_dispersion" or not name.startswith("St_disp_0"):
            continue
        delayed = re.search(r"delay_(\d)_lvl_(\w+?)_resfunc", name).group(1) == "1"
        cbf = int(re.search(r"cbf_(\d+)", name).group(1))
        base.setdefault(cbf, {})["delayed" if delayed else "ref"] = base.get(cbf, {}).get(
            "delayed" if delayed else "ref", []) + [np.nanmean(maps["cbf"])]
    for cbf, d in base.items():
        ref = d["ref"][0]
        changes += [v / ref - 1.0 for v in d["delayed"]]
    return np.array(changes)


@pytest.mark.shared_data
def test_osvd_is_insensitive_to_delay_ssvd_is_not(results):
    osvd = _pure_delay_changes(results, "osvd")
    ssvd = _pure_delay_changes(results, "ssvd")
    assert len(osvd) == 21
    assert np.max(np.abs(osvd)) < 0.07, osvd          # measured: at most 4.9 %
    assert np.median(ssvd) < -0.15, ssvd              # measured: median -23 %


@pytest.mark.shared_data
@pytest.mark.parametrize("method", ["osvd", "tikhonov"])
def test_dispersion_lowers_cbf(results, method):
    """Dispersion of the bolus between AIF and tissue underestimates CBF (Calamante 2000)."""
    disp, nodisp = [], []
    for (m, rel, name), (maps, gm, cbf, cbv) in results.items():
        if m != method or rel != "delay_dispersion":
            continue
        err = np.nanmean(maps["cbf"]) / cbf[0] - 1.0
        (disp if name.startswith("St_disp_1") else nodisp).append(err)
    assert len(disp) == 42 and len(nodisp) == 28
    assert np.median(disp) < np.median(nodisp) - 0.15
