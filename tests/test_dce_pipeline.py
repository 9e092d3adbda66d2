"""DCE through the array API and the command line (``--kind dce``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.main import cli
from perfmap.kinetics.phantom import make_dce_phantom
from perfmap.errors import ParameterError
from perfmap.models import DCEModel

SHAPE = (40, 40, 3)


def fit(ph, method, **kw):
    model = DCEModel(method, tr=ph.tr, flip_angle=ph.flip_angle, **kw.pop("model", {}))
    inputs = kw.pop("inputs", {"vfa": ph.vfa, "vfa_angles": ph.vfa_angles})
    return model.fit(ph.signal, mask=ph.masks["brain"], aif=kw.pop("aif", ph.masks["aif"]),
                     frame_times=ph.times, **inputs)


def tumour_median(fit_, ph, name):
    return float(np.nanmedian(fit_.map(name)[ph.masks["tumour"]]))


@pytest.mark.parametrize("model,keys", [("etofts", ("ktrans", "ve", "vp")),
                                        ("tofts", ("ktrans", "ve")),
                                        ("patlak", ("ktrans", "vp")),
                                        ("2cxm", ("fp", "ps", "vp", "ve"))])
def test_noise_free_phantom_parameters_within_1_percent(model, keys):
    """Signal (SPGR) -> VFA T10 -> concentration -> fit recovers each model's truth."""
    ph = make_dce_phantom(shape=SHAPE, snr=None, model=model)
    res = fit(ph, model)
    for key in keys:
        truth = float(np.nanmedian(ph.truth[key][ph.masks["tumour"]]))
        assert tumour_median(res, ph, key) == pytest.approx(truth, rel=0.01), key
    t10 = res.map("t10")[ph.masks["wm"]]
    np.testing.assert_allclose(t10, 0.9, rtol=0.01)
    assert res.map("ktrans" if "ktrans" in res.map_names else "fp").dtype == np.float32


def test_t10_sources_agree():
    ph = make_dce_phantom(shape=SHAPE, snr=None)
    t10_map = np.nan_to_num(ph.truth["t10"], nan=1.6)
    a = fit(ph, "etofts", inputs={"t10_map": t10_map})
    b = fit(ph, "etofts")
    np.testing.assert_allclose(a.ktrans[ph.masks["tumour"]], b.ktrans[ph.masks["tumour"]],
                               rtol=2e-3)
    assert "t10" not in a.map_names and "t10" in b.map_names
    with pytest.raises(ParameterError, match="exactly one source of T10"):
        DCEModel("etofts", tr=ph.tr, flip_angle=ph.flip_angle, t10=1.2).fit(
            ph.signal, frame_times=ph.times, vfa=ph.vfa, vfa_angles=ph.vfa_angles)


def test_parker_and_automatic_aif():
    """The phantom's AIF is Parker 2006 arriving at 20 s: the population AIF with its
    fitted arrival, and the automatic arterial voxels, give the same Ktrans."""
    ph = make_dce_phantom(shape=SHAPE, snr=None)
    truth = float(np.nanmedian(ph.truth["ktrans"][ph.masks["tumour"]]))
    parker = fit(ph, "etofts", aif="parker")
    assert parker.provenance["aif"]["source"] == "parker"
    assert tumour_median(parker, ph, "ktrans") == pytest.approx(truth, rel=0.03)
    # this small phantom's artery has 3 voxels: average 3 (the default is 10)
    auto = fit(ph, "etofts", aif="auto", model={"aif_options": {"n_voxels": 3}})
    assert auto.aif_mask.sum() == 3 and not (auto.aif_mask & ~ph.masks["aif"]).any()
    assert tumour_median(auto, ph, "ktrans") == pytest.approx(truth, rel=0.01)


def test_model_free_maps():
    """Sourbron's model-free quantities: vd = integral C / integral Cp (independent), MTT =
    vd / Fp; Fp is underestimated at 4 s sampling (the plasma MTT is 10 s)."""
    ph = make_dce_phantom(shape=SHAPE, snr=None, model="2cxm")
    res = fit(ph, "osvd")
    assert res.map_names[:3] == ("fp", "vd", "mtt")
    tumour = ph.masks["tumour"]
    plasma = res.aif
    from perfmap.core.spgr import spgr_concentration

    conc = spgr_concentration(ph.signal[tumour], (0, 4), 1.6, ph.tr, ph.flip_angle).conc
    vd = np.trapezoid(conc, ph.times, axis=1) / np.trapezoid(plasma, res.times)
    np.testing.assert_allclose(res.map("vd")[tumour], vd, rtol=0.02)
    np.testing.assert_allclose(res.map("mtt")[tumour], res.map("vd")[tumour]
                               / (res.map("fp")[tumour] / 6000.0), rtol=1e-4)
    assert 0.3 < tumour_median(res, ph, "fp") / 50.0 < 1.0


def test_noisy_phantom_ktrans():
    ph = make_dce_phantom(shape=SHAPE, snr=30.0, seed=3)
    res = fit(ph, "etofts")
    truth = float(np.nanmedian(ph.truth["ktrans"][ph.masks["tumour"]]))
    assert tumour_median(res, ph, "ktrans") == pytest.approx(truth, rel=0.10)
    assert res.provenance["voxels"]["not_fitted"] <= 0.05 * ph.masks["brain"].sum()


# ------------------------------------------------------------------ command line

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from perfmap.simulate_dce import simulate_dce_cohort

    out = tmp_path_factory.mktemp("dce")
    manifest = simulate_dce_cohort(out, n_subjects=1, snr=40.0, shape=SHAPE, seed=2,
                                   hgg_fraction=1.0)
    return Path(manifest).parent


@pytest.fixture
def subject(cohort, tmp_path):
    dst = tmp_path / "in"
    shutil.copytree(cohort, dst)
    return dst


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def dce_args(d, out):
    return ["compute", d / "sub-01.nii.gz", "--kind", "dce", "--aif", d / "sub-01_aifmask.nii.gz",
            "--mask", d / "sub-01_brainmask.nii.gz", "--out-dir", out]


def test_cli_dce_end_to_end(subject, tmp_path):
    out = tmp_path / "o"
    res = invoke(dce_args(subject, out) + ["--vfa", subject / "sub-01_vfa.nii.gz",
                                           "--roi", f"tumour={subject / 'sub-01_tumour.nii.gz'}",
                                           "--ref", subject / "sub-01_ref.nii.gz", "-q"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    for m in ("ktrans", "ve", "vp", "kep", "t10"):
        assert f"sub-01_{m}.nii.gz" in names
    prov = json.loads((out / "sub-01_perfmap.json").read_text())
    truth = json.loads((subject / "sub-01.json").read_text())["perfmapPhantom"]
    tumour = truth["truth_roi_means"]["ktrans"]["mean_tumour"]
    assert prov["kind"] == "dce" and prov["method"] == "etofts"
    assert prov["rois"]["tumour"]["ktrans_mean"] == pytest.approx(tumour, rel=0.05)
    assert prov["tr_source"] == "sidecar RepetitionTimeExcitation"
    assert prov["frame_times_source"] == "sidecar FrameTimesStart"
    assert prov["units"]["ktrans"] == "1/min"
    aif = np.loadtxt(out / "sub-01_aif.tsv", skiprows=1)
    assert aif.shape[1] == 2 and aif[:, 1].max() > 1.0              # plasma mM


def _edit_sidecar(path, **changes):
    side = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            side.pop(k, None)
        else:
            side[k] = v
    path.write_text(json.dumps(side))


def _assert_fails(res, out, *fragments):
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmap: error: "), res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not out.exists() or not any(out.iterdir())


def test_cli_vfa_angles_not_matching(subject, tmp_path):
    out = tmp_path / "o"
    res = invoke(dce_args(subject, out) + ["--vfa", subject / "sub-01_vfa.nii.gz",
                                           "--vfa-angles", "2,5,10"])
    _assert_fails(res, out, "sub-01_vfa.nii.gz", "3 flip angles", "6 VFA volumes")


def test_cli_t1_map_of_another_grid_or_not_positive(subject, tmp_path):
    img = nib.load(subject / "sub-01_truth_t10.nii.gz")
    data = np.nan_to_num(img.get_fdata(), nan=1.2)
    nib.save(nib.Nifti1Image(data[:-1], img.affine), tmp_path / "small.nii.gz")
    bad = data.copy()
    bad[3, 3, 1] = -1.0
    nib.save(nib.Nifti1Image(bad, img.affine), tmp_path / "neg.nii.gz")
    out = tmp_path / "o"
    _assert_fails(invoke(dce_args(subject, out) + ["--t1", tmp_path / "small.nii.gz"]), out,
                  "small.nii.gz", "shape")
    _assert_fails(invoke(dce_args(subject, out) + ["--t1", tmp_path / "neg.nii.gz"]), out,
                  "neg.nii.gz", "non-positive")


@pytest.mark.parametrize("flip,fragment", [(None, "flip angle is missing"),
                                           (300.0, "flip angle 300 deg")])
def test_cli_flip_angle_missing_or_absurd(subject, tmp_path, flip, fragment):
    _edit_sidecar(subject / "sub-01.json", FlipAngle=flip)
    out = tmp_path / "o"
    _assert_fails(invoke(dce_args(subject, out) + ["--t10", "1.2"]), out, "sub-01.nii.gz",
                  fragment)


def test_cli_dce_needs_one_t10_source(subject, tmp_path):
    out = tmp_path / "o"
    _assert_fails(invoke(dce_args(subject, out)), out, "T10")


def test_dce_series_given_as_dsc_and_dsc_given_as_dce(subject, tmp_path, phantom_cohort):
    out = tmp_path / "o"
    res = invoke(["compute", subject / "sub-01.nii.gz", "--mask",
                  subject / "sub-01_brainmask.nii.gz", "--out-dir", out])
    _assert_fails(res, out, "T1-weighted (DCE)", "--kind dce")
    res = invoke(["compute", phantom_cohort["input"], "--kind", "dce", "--t10", "1.2",
                  "--out-dir", out])
    _assert_fails(res, out, "T2*-weighted (DSC)", "--kind dsc")


def test_dsc_options_are_refused_for_dce(subject, tmp_path):
    out = tmp_path / "o"
    _assert_fails(invoke(dce_args(subject, out) + ["--t10", "1.2", "--leakage", "bsw"]), out,
                  "leakage", "--kind dce")


# ------------------------------------------------------------------ QIBA DRO through the CLI

V6_KTRANS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.35]
V6_VE = [0.01, 0.05, 0.1, 0.2, 0.5]


@pytest.mark.slow
def test_qiba_v6_from_dicom_through_the_command_line(shared_data, tmp_path):
    """QIBA v6 (Tofts; T10 tissue 1 s, blood 1.44 s; Hct 0.45, as its description states)
    read from DICOM by ``perfmap compute --kind dce``: the AIF is the DRO's vascular strip
    (a mask), T10 a map; noise-free patch medians of Ktrans and ve within 2 %."""
    from perfmap.io.series import load_series

    folder = shared_data / "qiba_dce_dro" / "v6_DCEMRIjl" / "DICOM"
    if not folder.is_dir():
        pytest.skip(f"QIBA v6 not found at {folder}")
    vol = load_series(folder, min_frames=2)
    X, Y = vol.data.shape[:2]
    strip = np.zeros(vol.data.shape[:3], np.uint8)
    strip[:, 0:10] = 1                                   # the vascular strip (image bottom)
    t1 = np.where(strip > 0, 1.44, 1.0)
    for name, arr in (("aif", strip), ("t1", t1), ("mask", np.ones_like(strip))):
        nib.save(nib.Nifti1Image(arr, vol.affine), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "o"
    res = invoke(["compute", folder, "--kind", "dce", "--method", "tofts", "--aif",
                  tmp_path / "aif.nii.gz", "--mask", tmp_path / "mask.nii.gz", "--t1",
                  tmp_path / "t1.nii.gz", "--hct", "0.45", "--out-dir", out, "-q"])
    assert res.exit_code == 0, res.output
    # a folder named DICOM takes its parent's name first (v6_DCEMRIjl_DICOM_...)
    ktrans = nib.load(out / "v6_DCEMRIjl_DICOM_ktrans.nii.gz").get_fdata()[:, :, 0]
    ve = nib.load(out / "v6_DCEMRIjl_DICOM_ve.nii.gz").get_fdata()[:, :, 0]
    for i, k in enumerate(V6_KTRANS):
        y0 = Y - 1 - (10 + 10 * i + 9)
        for j, v in enumerate(V6_VE):
            patch = (slice(10 * j, 10 * j + 10), slice(y0, y0 + 10))
            assert np.nanmedian(ktrans[patch]) == pytest.approx(k, rel=0.02), (k, v)
            assert np.nanmedian(ve[patch]) == pytest.approx(v, rel=0.02), (k, v)


# ------------------------------------------------------------------ cohorts

def test_dce_cohort_simulate_batch_report_robustness(tmp_path):
    """simulate --kind dce -> batch --kind dce (T10 from each subject's VFA series named in
    the manifest) -> report on tumour Ktrans -> robustness: every step runs and HGG tumours
    have the higher Ktrans."""
    d = tmp_path / "c"
    res = invoke(["simulate", d, "--kind", "dce", "--subjects", "4", "--shape", "32x32x3",
                  "--snr", "40", "-q"])
    assert res.exit_code == 0 and res.stdout == "", res.output
    res = invoke(["batch", d / "manifest.tsv", "--kind", "dce", "--out-dir", tmp_path / "b",
                  "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    from perfmap.report.cohort import read_cohort

    rows = read_cohort(tmp_path / "b" / "cohort.tsv").rows
    assert {r["kind"] for r in rows} == {"dce"} and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        truth = json.loads((d / f"{row['subject']}.json").read_text())["perfmapPhantom"]
        expected = truth["truth_roi_means"]["ktrans"]["mean_tumour"]
        assert float(row["ktrans_mean"]) == pytest.approx(expected, rel=0.15, abs=0.005)
    res = invoke(["report", tmp_path / "b" / "cohort.tsv", "--metric", "ktrans_mean", "--out",
                  tmp_path / "r.html", "--json", tmp_path / "r.json", "--n-boot", "50", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["methods"][0]["auc"] == 1.0
    res = invoke(["robustness", d / "manifest.tsv", "--kind", "dce", "--snr", "20",
                  "--out-dir", tmp_path / "rob", "--jobs", "1", "--n-boot", "50", "-q"])
    assert res.exit_code == 0, res.output
    assert "ktrans_mean" in (tmp_path / "rob" / "cohort.tsv").read_text().splitlines()[0]


def test_cohort_options_belong_to_their_kind(tmp_path, phantom_cohort):
    manifest = Path(phantom_cohort["input"]).parent / "manifest.tsv"
    res = invoke(["batch", manifest, "--out-dir", tmp_path / "b", "--t10", "1.2"])
    assert res.exit_code == 2 and "--t10 is a DCE option" in res.stderr
    assert not (tmp_path / "b").exists()


def test_cli_parker_aif(subject, tmp_path):
    """--aif parker on the command line: no arterial mask is written, Ktrans close to truth
    (the phantom's AIF is Parker's), and DSC refuses it with a sentence naming --kind dce."""
    out = tmp_path / "o"
    res = invoke(["compute", subject / "sub-01.nii.gz", "--kind", "dce", "--aif", "parker",
                  "--mask", subject / "sub-01_brainmask.nii.gz", "--vfa",
                  subject / "sub-01_vfa.nii.gz", "--roi",
                  f"tumour={subject / 'sub-01_tumour.nii.gz'}", "--out-dir", out, "-q"])
    assert res.exit_code == 0, res.output
    assert not (out / "sub-01_aifmask.nii.gz").exists()
    prov = json.loads((out / "sub-01_perfmap.json").read_text())
    truth = json.loads((subject / "sub-01.json").read_text())["perfmapPhantom"]
    expected = truth["truth_roi_means"]["ktrans"]["mean_tumour"]
    assert prov["aif"]["source"] == "parker"
    assert prov["rois"]["tumour"]["ktrans_mean"] == pytest.approx(expected, rel=0.15)
