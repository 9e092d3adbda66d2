"""DCE arterial input functions (``perfmap.core.dce_aif``).

- Parker 2006 population AIF against the OSIPI reference tables
  (``PopulationAIF_DCE``: times in minutes there), to 1e-4 mM + 1 %, with and
  without bolus delay; its parameters against OSIPI's ``ParkerAIF.csv``.
- Arrival-time fit: the delays of OSIPI's delayed Parker curves recovered
  within 0.1 s (OSIPI's delay tolerance is 1 s).
- Automatic arterial voxels: on a phantom with arteries, veins (later, broader)
  and tissue, only arterial voxels are chosen; shuffling the rows gives the same
  selection and the same curve bit for bit; on the QIBA v6 DRO the selection lies
  in the vascular strip.
"""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest

from perfmap.core.dce_aif import (PARKER_2006, auto_dce_aif, early_enhancing_curve,
                                  fit_parker_delay, parker_aif, plasma_from_blood)
from perfmap.errors import InputDataError, ParameterError, ShapeError

from osipi_dce import folder, within


def read_aif_table(path):
    groups = defaultdict(lambda: {"time": [], "cb": [], "delay": 0.0})
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            g = groups[row["label"]]
            g["time"].append(float(row["time"]))
            g["cb"].append(float(row["Cb"]))
            g["delay"] = float(row.get("delay") or 0.0)
    return {k: {"time": np.array(v["time"]), "cb": np.array(v["cb"]), "delay": v["delay"]}
            for k, v in groups.items()}


@pytest.fixture(scope="module")
def osipi_aif(shared_data):
    return folder(shared_data, "PopulationAIF_DCE", "data")


def test_parameters_are_parker_table_1(osipi_aif):
    with open(osipi_aif / "ParkerAIF.csv", newline="") as fh:
        header, values = list(csv.reader(fh))
    table = dict(zip(header[1:], map(float, values[1:])))
    names = {"A1": "A1", "sigma1": "sigma1", "T1": "T1", "A2": "A2", "sigma2": "sigma2",
             "T2": "T2", "alpha": "alpha", "beta": "beta", "s": "s", "tau": "tau"}
    for osipi_name, ours in names.items():
        assert PARKER_2006[ours] == pytest.approx(table[osipi_name], rel=1e-12)


@pytest.mark.parametrize("table", ["ParkerAIF_ref.csv", "ParkerAIF_ref_with_delay.csv"])
def test_parker_matches_osipi(osipi_aif, table):
    groups = read_aif_table(osipi_aif / table)
    assert len(groups) >= 9
    for label, g in groups.items():
        cb = parker_aif(g["time"] * 60.0, delay=g["delay"])       # minutes -> s
        ok = within(cb, g["cb"], 1e-4, 0.01)
        assert ok.all(), (label, np.flatnonzero(~ok))


def test_plasma_from_blood():
    assert float(plasma_from_blood(0.58)) == pytest.approx(0.58 / 0.58)
    np.testing.assert_allclose(plasma_from_blood([1.0, 2.0], hct=0.42), [1 / 0.58, 2 / 0.58])
    for hct in (-0.1, 1.0, np.nan):
        with pytest.raises(ParameterError, match="haematocrit"):
            plasma_from_blood(1.0, hct=hct)


def test_arrival_time_of_osipi_delayed_curves(osipi_aif):
    groups = read_aif_table(osipi_aif / "ParkerAIF_ref_with_delay.csv")
    for label, g in groups.items():
        delay, scale = fit_parker_delay(g["cb"], g["time"] * 60.0)
        assert delay == pytest.approx(g["delay"], abs=0.1), label
        assert scale == pytest.approx(1.0, rel=0.01), label


def test_arrival_time_with_noise_and_scale():
    rng = np.random.default_rng(2)
    t = np.arange(0.0, 300.0, 3.0)
    curve = 0.6 * parker_aif(t, 17.0) + rng.normal(0, 0.1, t.size)
    delay, scale = fit_parker_delay(curve, t)
    assert delay == pytest.approx(17.0, abs=1.0) and scale == pytest.approx(0.6, rel=0.1)
    with pytest.raises(InputDataError, match="no positive value"):
        fit_parker_delay(-np.ones(5), np.arange(5.0))
    with pytest.raises(ShapeError):
        fit_parker_delay(np.ones(5), np.arange(4.0))


# ---------------------------------------------------------------- automatic selection
def phantom(seed=0):
    """12x12x2 voxels: 6 arteries, 10 veins (higher peak, later and broader), tissue."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 240.0, 2.0)
    kernel = np.exp(-t / 6.0)
    kernel /= kernel.sum()
    artery = plasma_from_blood(parker_aif(t, 20.0))
    vein = 2.2 * np.convolve(plasma_from_blood(parker_aif(t, 27.0)), kernel)[:t.size]
    tissue_k = np.exp(-t / 120.0)
    idx = np.argwhere(np.ones((12, 12, 2), bool))
    curves = np.empty((len(idx), t.size))
    kind = np.zeros(len(idx), int)                  # 0 tissue, 1 artery, 2 vein
    kind[[5, 40, 77, 130, 201, 250]] = 1
    kind[[7, 60, 61, 100, 150, 151, 190, 210, 230, 280]] = 2
    for i, k in enumerate(kind):
        if k == 1:
            curves[i] = artery * rng.uniform(0.8, 1.0)
        elif k == 2:
            curves[i] = vein * rng.uniform(0.9, 1.1)
        else:
            ktr = rng.uniform(0.001, 0.004)
            curves[i] = 0.03 * artery + ktr * np.convolve(artery, tissue_k)[:t.size] * 2.0
    curves += rng.normal(0, 0.05, curves.shape)
    return curves, idx, t, kind


def test_auto_aif_picks_arteries_only():
    curves, idx, t, kind = phantom()
    sel = auto_dce_aif(curves, idx, t, n_voxels=4)
    chosen = [int(np.flatnonzero((idx == v).all(1))[0]) for v in sel.indices]
    assert sel.n_voxels == 4 and all(kind[c] == 1 for c in chosen)
    np.testing.assert_allclose(sel.curve, curves[chosen].mean(0))
    assert sel.params["counts"]["finite"] == len(curves)


def test_auto_aif_does_not_depend_on_voxel_order():
    curves, idx, t, _ = phantom(1)
    ref = auto_dce_aif(curves, idx, t, n_voxels=4)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(curves))
        other = auto_dce_aif(curves[order], idx[order], t, n_voxels=4)
        np.testing.assert_array_equal(other.indices, ref.indices)
        np.testing.assert_array_equal(other.curve, ref.curve)


def test_ties_are_broken_by_voxel_index():
    curves, idx, t, kind = phantom(2)
    artery = curves[kind == 1][0]
    curves[kind == 1] = artery                      # six identical arteries
    sel = auto_dce_aif(curves, idx, t, n_voxels=3)
    expected = idx[np.flatnonzero(kind == 1)[:3]]   # the three smallest indices
    np.testing.assert_array_equal(sel.indices, expected)


def test_auto_aif_refuses_tissue_only_and_bad_input():
    curves, idx, t, kind = phantom(3)
    tissue = kind == 0
    with pytest.raises(InputDataError, match="no plausible arterial voxel"):
        auto_dce_aif(curves[tissue], idx[tissue], t)
    with pytest.raises(ShapeError):
        auto_dce_aif(curves, idx[:, :2], t)
    with pytest.raises(ParameterError):
        auto_dce_aif(curves, idx, t, peak_fraction=0)
    with pytest.raises(InputDataError, match="finite curves"):
        auto_dce_aif(np.full((5, t.size), np.nan), idx[:5], t)


def test_parker_arrival_from_the_early_enhancing_curve():
    # The arteries reach half their peak first: the early-enhancing mean is arterial
    # and the fitted arrival is the phantom's (20 s), independent of row order.
    curves, idx, t, _ = phantom(4)
    early = early_enhancing_curve(curves, idx, t, fraction=0.02)
    delay, _ = fit_parker_delay(early, t)
    assert delay == pytest.approx(20.0, abs=1.0)
    order = np.random.default_rng(0).permutation(len(curves))
    np.testing.assert_array_equal(early_enhancing_curve(curves[order], idx[order], t, 0.02), early)
    with pytest.raises(InputDataError, match="no finite curve enhances"):
        early_enhancing_curve(-np.ones((3, t.size)), idx[:3], t)


def test_auto_aif_on_qiba_v6_finds_the_vascular_strip(shared_data):
    from perfmap.core.spgr import spgr_concentration
    from perfmap.io.dicom import load_dicom_series

    folder_ = shared_data / "qiba_dce_dro" / "v6_DCEMRIjl" / "DICOM"
    if not folder_.is_dir():
        pytest.skip(f"QIBA v6 not found at {folder_}")
    vol = load_dicom_series(folder_)
    data = vol.data[:, :70, :, ::4]                  # leave out the labelled top strip
    idx = np.argwhere(np.ones(data.shape[:3], bool))
    conc = spgr_concentration(data.reshape(-1, data.shape[-1]), (0, 25), 1.0, vol.tr,
                              vol.meta["FlipAngle"]).conc
    sel = auto_dce_aif(conc, idx, vol.frame_times[::4], n_voxels=10)
    assert np.all(sel.indices[:, 1] < 10)            # the bottom 50x10 vascular strip
