"""Denoising study: what each denoiser does to the series and to the perfusion maps.

For every noise model (``gaussian``, ``rician``, ``correlated``) and SNR (50, 20,
10 by default) a cohort of noise-free phantoms
(:func:`perfmap.core.phantom.make_phantom` with ``snr=None``, alternating
HGG/LGG tumours, residue shapes cycling through exponential, Lorentzian, gamma,
linear and boxcar, seeds ``--seed + 100 * SNR + i``, never used to train the
learned denoisers) gets noise of standard deviation ``sigma = mean baseline
brain signal / SNR`` (the PHAE paper's SNR, as ``perfmap robustness``):

``gaussian``
    additive white Gaussian noise of SD ``sigma``;
``rician``
    the magnitude of complex data with Gaussian noise of SD ``sigma`` in each
    channel (Gudbjartsson & Patz 1995, MRM 34:910): biased upwards where the
    signal is low;
``correlated``
    white Gaussian noise smoothed in-plane with a Gaussian kernel of SD
    ``--corr-sigma`` voxels (as k-space filtering or parallel-imaging
    reconstruction correlates neighbouring voxels), rescaled to SD ``sigma``,
    independent between frames.

Each noisy series is denoised once per denoiser (``none``, then every name of
:func:`perfmap.core.denoise.available` or ``--denoisers``) inside the true
brain mask, which is what ``DSCModel(denoise=...)`` / ``--denoise`` do, and
then fitted by every ``--methods`` backend through the array API
(``DSCModel(method, leakage="none")`` with the true brain and arterial masks).

Series metrics, inside the brain, against the noise-free phantom
(``data_range`` = range of the noise-free brain signal):

* PSNR (``skimage.metrics.peak_signal_noise_ratio``) over all brain samples;
* SSIM (``skimage.metrics.structural_similarity``, 3D per frame, 7-voxel
  window, ``full=True``), averaged over the brain voxels of every frame, with
  everything outside the brain set to 0 in both images.

Map metrics (``r = estimate / truth``, tissue = brain minus artery):

* ``rcbf``, ``rcbv``: median ``|r - 1|`` of WM-normalised CBF and CBV
  (each divided by its NAWM-reference mean);
* ``mtt``: median ``|r - 1|`` of the MTT map;
* ``ratio_cbf``, ``ratio_cbv``: mean absolute error of the tumour/NAWM ratio of
  ROI means (``--roi tumour --ref``), ``*_bias`` its mean signed error;
* ``rim_bias``: median signed error of WM-normalised CBV in the tumour's rim
  (tumour voxels with a non-tumour 6-neighbour): blurred edges pull it towards
  the (lower) surroundings;
* ``auc``: grading AUC of the tumour/NAWM CBV ratio, HGG vs LGG
  (:func:`perfmap.report.stats.auc`). The phantom's grades have disjoint true
  ratio ranges (LGG 0.8-1.5, HGG 2-4), so an AUC below 1 means noise or a
  denoiser swapped subjects across the gap.

With ``--robustness-subjects N`` the grading AUC is also measured the way a
user would, with the command line: ``perfmap simulate --snr inf`` writes a
noise-free cohort of N subjects, and ``perfmap robustness --snr ... --method
osvd --leakage none --denoise D`` (Gaussian noise) runs once per denoiser; the
AUC of ``cbf_ratio`` and its bootstrap interval are read from
``robustness.json``.

Run::

    python benchmarks/denoise_study.py [--subjects 6] [--snr 50 20 10] \
        [--noise gaussian rician correlated] [--methods osvd phae] \
        [--denoisers gaussian mppca ...] [--shape 64x64x12] \
        [--robustness-subjects 16] [--json out.json] [--figure out.png]

It prints markdown tables (one per fitting method) and, with ``--figure``,
draws PSNR and the WM-normalised CBF/CBV errors against SNR. The machines
these run on are shared: denoiser seconds are medians, compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from perfmap.core.denoise import available, denoise
from perfmap.core.phantom import make_phantom
from perfmap.models import DSCModel
from perfmap.report.stats import auc

RESIDUES = ("exponential", "lorentzian", "gamma", "linear", "boxcar")
NOISE_MODELS = ("gaussian", "rician", "correlated")


def add_noise(signal, sigma: float, model: str, rng, corr_sigma: float = 1.0) -> np.ndarray:
    """Noisy copy of a noise-free 4D ``signal`` (module docstring), float32."""
    shape = signal.shape
    if model == "gaussian":
        return signal + np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
    if model == "rician":
        re = signal + np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
        im = np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
        return np.sqrt(re * re + im * im)
    if model == "correlated":
        white = rng.standard_normal(shape, dtype=np.float32)
        field = ndimage.gaussian_filter(white, sigma=(corr_sigma, corr_sigma, 0, 0),
                                        mode="wrap")
        return signal + np.float32(sigma / field.std()) * field
    raise ValueError(f"unknown noise model {model!r}; use one of {NOISE_MODELS}")


def series_metrics(clean, est, brain) -> dict:
    """PSNR and brain-averaged SSIM of ``est`` against ``clean`` (module docstring)."""
    ref = clean[brain]
    data_range = float(ref.max() - ref.min())
    psnr = peak_signal_noise_ratio(ref, est[brain].astype(ref.dtype), data_range=data_range)
    outside = ~brain
    ssim = []
    for k in range(clean.shape[-1]):
        a, b = clean[..., k].copy(), est[..., k].astype(np.float32)
        a[outside] = 0.0
        b[outside] = 0.0
        _, full = structural_similarity(a, b, data_range=data_range, win_size=7, full=True)
        ssim.append(float(full[brain].mean()))
    return {"psnr": float(psnr), "ssim": float(np.mean(ssim))}


def map_metrics(ph, fit) -> dict:
    """Per-subject map errors against the phantom's truth (module docstring)."""
    m, t = ph.masks, ph.truth
    tissue = m["brain"] & ~m["aif"] & np.isfinite(t["cbf"])
    cbf, cbv, mtt = fit.cbf, fit.cbv, fit.mtt
    ok = tissue & np.isfinite(cbf) & np.isfinite(cbv) & np.isfinite(mtt)
    ref = m["ref"]
    out = {"unfitted": int(np.count_nonzero(tissue & ~ok)), "tissue": int(tissue.sum())}
    rim = m["tumour"] & ~ndimage.binary_erosion(m["tumour"])
    for name, est in (("cbf", cbf), ("cbv", cbv)):
        rel = (est / np.nanmean(est[ref])) / (t[name] / np.mean(t[name][ref]))
        out[f"r{name}"] = rel[ok]
        ratio = np.nanmean(est[m["tumour"]]) / np.nanmean(est[ref])
        out[f"ratio_{name}"] = float(ratio / ph.params[f"{name}_ratio"] - 1.0)
        if name == "cbv":
            out["rim"] = rel[rim & ok]
            out["cbv_ratio"] = float(ratio)
    out["mtt"] = mtt[ok] / t["mtt"][ok]
    return out


def summarise(subjects: list[dict], grades: list[str]) -> dict:
    """Cohort row from per-subject metrics: errors, biases, AUC."""
    def med_abs(key):
        return float(np.median(np.abs(np.concatenate([s[key] for s in subjects]) - 1.0)))

    row = {k: med_abs(k) for k in ("rcbf", "rcbv", "mtt")}
    for k in ("ratio_cbf", "ratio_cbv"):
        signed = np.array([s[k] for s in subjects])
        row[k] = float(np.mean(np.abs(signed)))
        row[f"{k}_bias"] = float(np.mean(signed))
    row["rim_bias"] = float(np.median(np.concatenate([s["rim"] for s in subjects]) - 1.0))
    labels = np.array([g == "HGG" for g in grades])
    scores = np.array([s["cbv_ratio"] for s in subjects])
    row["auc"] = float(auc(scores, labels)) if labels.any() and (~labels).any() else np.nan
    row["unfitted_fraction"] = (sum(s["unfitted"] for s in subjects)
                                / sum(s["tissue"] for s in subjects))
    return row


def run(snrs=(50, 20, 10), noise_models=NOISE_MODELS, methods=("osvd", "phae"),
        denoisers=None, subjects: int = 6, shape=(64, 64, 12), seed: int = 7300,
        corr_sigma: float = 1.0, log=print) -> list[dict]:
    """Every (noise, SNR, denoiser, method) row of the study (module docstring)."""
    denoisers = ["none"] + list(available() if denoisers is None else denoisers)
    models = {m: DSCModel(m, te=0.03, tr=1.5, leakage="none",
                          **({"device": "cpu"} if m.startswith("phae") else {}))
              for m in methods}
    rows = []
    for noise in noise_models:
        for snr in snrs:
            acc = {(d, m): [] for d in denoisers for m in methods}
            series = {d: [] for d in denoisers}
            seconds = {d: [] for d in denoisers}
            grades = []
            for i in range(subjects):
                grade = ("HGG", "LGG")[i % 2]
                grades.append(grade)
                ph = make_phantom(shape=shape, n_frames=60, tr=1.5, te=0.03, snr=None,
                                  grade=grade, residue=RESIDUES[i % len(RESIDUES)],
                                  seed=seed + 100 * int(snr) + i)
                brain = ph.masks["brain"]
                sigma = float(np.mean(ph.s0[brain], dtype=np.float64) / snr)
                rng = np.random.default_rng([seed, int(snr), i, NOISE_MODELS.index(noise)])
                noisy = add_noise(ph.signal, sigma, noise, rng, corr_sigma)
                for d in denoisers:
                    t0 = time.perf_counter()
                    den = noisy if d == "none" else denoise(noisy, d, mask=brain).data
                    seconds[d].append(time.perf_counter() - t0)
                    series[d].append(series_metrics(ph.signal, den, brain))
                    for m in methods:
                        fit = models[m].fit(den, mask=brain, aif=ph.masks["aif"])
                        acc[(d, m)].append(map_metrics(ph, fit))
            for d in denoisers:
                s_row = {k: float(np.mean([s[k] for s in series[d]])) for k in ("psnr", "ssim")}
                s_row["denoise_s"] = float(statistics.median(seconds[d]))
                for m in methods:
                    row = {"noise": noise, "snr": snr, "denoiser": d, "method": m,
                           "subjects": subjects, **s_row, **summarise(acc[(d, m)], grades)}
                    rows.append(row)
                    log(f"{noise:>10} SNR {snr:>3} {d:>8} {m:>6}: PSNR {row['psnr']:.1f} "
                        f"SSIM {row['ssim']:.3f} rCBF {row['rcbf']:.3f} rCBV {row['rcbv']:.3f} "
                        f"MTT {row['mtt']:.3f} ratio {row['ratio_cbv']:.3f} "
                        f"rim {row['rim_bias']:+.3f} AUC {row['auc']:.2f}")
    return rows


def cli_robustness(subjects: int, snrs, denoisers, seed: int = 7300, log=print) -> list[dict]:
    """Grading AUC per (denoiser, SNR) through ``perfmap simulate`` + ``perfmap robustness``."""
    perfmap = [sys.executable, "-m", "perfmap"]
    levels = ",".join(f"{s:g}" for s in snrs)
    rows = []
    with tempfile.TemporaryDirectory(prefix="perfmap-denoise-study-") as tmp:
        cohort = os.path.join(tmp, "cohort")
        subprocess.run(perfmap + ["simulate", cohort, "--subjects", str(subjects), "--snr", "inf",
                                  "--seed", str(seed), "-q"], check=True)
        for d in denoisers:
            out = os.path.join(tmp, d)
            t0 = time.perf_counter()
            subprocess.run(perfmap + ["robustness", os.path.join(cohort, "manifest.tsv"),
                                      "--snr", levels, "--method", "osvd", "--leakage", "none",
                                      "--denoise", d, "--out-dir", out, "--jobs", "1",
                                      "--seed", str(seed), "-q"], check=True)
            with open(os.path.join(out, "robustness.json"), encoding="utf-8") as fh:
                result = json.load(fh)
            # "robustness" holds one row per level; with a single level it is null
            for r in result["robustness"] or result["methods"]:
                row = {"denoiser": d, "snr": r["snr"], "auc": r["auc"],
                       "auc_ci": [r["auc_ci_low"], r["auc_ci_high"]],
                       "n_hgg": r["n_hgg"], "n_lgg": r["n_lgg"]}
                rows.append(row)
            log(f"robustness --denoise {d}: {time.perf_counter() - t0:.0f} s")
    return rows


def table(rows, method: str) -> str:
    """Markdown table of the rows fitted with ``method``."""
    head = ("| noise | SNR | denoiser | PSNR (dB) | SSIM | rCBF err | rCBV err | MTT err | "
            "CBF ratio err (bias) | CBV ratio err (bias) | rim rCBV bias | AUC | s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["method"] != method:
            continue
        lines.append(
            f"| {r['noise']} | {r['snr']:g} | {r['denoiser']} | {r['psnr']:.1f} | "
            f"{r['ssim']:.3f} | {r['rcbf']:.3f} | {r['rcbv']:.3f} | {r['mtt']:.3f} | "
            f"{r['ratio_cbf']:.3f} ({r['ratio_cbf_bias']:+.3f}) | "
            f"{r['ratio_cbv']:.3f} ({r['ratio_cbv_bias']:+.3f}) | {r['rim_bias']:+.3f} | "
            f"{r['auc']:.2f} | {r['denoise_s']:.2f} |")
    return "\n".join(lines)


def figure(rows, path, method: str = "osvd") -> None:
    """PSNR, rCBF and rCBV error against SNR, one column per noise model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noises = sorted({r["noise"] for r in rows}, key=NOISE_MODELS.index)
    denoisers = list(dict.fromkeys(r["denoiser"] for r in rows))
    keys = (("psnr", "PSNR in the brain (dB)"), ("rcbf", f"rCBF error ({method})"),
            ("rcbv", f"rCBV error ({method})"))
    fig, axes = plt.subplots(len(keys), len(noises), figsize=(4 * len(noises), 9),
                             squeeze=False, sharex=True)
    for j, noise in enumerate(noises):
        for i, (key, label) in enumerate(keys):
            ax = axes[i, j]
            for d in denoisers:
                sel = sorted((r for r in rows if r["noise"] == noise and r["denoiser"] == d
                              and r["method"] == method), key=lambda r: r["snr"])
                ax.plot([r["snr"] for r in sel], [r[key] for r in sel], "o-", label=d)
            ax.set_xscale("log")
            ax.set_xticks([10, 20, 50], ["10", "20", "50"])
            ax.minorticks_off()
            ax.set_ylabel(label)
            if i == 0:
                ax.set_title(f"{noise} noise")
            if i == len(keys) - 1:
                ax.set_xlabel("SNR")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--snr", type=float, nargs="+", default=[50, 20, 10])
    p.add_argument("--noise", nargs="+", default=list(NOISE_MODELS), choices=NOISE_MODELS)
    p.add_argument("--methods", nargs="+", default=["osvd", "phae"])
    p.add_argument("--denoisers", nargs="+", default=None,
                   help="default: every registered denoiser")
    p.add_argument("--shape", default="64x64x12")
    p.add_argument("--seed", type=int, default=7300)
    p.add_argument("--corr-sigma", type=float, default=1.0)
    p.add_argument("--robustness-subjects", type=int, default=0,
                   help="also run perfmap robustness on a cohort of this size (0: skip)")
    p.add_argument("--json")
    p.add_argument("--figure")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    t0 = time.perf_counter()
    rows = run(tuple(args.snr), tuple(args.noise), tuple(args.methods), args.denoisers,
               args.subjects, shape, args.seed, args.corr_sigma)
    for m in args.methods:
        print(f"\n### {m}\n\n{table(rows, m)}")
    result = {"rows": rows}
    if args.robustness_subjects:
        dens = ["none"] + list(available() if args.denoisers is None else args.denoisers)
        grading = cli_robustness(args.robustness_subjects, args.snr, dens, args.seed)
        result["robustness"] = grading
        print("\n| denoiser | SNR | AUC (95 % CI) | HGG/LGG |\n|---|---|---|---|")
        for r in grading:
            print(f"| {r['denoiser']} | {r['snr']:g} | {r['auc']:.2f} ({r['auc_ci'][0]:.2f}-"
                  f"{r['auc_ci'][1]:.2f}) | {r['n_hgg']}/{r['n_lgg']} |")
    print(f"\n{len(rows)} rows in {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    if args.figure:
        figure(rows, args.figure, args.methods[0])


if __name__ == "__main__":
    main()
