"""Shared fixtures: the external reference data folder and small synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PERFMAP_SHARED_DATA", REPO.parent / "shared" / "data"))

# Scripts that made the shipped test data are not tests (nor doctests).
collect_ignore_glob = ["data/*"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"external reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """A simulated one-subject cohort (SNR 50), written once per test session.

    Returns the manifest row of the subject with absolute paths.
    """
    from perfmap.io.tables import read_tsv
    from perfmap.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("phantom")
    manifest = simulate_cohort(out, n_subjects=1, snr=50.0, hgg_fraction=1.0,
                               shape=(48, 48, 4), n_frames=50, seed=3)
    row = read_tsv(manifest)[0]
    for key in ("input", "aif", "mask", "tumour", "ref"):
        row[key] = str((Path(manifest).parent / row[key]).resolve())
    return row


@pytest.fixture
def subject(phantom_cohort, tmp_path):
    """A private copy of the phantom subject's files in ``tmp_path/in``."""
    import shutil

    src = Path(phantom_cohort["input"]).parent
    dst = tmp_path / "in"
    shutil.copytree(src, dst)
    row = dict(phantom_cohort)
    for key in ("input", "aif", "mask", "tumour", "ref"):
        row[key] = str(dst / Path(phantom_cohort[key]).name)
    row["truth_cbf"] = str(dst / (row["subject"] + "_truth_cbf.nii.gz"))
    return row
