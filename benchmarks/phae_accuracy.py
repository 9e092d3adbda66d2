"""Accuracy of PHAE against oSVD and Tikhonov on simulated phantoms at several SNRs.

For each SNR a cohort of phantoms (:func:`perfmap.simulate.simulate_cohort`,
64 x 64 x 12 voxels, 60 frames of 1.5 s, exponential residue, half HGG and
half LGG; seeds that the PHAE training never saw: training uses
:func:`perfmap.neural.data.simulate_curves`, not these phantoms) is written to
a temporary folder and every method runs through the full pipeline
(:func:`perfmap.pipeline.compute`) with the true arterial mask, the brain
mask, the tumour ROI and the contralateral white-matter reference ROI.

Metrics, per method and SNR (medians over subjects or over tissue voxels of
all subjects; relative error = ``|estimate / truth - 1|``):

``ratio_err``
    Tumour-to-NAWM CBF ratio (ROI means, the glioma-grading number) against
    the true ratio.
``rcbf_err``
    Voxelwise white-matter-normalised CBF, ``CBF / mean CBF(ref)``, against
    the same quantity of the truth maps (tissue voxels; unfitted voxels are
    left out and counted in ``unfitted``).
``mtt_err``
    Voxelwise MTT against the true MTT.

Run (slow; use ``nice`` on shared machines)::

    python benchmarks/phae_accuracy.py [--subjects 6] [--snr 10 20 30 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from perfmap.io.nifti import load_3d
from perfmap.io.tables import read_tsv
from perfmap.pipeline import compute
from perfmap.simulate import simulate_cohort

METHODS = ("phae", "osvd", "tikhonov")


def _subject_metrics(row, base: Path, result, truth_ratio) -> dict:
    tumour, _ = load_3d(base / row["tumour"])
    ref, _ = load_3d(base / row["ref"])
    brain, _ = load_3d(base / row["mask"])
    artery, _ = load_3d(base / row["aif"])
    stem = row["subject"]
    t_cbf, _ = load_3d(base / f"{stem}_truth_cbf.nii.gz")
    t_mtt, _ = load_3d(base / f"{stem}_truth_mtt.nii.gz")
    tissue = (brain > 0) & (artery == 0) & np.isfinite(t_cbf)
    cbf, mtt = result.maps["cbf"], result.maps["mtt"]
    ref_m = ref > 0
    est_ref = np.nanmean(cbf[ref_m])
    true_ref = np.mean(t_cbf[ref_m])
    fitted = tissue & np.isfinite(cbf) & np.isfinite(mtt)
    rcbf = (cbf[fitted] / est_ref) / (t_cbf[fitted] / true_ref)
    ratio = result.provenance["rois"]["tumour"].get("cbf_ratio")
    return {
        "ratio": ratio, "true_ratio": truth_ratio,
        "ratio_rel_err": abs(ratio / truth_ratio - 1.0) if ratio is not None else np.nan,
        "rcbf_rel_err": np.abs(rcbf - 1.0),
        "mtt_rel_err": np.abs(mtt[fitted] / t_mtt[fitted] - 1.0),
        "unfitted": int(np.count_nonzero(tissue & ~fitted)),
        "tissue": int(np.count_nonzero(tissue)),
        "seconds": result.provenance["timings"]["deconvolution_s"],
        "tumour_voxels": int(np.count_nonzero(tumour)),
    }


def run(snrs=(10, 20, 30, 50), subjects: int = 6, methods=METHODS, seed: int = 9000,
        shape=(64, 64, 12), model=None, workdir=None, log=print) -> list[dict]:
    """One row per (SNR, method) with the median errors (see the module docstring)."""
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for snr in snrs:
            cohort = Path(tmp) / f"snr{snr}"
            manifest = simulate_cohort(cohort, n_subjects=subjects, snr=float(snr),
                                       hgg_fraction=0.5, shape=shape, n_frames=60, tr=1.5,
                                       seed=seed + int(snr))
            entries = read_tsv(manifest)
            per = {m: [] for m in methods}
            for row in entries:
                side = json.loads((cohort / f"{row['subject']}.json").read_text())
                truth_ratio = side["perfmapPhantom"]["cbf_ratio"]
                for method in methods:
                    res = compute(cohort / row["input"], aif=cohort / row["aif"],
                                  mask=cohort / row["mask"], method=method,
                                  method_params={"device": "cpu", "model": model}
                                  if method == "phae" else None,
                                  rois={"tumour": cohort / row["tumour"]},
                                  ref=cohort / row["ref"],
                                  out_dir=cohort / "out" / method / row["subject"])
                    per[method].append(_subject_metrics(row, cohort, res, truth_ratio))
            for method in methods:
                subs = per[method]
                r = {
                    "snr": snr, "method": method, "subjects": len(subs),
                    "ratio_err": float(np.nanmedian([s["ratio_rel_err"] for s in subs])),
                    "rcbf_err": float(np.median(np.concatenate([s["rcbf_rel_err"]
                                                                for s in subs]))),
                    "mtt_err": float(np.median(np.concatenate([s["mtt_rel_err"]
                                                               for s in subs]))),
                    "unfitted_fraction": float(sum(s["unfitted"] for s in subs)
                                               / sum(s["tissue"] for s in subs)),
                    "deconv_s_per_subject": float(np.median([s["seconds"] for s in subs])),
                    "ratios": [[round(s["ratio"], 3) if s["ratio"] is not None else None,
                                round(s["true_ratio"], 3)] for s in subs],
                }
                rows.append(r)
                log(f"SNR {snr:>3} {method:>8}: ratio {r['ratio_err']:.3f}  "
                    f"rCBF {r['rcbf_err']:.3f}  MTT {r['mtt_err']:.3f}  "
                    f"unfitted {r['unfitted_fraction']:.3f}")
    return rows


def table(rows) -> str:
    """Markdown table of the median relative errors."""
    lines = ["| SNR | method | tumour/NAWM CBF ratio | voxel rCBF (CBF/WM) | voxel MTT | "
             "unfitted | deconv s/subject |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['snr']} | {r['method']} | {r['ratio_err']:.3f} | "
                     f"{r['rcbf_err']:.3f} | {r['mtt_err']:.3f} | "
                     f"{r['unfitted_fraction']:.3f} | {r['deconv_s_per_subject']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snr", type=float, nargs="+", default=[10, 20, 30, 50])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 12])
    parser.add_argument("--model", default=None, help="PHAE weights (default: shipped)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    snrs = [int(s) if float(s).is_integer() else s for s in args.snr]
    rows = run(snrs, args.subjects, tuple(args.methods), args.seed, tuple(args.shape),
               args.model)
    print(table(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": vars(args) | {"json": str(
            args.json)}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
