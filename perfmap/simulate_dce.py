"""Write DCE phantoms with ground truth as NIfTI files and a cohort manifest.

Each subject ``sub-NN`` (:func:`perfmap.kinetics.phantom.make_dce_phantom`) gets:

============================ ====================================================
``sub-NN.nii.gz``            4D SPGR signal, header pixdim[4] = frame interval (s)
``sub-NN.json``              sidecar: ``RepetitionTimeExcitation`` and
                             ``RepetitionTime`` (the SPGR TR, s), ``EchoTime``,
                             ``FlipAngle``, ``FrameTimesStart`` and the truth
``sub-NN_vfa.nii.gz``        variable-flip-angle series (one volume per angle)
``sub-NN_vfa.json``          its sidecar: ``FlipAngle`` (list, degrees), TR
``sub-NN_aifmask.nii.gz``    the artery; ``_brainmask``, ``_tumour``, ``_ref``
``sub-NN_truth_<map>.nii.gz`` ktrans (1/min), ve, vp, kep (1/min), fp, ps
                             (ml/100 ml/min), t10 (s)
============================ ====================================================

``manifest.tsv`` (``subject input aif mask tumour ref grade vfa snr``) feeds
``perfmap batch --kind dce``. Written all or nothing, never over existing files
without ``overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from .kinetics.phantom import DCEPhantom, make_dce_phantom
from .errors import ParameterError
from .io.nifti import save_volume
from .io.outputs import OutputSet

MANIFEST_NAME = "manifest.tsv"
MANIFEST_COLUMNS = ("subject", "input", "aif", "mask", "tumour", "ref", "grade", "vfa", "snr")
TRUTH_MAPS = ("ktrans", "ve", "vp", "kep", "fp", "ps", "t10")
_MASKS = {"aif": "aif", "mask": "brain", "tumour": "tumour", "ref": "ref"}


def dce_file_names(subject: str) -> dict:
    """File names of one DCE subject, by key."""
    names = {"input": f"{subject}.nii.gz", "sidecar": f"{subject}.json",
             "vfa": f"{subject}_vfa.nii.gz", "vfa_sidecar": f"{subject}_vfa.json",
             "aif": f"{subject}_aifmask.nii.gz", "mask": f"{subject}_brainmask.nii.gz",
             "tumour": f"{subject}_tumour.nii.gz", "ref": f"{subject}_ref.nii.gz"}
    names.update({f"truth_{m}": f"{subject}_truth_{m}.nii.gz" for m in TRUTH_MAPS})
    return names


def _mean(values) -> Optional[float]:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _sidecars(ph: DCEPhantom, subject: str) -> tuple[dict, dict]:
    truth = {k: {"mean_tumour": _mean(v[ph.masks["tumour"]]),
                 "mean_ref": _mean(v[ph.masks["ref"]])} for k, v in ph.truth.items()}
    for v in truth.values():
        num, ref = v["mean_tumour"], v["mean_ref"]
        v["ratio"] = num / ref if num is not None and ref not in (None, 0.0) else None
    dyn = {"RepetitionTimeExcitation": ph.tr, "RepetitionTime": ph.tr, "EchoTime": ph.te,
           "FlipAngle": ph.flip_angle, "FrameTimesStart": [float(t) for t in ph.times],
           "SeriesDescription": f"perfmap DCE phantom {subject}",
           "perfmapPhantom": {"subject": subject, "truth_roi_means": truth,
                              **{k: v for k, v in ph.params.items() if k != "tissues"}}}
    vfa = {"RepetitionTime": ph.tr, "EchoTime": ph.te, "FlipAngle": list(ph.vfa_angles),
           "SeriesDescription": f"perfmap DCE phantom {subject} variable flip angle"}
    return dyn, vfa


def _write(out: OutputSet, ph: DCEPhantom, subject: str) -> None:
    names, aff = dce_file_names(subject), ph.affine
    dt = float(ph.times[1] - ph.times[0])
    dyn, vfa = _sidecars(ph, subject)
    out.write(names["input"], lambda p: save_volume(ph.signal, aff, p, tr=dt))
    out.write_text(names["sidecar"], json.dumps(dyn, indent=2) + "\n")
    out.write(names["vfa"], lambda p: save_volume(ph.vfa, aff, p))
    out.write_text(names["vfa_sidecar"], json.dumps(vfa, indent=2) + "\n")
    for key, mask in _MASKS.items():
        out.write(names[key], lambda p, m=ph.masks[mask]: save_volume(m, aff, p, dtype=np.uint8))
    for m in TRUTH_MAPS:
        out.write(names[f"truth_{m}"], lambda p, v=ph.truth[m]: save_volume(v, aff, p))


def simulate_dce_cohort(out_dir, n_subjects: int = 1, snr: Optional[float] = 50.0,
                        hgg_fraction: float = 0.5, shape=(64, 64, 8), n_frames: int = 60,
                        dt: float = 4.0, seed: int = 0, overwrite: bool = False) -> Path:
    """Simulate DCE subjects with ground truth and write them with a manifest.

    Grades and seeds as :func:`perfmap.simulate.simulate_cohort`: ``floor(n *
    hgg_fraction + 0.5)`` HGG subjects (enhancing tumours), in an order shuffled
    with ``seed``; each subject an independent seed.

    Returns
    -------
    Path
        The manifest.
    """
    if n_subjects < 1:
        raise ParameterError(f"the number of subjects must be at least 1, got {n_subjects}")
    if not 0.0 <= hgg_fraction <= 1.0:
        raise ParameterError(f"the HGG fraction must be in [0, 1], got {hgg_fraction}")
    out_dir = Path(out_dir)
    width = max(2, len(str(n_subjects)))
    subjects = [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)]
    ss = np.random.SeedSequence(seed)
    n_hgg = int(np.floor(n_subjects * hgg_fraction + 0.5))
    grades = np.random.default_rng(ss).permutation(["HGG"] * n_hgg
                                                   + ["LGG"] * (n_subjects - n_hgg))
    seeds = [int(c.generate_state(1)[0]) for c in ss.spawn(n_subjects)]
    names = [MANIFEST_NAME] + [n for s in subjects for n in dce_file_names(s).values()]
    rows = ["\t".join(MANIFEST_COLUMNS)]
    with OutputSet(out_dir, names, overwrite=overwrite) as out:
        for subject, grade, sub_seed in zip(subjects, grades, seeds):
            ph = make_dce_phantom(shape=shape, n_frames=n_frames, dt=dt, snr=snr,
                                  seed=sub_seed, grade=str(grade))
            _write(out, ph, subject)
            f = dce_file_names(subject)
            rows.append("\t".join([subject, f["input"], f["aif"], f["mask"], f["tumour"],
                                   f["ref"], str(grade), f["vfa"],
                                   "" if snr is None else f"{float(snr):g}"]))
        out.write_text(MANIFEST_NAME, "\n".join(rows) + "\n")
        out.commit()
    return out_dir / MANIFEST_NAME
