"""Real in-vivo DSC curves: the OSIPI LCB-BNI tumour / NAWM / AIF ROI signals (``tests/data``).

Dual-echo GRE-EPI of a brain-tumour patient (TE 2 and 30 ms, TR 1.5 s, 121
frames; provenance and licence in ``tests/data/README.md``). There is no ground
truth, so these tests check what real data can check exactly or physically:

* the automatic baseline / bolus-arrival detection against the baseline the
  data's own notebook uses (frames 0-40);
* perfmap's sSVD against a textbook SVD deconvolution written here with
  ``numpy.linalg.svd`` (Ostergaard 1996), on real, noisy curves;
* every backend's normal-appearing white-matter MTT in the physiological range;
* T1 leakage: the single-echo (30 ms) tumour signal rises above its baseline
  after the bolus, so its tissue integral and CBV are negative. The maps keep
  CBV and CBF as measured and leave MTT undefined (NaN, counted in the JSON);
  the dual-echo combination, which cancels T1 effects (Vonken et al., J Magn
  Reson Imaging 1999;10:109-117), gives the positive, HGG-like tumour-to-NAWM
  CBV ratio instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat

from perfmap.core.concentration import detect_baseline, dsc_concentration
from perfmap.core.maps import cbv_from_curves, perfusion_maps
from perfmap.deconv import available, get_backend
from perfmap.errors import InputDataError

DATA = Path(__file__).parent / "data" / "lcb_bni_dualecho_dsc_roi_curves.mat"
ROIS = ("AIF", "NAWM", "tumor")


@pytest.fixture(scope="module")
def real():
    d = loadmat(DATA)
    te1, te2, tr = (float(np.squeeze(d[k])) for k in ("TE1", "TE2", "TR"))
    signal = {k: d[f"{k}_SIt"].astype(np.float64) for k in ROIS}      # (2 echoes, 121)
    window = detect_baseline(signal["NAWM"][1])
    conc = {k: dsc_concentration(signal[k][1], te2, window)[0].astype(np.float64)
            for k in ROIS}
    base = slice(window.start, window.stop)
    dual = {k: np.log((s[0] / s[0][base].mean()) / (s[1] / s[1][base].mean())) / (te2 - te1)
            for k, s in signal.items()}
    return {"signal": signal, "conc": conc, "dual": dual, "tr": tr, "te": te2,
            "window": window}


def test_bolus_arrival_matches_the_notebooks_baseline(real):
    """The notebook's baseline is frames 0-40; the AIF arrives before the tissue."""
    arrival = {}
    for k in ROIS:
        w = detect_baseline(real["signal"][k][1])
        assert w.start == 0 and w.stop <= w.arrival
        assert 41 <= w.arrival <= 48, (k, w.as_dict())
        assert w.stop >= 40                                   # 40 steady frames for S0
        arrival[k] = w.arrival
    assert arrival["AIF"] < arrival["NAWM"]


def test_ssvd_equals_a_textbook_svd_deconvolution(real):
    """Rectangle-rule lower-triangular matrix, 20 % truncation, numpy.linalg.svd."""
    dt = real["tr"]
    aif = real["conc"]["AIF"]
    curves = np.stack([real["conc"]["NAWM"], real["conc"]["tumor"]])
    n = aif.size
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    a = np.where(lag >= 0, dt * aif[np.clip(lag, 0, None)], 0.0)
    u, s, vt = np.linalg.svd(a)
    inv_s = np.where(s >= 0.2 * s.max(), 1.0 / s, 0.0)
    k_ref = (vt.T * inv_s) @ (u.T @ curves.T)                   # (n, 2)
    fit = get_backend("ssvd")(threshold=0.2, discretisation="rectangle",
                              keep_residue=True).fit(curves.astype(np.float32), aif, dt)
    scale = np.abs(k_ref).max(axis=0)
    np.testing.assert_allclose(fit.residue, k_ref.T, atol=2e-4 * scale.max())
    np.testing.assert_allclose(fit.flow, k_ref.max(axis=0), rtol=2e-4)
    np.testing.assert_allclose(fit.tmax, dt * np.argmax(k_ref, axis=0))


@pytest.mark.parametrize("name", available())
def test_white_matter_mtt_is_physiological(real, name):
    """NAWM MTT 3-8 s for every backend (healthy white matter: about 4-7 s, e.g.
    Ostergaard 1996 Part II; Helenius 2003). A dt in ms or a missing factor 60
    would be off by orders of magnitude."""
    if name == "phae":
        pytest.importorskip("torch")
    params = {"device": "cpu"} if name == "phae" else {}
    nawm = real["conc"]["NAWM"][None, :]
    fit = get_backend(name)(**params).fit(nawm.astype(np.float32), real["conc"]["AIF"],
                                          real["tr"])
    maps = perfusion_maps(nawm, real["conc"]["AIF"], real["tr"], fit)
    assert 3.0 <= float(maps["mtt"][0]) <= 8.0, (name, maps)
    assert float(maps["cbf"][0]) > 0


def test_t1_leakage_gives_negative_cbv_and_undefined_mtt(real):
    conc, aif, dt = real["conc"], real["conc"]["AIF"], real["tr"]
    tumour = conc["tumor"]
    assert tumour[70:].mean() < -0.2 * tumour.max() < 0       # signal above baseline
    curves = np.stack([tumour, conc["NAWM"]])
    for name in ("osvd", "tikhonov", "ssvd"):
        maps = perfusion_maps(curves, aif, dt, get_backend(name)().fit(
            curves.astype(np.float32), aif, dt))
        assert maps["cbv"][0] < 0 and maps["cbf"][0] > 0 and np.isnan(maps["mtt"][0])
        assert np.isfinite(maps["tmax"][0]) and np.isfinite(maps["ttp"][0])
        assert 3.0 <= maps["mtt"][1] <= 8.0
    # Dual echo cancels the T1 effect: tumour CBV positive and 2-6x NAWM (an HGG).
    dual = real["dual"]
    ratio = cbv_from_curves(dual["tumor"], dual["AIF"], dt) / cbv_from_curves(
        dual["NAWM"], dual["AIF"], dt)
    assert 2.0 < float(ratio) < 6.0


def test_pipeline_counts_undefined_mtt(real, tmp_path):
    """A 4x4x1 exam of the real 30 ms signals: 2 AIF, 6 NAWM and 8 tumour voxels."""
    from perfmap.pipeline import compute

    sig = real["signal"]
    labels = np.array([0, 0] + [1] * 6 + [2] * 8).reshape(4, 4, 1)
    data = np.stack([sig[k][1] for k in ROIS])[labels]           # (4, 4, 1, 121)
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), tmp_path / "exam.nii.gz")
    for name, mask in (("aif", labels == 0), ("tumour", labels == 2), ("ref", labels == 1)):
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), tmp_path / f"{name}.nii.gz")
    brain = np.ones((4, 4, 1), np.uint8)
    nib.save(nib.Nifti1Image(brain, affine), tmp_path / "brain.nii.gz")
    args = dict(aif=tmp_path / "aif.nii.gz", mask=tmp_path / "brain.nii.gz", method="osvd",
                te=real["te"], tr=real["tr"], rois={"tumour": tmp_path / "tumour.nii.gz"},
                ref=tmp_path / "ref.nii.gz", out_dir=tmp_path / "out")
    # 16 voxels are too few to choose leakage reference voxels: the default says so
    with pytest.raises(InputDataError, match="reference voxels.*--leakage none"):
        compute(tmp_path / "exam.nii.gz", **args)
    assert not (tmp_path / "out").exists()
    res = compute(tmp_path / "exam.nii.gz", leakage="none", **args)
    prov = json.loads((tmp_path / "out" / "exam_perfmap.json").read_text())
    assert prov["baseline"]["arrival"] in range(41, 49)
    assert prov["voxels"]["mtt_undefined"] == 8
    tumour = labels == 2
    assert np.all(np.isnan(res.maps["mtt"][tumour]))
    assert np.all(res.maps["cbv"][tumour] < 0) and np.all(res.maps["cbf"][tumour] > 0)
    assert np.all(np.isfinite(res.maps["mtt"][labels == 1]))
    stats = prov["rois"]["tumour"]
    assert stats["voxels"] == 8 and stats["cbv_ratio"] < 0
