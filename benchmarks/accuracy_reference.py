"""Accuracy of perfmap's backends on the external reference data (markdown tables).

* OSIPI DSC curves (``../shared/data/osipi_dsc_dro/csv/dsc_data.csv``, 14 cases, CNR 200):
  CBF and CBV per case, and the largest CBF change when the tissue curve is shifted
  1-4 frames later.
* Bezier DSC DRO (``../shared/data/bezier_dsc_dro``, SNR 20): per folder, the median over
  files and regions of the relative error of ROI-mean CBF, CBV and MTT.

Usage: ``python benchmarks/accuracy_reference.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

METHODS = ("osvd", "tikhonov", "csvd", "ssvd")


def osipi_table(data: Path):
    from perfmap.core.maps import perfusion_maps
    from perfmap.deconv import get_backend

    rows = list(csv.DictReader(open(data / "osipi_dsc_dro" / "csv" / "dsc_data.csv")))
    ct = np.array([[float(v) for v in r["C_tis"].split()] for r in rows])
    ca = np.array([[float(v) for v in r["C_aif"].split()] for r in rows])
    cbf = np.array([float(r["cbf"]) for r in rows])
    cbv = np.array([float(r["cbv"]) for r in rows])
    dt = float(rows[0]["tr"])
    print("| method | CBF median abs. error | CBF max abs. error | CBV median abs. error | "
          "CBV max abs. error | max CBF change, tissue shifted 1-4 frames |")
    print("|---|---|---|---|---|---|")
    for method in METHODS:
        backend = get_backend(method)()
        cbf_e, cbv_e = [], []
        shift_max = 0.0
        for i in range(len(rows)):
            fit = backend.fit(ct[i:i + 1], ca[i], dt)
            maps = perfusion_maps(ct[i:i + 1], ca[i], dt, fit, kh=1.0, rho=1.0)
            cbf_e.append(maps["cbf"][0] / cbf[i] - 1)
            cbv_e.append(maps["cbv"][0] / cbv[i] - 1)
            for s in (1, 2, 3, 4):
                shifted = np.zeros_like(ct[i:i + 1])
                shifted[:, s:] = ct[i:i + 1, :-s]
                f2 = backend.fit(shifted, ca[i], dt)
                shift_max = max(shift_max, abs(float(f2.flow[0] / fit.flow[0] - 1)))
        cbf_e, cbv_e = np.abs(cbf_e), np.abs(cbv_e)
        print(f"| {method} | {np.median(cbf_e):.1%} | {cbf_e.max():.1%} | {np.median(cbv_e):.1%} "
              f"| {cbv_e.max():.1%} | {shift_max:.1%} |")


def bezier_table(data: Path):
    import bezier

    print("| method | folder | files | CBF | CBV | MTT | GM/WM CBF ratio |")
    print("|---|---|---|---|---|---|---|")
    for method in ("osvd", "tikhonov"):
        for folder, v in bezier.evaluate(method, data).items():
            ratio = v.get("gm_wm_cbf_ratio")
            print(f"| {method} | {folder} | {v['files']} | {v['cbf']:+.1%} | {v['cbv']:+.1%} | "
                  f"{v['mtt']:+.1%} | {'' if ratio is None else format(ratio, '+.1%')} |")


def closed_form_table():
    """Noise-free gamma-variate AIF convolved with known residues (CBF 50, kH = rho = 1)."""
    from perfmap.core import curves
    from perfmap.core.maps import perfusion_maps
    from perfmap.deconv import get_backend

    mtts = np.array([2.0, 3.0, 4.0, 6.0, 8.0, 12.0])
    print("| dt (s) | residue | method | CBF error at MTT " + ", ".join(f"{m:g}" for m in mtts)
          + " s | max CBV error |")
    print("|---|---|---|---|---|")
    for dt in (1.0, 1.5):
        t = np.arange(int(120 / dt)) * dt
        aif_fn = lambda x: curves.gamma_variate(x, t0=10.3, alpha=3.0, beta=1.5, peak=50.0)
        aif = aif_fn(t)
        for shape in ("exponential", "gamma", "linear"):
            conc = curves.tissue_concentration(t, aif_fn, curves.flow_per_second(50.0, 1, 1),
                                               mtts, shape, lam=3.0)
            for method in ("osvd", "tikhonov"):
                fit = get_backend(method)().fit(conc, aif, dt)
                maps = perfusion_maps(conc, aif, dt, fit, kh=1.0, rho=1.0)
                err = maps["cbf"] / 50.0 - 1
                cbv = np.max(np.abs(maps["cbv"] / (50.0 * mtts / 60.0) - 1))
                print(f"| {dt:g} | {shape} | {method} | "
                      + ", ".join(f"{e:+.0%}" for e in err) + f" | {cbv:.1%} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    print("Closed-form phantoms, no noise:\n")
    closed_form_table()
    print()
    print("OSIPI DSC reference curves (kH = rho = 1):\n")
    osipi_table(args.data)
    print("\nBezier DSC DRO (SNR 20), median signed relative error of ROI means:\n")
    bezier_table(args.data)


if __name__ == "__main__":
    main()
