"""ROI statistics and the JSON's voxel counts against independent computations."""

import json
import shutil

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from perfmap.cli.main import cli
from perfmap.core.roi import add_ratios, roi_statistics


def test_roi_statistics_against_numpy():
    rng = np.random.default_rng(1)
    cbf = rng.lognormal(3.0, 0.8, size=(6, 5, 4)).astype(np.float32)   # skewed: mean != median
    cbf[0, 0, 0] = np.nan
    roi = np.zeros(cbf.shape, bool)
    roi[:4, :, :2] = True
    stats = roi_statistics({"cbf": cbf}, roi)
    values = cbf[roi][np.isfinite(cbf[roi])].astype(np.float64)
    assert stats["voxels"] == 40 and stats["cbf_valid"] == 39
    assert stats["cbf_mean"] == np.mean(values)
    assert stats["cbf_median"] == np.median(values)
    assert abs(stats["cbf_median"] - stats["cbf_mean"]) > 0.05 * stats["cbf_mean"]
    ref = roi_statistics({"cbf": cbf}, ~roi)
    add_ratios(stats, ref)
    assert stats["cbf_ratio"] == np.mean(values) / np.nanmean(cbf[~roi].astype(np.float64))


def test_json_counts_unfitted_voxels(subject, tmp_path):
    """Brain voxels with zero signal cannot be fitted: NaN maps, counted in the JSON."""
    img = nib.load(subject["input"])
    data = img.get_fdata(dtype=np.float32)
    mask = np.asarray(nib.load(subject["mask"]).dataobj) > 0
    dead = np.argwhere(mask)[::97][:7]
    data[tuple(dead.T)] = 0
    bad = tmp_path / "dead.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), bad)
    shutil.copy(subject["input"].replace(".nii.gz", ".json"), tmp_path / "dead.json")
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["compute", str(bad), "--aif", subject["aif"], "--mask",
                                   subject["mask"], "--out-dir", str(out), "-q"])
    assert res.exit_code == 0, res.output
    prov = json.loads((out / "dead_perfmap.json").read_text())
    cbf = np.asarray(nib.load(out / "dead_cbf.nii.gz").dataobj)
    n_nan = int(np.count_nonzero(np.isnan(cbf[mask])))
    assert n_nan >= len(dead)
    assert prov["voxels"]["not_fitted"] == n_nan
    assert prov["voxels"]["invalid_baseline"] == len(dead)
