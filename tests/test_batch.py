"""``perfmap batch``: a simulated cohort with one corrupt subject, resume, workers, Dask."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfmap.cli.batch import batch as batch_cmd
from perfmap.errors import ImageReadError, InputDataError, ParameterError
from perfmap.io.tables import read_tsv
from perfmap.pipeline import batch as batch_mod
from perfmap.pipeline.batch import cohort_columns
from perfmap.pipeline import executors
from perfmap.pipeline.manifest import read_manifest
from perfmap.report.cohort import read_cohort

METHODS = "osvd,tikhonov"
RATIOS = ("cbf_ratio", "cbv_ratio", "mtt_ratio")
MAPS = ("cbf", "cbv", "mtt", "tmax", "ttp")


def run(args):
    return CliRunner().invoke(batch_cmd, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def source_cohort(tmp_path_factory):
    """Six tiny phantoms (16x16x3, 40 frames); sub-06's series is truncated."""
    from perfmap.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    manifest = simulate_cohort(out, n_subjects=6, snr=50.0, hgg_fraction=0.5,
                               shape=(16, 16, 3), n_frames=40, seed=11)
    good = out / "sub-06.nii.gz.good"
    shutil.copy(out / "sub-06.nii.gz", good)
    data = good.read_bytes()
    (out / "sub-06.nii.gz").write_bytes(data[: len(data) // 2])
    return Path(manifest)


@pytest.fixture
def cohort(source_cohort, tmp_path):
    """A private copy of the cohort (tests may repair the corrupt subject)."""
    dst = tmp_path / "cohort"
    shutil.copytree(source_cohort.parent, dst)
    return dst / source_cohort.name


def rows_by_pair(path):
    return {(r["subject"], r["method"]): r for r in read_tsv(path)}


def numbers(path):
    return {k: tuple(float(r[c]) for c in RATIOS) for k, r in rows_by_pair(path).items()
            if r["status"] == "ok"}


@pytest.fixture(scope="module")
def serial_run(source_cohort, tmp_path_factory):
    """The reference batch: --jobs 1, both methods."""
    out = tmp_path_factory.mktemp("serial") / "out"
    res = run([source_cohort, "--out-dir", out, "--method", METHODS, "--jobs", 1])
    return res, out


def test_failing_subject_is_recorded_and_others_complete(serial_run, source_cohort):
    res, out = serial_run
    assert res.exit_code == 1
    assert "2 of 12 subject/method runs failed" in res.stderr
    assert "Traceback" not in res.output + res.stderr
    header = (out / "cohort.tsv").read_text().splitlines()[0].split("\t")
    assert header == cohort_columns("dsc") + ["snr"]
    assert cohort_columns("dsc") == ["subject", "grade", "kind", "method", "status", "error",
                                     "seconds", "leakage", "denoise", "cbf_ratio", "cbv_ratio",
                                     "mtt_ratio", "cbf_ratio_curve"]
    rows = rows_by_pair(out / "cohort.tsv")
    assert len(rows) == 12
    for (subject, method), row in rows.items():
        assert (out / "logs" / f"{subject}_{method}.log").is_file()
        if subject == "sub-06":
            assert row["status"] == "failed"
            assert "sub-06.nii.gz" in row["error"] and "truncated" in row["error"]
            assert "\n" not in row["error"]
            assert not any((out / subject / method).glob("*.nii.gz"))
            assert "status failed" in (out / "logs" / f"{subject}_{method}.log").read_text()
        else:
            assert row["status"] == "ok", row
            assert row["error"] == ""
            assert row["snr"] == "50"
            for name in MAPS:
                assert (out / subject / method / f"{subject}_{name}.nii.gz").is_file()
            for c in RATIOS:
                assert math.isfinite(float(row[c])), (subject, method, c)
            assert float(row["seconds"]) > 0
    # The grade column comes from the manifest; the table reads back as a cohort.
    manifest = {r["subject"]: r["grade"] for r in read_tsv(source_cohort)}
    assert all(r["grade"] == manifest[s] for (s, _), r in rows.items())
    cohort = read_cohort(out / "cohort.tsv")
    assert cohort.methods == ["osvd", "tikhonov"]


def test_cohort_ratios_match_the_subject_json(serial_run):
    import json

    _, out = serial_run
    row = rows_by_pair(out / "cohort.tsv")[("sub-02", "tikhonov")]
    prov = json.loads((out / "sub-02" / "tikhonov" / "sub-02_perfmap.json").read_text())
    for c in RATIOS:
        assert float(row[c]) == prov["rois"]["tumour"][c]
    assert float(row["seconds"]) == prov["timings"]["total_s"]


def test_resume_skips_finished_and_retries_failed(cohort, tmp_path):
    out = tmp_path / "out"
    first = run([cohort, "--out-dir", out, "--method", METHODS, "--jobs", 1, "-q"])
    assert first.exit_code == 1
    before = numbers(out / "cohort.tsv")
    jsons = {p: p.stat().st_mtime_ns for p in out.glob("sub-0[1-5]/*/*_perfmap.json")}
    assert len(jsons) == 10
    # Without --resume or --overwrite an existing batch folder is refused.
    again = run([cohort, "--out-dir", out, "--method", METHODS, "--jobs", 1])
    assert again.exit_code == 1 and "--resume" in again.stderr
    # Repair the corrupt subject and resume: only its two pairs run.
    shutil.copy(cohort.parent / "sub-06.nii.gz.good", cohort.parent / "sub-06.nii.gz")
    res = run([cohort, "--out-dir", out, "--method", METHODS, "--jobs", 1, "--resume"])
    assert res.exit_code == 0, res.stderr
    assert "(2 run, 10 reused)" in res.stderr
    assert {p: p.stat().st_mtime_ns for p in jsons} == jsons
    after = numbers(out / "cohort.tsv")
    assert len(after) == 12
    assert all(after[k] == v for k, v in before.items())
    # A lost cohort.tsv is rebuilt from the per-subject JSONs without recomputing.
    (out / "cohort.tsv").unlink()
    res = run([cohort, "--out-dir", out, "--method", METHODS, "--jobs", 1, "--resume", "-q"])
    assert res.exit_code == 0
    assert numbers(out / "cohort.tsv") == after
    assert {p: p.stat().st_mtime_ns for p in jsons} == jsons


def test_cohort_is_written_after_each_pair(source_cohort, tmp_path):
    """A killed batch keeps every finished pair: cohort.tsv grows pair by pair."""
    seen = []

    def progress(done, total, row):
        if row is not None:
            seen.append(len(read_tsv(tmp_path / "out" / "cohort.tsv")))

    res = batch_mod.run_batch(source_cohort, tmp_path / "out", ["csvd"], jobs=1,
                              progress=progress)
    assert seen == list(range(1, 7))
    assert res.n_failed == 1 and res.n_run == 6


def test_two_workers_give_the_same_numbers(serial_run, source_cohort, tmp_path):
    _, ref = serial_run
    res = run([source_cohort, "--out-dir", tmp_path / "out", "--method", METHODS,
               "--jobs", 2, "-q"])
    assert res.exit_code == 1
    assert numbers(tmp_path / "out" / "cohort.tsv") == numbers(ref / "cohort.tsv")
    rows = rows_by_pair(tmp_path / "out" / "cohort.tsv")
    assert rows[("sub-06", "osvd")]["status"] == "failed"


@pytest.fixture(scope="module")
def dask_scheduler():
    """A real Dask scheduler with two worker processes on loopback."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(host="127.0.0.1", processes=True, n_workers=2,
                                       threads_per_worker=1, dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_dask_scheduler_gives_the_same_numbers(dask_scheduler, serial_run, source_cohort,
                                               tmp_path):
    _, ref = serial_run
    assert dask_scheduler.startswith("tcp://127.0.0.1:")
    res = run([source_cohort, "--out-dir", tmp_path / "out", "--method", METHODS,
               "--scheduler", dask_scheduler, "-q"])
    assert res.exit_code == 1
    assert "2 of 12" in res.stderr
    assert numbers(tmp_path / "out" / "cohort.tsv") == numbers(ref / "cohort.tsv")
    assert rows_by_pair(tmp_path / "out" / "cohort.tsv")[("sub-06", "tikhonov")]["error"] == \
        rows_by_pair(ref / "cohort.tsv")[("sub-06", "tikhonov")]["error"]


def test_missing_dask_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)
    with pytest.raises(ParameterError, match=r"perfmap\[distributed\]"):
        executors._dask_client("tcp://127.0.0.1:1", 1)


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("subject\tgrade\nsub-01\tHGG\n", "lacks the column(s) input"),
    ("subject\tinput\nsub-01\tsub-01.nii.gz\nsub-01\tsub-02.nii.gz\n", "already appears on row 1"),
    ("subject\tinput\nsub-01\tnope.nii.gz\n", "nope.nii.gz does not exist"),
    ("subject\tinput\ttumour\nsub-01\tsub-01.nii.gz\tgone.nii.gz\n", "tumour file"),
    ("subject\tinput\tte\nsub-01\tsub-01.nii.gz\tfast\n", "te 'fast' is not a number"),
    ("subject\tinput\tgrade\nsub-01\tsub-01.nii.gz\tV\n", "grade 'V' is not recognised"),
    ("subject\tinput\tstatus\nsub-01\tsub-01.nii.gz\tx\n", "clash"),
    ("subject\tinput\n\tsub-01.nii.gz\n", "subject cell is empty"),
    ("subject\tinput\n../up\tsub-01.nii.gz\n", "folder name"),
    ("subject\tinput\nsub-01\tsub-01.nii.gz\textra\n", "more fields"),
    ("subject\tinput\n", "no subjects"),
])
def test_manifest_errors_stop_before_anything_is_written(source_cohort, tmp_path, text,
                                                         message):
    manifest = _write(source_cohort.parent / f"bad_{abs(hash(text))}.tsv", text)
    try:
        res = run([manifest, "--out-dir", tmp_path / "out"])
    finally:
        manifest.unlink()
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmap: error: "), res.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_manifest_and_unknown_method(source_cohort, tmp_path):
    res = run([tmp_path / "none.tsv", "--out-dir", tmp_path / "out"])
    assert res.exit_code == 1 and "does not exist" in res.stderr
    res = run([source_cohort, "--out-dir", tmp_path / "out", "--method", "osvd,magic"])
    assert res.exit_code == 2
    assert "magic" in res.stderr and "tikhonov" in res.stderr
    assert not (tmp_path / "out").exists()


def test_read_manifest_resolves_paths_and_keeps_extras(source_cohort):
    m = read_manifest(source_cohort)
    assert m.subjects == [f"sub-0{i}" for i in range(1, 7)]
    assert m.extra_columns == ("snr",)
    e = m.entries[0]
    assert Path(e.input).is_absolute() and Path(e.tumour).is_file()
    assert e.te == 0.03 and e.tr == 1.5 and e.extra == {"snr": "50"}
    with pytest.raises(ImageReadError):
        read_manifest(source_cohort.parent / "missing.tsv")
    with pytest.raises(InputDataError):
        read_manifest(source_cohort.parent / "sub-01.json")
