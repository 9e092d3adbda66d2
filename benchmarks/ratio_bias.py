"""Bias of the tumour/NAWM CBF ratio (the glioma-grading number) across deconvolution methods.

Every subject is one or two :func:`perfmap.core.phantom.make_phantom` calls with
the same seed (hence the same tissue values, AIF and noise): the tumour voxels
are taken from a phantom made with the tumour's residue shape, delay and
dispersion, every other voxel (grey matter, white matter, the contralateral
NAWM reference) from one made with the NAWM settings. The curves go through
the DSC steps of :class:`perfmap.models.dsc.DSCModel` (baseline, dR2*, the
true arterial mask) and are deconvolved as arrays. Ratio error:
``measured / true - 1`` with the true ratio of the phantom's truth maps
(``params["cbf_ratio"]``), for two estimators:

``voxel``
    ROI mean of the CBF map over the reference mean (the JSON ``cbf_ratio``,
    :func:`perfmap.core.roi.add_ratios`).
``curve``
    CBF ratio of the deconvolved ROI-mean curves
    (:func:`perfmap.core.roi.mean_curve_ratios`).

Parts (``--part``):

``decomposition``
    One factor at a time, from a reference where tumour and NAWM are alike
    (exponential residue, no delay, no dispersion): tumour residue shape,
    tumour delay, tumour dispersion, the reference region's residue, the
    tumour/NAWM MTT ratio (subjects binned by their true ratio) and the noise
    level. The error at each SNR splits into three additive parts:
    ``physics``, what no deconvolution that ignores it can recover
    (dispersion: the peak of the dispersed residue, computed from the model,
    is below the undispersed flow; 0 for the other factors); ``resolution``,
    what a deconvolution that treats both regions alike still gets wrong
    because the regularised residue is smoother than the true one (a
    cusp-shaped or short-MTT residue loses more of its peak than a flat-topped
    or long one), measured as the ratio of the ROI-mean curves deconvolved
    with one shared regularisation, minus physics; and the ``method`` part,
    the voxel-mean ratio minus that mean-curve ratio: what per-voxel
    regularisation of regions with different CNR adds (and, for a fixed
    threshold, the noise peaks of low-CNR voxels). The noise-free column is
    given for reference; with an arrival between two samples the barely
    regularised noise-free deconvolution rings, so it is not the floor of the
    noisy cases.
``regions``
    Where the method part comes from, tumour and NAWM alike: each region's
    CBF error and the median threshold or weight its voxels chose.
``variants``
    Voxel-mean ratio of fixed (cSVD) and per-voxel (oSVD, several
    oscillation-index limits) SVD rules on the mixed cohort, with the voxel
    error: no rule makes the voxel mean unbiased at every SNR.
``methods``
    Median signed ratio error and its interquartile range per method, SNR
    and estimator, on four cohorts: ``held-out`` (tumour gamma residue, delay
    0.5-2 s, dispersion 0.5-1.5 s; NAWM exponential), ``held-out, no
    dispersion``, ``mixed`` (tumour and NAWM residues drawn independently from
    the simulator's five shapes, tumour delay 0.5-2 s, no dispersion: the
    target cohort) and ``same residue`` (one shape for the whole brain).
``maps``
    Voxel accuracy (medians over all tissue voxels): white-matter-normalised
    CBF error ``|(CBF / mean CBF_ref) / (truth / mean truth_ref) - 1|`` and
    MTT error ``|MTT / truth - 1|``, as ``benchmarks/phae_accuracy.py``.
``delay``
    CBF change when every tissue curve is shifted 2 frames later.

Usage (a few minutes per part on a 2-core machine)::

    OMP_NUM_THREADS=1 python benchmarks/ratio_bias.py --part decomposition [--subjects 6]
    OMP_NUM_THREADS=1 python benchmarks/ratio_bias.py --part regions
    OMP_NUM_THREADS=1 python benchmarks/ratio_bias.py --part variants [--subjects 12]
    OMP_NUM_THREADS=1 python benchmarks/ratio_bias.py --part methods [--subjects 12] [--phae]
    OMP_NUM_THREADS=1 python benchmarks/ratio_bias.py --part maps
    OMP_NUM_THREADS=1 python benchmarks/ratio_bias.py --part delay
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from perfmap.core import curves
from perfmap.core.maps import perfusion_maps
from perfmap.core.phantom import make_phantom
from perfmap.core.roi import mean_curve_ratios
from perfmap.deconv import make_backend
from perfmap.models.dsc import DSCModel

SNRS = (50.0, 20.0, 10.0)
SHAPES = ("exponential", "gamma", "linear", "lorentzian", "boxcar")

#: Methods compared: label -> (registered name, parameters). "tikhonov" is the default
#: (first-difference penalty, oscillation-index weight); the two "standard" rows are the
#: earlier default (GCV) and its robust variant.
METHODS = {
    "osvd": ("osvd", {}),
    "csvd": ("csvd", {}),
    "ssvd": ("ssvd", {}),
    "tikhonov": ("tikhonov", {}),
    "tikhonov standard GCV": ("tikhonov", {"criterion": "gcv", "order": 0}),
    "tikhonov standard RGCV": ("tikhonov", {"criterion": "rgcv", "order": 0}),
}
#: Further Tikhonov variants of the voxel-accuracy table: which of the two changes of the
#: default (criterion, penalty) does what.
VARIANTS = {
    "tikhonov standard OI": ("tikhonov", {"criterion": "oi", "order": 0}),
    "tikhonov 2nd difference OI": ("tikhonov", {"criterion": "oi", "order": 2}),
    "tikhonov 1st difference GCV": ("tikhonov", {"criterion": "gcv", "order": 1}),
}


@dataclass
class Subject:
    """Brain curves of one simulated subject and what the metrics need."""

    conc: np.ndarray        # (n, T) dR2* of the brain voxels
    aif: np.ndarray
    dt: float
    tumour: np.ndarray      # (n,) bool
    ref: np.ndarray
    tissue: np.ndarray      # (n,) bool: not artery, finite truth
    truth_cbf: np.ndarray   # (n,)
    truth_mtt: np.ndarray
    true_ratio: float
    mtt_ratio: float        # true tumour MTT / reference MTT
    tumour_mtt: float       # subject-level tumour MTT (s)


def simulate(seed, snr, tumour=None, nawm=None, grade="HGG", shape=(48, 48, 6)) -> Subject:
    """One subject: NAWM settings for the brain, tumour settings inside the tumour."""
    nawm = dict(nawm or {})
    ph = make_phantom(shape=shape, snr=snr, seed=seed, grade=grade, **nawm)
    signal = ph.signal
    if tumour is not None and tumour != nawm:
        other = make_phantom(shape=shape, snr=snr, seed=seed, grade=grade, **tumour)
        signal = signal.copy()
        signal[ph.masks["tumour"]] = other.signal[ph.masks["tumour"]]
    brain = ph.masks["brain"]
    work = DSCModel("csvd", te=ph.te, tr=ph.tr).prepare(signal, mask=brain,
                                                       aif=ph.masks["aif"])
    cbf = ph.truth["cbf"][brain]
    return Subject(conc=work.brain_conc, aif=work.aif.curve, dt=work.grid.dt,
                   tumour=ph.masks["tumour"][brain], ref=ph.masks["ref"][brain],
                   tissue=~ph.masks["aif"][brain] & np.isfinite(cbf), truth_cbf=cbf,
                   truth_mtt=ph.truth["mtt"][brain], true_ratio=ph.params["cbf_ratio"],
                   mtt_ratio=ph.params["mtt_ratio"],
                   tumour_mtt=ph.params["tissues"]["tumour"]["mtt"])


def evaluate(sub: Subject, method: str, params: dict, maps_metrics: bool = False) -> dict:
    """Ratio errors of both estimators (and the voxel metrics when asked)."""
    backend = make_backend(method, **params)
    fit = backend.fit(sub.conc, sub.aif, sub.dt)
    maps = perfusion_maps(sub.conc, sub.aif, sub.dt, fit)
    cbf = maps["cbf"]
    ref_mean = np.nanmean(cbf[sub.ref])
    out = {"voxel": np.nanmean(cbf[sub.tumour]) / ref_mean / sub.true_ratio - 1.0}
    ratio = mean_curve_ratios(sub.conc, sub.tumour, sub.ref, sub.aif, sub.dt,
                              backend)["cbf_ratio"]
    out["curve"] = np.nan if ratio is None else ratio / sub.true_ratio - 1.0
    if maps_metrics:
        ok = sub.tissue & np.isfinite(cbf) & np.isfinite(maps["mtt"])
        rcbf = (cbf[ok] / ref_mean) / (sub.truth_cbf[ok] / np.mean(sub.truth_cbf[sub.ref]))
        out["rcbf"] = np.abs(rcbf - 1.0)
        out["mtt"] = np.abs(maps["mtt"][ok] / sub.truth_mtt[ok] - 1.0)
    return out


def dispersion_peak(mtt: float, beta: float, shape: str = "exponential",
                    lam: float = 2.0) -> float:
    """Peak of the dispersed residue ``(h_beta * R)(t)`` with ``R(0) = 1`` (Calamante 2000).

    What an ideal deconvolution with the undispersed AIF returns as CBF / F.
    """
    dt = 0.005
    t = np.arange(0.0, 20.0 * max(mtt, beta) + 10.0, dt)
    r = np.ravel(curves.residue_function(t, mtt, shape, lam))
    if beta <= 0:
        return float(r.max())
    h = curves.dispersion_kernel(t, beta)
    conv = curves.fft_convolve(r, h, dt) - 0.5 * dt * (r[0] * h + r * h[0])   # trapezoid rule
    return float(conv.max())


def _median(values):
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _iqr(values):
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    return float(np.subtract(*np.percentile(values, [75, 25]))) if values.size else float("nan")


def _pct(x, sign=True):
    return "n/a" if not np.isfinite(x) else (f"{100 * x:+.0f} %" if sign else f"{100 * x:.0f} %")


def _grade(i):
    return ("HGG", "LGG")[i % 2]


# ------------------------------------------------------------------ decomposition

DECOMPOSITION = [
    # label, tumour settings, NAWM settings (None: as tumour), dispersion beta for physics
    ("alike: exponential, no delay, no dispersion", {}, {}, 0.0),
    ("tumour residue gamma (lambda 2)", {"residue": "gamma"}, {}, 0.0),
    ("tumour residue linear", {"residue": "linear"}, {}, 0.0),
    ("tumour residue Lorentzian", {"residue": "lorentzian"}, {}, 0.0),
    ("tumour residue boxcar", {"residue": "boxcar"}, {}, 0.0),
    ("tumour delay 0.75 s (half a frame)", {"delay": 0.75}, {}, 0.0),
    ("tumour delay 1.5 s (one frame)", {"delay": 1.5}, {}, 0.0),
    ("tumour dispersion 1 s", {"dispersion": 1.0}, {}, 1.0),
    ("tumour dispersion 2 s", {"dispersion": 2.0}, {}, 2.0),
    ("reference (whole brain) residue gamma", {}, {"residue": "gamma"}, 0.0),
    ("held-out: tumour gamma, delay 1.25 s, dispersion 1 s",
     {"residue": "gamma", "delay": 1.25, "dispersion": 1.0}, {}, 1.0),
]


def decomposition(subjects: int, seed: int, shape, methods=("osvd", "tikhonov"), log=print):
    """Decomposition table(s): one factor varied at a time (see the module docstring)."""
    snrs = (None,) + SNRS
    results = {}
    for label, tum, nawm, beta in DECOMPOSITION:
        tum_full = {"residue": "exponential", **tum}
        nawm_full = {"residue": "exponential", **nawm}
        for snr in snrs:
            for i in range(subjects):
                sub = simulate(seed + i, snr, tum_full, nawm_full, _grade(i), shape)
                phys = dispersion_peak(sub.tumour_mtt, beta, tum_full["residue"]) - 1.0 \
                    if beta else 0.0
                for m in methods:
                    r = evaluate(sub, *METHODS[m])
                    results.setdefault((label, m, snr), []).append(r)
                results.setdefault((label, "physics"), []).append(phys)
        log(f"  {label}: done", file=sys.stderr)
    # MTT: alike subjects binned by their true tumour/NAWM MTT ratio
    bins = [("tumour MTT < 0.8 x NAWM", 0.0, 0.8), ("tumour MTT 0.8-1.25 x NAWM", 0.8, 1.25),
            ("tumour MTT > 1.25 x NAWM", 1.25, np.inf)]
    mtt_rows = {}
    for snr in snrs:
        for i in range(3 * subjects):
            sub = simulate(seed + 1000 + i, snr, None, {"residue": "exponential"}, _grade(i),
                           shape)
            for lab, lo, hi in bins:
                if lo <= sub.mtt_ratio < hi:
                    for m in methods:
                        mtt_rows.setdefault((lab, m, snr), []).append(evaluate(sub,
                                                                               *METHODS[m]))
    lines = []
    for m in methods:
        lines.append(f"\n{m}: median signed error of the tumour/NAWM CBF ratio, {subjects} "
                     "subjects per cell. Per SNR: the voxel-mean ratio, in brackets its method "
                     "part (voxel mean minus the ratio of the mean curves deconvolved with one "
                     "shared regularisation), then that mean-curve ratio, which is physics + "
                     "resolution\n")
        lines.append("| factor varied alone | physics | noise-free | SNR 50 voxel (method) | "
                     "SNR 50 curve | SNR 20 voxel (method) | SNR 20 curve | "
                     "SNR 10 voxel (method) | SNR 10 curve |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        rows = [(label, results, results[(label, "physics")]) for label, *_ in DECOMPOSITION]
        rows += [(lab, mtt_rows, [0.0]) for lab, *_ in bins]
        for label, store, phys in rows:
            free = _median([r["voxel"] for r in store.get((label, m, None), [])])
            cells = [label, _pct(_median(phys)), _pct(free)]
            for snr in SNRS:
                rs = store.get((label, m, snr), [])
                v = _median([r["voxel"] for r in rs])
                c = _median([r["curve"] for r in rs])
                meth = _median([r["voxel"] - r["curve"] for r in rs])
                cells += [f"{_pct(v)} ({_pct(meth)})", _pct(c)]
            n = len(store.get((label, m, SNRS[0]), []))
            if store is mtt_rows:
                cells[0] += f" (n = {n})"
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ cohorts

def cohort_settings(kind: str, i: int, rng):
    """Tumour and NAWM settings of subject ``i`` of a cohort (see the module docstring)."""
    delay = float(rng.uniform(0.5, 2.0))
    disp = float(rng.uniform(0.5, 1.5))
    if kind == "held-out":
        return {"residue": "gamma", "delay": delay, "dispersion": disp}, \
            {"residue": "exponential"}
    if kind == "held-out, no dispersion":
        return {"residue": "gamma", "delay": delay}, {"residue": "exponential"}
    if kind == "mixed":
        t, n = rng.choice(SHAPES, 2)
        return {"residue": str(t), "delay": delay}, {"residue": str(n)}
    if kind == "same residue":
        s = SHAPES[i % len(SHAPES)]
        return {"residue": s, "delay": delay}, {"residue": s}
    if kind == "exponential":
        return {"residue": "exponential"}, {"residue": "exponential"}
    raise ValueError(kind)


#: Methods of the decomposition and region tables.
DECOMPOSED = ("osvd", "tikhonov", "tikhonov standard GCV")

COHORTS = ("held-out", "held-out, no dispersion", "mixed", "same residue")


def methods_table(subjects: int, seed: int, shape, methods, cohorts=COHORTS, log=print):
    """Per cohort: median (IQR) signed ratio error per method, SNR and estimator."""
    lines = []
    for kind in cohorts:
        store = {}
        for snr in (None,) + SNRS:
            for i in range(subjects):
                rng = np.random.default_rng([seed, i])
                tum, nawm = cohort_settings(kind, i, rng)
                sub = simulate(seed + i, snr, tum, nawm, _grade(i), shape)
                for m in methods:
                    store.setdefault((m, snr), []).append(evaluate(sub, *METHODS[m]))
        log(f"  {kind}: done", file=sys.stderr)
        lines.append(f"\nCohort '{kind}' ({subjects} subjects per SNR, seed {seed}): median "
                     "signed ratio error (interquartile range)\n")
        lines.append("| method | estimator | noise-free | SNR 50 | SNR 20 | SNR 10 |")
        lines.append("|---|---|---|---|---|---|")
        for m in methods:
            for est in ("voxel", "curve"):
                cells = [m, "voxel mean" if est == "voxel" else "mean curve"]
                for snr in (None,) + SNRS:
                    v = [r[est] for r in store[(m, snr)]]
                    cells.append(f"{_pct(_median(v))} ({_pct(_iqr(v), False)})")
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def maps_table(subjects: int, seed: int, methods, log=print):
    """Voxel accuracy on 64x64x12 phantoms: exponential residue, and the mixed cohort."""
    lines = [f"Medians over all tissue voxels of {subjects} subjects per row (64x64x12); in "
             "brackets: relative to oSVD\n",
             "| cohort | SNR | method | WM-normalised CBF error | MTT error | voxel-mean ratio "
             "error |", "|---|---|---|---|---|---|"]
    for kind in ("exponential", "mixed"):
        for snr in SNRS:
            store = {}
            for i in range(subjects):
                rng = np.random.default_rng([seed, i])
                tum, nawm = cohort_settings(kind, i, rng)
                sub = simulate(seed + i, snr, tum, nawm, _grade(i), (64, 64, 12))
                for m in methods:
                    store.setdefault(m, []).append(evaluate(sub, *{**METHODS, **VARIANTS}[m],
                                                            maps_metrics=True))
            med = {m: (float(np.median(np.concatenate([r["rcbf"] for r in store[m]]))),
                       float(np.median(np.concatenate([r["mtt"] for r in store[m]]))))
                   for m in methods}
            base = med.get("osvd", (np.nan, np.nan))
            for m in methods:
                rc, mt = med[m]
                lines.append(f"| {kind} | {snr:g} | {m} | {100 * rc:.1f} % ({rc / base[0]:.2f}) | "
                             f"{100 * mt:.1f} % ({mt / base[1]:.2f}) | "
                             f"{_pct(_median([r['voxel'] for r in store[m]]))} |")
        log(f"  maps {kind}: done", file=sys.stderr)
    return "\n".join(lines)


def regions_table(subjects: int, seed: int, shape, methods):
    """Where the method part comes from: per-region CBF error and regularisation.

    Tumour and NAWM alike (exponential residue, no delay, no dispersion); CBF
    error of each ROI mean against the expected value (truth times the
    phantom's relaxivity ratio, :mod:`perfmap.core.phantom`); the median
    oSVD threshold (fraction of s_max) or Tikhonov weight (fraction of s_max)
    the voxels of each region chose.
    """
    lines = ["| SNR | method | tumour CBF error | NAWM CBF error | voxel-mean ratio error | "
             "median regularisation, tumour / NAWM |", "|---|---|---|---|---|---|"]
    for snr in (None,) + SNRS:
        store = {m: [] for m in methods}
        for i in range(subjects):
            sub = simulate(seed + i, snr, None, {"residue": "exponential"}, _grade(i), shape)
            for m in methods:
                name, params = METHODS[m]
                be = make_backend(name, **params)
                row = []
                for roi in (sub.tumour, sub.ref):
                    fit = be.fit(sub.conc[roi], sub.aif, sub.dt)
                    maps = perfusion_maps(sub.conc[roi], sub.aif, sub.dt, fit)
                    row.append(np.nanmean(maps["cbf"]) / np.mean(8.0 * sub.truth_cbf[roi]) - 1)
                    row.append(fit.info.get("threshold_median", fit.info.get(
                        "mu_median", be.params().get("threshold", np.nan))))
                store[m].append(row)
        for m in methods:
            v = np.array(store[m], float)
            ratio = (1 + v[:, 0]) / (1 + v[:, 2]) - 1
            lines.append(f"| {'none' if snr is None else f'{snr:g}'} | {m} | "
                         f"{_pct(np.median(v[:, 0]))} | {_pct(np.median(v[:, 2]))} | "
                         f"{_pct(np.median(ratio))} | "
                         f"{np.median(v[:, 1]):.3g} / {np.median(v[:, 3]):.3g} |")
    return "\n".join(lines)


def variants_table(subjects: int, seed: int, shape):
    """Voxel-mean ratio of fixed and per-voxel SVD regularisation rules (mixed cohort)."""
    variants = [("csvd threshold 0.05", "csvd", {"threshold": 0.05}),
                ("csvd threshold 0.1", "csvd", {"threshold": 0.1}),
                ("csvd threshold 0.2", "csvd", {"threshold": 0.2}),
                ("osvd oi_limit 0.05", "osvd", {"oi_limit": 0.05}),
                ("osvd oi_limit 0.095 (default)", "osvd", {}),
                ("osvd oi_limit 0.15", "osvd", {"oi_limit": 0.15}),
                ("osvd oi_limit 0.3", "osvd", {"oi_limit": 0.3})]
    store = {}
    for snr in SNRS:
        for i in range(subjects):
            rng = np.random.default_rng([seed, i])
            tum, nawm = cohort_settings("mixed", i, rng)
            sub = simulate(seed + i, snr, tum, nawm, _grade(i), shape)
            for label, name, params in variants:
                store.setdefault((label, snr), []).append(evaluate(sub, name, params,
                                                                   maps_metrics=True))
    lines = ["| rule | voxel-mean ratio error, SNR 50 / 20 / 10 | mean-curve ratio error | "
             "WM-normalised CBF error |", "|---|---|---|---|"]
    for label, *_ in variants:
        cells = [" / ".join(_pct(_median([r[k] for r in store[(label, snr)]])) for snr in SNRS)
                 for k in ("voxel", "curve")]
        rc = " / ".join(_pct(float(np.median(np.concatenate([r["rcbf"] for r in
                                                              store[(label, snr)]]))), False)
                        for snr in SNRS)
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {rc} |")
    return "\n".join(lines)


def delay_table(subjects: int, seed: int, shape, methods, shift: int = 2):
    """CBF change when all tissue curves are shifted ``shift`` frames later."""
    lines = ["| SNR | method | median voxel CBF change | tumour mean CBF change | NAWM mean CBF "
             "change | voxel-mean ratio change |", "|---|---|---|---|---|---|"]
    for snr in (None, 20.0):
        store = {m: [] for m in methods}
        for i in range(subjects):
            sub = simulate(seed + i, snr, {"residue": "gamma", "delay": 1.0},
                           {"residue": "exponential"}, _grade(i), shape)
            shifted = np.zeros_like(sub.conc)
            shifted[:, shift:] = sub.conc[:, :-shift]
            for m in methods:
                be = make_backend(*METHODS[m][:1], **METHODS[m][1])
                a = be.fit(sub.conc, sub.aif, sub.dt).flow.astype(float)
                b = be.fit(shifted, sub.aif, sub.dt).flow.astype(float)
                ok = sub.tissue & (a > 0)
                rt = lambda f: np.mean(f[sub.tumour]) / np.mean(f[sub.ref])      # noqa: E731
                store[m].append((np.median(np.abs(b[ok] / a[ok] - 1)),
                                 np.mean(b[sub.tumour]) / np.mean(a[sub.tumour]) - 1,
                                 np.mean(b[sub.ref]) / np.mean(a[sub.ref]) - 1,
                                 rt(b) / rt(a) - 1))
        for m in methods:
            v = np.array(store[m])
            lines.append(f"| {'none' if snr is None else f'{snr:g}'} | {m} | "
                         f"{100 * np.median(v[:, 0]):.1f} % | "
                         + " | ".join(f"{100 * np.median(v[:, k]):+.1f} % "
                                      f"(max {100 * np.max(np.abs(v[:, k])):.1f} %)"
                                      for k in (1, 2, 3)) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("decomposition", "regions", "variants", "methods",
                                           "maps", "delay", "all"),
                        default="decomposition")
    parser.add_argument("--subjects", type=int, default=None,
                        help="per cell (default: 6 decomposition, 12 methods, 6 maps/delay)")
    parser.add_argument("--seed", type=int, default=5100)
    parser.add_argument("--shape", default="48x48x6")
    parser.add_argument("--methods", default=None, help="comma-separated labels of METHODS")
    parser.add_argument("--cohorts", default=None, help="comma-separated cohort names")
    parser.add_argument("--phae", action="store_true", help="also PHAE (torch, slower)")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    if args.phae:
        METHODS["phae"] = ("phae", {"device": "cpu"})
    methods = args.methods.split(",") if args.methods else list(METHODS)
    t0 = time.perf_counter()
    parts = ("decomposition", "regions", "variants", "methods", "maps", "delay") \
        if args.part == "all" else (args.part,)
    for part in parts:
        if part == "decomposition":
            print(decomposition(args.subjects or 6, args.seed, shape,
                                methods=tuple(m for m in methods if m in DECOMPOSED)))
        elif part == "regions":
            print(regions_table(args.subjects or 6, args.seed, shape,
                                [m for m in methods if m in DECOMPOSED + ("csvd",)]))
        elif part == "variants":
            print(variants_table(args.subjects or 12, args.seed, shape))
        elif part == "methods":
            cohorts = args.cohorts.split(",") if args.cohorts else COHORTS
            print(methods_table(args.subjects or 12, args.seed, shape, methods, cohorts))
        elif part == "maps":
            print(maps_table(args.subjects or 6, args.seed,
                             [m for m in methods if m in ("osvd", "tikhonov",
                                                          "tikhonov standard GCV",
                                                          "tikhonov standard RGCV")]
                             + ([] if args.methods else list(VARIANTS))))
        elif part == "delay":
            print(delay_table(args.subjects or 6, args.seed, shape,
                              [m for m in methods if m in ("osvd", "csvd", "tikhonov",
                                                           "ssvd")]))
        print(f"\n({part}: {time.perf_counter() - t0:.0f} s so far)", file=sys.stderr)


if __name__ == "__main__":
    main()
