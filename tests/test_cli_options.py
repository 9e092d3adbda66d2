"""Shared CLI options: the same option means the same thing in every command."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfmap.cli.main import cli
from perfmap.deconv import available, backend_parameters


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def compute_args(subject, out):
    return ["compute", subject["input"], "--aif", subject["aif"], "--mask", subject["mask"],
            "--out-dir", out]


def test_unknown_param_key_is_a_usage_error_listing_the_valid_keys(subject, tmp_path):
    out = tmp_path / "o"
    res = invoke(compute_args(subject, out) + ["--param", "threshold=0.2"])
    assert res.exit_code == 2
    assert "unknown parameter 'threshold' for osvd; valid: " in res.stderr
    for key in backend_parameters("osvd"):
        assert key in res.stderr
    assert "Traceback" not in res.output and not out.exists()


def test_bad_param_value_is_one_line_exit_1(subject, tmp_path):
    out = tmp_path / "o"
    res = invoke(compute_args(subject, out) + ["--method", "tikhonov", "--param", "n_mu=many"])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmap: error: invalid parameter for "
                                                   "method tikhonov")
    assert not out.exists()


def test_param_reaches_the_backend_and_the_json(subject, tmp_path):
    out = tmp_path / "o"
    res = invoke(compute_args(subject, out) + ["--param", "oi_limit=0.2", "-q"])
    assert res.exit_code == 0, res.output
    prov = json.loads(next(out.glob("*_perfmap.json")).read_text())
    assert prov["method_params"]["oi_limit"] == 0.2


def test_unknown_method_lists_the_kinds_methods(subject, tmp_path):
    res = invoke(compute_args(subject, tmp_path / "o") + ["--method", "svd"])
    assert res.exit_code == 2
    for name in available():
        assert name in res.stderr


def test_methods_command_lists_every_method_and_parameter():
    res = invoke(["methods"])
    assert res.exit_code == 0
    for name in available():
        assert f"dsc {name}\n" in res.output
        for key, default in backend_parameters(name).items():
            assert f"    {key} = {default!r}\n" in res.output


@pytest.mark.parametrize("command", ["compute", "batch", "robustness"])
def test_method_param_device_model_exist_on_every_command(command):
    res = invoke([command, "--help"])
    assert res.exit_code == 0
    for option in ("--kind", "--method", "--param", "--device", "--model"):
        assert option in res.output, f"{command} lacks {option}"


def test_batch_checks_param_keys_against_all_methods(phantom_cohort, tmp_path):
    manifest = Path(phantom_cohort["input"]).parent / "manifest.tsv"
    res = invoke(["batch", manifest, "--out-dir", tmp_path / "b", "--method", "osvd,tikhonov",
                  "--param", "nonsense=1"])
    assert res.exit_code == 2 and "valid: " in res.stderr and "oi_limit" in res.stderr
    assert not (tmp_path / "b").exists()


def test_batch_passes_params_to_the_methods_that_take_them(phantom_cohort, tmp_path):
    manifest = Path(phantom_cohort["input"]).parent / "manifest.tsv"
    out = tmp_path / "b"
    res = invoke(["batch", manifest, "--out-dir", out, "--method", "osvd,tikhonov",
                  "--param", "oi_limit=0.2", "--param", "criterion=rgcv", "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    osvd = json.loads(next((out / "sub-01" / "osvd").glob("*_perfmap.json")).read_text())
    tik = json.loads(next((out / "sub-01" / "tikhonov").glob("*_perfmap.json")).read_text())
    assert osvd["method_params"]["oi_limit"] == 0.2
    assert tik["method_params"]["criterion"] == "rgcv"
    assert osvd["kind"] == "dsc"


def test_verbosity_on_the_group_or_the_command(subject, tmp_path):
    quiet_group = invoke(["-q"] + compute_args(subject, tmp_path / "a"))
    quiet_cmd = invoke(compute_args(subject, tmp_path / "b") + ["-q"])
    loud = invoke(["-v"] + compute_args(subject, tmp_path / "c"))
    assert quiet_group.exit_code == quiet_cmd.exit_code == loud.exit_code == 0
    assert quiet_group.stdout == quiet_cmd.stdout == ""
    assert "brain voxels" in loud.stdout and "_cbf.nii.gz" in loud.stdout


def test_leakage_outputs_and_json(subject, tmp_path):
    """The DSC default (BSW) writes K2 and the reference voxels and records them."""
    import nibabel as nib
    import numpy as np

    out = tmp_path / "o"
    res = invoke(compute_args(subject, out) + ["--roi", f"tumour={subject['tumour']}",
                                               "--ref", subject["ref"], "-q"])
    assert res.exit_code == 0, res.output
    stem = Path(subject["input"]).name[:-len(".nii.gz")]
    k2 = nib.load(out / f"{stem}_k2.nii.gz").get_fdata()
    ref = nib.load(out / f"{stem}_leakref.nii.gz").get_fdata()
    mask = nib.load(subject["mask"]).get_fdata() > 0
    assert np.isfinite(k2[mask]).mean() > 0.95 and np.isnan(k2[~mask]).all()
    assert set(np.unique(ref)) <= {0.0, 1.0} and ref[mask].sum() > 10 and ref[~mask].sum() == 0
    prov = json.loads((out / f"{stem}_perfmap.json").read_text())
    assert prov["leakage"]["method"] == "bsw" and prov["leakage"]["gate"] == "reference"
    assert prov["leakage"]["reference_voxels"] == int(ref.sum())
    assert prov["units"]["k2"] == "1/s"
    assert "k2_mean" in prov["rois"]["tumour"] and "k2_ratio" in prov["rois"]["tumour"]
    none = invoke(compute_args(subject, tmp_path / "n") + ["--leakage", "none", "-q"])
    assert none.exit_code == 0 and not list((tmp_path / "n").glob("*_k2.nii.gz"))
