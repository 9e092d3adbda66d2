"""DESIGN section 5: every bad input gets one clear line, exit code 1 and no output files."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.main import cli


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_fails(res, *fragments, out_dir: Path):
    assert res.exit_code == 1, res.output
    message = res.output.strip().splitlines()
    assert len(message) == 1, f"expected one line, got: {res.output!r}"
    assert message[0].startswith("perfmap: error: ")
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in message[0], f"{fragment!r} not in {message[0]!r}"
    leftovers = list(out_dir.iterdir()) if out_dir.exists() else []
    assert leftovers == [], f"partial outputs left: {leftovers}"


def write_like(src: str, data, path: Path, zooms=None):
    img = nib.load(src)
    new = nib.Nifti1Image(np.asarray(data), img.affine, header=img.header.copy())
    # The phantom is stored as int16 with a slope; these edits need float storage (NaN, Inf).
    new.set_data_dtype(np.float32)
    new.header.set_slope_inter(1.0, 0.0)
    if zooms is not None:
        new.header.set_zooms(zooms)
    nib.save(new, str(path))
    side = Path(src).with_name(Path(src).name.replace(".nii.gz", ".json"))
    if side.exists():
        shutil.copy(side, path.with_name(path.name.replace(".nii.gz", ".json")))
    return path


def base_args(subject, out):
    return ["--aif", subject["aif"], "--mask", subject["mask"], "--out-dir", out]


def test_not_4d(subject, tmp_path):
    data = nib.load(subject["input"]).get_fdata()[..., 0]
    bad = write_like(subject["input"], data, tmp_path / "three_d.nii.gz")
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad] + base_args(subject, out)), "three_d.nii.gz", "4D",
                 out_dir=out)


def test_too_few_frames(subject, tmp_path):
    data = nib.load(subject["input"]).get_fdata()[..., :5]
    bad = write_like(subject["input"], data, tmp_path / "short.nii.gz")
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad] + base_args(subject, out)), "short.nii.gz", "frames",
                 out_dir=out)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf(subject, tmp_path, value):
    data = nib.load(subject["input"]).get_fdata().astype(np.float32)
    data[3, 4, 1, 7] = value
    bad = write_like(subject["input"], data, tmp_path / "nanny.nii.gz")
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad] + base_args(subject, out)), "nanny.nii.gz", "NaN",
                 out_dir=out)


@pytest.mark.parametrize("fill", [0.0, -100.0])
def test_zero_or_negative_baseline(subject, tmp_path, fill):
    data = np.full(nib.load(subject["input"]).shape, fill, np.float32)
    bad = write_like(subject["input"], data, tmp_path / "flat.nii.gz")
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad] + base_args(subject, out)), "flat.nii.gz", "baseline",
                 out_dir=out)


def test_mask_of_another_shape(subject, tmp_path):
    mask = nib.load(subject["mask"])
    small = nib.Nifti1Image(np.ones((5, 5, 2), np.uint8), mask.affine)
    path = tmp_path / "small_mask.nii.gz"
    nib.save(small, str(path))
    out = tmp_path / "out"
    args = ["compute", subject["input"], "--aif", subject["aif"], "--mask", path, "--out-dir", out]
    assert_fails(invoke(args), "small_mask.nii.gz", "shape", out_dir=out)


def test_mask_of_another_affine(subject, tmp_path):
    mask = nib.load(subject["mask"])
    affine = mask.affine.copy()
    affine[0, 3] += 4.0
    path = tmp_path / "shifted_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), affine), str(path))
    out = tmp_path / "out"
    args = ["compute", subject["input"], "--aif", subject["aif"], "--mask", path, "--out-dir", out]
    assert_fails(invoke(args), "shifted_mask.nii.gz", "grid", out_dir=out)


@pytest.mark.parametrize("option", ["--mask", "--aif", "--ref"])
def test_empty_masks(subject, tmp_path, option):
    mask = nib.load(subject["mask"])
    path = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.uint8), mask.affine), str(path))
    out = tmp_path / "out"
    args = {"--mask": subject["mask"], "--aif": subject["aif"]}
    args[option] = path
    cmd = ["compute", subject["input"], "--out-dir", out]
    for key, value in args.items():
        cmd += [key, value]
    if option == "--ref":
        cmd += ["--ref", path, "--roi", f"tumour={subject['tumour']}"]
    assert_fails(invoke(cmd), "empty.nii.gz", "empty", out_dir=out)


def test_te_missing(subject, tmp_path):
    src = Path(subject["input"])
    dst = tmp_path / "nosidecar.nii.gz"
    shutil.copy(src, dst)
    out = tmp_path / "out"
    assert_fails(invoke(["compute", dst] + base_args(subject, out)), "nosidecar.nii.gz", "TE",
                 out_dir=out)


def test_tr_missing(subject, tmp_path):
    img = nib.load(subject["input"])
    bad = write_like(subject["input"], np.asarray(img.dataobj), tmp_path / "notr.nii.gz",
                     zooms=img.header.get_zooms()[:3] + (0.0,))
    side = bad.with_name("notr.json")
    meta = json.loads(side.read_text())
    meta.pop("RepetitionTime")
    side.write_text(json.dumps(meta))
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad] + base_args(subject, out)), "notr.nii.gz", "TR",
                 out_dir=out)


def test_tr_in_milliseconds_header(subject, tmp_path):
    """xyzt_units msec: 1500 ms in pixdim[4] is read as 1.5 s."""
    img = nib.load(subject["input"])
    new = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, header=img.header.copy())
    new.header.set_xyzt_units("mm", "msec")
    new.header.set_zooms(img.header.get_zooms()[:3] + (1500.0,))
    path = tmp_path / "ms.nii.gz"
    nib.save(new, str(path))
    from perfmap.io.nifti import load_nifti_4d

    vol = load_nifti_4d(path, te=0.03)
    assert vol.tr == pytest.approx(1.5)
    assert "msec" in vol.meta["tr_source"]


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_corrupt_file(subject, tmp_path, kind):
    raw = Path(subject["input"]).read_bytes()
    bad = tmp_path / f"{kind}.nii.gz"
    if kind == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    else:
        bad.write_bytes(gzip.compress(b"this is not a nifti file" * 20))
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad, "--te", "0.03", "--tr", "1.5"] + base_args(subject, out)),
                 f"{kind}.nii.gz", out_dir=out)


def test_bad_aif_curve_length(subject, tmp_path):
    curve = tmp_path / "aif.txt"
    np.savetxt(curve, np.ones(7))
    out = tmp_path / "out"
    args = ["compute", subject["input"], "--aif", curve, "--mask", subject["mask"], "--out-dir", out]
    assert_fails(invoke(args), "aif.txt", "frames", out_dir=out)


def test_existing_outputs_not_overwritten(subject, tmp_path):
    out = tmp_path / "out"
    args = ["compute", subject["input"]] + base_args(subject, out)
    assert invoke(args).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    res = invoke(args)
    assert res.exit_code == 1
    assert "already exists" in res.output and "--overwrite" in res.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert invoke(args + ["--overwrite"]).exit_code == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporaries left behind"


def test_kind_offers_only_the_kinds_that_exist(subject, tmp_path):
    from perfmap.pipeline.kinds import available_kinds

    out = tmp_path / "out"
    res = invoke(["compute", subject["input"], "--kind", "nope"] + base_args(subject, out))
    assert res.exit_code == 2
    assert "Invalid value for '--kind': 'nope' is not" in res.stderr
    for kind in available_kinds():
        assert repr(kind) in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("defect", ["missing", "duplicated"])
def test_dicom_series_with_missing_or_duplicated_frames(tmp_path, defect):
    from dicom_factory import labelled_pixels, write_classic_series

    pixels = labelled_pixels(12, 3, 8, 8, dtype=np.int16)
    series = tmp_path / "dcm"
    kwargs = {"omit": [(5, 1)]} if defect == "missing" else {"duplicate": [(4, 2)]}
    write_classic_series(series, pixels, **kwargs)
    out = tmp_path / "out"
    res = invoke(["compute", series, "--out-dir", out])
    expected = "missing" if defect == "missing" else "twice"
    assert_fails(res, "dcm", expected, out_dir=out)


def test_dicom_folder_without_dicom(tmp_path):
    folder = tmp_path / "notdicom"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    out = tmp_path / "out"
    assert_fails(invoke(["compute", folder, "--out-dir", out]), "notdicom", out_dir=out)


def _mostly_dead(subject, tmp_path):
    img = nib.load(subject["input"])
    data = img.get_fdata(dtype=np.float32)
    mask = np.asarray(nib.load(subject["mask"]).dataobj) > 0
    alive = np.argwhere(mask)[::300]                   # about 0.3 % of the brain
    keep = np.asarray(nib.load(subject["aif"]).dataobj) > 0      # the arteries stay
    keep[tuple(alive.T)] = True
    data[mask & ~keep] = 0.0
    path = tmp_path / "dead.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), path)
    shutil.copy(subject["input"].replace(".nii.gz", ".json"), tmp_path / "dead.json")
    return path


def test_nearly_all_nan_maps_fail_unless_allowed(subject, tmp_path):
    bad = _mostly_dead(subject, tmp_path)
    out = tmp_path / "out"
    assert_fails(invoke(["compute", bad] + base_args(subject, out)), "dead.nii.gz",
                 "could be fitted", "--allow-empty", out_dir=out)
    res = invoke(["compute", bad, "--allow-empty", "-q"] + base_args(subject, out))
    assert res.exit_code == 0, res.output
    prov = json.loads((out / "dead_perfmap.json").read_text())
    assert any("could be fitted" in w for w in prov["warnings"])
    assert prov["voxels"]["not_fitted"] > 0.99 * prov["voxels"]["brain"]


# ------------------------------------------------------------------ dual echo

def _echo(subject, tmp_path, name, *, frames=None, te=0.06, tr=None, shape_cut=False):
    img = nib.load(subject["input"])
    data = img.get_fdata(dtype=np.float32)
    if frames is not None:
        data = data[..., :frames]
    if shape_cut:
        data = data[:-1]
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), path)
    side = json.loads(Path(subject["input"].replace(".nii.gz", ".json")).read_text())
    side["EchoTime"] = te
    if tr is not None:
        side["RepetitionTime"] = tr
    (tmp_path / f"{name}.json").write_text(json.dumps(side))
    return path


@pytest.mark.parametrize("defect,fragments", [
    ("grid", ("echo2.nii.gz", "second echo", "shape")),
    ("frames", ("echo2.nii.gz", "second echo", "shape")),
    ("tr", ("echo2.nii.gz", "TR")),
    ("same_te", ("echo2.nii.gz", "equals the series' TE")),
])
def test_bad_second_echo(subject, tmp_path, defect, fragments):
    te1 = json.loads(Path(subject["input"].replace(".nii.gz", ".json")).read_text())["EchoTime"]
    kwargs = {"grid": dict(shape_cut=True), "frames": dict(frames=40),
              "tr": dict(tr=2.0), "same_te": dict(te=te1)}[defect]
    echo = _echo(subject, tmp_path, "echo2", **kwargs)
    out = tmp_path / "out"
    assert_fails(invoke(["compute", subject["input"], "--second-echo", echo]
                        + base_args(subject, out)), *fragments, out_dir=out)


def test_te2_needs_a_second_echo(subject, tmp_path):
    out = tmp_path / "out"
    assert_fails(invoke(["compute", subject["input"], "--te2", "0.06"] + base_args(subject, out)),
                 "--te2", "--second-echo", out_dir=out)


def test_second_echo_auto_needs_a_dicom_folder(subject, tmp_path):
    """--second-echo auto pairs the echo series of a DICOM folder; a NIfTI input is refused."""
    out = tmp_path / "out"
    assert_fails(invoke(["compute", subject["input"], "--second-echo", "auto"]
                        + base_args(subject, out)), "--second-echo auto", "DICOM folder",
                 out_dir=out)
