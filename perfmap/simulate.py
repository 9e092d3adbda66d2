"""Write DSC phantoms with ground truth as NIfTI files and a cohort manifest.

Each subject ``sub-NN`` gets, in one folder (all float32 except the masks,
which are uint8; every file on the same grid and affine):

========================== =====================================================
``sub-NN.nii.gz``          4D signal, header TR (pixdim[4]) in seconds
``sub-NN.json``            dcm2niix-style sidecar: ``EchoTime``, ``RepetitionTime``
                           (s) and ``perfmapPhantom`` (every truth parameter)
``sub-NN_aifmask.nii.gz``  the artery (true AIF voxels)
``sub-NN_brainmask.nii.gz`` the brain
``sub-NN_tumour.nii.gz``   the tumour
``sub-NN_ref.nii.gz``      contralateral normal-appearing white matter
``sub-NN_truth_cbf.nii.gz`` true CBF (ml/100 g/min), NaN outside tissue
``sub-NN_truth_cbv.nii.gz`` true CBV (ml/100 g)
``sub-NN_truth_mtt.nii.gz`` true MTT (s)
========================== =====================================================

With leakage (:func:`simulate_cohort` ``leakage=``; HGG subjects only, as
low-grade gliomas do not enhance) a subject also gets ``sub-NN_truth_ktrans``
(1/min) and ``sub-NN_truth_ve``, and its sidecar ``FlipAngle``; the truth CBV
and CBF stay the leak-free values. With ``second_te=`` every subject also gets
the series at that echo time as ``sub-NN_secondecho.nii.gz`` with its own
sidecar ``sub-NN_secondecho.json`` (one file per echo, as dcm2niix writes).

``manifest.tsv`` lists the subjects with the columns of DESIGN section 3
(``subject input aif mask tumour ref grade te tr snr``; paths relative to the
manifest), so ``perfmap batch manifest.tsv`` runs the whole cohort. Existing
files are never replaced without ``overwrite``; everything is written under
temporary names and renamed only when all files are complete
(:class:`perfmap.io.outputs.OutputSet`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .core.extravasation import LeakageSpec
from .core.phantom import Phantom, make_phantom
from .errors import ParameterError
from .io.nifti import save_volume
from .io.outputs import OutputSet

MANIFEST_NAME = "manifest.tsv"
MANIFEST_COLUMNS = ("subject", "input", "aif", "mask", "tumour", "ref", "grade", "te", "tr",
                    "snr")

#: file key -> name suffix (after the subject id)
SUBJECT_FILES = {
    "input": ".nii.gz",
    "sidecar": ".json",
    "aif": "_aifmask.nii.gz",
    "mask": "_brainmask.nii.gz",
    "tumour": "_tumour.nii.gz",
    "ref": "_ref.nii.gz",
    "truth_cbf": "_truth_cbf.nii.gz",
    "truth_cbv": "_truth_cbv.nii.gz",
    "truth_mtt": "_truth_mtt.nii.gz",
}
_MASK_KEYS = {"aif": "aif", "mask": "brain", "tumour": "tumour", "ref": "ref"}


#: Extra files of leaky subjects and of subjects with a second echo.
LEAKAGE_FILES = {"truth_ktrans": "_truth_ktrans.nii.gz", "truth_ve": "_truth_ve.nii.gz"}
SECOND_ECHO_FILES = {"second_echo": "_secondecho.nii.gz",
                     "second_echo_sidecar": "_secondecho.json"}


def subject_file_names(subject: str, leakage: bool = False,
                       second_echo: bool = False) -> dict[str, str]:
    """File names (no folder) of one subject, by key of :data:`SUBJECT_FILES`.

    ``leakage`` and ``second_echo`` add :data:`LEAKAGE_FILES` and
    :data:`SECOND_ECHO_FILES`.
    """
    suffixes = {**SUBJECT_FILES, **(LEAKAGE_FILES if leakage else {}),
                **(SECOND_ECHO_FILES if second_echo else {})}
    return {key: subject + suffix for key, suffix in suffixes.items()}


def _phantom_file_names(phantom: Phantom, subject: str) -> dict[str, str]:
    return subject_file_names(subject, "ktrans" in phantom.truth,
                              phantom.second_echo is not None)


def _sidecar(phantom: Phantom, subject: str, echo_time: Optional[float] = None) -> dict:
    truth = {k: {"mean_tumour": float(np.mean(v[phantom.masks["tumour"]])),
                 "mean_ref": float(np.mean(v[phantom.masks["ref"]]))}
             for k, v in phantom.truth.items()}
    side = {
        "EchoTime": phantom.te if echo_time is None else echo_time,
        "RepetitionTime": phantom.tr,
        "SeriesDescription": f"perfmap DSC phantom {subject}",
        "perfmapPhantom": {"subject": subject, "grade": phantom.grade,
                           "truth_roi_means": truth, **phantom.params},
    }
    if "leakage" in phantom.params:
        side["FlipAngle"] = phantom.params["leakage"]["flip_angle"]
    return side


def _write_subject_files(out: OutputSet, phantom: Phantom, subject: str) -> None:
    names = _phantom_file_names(phantom, subject)
    aff = phantom.affine
    # int16 with a scale slope, as scanners and dcm2niix store DSC series.
    out.write(names["input"], lambda p: save_volume(phantom.signal, aff, p, tr=phantom.tr,
                                                    stored_dtype=np.int16))
    out.write_text(names["sidecar"], json.dumps(_sidecar(phantom, subject), indent=2) + "\n")
    for key, mask_name in _MASK_KEYS.items():
        out.write(names[key], lambda p, m=phantom.masks[mask_name]:
                  save_volume(m, aff, p, dtype=np.uint8))
    for name in ("cbf", "cbv", "mtt", "ktrans", "ve"):
        if f"truth_{name}" in names:
            out.write(names[f"truth_{name}"],
                      lambda p, m=phantom.truth[name]: save_volume(m, aff, p))
    if phantom.second_echo is not None:
        out.write(names["second_echo"], lambda p: save_volume(
            phantom.second_echo, aff, p, tr=phantom.tr, stored_dtype=np.int16))
        out.write_text(names["second_echo_sidecar"], json.dumps(
            _sidecar(phantom, subject, phantom.second_te), indent=2) + "\n")


def write_subject(phantom: Phantom, out_dir, subject: str,
                  overwrite: bool = False) -> dict[str, Path]:
    """Write one phantom's files into ``out_dir`` (all or nothing).

    Parameters
    ----------
    phantom : Phantom
        From :func:`perfmap.core.phantom.make_phantom`.
    out_dir : path
        Folder (created if missing).
    subject : str
        Subject id, the file name stem (e.g. ``"sub-01"``).
    overwrite : bool
        Replace existing files; otherwise an existing one raises
        :class:`perfmap.errors.OutputExistsError` before anything is written.

    Returns
    -------
    dict of str -> Path
        Keys of :data:`SUBJECT_FILES` (and of :data:`LEAKAGE_FILES`,
        :data:`SECOND_ECHO_FILES` when the phantom has them).
    """
    names = _phantom_file_names(phantom, subject)
    with OutputSet(out_dir, names.values(), overwrite=overwrite) as out:
        _write_subject_files(out, phantom, subject)
        out.commit()
    return {key: Path(out_dir) / name for key, name in names.items()}


def _fmt(value) -> str:
    if value is None:
        return "inf"
    return f"{value:g}" if isinstance(value, float) else str(value)


def simulate_cohort(out_dir, n_subjects: int = 1, snr: Optional[float] = 50.0,
                    hgg_fraction: float = 0.5, shape=(64, 64, 12), n_frames: int = 60,
                    tr: float = 1.5, te: float = 0.03, residue: str = "exponential",
                    delay: float = 0.0, dispersion: float = 0.0, seed: int = 0,
                    overwrite: bool = False, leakage=None,
                    second_te: Optional[float] = None) -> Path:
    """Simulate a cohort of phantoms and write them with a manifest.

    Grades: ``floor(n_subjects * hgg_fraction + 0.5)`` subjects are HGG, the rest LGG,
    in an order shuffled with ``seed``. Subject ``i`` uses an independent seed
    spawned from ``seed`` (``numpy.random.SeedSequence``), stored in its sidecar.

    Parameters
    ----------
    out_dir : path
        Output folder (created if missing).
    n_subjects : int
        Number of subjects (``sub-01`` ...).
    snr : float or None
        Baseline SNR of every subject; None or inf for noise-free series.
    hgg_fraction : float
        Fraction of high-grade gliomas, in [0, 1].
    shape, n_frames, tr, te, residue, delay, dispersion
        Passed to :func:`perfmap.core.phantom.make_phantom`.
    seed : int
        Seed of the whole cohort.
    leakage : LeakageSpec, dict, bool or None
        Contrast-agent leakage of the HGG subjects' tumours
        (:func:`perfmap.core.phantom.make_phantom`); LGG subjects never leak.
    second_te : float, optional
        Also write each subject's series at this echo time.
    overwrite : bool
        Replace existing files (refused by default, before anything is written).

    Returns
    -------
    Path
        The manifest (``out_dir/manifest.tsv``).

    Raises
    ------
    ParameterError, OutputExistsError
    """
    if n_subjects < 1:
        raise ParameterError(f"the number of subjects must be at least 1, got {n_subjects}")
    if not 0.0 <= hgg_fraction <= 1.0:
        raise ParameterError(f"the HGG fraction must be in [0, 1], got {hgg_fraction}")
    if snr is not None and np.isinf(snr):
        snr = None
    out_dir = Path(out_dir)
    width = max(2, len(str(n_subjects)))
    subjects = [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)]
    n_hgg = int(np.floor(n_subjects * hgg_fraction + 0.5))  # half rounds up
    ss = np.random.SeedSequence(seed)
    grades = ["HGG"] * n_hgg + ["LGG"] * (n_subjects - n_hgg)
    grades = np.random.default_rng(ss).permutation(grades)
    seeds = [int(child.generate_state(1)[0]) for child in ss.spawn(n_subjects)]
    leaky = LeakageSpec.coerce(leakage)
    names = [MANIFEST_NAME] + [
        n for s, g in zip(subjects, grades)
        for n in subject_file_names(s, leaky is not None and g == "HGG",
                                    second_te is not None).values()]
    rows = ["\t".join(MANIFEST_COLUMNS)]
    with OutputSet(out_dir, names, overwrite=overwrite) as out:
        for subject, grade, sub_seed in zip(subjects, grades, seeds):
            phantom = make_phantom(shape=shape, n_frames=n_frames, tr=tr, te=te, snr=snr,
                                   grade=str(grade), residue=residue, delay=delay,
                                   dispersion=dispersion, seed=sub_seed,
                                   leakage=leaky if grade == "HGG" else None,
                                   second_te=second_te)
            _write_subject_files(out, phantom, subject)
            f = subject_file_names(subject)
            rows.append("\t".join([subject, f["input"], f["aif"], f["mask"], f["tumour"],
                                   f["ref"], str(grade), _fmt(float(te)), _fmt(float(tr)),
                                   _fmt(None if snr is None else float(snr))]))
            del phantom
        out.write_text(MANIFEST_NAME, "\n".join(rows) + "\n")
        out.commit()
    return out_dir / MANIFEST_NAME
