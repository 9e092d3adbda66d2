"""Grading statistics (perfmap.report.stats) and the cohort reader (perfmap.report.cohort)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from perfmap.errors import ImageReadError, InputDataError, PerfmapError
from perfmap.report import cohort as cohort_mod
from perfmap.report import grading, stats
from perfmap.report.cohort import cohort_from_rows, normalize_grade, read_cohort


def _random_case(seed, n=40, ties=False):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=bool)
    y[rng.choice(n, size=rng.integers(3, n - 3), replace=False)] = True
    s = rng.normal(size=n) + 0.8 * y
    if ties:
        s = np.round(s, 1)  # many ties, within and between classes
    return s, y


def _brute_auc(s, y):
    diff = s[y][:, None] - s[~y][None, :]
    return (np.count_nonzero(diff > 0) + 0.5 * np.count_nonzero(diff == 0)) / diff.size


# ----------------------------------------------------------------------------- AUC / U

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_u_match_scipy(seed, ties):
    s, y = _random_case(seed, ties=ties)
    n1, n0 = y.sum(), (~y).sum()
    ref = sps.mannwhitneyu(s[y], s[~y], alternative="two-sided")
    mw = stats.mann_whitney(s, y)
    assert mw.u == ref.statistic
    assert mw.p == pytest.approx(ref.pvalue, rel=1e-12)
    a = stats.auc(s, y)
    assert a == pytest.approx(ref.statistic / (n1 * n0), rel=1e-12, abs=1e-15)
    assert a == pytest.approx(_brute_auc(s, y), rel=1e-12)
    # labels as 0/1 integers give the same answer as booleans
    assert stats.auc(s, y.astype(int)) == a


def test_auc_special_values():
    assert stats.auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert stats.auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert stats.auc([2, 2, 2, 2], [1, 0, 1, 0]) == 0.5
    assert stats.auc([1, 2, 2, 3], [0, 1, 0, 1]) == 0.875


def test_roc_curve_shape_and_ties():
    s, y = _random_case(3, ties=True)
    r = stats.roc_curve(s, y)
    assert (r.fpr[0], r.tpr[0]) == (0.0, 0.0)
    assert (r.fpr[-1], r.tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(r.fpr) >= 0) and np.all(np.diff(r.tpr) >= 0)
    assert np.all(np.diff(r.thresholds) < 0)
    assert r.thresholds.size == np.unique(s).size + 1
    # each point is the rule "HGG when score >= threshold"
    for t, f, tp in zip(r.thresholds[1:], r.fpr[1:], r.tpr[1:]):
        assert tp == np.mean(s[y] >= t) and f == np.mean(s[~y] >= t)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([1, 2, 3], [1, 1, 1], "found 3 HGG and 0 LGG"),
        ([1, 2, np.nan, 4], [1, 0, 1, 0], "finite"),
        ([1, 2, 3], [1, 0], "equal length"),
        ([1, 2, 3], [1, 0, 2], "0 (LGG) or 1 (HGG)"),
    ],
)
def test_array_input_errors(scores, labels, message):
    with pytest.raises(InputDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stats.auc(scores, labels)


# ----------------------------------------------------------------------------- Youden

@pytest.mark.parametrize(
    "lgg, hgg, cutoff, sens, spec",
    [
        ([1.0, 1.2, 1.5], [2.0, 2.4], 1.75, 1.0, 1.0),          # perfect separation
        ([1, 2, 3, 6], [4, 5, 7, 8], 3.5, 1.0, 0.75),           # overlap, one best point
        ([1, 3], [2, 4], 1.5, 1.0, 0.5),                        # J and accuracy tie: lower cut
        ([1, 2, 4, 5], [3, 6], 5.5, 0.5, 1.0),                  # J tie: higher accuracy wins
        ([1, 2, 2], [2, 3, 3], 2.5, 2 / 3, 1.0),                # ties are never split
        ([3, 4], [1, 2], 1.0, 1.0, 0.0),                        # reversed: all-HGG rule, J = 0
    ],
)
def test_youden_hand_cases(lgg, hgg, cutoff, sens, spec):
    s = np.r_[lgg, hgg].astype(float)
    y = np.r_[np.zeros(len(lgg)), np.ones(len(hgg))]
    r = stats.youden_cutoff(s, y)
    assert r.cutoff == pytest.approx(cutoff)
    assert r.sensitivity == pytest.approx(sens)
    assert r.specificity == pytest.approx(spec)
    assert r.j == pytest.approx(sens + spec - 1)
    pred = s >= r.cutoff
    assert r.accuracy == pytest.approx(np.mean(pred == y.astype(bool)))


def _youden_reference(s, y):
    """Brute force: every candidate cut-off, J then accuracy then lowest cut-off."""
    u = np.unique(s)
    cands = np.r_[u[0], (u[1:] + u[:-1]) / 2]
    best = None
    for c in cands:
        p = s >= c
        se, sp = np.mean(p[y]), np.mean(~p[~y])
        key = (round(se + sp - 1, 12), round(np.mean(p == y), 12), -c)
        if best is None or key > best[0]:
            best = (key, c, se, sp)
    return best[1:]


@pytest.mark.parametrize("seed", range(8))
def test_youden_matches_brute_force_and_roc(seed):
    s, y = _random_case(seed, n=30, ties=seed % 2 == 0)
    r = stats.youden_cutoff(s, y)
    c, se, sp = _youden_reference(s, y)
    assert (r.cutoff, r.sensitivity, r.specificity) == pytest.approx((c, se, sp))
    roc = stats.roc_curve(s, y)
    assert r.j == pytest.approx(max(0.0, np.max(roc.tpr - roc.fpr)))


def test_vectorised_youden_rows_match_single_calls():
    rng = np.random.default_rng(7)
    n1, n0 = 6, 9
    S = np.round(rng.normal(size=(50, n1 + n0)) + np.r_[np.ones(n1), np.zeros(n0)], 1)
    c, se, sp, acc, j = stats._youden_rows(S, n1)
    y = np.r_[np.ones(n1, bool), np.zeros(n0, bool)]
    for b in range(S.shape[0]):
        r = stats.youden_cutoff(S[b], y)
        assert (c[b], se[b], sp[b], acc[b], j[b]) == pytest.approx(
            (r.cutoff, r.sensitivity, r.specificity, r.accuracy, r.j))
        assert stats._auc_rows(S[b:b + 1], n1)[0] == pytest.approx(stats.auc(S[b], y))


# ----------------------------------------------------------------------------- bootstrap

def test_bootstrap_is_seeded_and_ordered():
    s, y = _random_case(11, n=30)
    a = stats.bootstrap_ci(s, y, n_boot=400, seed=5)
    b = stats.bootstrap_ci(s, y, n_boot=400, seed=5)
    c = stats.bootstrap_ci(s, y, n_boot=400, seed=6)
    assert a == b and a != c
    for name in ("auc", "sensitivity", "specificity", "accuracy"):
        lo, hi = getattr(a, name)
        assert 0.0 <= lo <= hi <= 1.0
    assert a.auc[0] <= stats.auc(s, y) <= a.auc[1]
    assert a.cutoff[0] <= a.cutoff[1]


def test_bootstrap_chunking_gives_identical_intervals(monkeypatch):
    s, y = _random_case(12, n=20)
    whole = stats.bootstrap_ci(s, y, n_boot=300, seed=1)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 20 * 7)  # 7 replicates per chunk
    assert stats.bootstrap_ci(s, y, n_boot=300, seed=1) == whole


def test_bootstrap_ci_coverage_binormal():
    """95 % percentile CIs of the AUC cover the true binormal AUC ~95 % of the time."""
    true_auc = sps.norm.cdf(1.0 / math.sqrt(2.0))  # X1 ~ N(1, 1), X0 ~ N(0, 1)
    rng = np.random.default_rng(2024)
    y = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    covered = 0
    for rep in range(200):
        s = np.r_[rng.normal(1.0, 1.0, 20), rng.normal(0.0, 1.0, 20)]
        lo, hi = stats.bootstrap_ci(s, y, n_boot=300, seed=rep).auc
        covered += lo <= true_auc <= hi
    assert 0.90 <= covered / 200 <= 0.99


def test_bootstrap_rejects_bad_settings():
    s, y = _random_case(1)
    with pytest.raises(InputDataError, match="n_boot"):
        stats.bootstrap_ci(s, y, n_boot=0)
    with pytest.raises(InputDataError, match="level"):
        stats.bootstrap_ci(s, y, level=95)


# ----------------------------------------------------------------------------- cohort level

def _rows(method="osvd", hgg=(2.1, 1.9, 2.6, 1.4), lgg=(1.0, 1.3, 1.6, 0.9), **extra):
    rows = []
    for i, v in enumerate(hgg):
        rows.append(dict(subject=f"h{i}", grade="HGG", method=method, status="ok", error="",
                         seconds=10.0 + i, cbf_ratio=v, **extra))
    for i, v in enumerate(lgg):
        rows.append(dict(subject=f"l{i}", grade="LGG", method=method, status="ok", error="",
                         seconds=20.0 + i, cbf_ratio=v, **extra))
    return rows


def test_grading_table_numbers_and_exclusions():
    rows = _rows("osvd") + _rows("phae", hgg=(3.0, 2.5, 2.2, 2.8), lgg=(1.0, 1.2, 1.1, 2.3))
    rows.append(dict(subject="x1", grade="HGG", method="osvd", status="failed",
                     error="AIF mask is empty", seconds="", cbf_ratio=""))
    rows.append(dict(subject="x2", grade="LGG", method="osvd", status="ok", error="",
                     seconds=5.0, cbf_ratio="nan"))
    table = grading.grading_table(rows, n_boot=300, seed=3)
    assert list(table) == ["osvd", "phae"]
    r = table["osvd"]
    assert (r.n_hgg, r.n_lgg, r.n_excluded_status, r.n_excluded_nonfinite) == (4, 4, 1, 1)
    assert [s for s, _ in r.excluded] == ["x1", "x2"]
    assert "AIF mask is empty" in r.excluded[0][1]
    s = np.array([2.1, 1.9, 2.6, 1.4, 1.0, 1.3, 1.6, 0.9])
    y = np.r_[np.ones(4, bool), np.zeros(4, bool)]
    assert r.auc == stats.auc(s, y) == 15 / 16
    yc = stats.youden_cutoff(s, y)
    assert (r.cutoff, r.sensitivity, r.specificity, r.accuracy) == (
        yc.cutoff, yc.sensitivity, yc.specificity, yc.accuracy)
    # J = 0.75 and accuracy 7/8 at both 1.35 and 1.75: the lower cut-off wins
    assert r.cutoff == pytest.approx(1.35)
    assert (r.mwu_u, r.mwu_p) == (15.0, sps.mannwhitneyu(s[y], s[~y]).pvalue)
    ci = stats.bootstrap_ci(s, y, n_boot=300, seed=3)
    assert r.auc_ci == ci.auc and r.cutoff_ci == ci.cutoff
    assert r.mean_seconds == pytest.approx(np.mean([10, 11, 12, 13, 20, 21, 22, 23]))
    assert (r.seconds_min, r.seconds_max) == (10.0, 23.0)
    d = r.to_dict()
    assert d["auc_ci_low"] == r.auc_ci[0] and d["snr"] is None
    # each method's CI is independent of the other methods in the table
    assert grading.grading_table(_rows("osvd"), n_boot=300, seed=3)["osvd"].auc_ci == r.auc_ci


def test_grading_table_one_class_error():
    rows = [r for r in _rows() if r["grade"] == "HGG"]
    with pytest.raises(InputDataError, match="only HGG graded subjects for method osvd"):
        grading.grading_table(rows, n_boot=50)


def test_grading_table_too_few_subjects_error():
    rows = _rows(lgg=(1.0, 1.2))
    rows[-1]["status"] = "failed"
    with pytest.raises(InputDataError) as exc:
        grading.grading_table(rows, n_boot=50)
    msg = str(exc.value)
    assert "needs at least 2 HGG and 2 LGG subjects with a finite cbf_ratio for method osvd" in msg
    assert "found 4 HGG and 1 LGG" in msg and "1 excluded for status" in msg


def test_grading_table_missing_metric_names_choices():
    with pytest.raises(InputDataError, match="no column 'cbv_ratio'; available metrics: cbf_ratio"):
        grading.grading_table(_rows(), metric="cbv_ratio")


def test_snr_selection_and_auc_by_snr():
    rows = _rows(snr="")  # main analysis: rows without SNR
    rows += _rows(snr=50) + _rows(snr=10, hgg=(1.0, 1.5, 1.1, 1.2), lgg=(1.3, 1.4, 0.9, 1.6))
    cohort = cohort_from_rows(rows)
    assert cohort.has_snr and cohort.snr_levels == [10.0, 50.0]
    table = grading.grading_table(cohort, n_boot=100)
    assert table["osvd"].snr is None and table["osvd"].n_hgg == 4
    only_snr = cohort_from_rows(_rows(snr=50) + _rows(snr=10))
    assert grading.grading_table(only_snr, n_boot=100)["osvd"].snr == 50.0
    points = grading.auc_by_snr(cohort, n_boot=100)
    assert [(p.method, p.snr) for p in points] == [("osvd", 10.0), ("osvd", 50.0)]
    assert points[1].auc == 15 / 16
    y = np.r_[np.ones(4, bool), np.zeros(4, bool)]
    assert points[0].auc == stats.auc([1.0, 1.5, 1.1, 1.2, 1.3, 1.4, 0.9, 1.6], y)
    with pytest.raises(InputDataError, match="snr"):
        grading.auc_by_snr(_rows())


# ----------------------------------------------------------------------------- cohort file

HEADER = "subject\tgrade\tmethod\tstatus\terror\tseconds\tcbf_ratio\tcbv_ratio\tmtt_ratio\n"


def _write(tmp_path, text, name="cohort.tsv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("value, grade", [("HGG", "HGG"), ("lgg", "LGG"), ("4", "HGG"),
                                          ("3", "HGG"), ("2", "LGG"), ("1", "LGG"),
                                          ("IV", "HGG"), ("iii", "HGG"), ("II", "LGG"),
                                          ("I", "LGG"), ("WHO IV", "HGG"), (2, "LGG")])
def test_normalize_grade(value, grade):
    assert normalize_grade(value) == grade


def test_read_cohort_parses_types_and_extras(tmp_path):
    p = _write(tmp_path, "\ufeff" + HEADER.replace("\n", "\tsite\tsnr\n")
               + "s1\tIV\tosvd\tok\t\t12.5\t2.1\t1.8\t0.9\tA\t30\n"
               + "\n# a comment line\n"
               + "s2\t2\tosvd\tFAILED\tAIF empty\t\tNA\t\t\tB\t\n")
    c = read_cohort(p)
    assert c.name == "cohort.tsv" and c.methods == ["osvd"]
    r1, r2 = c.rows
    assert (r1["grade"], r1["seconds"], r1["cbf_ratio"], r1["site"], r1["snr"]) == (
        "HGG", 12.5, 2.1, "A", 30.0)
    assert r2["grade"] == "LGG" and r2["status"] == "failed" and math.isnan(r2["cbf_ratio"])
    assert c.has_snr and c.metrics() == ["cbf_ratio", "cbv_ratio", "mtt_ratio"]


@pytest.mark.parametrize(
    "body, pattern",
    [
        ("s1\tgrade 5\tosvd\tok\t\t1\t2\t2\t1\n", r"cohort.tsv line 2: grade 'grade 5' is not"),
        ("s1\tHGG\tosvd\tok\t\t1\t2\t2\t1\ns1\tLGG\ttikh\tok\t\t1\t2\t2\t1\n",
         r"line 3: subject 's1' is LGG here but HGG on line 2"),
        ("s1\tHGG\tosvd\tok\t\t1\t2\t2\t1\ns1\tHGG\tosvd\tok\t\t1\t2\t2\t1\n",
         r"line 3: subject 's1' with method 'osvd' already appears on line 2"),
        ("s1\tHGG\tosvd\tok\t\t1\tlots\t2\t1\n", r"line 2: column 'cbf_ratio' holds 'lots'"),
        ("s1\tHGG\tosvd\tok\t1\t2\n", r"line 2: 6 fields, but the header has 9"),
        ("\tHGG\tosvd\tok\t\t1\t2\t2\t1\n", r"line 2: the subject cell is empty"),
        ("", r"has a header but no data rows"),
    ],
)
def test_read_cohort_errors_name_file_line_and_value(tmp_path, body, pattern):
    p = _write(tmp_path, HEADER + body)
    with pytest.raises(InputDataError, match=pattern):
        read_cohort(p)


def test_read_cohort_file_level_errors(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_cohort(tmp_path / "missing.tsv")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_cohort(tmp_path)
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(HEADER.encode() + "s\xe9\tHGG\tosvd\tok\t\t1\t2\t2\t1\n".encode("latin-1"))
    with pytest.raises(ImageReadError, match="not UTF-8"):
        read_cohort(bad)
    with pytest.raises(InputDataError, match="comma-separated"):
        read_cohort(_write(tmp_path, "subject,grade,method,status\ns1,HGG,osvd,ok\n", "c.tsv"))
    with pytest.raises(InputDataError, match="lacks the column"):
        read_cohort(_write(tmp_path, "subject\tmethod\tstatus\ns1\tosvd\tok\n", "d.tsv"))
    with pytest.raises(InputDataError, match="is empty"):
        read_cohort(_write(tmp_path, "\n", "e.tsv"))
    assert issubclass(InputDataError, PerfmapError)
    assert cohort_mod.REQUIRED_COLUMNS == ("subject", "grade", "method", "status")
