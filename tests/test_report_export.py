"""Report files (perfmap.report.export) and figures (perfmap.report.plots)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re

import numpy as np
import pytest

import perfmap
from perfmap.errors import InputDataError, OutputExistsError, ParameterError, ShapeError
from perfmap.report import export, grading, plots
from perfmap.report.cohort import cohort_from_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATE = "2025-01-02T03:04:05+00:00"


def _cohort(with_snr=False):
    rng = np.random.default_rng(0)
    rows = []
    levels = [""] + ([50, 20] if with_snr else [])
    for snr in levels:
        for method, effect in (("osvd", 0.7), ("phae", 1.0)):
            for i in range(12):
                hgg = i < 6
                noise = 0.35 if snr == "" else 12.0 / snr
                value = 1.2 + effect * hgg + rng.normal(0, noise)
                row = dict(subject=f"s{i:02d}", grade="IV" if hgg else "II", method=method,
                           status="ok", error="", seconds=float(rng.uniform(3, 12)),
                           cbf_ratio=value)
                if with_snr:
                    row["snr"] = snr
                rows.append(row)
    rows[0].update(status="failed", error="TE missing", cbf_ratio="")
    return cohort_from_rows(rows, source="/data/cohort.tsv")


@pytest.fixture(scope="module")
def results():
    return grading.grading_table(_cohort(), n_boot=200, seed=1)


@pytest.fixture(scope="module")
def robustness():
    return grading.auc_by_snr(_cohort(with_snr=True), n_boot=200, seed=1)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, results, robustness):
    out = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(3)
    thumbs = [(f"s{i}", rng.gamma(2.0, 20.0, size=(16, 12))) for i in range(3)]
    thumbs[0][1][:2] = np.nan
    export.write_report(results, out / "r.html", out / "r.json", out / "r.csv",
                        robustness=robustness, thumbnails=thumbs, cohort="/data/cohort.tsv",
                        date=DATE)
    return out


def _images(text):
    return [base64.b64decode(b) for b in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_html_is_self_contained(report_dir):
    text = (report_dir / "r.html").read_text(encoding="utf-8")
    low = text.lower()
    assert "http://" not in low and "https://" not in low and "<script" not in low
    assert "@media print" in text and low.startswith("<!doctype html>")
    assert "<link" not in low and "@import" not in low and "url(" not in low
    # every src attribute is an embedded data URI
    assert all(src.startswith("data:image/png;base64,")
               for src in re.findall(r'src="([^"]*)"', text))


def test_html_content(report_dir, results):
    text = (report_dir / "r.html").read_text(encoding="utf-8")
    assert f"perfmap {perfmap.__version__}" in text
    assert "cbf_ratio" in text and DATE in text and "cohort.tsv" in text
    for name in ("AUC (95 % CI)", "Cut-off (95 % CI)", "Sensitivity % (95 % CI)",
                 "Specificity % (95 % CI)", "Accuracy %", "MWU p", "Time s, mean (range)",
                 "Excluded subjects", "Robustness to noise", "SNR 50", "SNR 20"):
        assert name in text
    r = results["osvd"]
    lo, hi = r.auc_ci
    assert f"{r.auc:.2f} ({lo:.2f}&ndash;{hi:.2f})" in text
    assert f"{100 * r.sensitivity:.1f} (" in text
    assert "s00 (status failed: TE missing)" in text


def test_images_decode_as_png(report_dir):
    from matplotlib.image import imread

    images = _images((report_dir / "r.html").read_text(encoding="utf-8"))
    assert len(images) == 4  # ROC, box plots, AUC vs SNR, thumbnails
    for png in images:
        assert png.startswith(PNG_MAGIC)
        pixels = imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
        assert np.ptp(pixels[..., :3]) > 0  # not a blank image


def test_json_and_csv_equal_the_table(report_dir, results, robustness):
    data = json.loads((report_dir / "r.json").read_text())
    assert data["perfmap_version"] == perfmap.__version__
    assert data["metric"] == "cbf_ratio" and data["created"] == DATE
    assert data["confidence_intervals"]["n_boot"] == 200
    assert [m["method"] for m in data["methods"]] == list(results)
    with open(report_dir / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(results)
    for jrow, crow, res in zip(data["methods"], rows, results.values()):
        expected = res.to_dict()
        assert jrow == expected
        assert list(crow) == list(expected)
        for key, value in expected.items():
            if value is None:
                assert crow[key] == ""
            elif isinstance(value, str):
                assert crow[key] == value
            else:
                assert float(crow[key]) == value, key
        assert jrow["auc"] == res.auc and jrow["cutoff_ci_high"] == res.cutoff_ci[1]
        assert jrow["sensitivity"] == res.sensitivity and jrow["mwu_p"] == res.mwu_p
        assert jrow["mean_seconds"] == res.mean_seconds
    assert data["excluded"]["osvd"] == [{"subject": "s00", "reason": "status failed: TE missing"}]
    assert len(data["values"]["phae"]) == 12
    assert data["robustness"] == [p.to_dict() for p in robustness]


def test_refuses_to_overwrite_and_writes_nothing(tmp_path, results):
    html = tmp_path / "r.html"
    html.write_text("keep me")
    with pytest.raises(OutputExistsError, match="r.html already exists"):
        export.write_report(results, html, tmp_path / "r.json", plots=False)
    assert html.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["r.html"]  # no JSON, no temp file
    assert issubclass(OutputExistsError, FileExistsError)
    export.write_report(results, html, tmp_path / "r.json", overwrite=True, plots=False)
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert json.loads((tmp_path / "r.json").read_text())["methods"][0]["method"] == "osvd"


def test_failure_leaves_no_partial_file(tmp_path, results, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "box_plot", boom)
    with pytest.raises(RuntimeError, match="plotting failed"):
        export.write_report(results, tmp_path / "r.html", tmp_path / "r.json",
                            tmp_path / "r.csv")
    assert os.listdir(tmp_path) == []

    real_replace = os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", fail_second)
    with pytest.raises(perfmap.errors.PerfmapError, match="could not write .*r.json"):
        export.write_report(results, tmp_path / "r.html", tmp_path / "r.json", plots=False)
    assert os.listdir(tmp_path) == []  # the HTML moved first is removed again


def test_output_path_errors(tmp_path, results):
    with pytest.raises(ParameterError, match="different files"):
        export.write_report(results, tmp_path / "a.html", tmp_path / "a.html", plots=False)
    with pytest.raises(ParameterError, match="is a folder"):
        export.write_report(results, tmp_path, plots=False)


def test_tables_only_report_and_escaping(tmp_path):
    rows = [dict(subject=f"<b>{i}</b>", grade="HGG" if i < 3 else "LGG", method="x<y>&z",
                 status="ok", cbf_ratio=float(i % 3 + (i < 3))) for i in range(6)]
    res = grading.grading_table(rows, n_boot=50)
    paths = export.write_report(res, tmp_path / "t.html", plots=False, title="A & B")
    text = paths["html"].read_text()
    assert "<img" not in text and "x&lt;y&gt;&amp;z" in text and "A &amp; B" in text
    assert "<b>" not in text.split("<body>")[1].replace("<b>cbf_ratio</b>", "")


def test_report_from_cohort_end_to_end(tmp_path):
    lines = ["subject\tgrade\tmethod\tstatus\terror\tseconds\tcbf_ratio\tcbv_ratio\tmtt_ratio"]
    values = [2.3, 1.9, 2.8, 1.5, 1.1, 1.6, 0.9, 1.2]  # one LGG > one HGG
    for i, v in enumerate(values):
        grade = "4" if i < 4 else "I"
        lines.append(f"s{i}\t{grade}\ttikhonov\tok\t\t{5 + i}\t{v}\t{v * 1.1}\t1.0")
    cohort = tmp_path / "cohort.tsv"
    cohort.write_text("\n".join(lines) + "\n")
    out = export.report_from_cohort(cohort, tmp_path / "rep" / "r.html", tmp_path / "r.json",
                                    metric="cbv_ratio", n_boot=100, plots=False)
    data = json.loads(out["json"].read_text())
    assert data["metric"] == "cbv_ratio" and data["robustness"] is None
    assert data["methods"][0]["auc"] == 15 / 16 and data["methods"][0]["n_hgg"] == 4
    with pytest.raises(OutputExistsError):
        export.report_from_cohort(cohort, out["html"], n_boot=100, plots=False)


def test_plot_functions_return_png(results, robustness):
    for png in (plots.roc_plot(results), plots.box_plot(results),
                plots.auc_snr_plot(robustness),
                plots.thumbnail_montage([("a", np.ones((4, 5))), ("b", np.zeros((4, 5)))])):
        assert isinstance(png, bytes) and png.startswith(PNG_MAGIC)
    with pytest.raises(ShapeError, match="thumbnail of a must be a 2D slice"):
        plots.thumbnail_montage([("a", np.ones((2, 2, 2)))])
    with pytest.raises(InputDataError):
        plots.thumbnail_montage([])


def test_format_p():
    assert [export.format_p(p) for p in (0.007, 0.0009, 0.04321, 3e-5, float("nan"))] == [
        "0.007", "0.0009", "0.043", "< 0.0001", "n/a"]
