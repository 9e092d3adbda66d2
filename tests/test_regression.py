"""Regression guard: today's maps equal those of the code before the array-API restructure.

Leakage correction (the DSC default since) is switched off: the old code had none.

`tests/data/regression/maps_a8f4493.npz` holds the maps that perfmap computed at
commit a8f4493 on the phantom stored next to it (`make_reference.py`). This is
perfmap's own earlier output, so the test guards against unintended change; it
says nothing about accuracy (the closed-form and reference-data tests do).
"""

from pathlib import Path

import numpy as np
import pytest

import perfmap

DATA = Path(__file__).parent / "data" / "regression"
REF = np.load(DATA / "maps_a8f4493.npz")


#: Parameters that give each method's behaviour at a8f4493 (Tikhonov's default changed
#: afterwards, on purpose, in the grading-ratio study: the earlier one is still available).
PARAMS = {"phae": {"device": "cpu"}, "tikhonov": {"criterion": "gcv", "order": 0}}


def _run(tmp_path, method, mask):
    return perfmap.compute(DATA / "phantom.nii.gz", aif=DATA / "phantom_aifmask.nii.gz",
                           mask=mask, method=method, out_dir=tmp_path,
                           method_params=PARAMS.get(method),
                           rois={"tumour": DATA / "phantom_tumour.nii.gz"},
                           ref=DATA / "phantom_ref.nii.gz", leakage="none")


def _same(got, expected, rtol):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize("method", ["osvd", "tikhonov", "csvd", "ssvd", "phae"])
def test_maps_equal_the_pre_restructure_outputs(tmp_path, method):
    res = _run(tmp_path, method, DATA / "phantom_brainmask.nii.gz")
    for name in ("cbf", "cbv", "mtt", "tmax", "ttp"):
        # float32 rounding (PHAE: its flow is stored in float32 before CBF = 60 CBV / MTT)
        _same(res.maps[name], REF[f"{method}_{name}"], rtol=2e-6 if method != "phae" else 1e-5)
    np.testing.assert_allclose(res.aif, REF[f"{method}_aif"], rtol=1e-12)


def test_automatic_brain_mask_equals_the_pre_restructure_output(tmp_path):
    res = _run(tmp_path, "osvd", "auto")
    for name in ("cbf", "cbv", "mtt", "tmax", "ttp"):
        _same(res.maps[name], REF[f"automask_{name}"], rtol=2e-6)
