"""Accuracy of PHAE and PHAE2 against oSVD and Tikhonov on phantoms with mixed residues.

For each SNR a cohort of phantoms (:func:`perfmap.core.phantom.make_phantom`,
64 x 64 x 12 voxels, 60 frames of 1.5 s, TE 30 ms) cycles through the residue
shapes exponential, Lorentzian, gamma (shape 2), linear and boxcar, with
alternating HGG/LGG tumours; seeds ``--seed + 100 * SNR + i`` are never used
in training (the networks are trained on :mod:`perfmap.neural.data` /
:mod:`perfmap.neural.phae2_data` curves, not on phantoms). Every method runs
through the array API, ``DSCModel(method, te=, tr=, leakage="none")``, with
the true arterial mask and the brain mask.

Metrics per method and SNR, over the tissue voxels (brain minus artery) of
all subjects; ``r = estimate / truth``:

``rcbf``   WM-normalised CBF, ``CBF / mean CBF(NAWM ref)`` against the same
           ratio of the truth maps;
``rcbv``   WM-normalised CBV, likewise;
``mtt``    the MTT map (``60 CBV / CBF``; CBV from the integral ratio, or
           the backend's fitted volume where it reports one: PHAE2);
``mtt_fit`` (PHAE/PHAE2 only) the encoder's own MTT (``fit.deconvolution.mtt``);
``ratio``  tumour/NAWM CBF ratio (ROI means) per subject.

For each: ``err`` the median of ``|r - 1|`` (the headline number), ``bias``
the median of ``r - 1`` (voxels) or the mean signed error (ratios), ``spread``
half the interquartile range of ``r`` divided by its median (voxels) or the
standard deviation of the signed errors over subjects (ratios). Unfitted
voxels are left out for every method and counted. With ``--common-voxels``
the voxel metrics of every method use only the voxels that every method of
the run fitted (a backend that fits more voxels, e.g. PHAE2 with its own
volume where the integral is not positive, is then compared on the same set).

Run::

    python benchmarks/phae_accuracy.py [--subjects 5] [--snr 10 20 50] \
        [--phae2-models a.pt b.pt ...] [--phae-models c.pt ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from perfmap.core.phantom import make_phantom
from perfmap.models import DSCModel

METHODS = ("phae", "phae2", "osvd", "tikhonov")
RESIDUES = ("exponential", "lorentzian", "gamma", "linear", "boxcar")


def _stats(r) -> dict:
    r = np.asarray(r, np.float64)
    r = r[np.isfinite(r)]
    if not r.size:
        return {"err": np.nan, "bias": np.nan, "spread": np.nan}
    q25, med, q75 = np.percentile(r, [25, 50, 75])
    return {"err": float(np.median(np.abs(r - 1.0))), "bias": float(med - 1.0),
            "spread": float((q75 - q25) / 2.0 / med) if med > 0 else np.nan}


def _fitted(ph, fit):
    tissue = ph.masks["brain"] & ~ph.masks["aif"] & np.isfinite(ph.truth["cbf"])
    return tissue, tissue & np.isfinite(fit.cbf) & np.isfinite(fit.mtt)


def subject_metrics(ph, fit, common=None) -> dict:
    m = ph.masks
    cbf, cbv, mtt = fit.cbf, fit.cbv, fit.mtt
    ref = m["ref"]
    tissue, fitted = _fitted(ph, fit)
    if common is not None:
        fitted = fitted & common
    est_ref, true_ref = np.nanmean(cbf[ref]), np.mean(ph.truth["cbf"][ref])
    cbv_ref, true_cbv_ref = np.nanmean(cbv[ref]), np.mean(ph.truth["cbv"][ref])
    out = {"rcbf": (cbf[fitted] / est_ref) / (ph.truth["cbf"][fitted] / true_ref),
           "rcbv": (cbv[fitted] / cbv_ref) / (ph.truth["cbv"][fitted] / true_cbv_ref),
           "mtt": mtt[fitted] / ph.truth["mtt"][fitted],
           "unfitted": int(np.count_nonzero(tissue & ~fitted)),
           "tissue": int(np.count_nonzero(tissue))}
    if fit.deconvolution.mtt is not None:
        enc = np.full(tissue.shape, np.nan, np.float32)
        enc[fit.brain_mask] = fit.deconvolution.mtt
        out["mtt_fit"] = enc[fitted] / ph.truth["mtt"][fitted]
    ratio = np.nanmean(cbf[m["tumour"]]) / est_ref
    out["ratio_signed"] = float(ratio / ph.params["cbf_ratio"] - 1.0)
    out["seconds"] = float(fit.provenance["timings"].get("deconvolution_s", np.nan))
    return out


def run(snrs=(10, 20, 50), subjects: int = 5, methods=METHODS, seed: int = 9100,
        shape=(64, 64, 12), phae2_models=None, delay: float = 0.0, common_voxels=False,
        phae_models=None, log=print) -> list[dict]:
    """One row per (SNR, method label) with bias, spread and error (module docstring)."""
    labels = []
    for method in methods:
        weights = {"phae": phae_models, "phae2": phae2_models}.get(method)
        if weights:
            labels += [(f"{method}[{i}]", method, {"model": p, "device": "cpu"})
                       for i, p in enumerate(weights)]
        else:
            labels.append((method, method, {"device": "cpu"} if method.startswith("phae")
                           else {}))
    models = {lab: DSCModel(meth, te=0.03, tr=1.5, leakage="none", **kw)
              for lab, meth, kw in labels}
    rows = []
    for snr in snrs:
        per = {lab: [] for lab, _, _ in labels}
        for i in range(subjects):
            ph = make_phantom(shape=shape, n_frames=60, tr=1.5, te=0.03, snr=float(snr),
                              grade=("HGG", "LGG")[i % 2], residue=RESIDUES[i % len(RESIDUES)],
                              delay=delay, seed=seed + 100 * int(snr) + i)
            fits = {lab: models[lab].fit(ph.signal, mask=ph.masks["brain"],
                                         aif=ph.masks["aif"]) for lab, _, _ in labels}
            common = None
            if common_voxels:
                common = np.logical_and.reduce([_fitted(ph, f)[1] for f in fits.values()])
            for lab, fit in fits.items():
                per[lab].append(subject_metrics(ph, fit, common))
        for lab, _, _ in labels:
            subs = per[lab]
            row = {"snr": snr, "method": lab, "subjects": len(subs)}
            for key in ("rcbf", "rcbv", "mtt", "mtt_fit"):
                if all(key in s for s in subs):
                    row[key] = _stats(np.concatenate([s[key] for s in subs]))
            signed = np.array([s["ratio_signed"] for s in subs])
            row["ratio"] = {"err": float(np.median(np.abs(signed))),
                            "bias": float(np.mean(signed)), "spread": float(np.std(signed))}
            row["unfitted_fraction"] = float(sum(s["unfitted"] for s in subs)
                                             / sum(s["tissue"] for s in subs))
            row["deconv_s_per_subject"] = float(np.median([s["seconds"] for s in subs]))
            rows.append(row)
            log(f"SNR {snr:>3} {lab:>9}: rCBF {row['rcbf']['err']:.3f} "
                f"rCBV {row['rcbv']['err']:.3f} MTT {row['mtt']['err']:.3f} ratio {row['ratio']['err']:.3f}")
    return rows


def table(rows) -> str:
    """Markdown: error (bias, spread) per metric."""
    def cell(d):
        return f"{d['err']:.3f} ({d['bias']:+.3f}, {d['spread']:.3f})" if d else "-"

    lines = ["| SNR | method | voxel rCBF err (bias, spread) | voxel rCBV err (bias, spread) | "
             "MTT map err (bias, spread) | encoder MTT err (bias, spread) | "
             "tumour/NAWM ratio err (bias, SD) | unfitted | deconv s/subject |",
             "|---:|---|---|---|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['snr']} | {r['method']} | {cell(r['rcbf'])} | {cell(r['rcbv'])} | "
                     f"{cell(r['mtt'])} | "
                     f"{cell(r.get('mtt_fit'))} | {cell(r['ratio'])} | "
                     f"{r['unfitted_fraction']:.3f} | {r['deconv_s_per_subject']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snr", type=float, nargs="+", default=[10, 20, 50])
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--seed", type=int, default=9100)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 64, 12])
    ap.add_argument("--delay", type=float, default=0.0, help="tissue delay of every phantom (s)")
    ap.add_argument("--phae2-models", nargs="+", help="several PHAE2 weights (seed spread)")
    ap.add_argument("--phae-models", nargs="+", help="several PHAE weights (e.g. retrainings)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--common-voxels", action="store_true",
                    help="voxel metrics over the voxels fitted by every method")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    snrs = [int(s) if float(s).is_integer() else s for s in args.snr]
    rows = run(snrs, args.subjects, tuple(args.methods), args.seed, tuple(args.shape),
               args.phae2_models, args.delay, args.common_voxels, args.phae_models)
    print(table(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "args": vars(args)}, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
