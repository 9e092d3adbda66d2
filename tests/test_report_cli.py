"""``perfmap report``: HTML/JSON/CSV from a cohort table, errors, and the page in Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.report import report as report_cmd

REPO = Path(__file__).resolve().parents[1]
HEADER = "subject\tgrade\tmethod\tstatus\terror\tseconds\tcbf_ratio\tcbv_ratio\tmtt_ratio\n"


def run(args):
    return CliRunner().invoke(report_cmd, [str(a) for a in args], catch_exceptions=False)


def write_cohort(path, grades=("HGG", "LGG") * 4):
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for i, grade in enumerate(grades):
        for method, spread in (("osvd", 0.4), ("tikhonov", 0.8)):
            base = 2.5 if grade == "HGG" else 1.2
            r = base + spread * rng.standard_normal(3)
            lines.append(f"s{i:02d}\t{grade}\t{method}\tok\t\t{1 + i / 10:.2f}\t"
                         f"{r[0]:.4f}\t{r[1]:.4f}\t{r[2]:.4f}\n")
    lines.append("s99\tHGG\tosvd\tfailed\ts99.nii.gz: truncated\t0.01\tnan\tnan\tnan\n")
    path.write_text("".join(lines))
    return path


@pytest.fixture
def cohort(tmp_path):
    return write_cohort(tmp_path / "cohort.tsv")


def test_report_writes_html_json_csv(cohort, tmp_path):
    out = tmp_path / "rep"
    res = run([cohort, "--out", out / "r.html", "--json", out / "r.json", "--csv",
               out / "r.csv", "--n-boot", 200, "--seed", 3])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == [str(out / "r.html"), str(out / "r.json"), str(out / "r.csv")]
    html = (out / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    assert "s99" in html  # the failed subject is listed as excluded
    data = json.loads((out / "r.json").read_text())
    assert [m["method"] for m in data["methods"]] == ["osvd", "tikhonov"]
    assert data["metric"] == "cbf_ratio" and data["confidence_intervals"]["n_boot"] == 200
    assert data["robustness"] is None
    rows = list(csv.DictReader((out / "r.csv").open()))
    assert [r["method"] for r in rows] == ["osvd", "tikhonov"]
    assert float(rows[0]["auc"]) == pytest.approx(data["methods"][0]["auc"])
    # Existing outputs are refused without --overwrite, accepted with it.
    again = run([cohort, "--out", out / "r.html", "--n-boot", 50])
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert run([cohort, "--out", out / "r.html", "--n-boot", 50, "--overwrite",
                "-q"]).exit_code == 0


def test_other_metric(cohort, tmp_path):
    res = run([cohort, "--out", tmp_path / "r.html", "--json", tmp_path / "r.json",
               "--metric", "cbv_ratio", "--n-boot", 50, "-q"])
    assert res.exit_code == 0, res.stderr
    assert json.loads((tmp_path / "r.json").read_text())["metric"] == "cbv_ratio"
    res = run([cohort, "--out", tmp_path / "s.html", "--metric", "ktrans"])
    assert res.exit_code == 1 and "no column 'ktrans'" in res.stderr


@pytest.mark.parametrize("grades, message", [
    (("HGG",) * 5, "only HGG"),
    (("HGG", "LGG", "LGG", "LGG"), "at least 2 HGG and 2 LGG"),
])
def test_one_class_or_too_few_is_one_line_exit_1(tmp_path, grades, message):
    cohort = write_cohort(tmp_path / "cohort.tsv", grades)
    res = run([cohort, "--out", tmp_path / "r.html"])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmap: error: ") and message in lines[0]
    assert not (tmp_path / "r.html").exists()


def test_missing_cohort_is_exit_1(tmp_path):
    res = run([tmp_path / "nope.tsv", "--out", tmp_path / "r.html"])
    assert res.exit_code == 1 and "does not exist" in res.stderr


def test_thumbnails_from_batch_folder(tmp_path):
    """A cohort.tsv next to batch outputs gets a montage of mid-slice CBF maps."""
    from perfmap.pipeline.batch import run_batch
    from perfmap.pipeline.manifest import collect_thumbnails
    from perfmap.simulate import simulate_cohort

    manifest = simulate_cohort(tmp_path / "c", n_subjects=4, snr=50.0, shape=(16, 16, 3),
                               n_frames=40, seed=4)
    result = run_batch(manifest, tmp_path / "b", ["csvd"], jobs=1)
    thumbs = collect_thumbnails(result.cohort_path)
    assert [name for name, _ in thumbs] == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert all(img.shape == (16, 16) for _, img in thumbs)
    assert thumbs.method == "csvd"
    res = run([result.cohort_path, "--out", tmp_path / "r.html", "--n-boot", 50, "-q"])
    assert res.exit_code == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    # The montage says which method's CBF it shows.
    assert "<h2>Maps: CBF, method csvd</h2>" in html
    assert "computed with <b>csvd</b>" in html
    res = run([result.cohort_path, "--out", tmp_path / "n.html", "--n-boot", 50,
               "--no-thumbnails", "-q"])
    assert "<h2>Maps" not in (tmp_path / "n.html").read_text()


# ------------------------------------------------------------------ headless Chromium

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _screenshot(page: Path, tmp: Path, size=(1200, 2000)):
    """Load ``page`` in headless Chromium; return (PNG path, page-initiated request URLs)."""
    png, netlog = tmp / "shot.png", tmp / "netlog.json"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={netlog}",
           f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", page.as_uri()]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                   check=False, env={**os.environ, "HOME": str(tmp)})
    assert png.is_file(), "chromium wrote no screenshot"
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except ValueError:  # the log is left unterminated when the browser exits abruptly
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if names.get(event["type"]) == "URL_REQUEST_START_JOB" and "url" in params:
            # The browser's own background requests have no origin; the page's do.
            if params.get("initiator") != "not an origin":
                requests.append(params["url"])
    return png, requests


@pytest.fixture(scope="module")
def chromium():
    if _chromium() is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")


def test_html_report_renders_offline_in_chromium(chromium, tmp_path):
    import matplotlib.image as mpimg

    cohort = write_cohort(tmp_path / "cohort.tsv")
    html = tmp_path / "report.html"
    assert run([cohort, "--out", html, "--n-boot", 100, "-q"]).exit_code == 0
    png, requests = _screenshot(html, tmp_path / "shot")
    assert requests == [], f"the report made network requests: {requests}"
    img = mpimg.imread(png)
    assert img.shape[:2] == (2000, 1200)
    rgb = img[..., :3]
    assert rgb.std() > 0.05, "the screenshot is blank"
    # The ROC and box plots sit below the table (y 400-1500 px): coloured curve pixels.
    colour = rgb.max(axis=-1) - rgb.min(axis=-1)
    band = colour[400:1500]
    assert np.count_nonzero(band > 0.3) > 2000, "no coloured plot in the figures region"
    assert np.count_nonzero(colour[:150] > 0.3) < 50  # the title area is text only


def test_network_check_detects_page_requests(chromium, tmp_path):
    """Control: the same check flags a page that loads external resources."""
    page = tmp_path / "external.html"
    page.write_text('<html><body><img src="http://example.com/x.png">'
                    '<link rel="stylesheet" href="https://cdn.example.org/a.css"></body></html>')
    _, requests = _screenshot(page, tmp_path / "shot", size=(400, 300))
    assert any("example.com" in u for u in requests)


# ------------------------------------------------------------------ the shell example

def test_cohort_example_script_runs_end_to_end(tmp_path):
    from perfmap.cli.main import COMMANDS

    if not {"batch", "report", "simulate"} <= set(COMMANDS):
        pytest.skip("perfmap batch/report are not registered in perfmap.cli.main yet")
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}", "PERFMAP_EXAMPLE_SUBJECTS": "4",
           "PERFMAP_EXAMPLE_SHAPE": "16x16x3", "PERFMAP_EXAMPLE_JOBS": "1",
           "PERFMAP_EXAMPLE_NBOOT": "50"}
    res = subprocess.run(["bash", str(REPO / "examples" / "cohort.sh"), str(tmp_path / "w")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for name in ("report.html", "report.json", "report.csv", "batch/cohort.tsv"):
        assert (tmp_path / "w" / name).is_file()
    assert len(json.loads((tmp_path / "w" / "report.json").read_text())["methods"]) == 2
