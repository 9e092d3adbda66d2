"""Reading the Bezier DSC DRO (Chakwizira et al. 2022) for perfmap's accuracy checks.

The DRO holds DSC *signal* (S0 100, TE 29 ms, TR 1.243 s, 161 frames, SNR 20);
in ``varying_cbf`` rows ``0..N/2-1`` are grey matter (CBV 4 ml/100 g), the rest
white matter (CBV 2), with CBF in the file name (``..._cbf_GM_WM.nii``); files
with one CBF in the name (``..._cbf_GM.nii``) hold grey-matter parameters in
every voxel. The authors convert with ``C = -ln(S/S0) / (kappa TE)``,
``kappa_a`` for the AIF and ``kappa_s`` for tissue; kH = rho = 1.

Shared by ``tests/test_bezier_dro.py`` and ``benchmarks/accuracy_reference.py``.
The data are GPL-3.0 and are read from ``../shared/data``, never copied.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

TE = 0.029
TR = 1.243
KAPPA_A = 7.0281
#: tissue constant by gamma-residue shape lambda (kappa_s_lam*.mat)
KAPPA_S = {1: 130.8347, 5: 106.85950944, 100: 96.5102}

FOLDERS = {
    "varying_cbf/exponential_residue_function": 1,
    "varying_cbf/sigmoid_residue_function": 5,
    "varying_cbf/boxcar_residue_function": 100,
    "varying_residue_function": None,   # lambda from the file name
    "delay_dispersion": 1,
}


def _kappas(folder: Path):
    import scipy.io as sio

    out = {}
    for f in folder.glob("kappa_s*.mat"):
        m = re.search(r"lam(\d+)", f.name)
        out[int(m.group(1)) if m else None] = float(sio.loadmat(f)["kappa_s"].ravel()[0])
    return out


def _baseline_s0(signal: np.ndarray, n_base: int) -> np.ndarray:
    return signal[..., :n_base].mean(axis=-1)


def load_case(path: Path, aif_signal: np.ndarray, lam: int, n_base: int = 15):
    """Concentration curves (n, T) of one file, the AIF (T,), and the truth per voxel."""
    import nibabel as nib

    sig = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)
    nx = sig.shape[0]
    sig = sig.reshape(nx, -1, sig.shape[-1])
    s0 = _baseline_s0(sig, n_base)
    conc = -np.log(np.clip(sig, 1e-3, None) / s0[..., None]) / (KAPPA_S[lam] * TE)
    a0 = aif_signal[:n_base].mean()
    aif = -np.log(np.clip(aif_signal, 1e-3, None) / a0) / (KAPPA_A * TE)
    nums = [int(v) for v in re.search(r"cbf_(?:gw_)?(\d+)(?:_(\d+))?\.nii", path.name).groups()
            if v is not None]
    gm = np.zeros(sig.shape[:2], bool)
    gm[: nx // 2] = True
    cbf_gm = nums[0]
    cbf_wm = nums[1] if len(nums) > 1 else cbf_gm
    if len(nums) == 1:
        # One CBF in the name (delay_dispersion, varying_residue_function): grey-matter
        # parameters in every voxel, as the measured CBV (4 everywhere) confirms.
        gm[:] = True
    cbf = np.where(gm, cbf_gm, cbf_wm)
    cbv = np.where(gm, 4.0, 2.0)
    return conc.reshape(-1, conc.shape[-1]), aif, gm.ravel(), cbf.ravel(), cbv.ravel()


def cases(root: Path):
    """Yield (folder, file, conc, aif, gm, cbf_true, cbv_true) for every DRO file."""
    import nibabel as nib

    base = root / "bezier_dsc_dro" / "example_simulated_data"
    aif_src = base / "varying_residue_function" / "aif.nii"
    for rel, lam in FOLDERS.items():
        folder = base / rel
        aif_path = folder / "aif.nii" if (folder / "aif.nii").exists() else aif_src
        aif_signal = np.asarray(nib.load(str(aif_path)).dataobj, dtype=np.float64).ravel()
        for f in sorted(folder.glob("St_*.nii")):
            lam_f = lam
            if lam_f is None:
                lam_f = int(re.search(r"lambda_(\d+)", f.name).group(1))
            conc, aif, gm, cbf, cbv = load_case(f, aif_signal, lam_f)
            yield rel, f.name, conc, aif, gm, cbf, cbv


def evaluate(method: str, root: Path):
    """Per folder: median over files of the relative error of the ROI-mean CBF, CBV, MTT.

    ROI means are taken over the GM and WM halves (SNR 20 per voxel), as a
    reader would measure the DRO. Returns ``{folder: {"cbf": .., "cbv": .., "mtt": ..,
    "wm_norm_cbf": ..}}`` with signed median relative errors, plus the worst
    absolute ones under ``max_*``.
    """
    from perfmap.core.maps import perfusion_maps
    from perfmap.deconv import get_backend

    backend = get_backend(method)()
    rows: dict = {}
    for rel, name, conc, aif, gm, cbf_t, cbv_t in cases(root):
        fit = backend.fit(conc, aif, TR)
        maps = perfusion_maps(conc, aif, TR, fit, kh=1.0, rho=1.0)
        errs = {}
        for region in ([gm] if gm.all() else [gm, ~gm]):
            for key, truth in (("cbf", cbf_t), ("cbv", cbv_t)):
                est = np.nanmean(maps[key][region])
                errs.setdefault(key, []).append(est / truth[region][0] - 1.0)
            mtt_true = 60.0 * cbv_t[region][0] / cbf_t[region][0]
            errs.setdefault("mtt", []).append(np.nanmean(maps["mtt"][region]) / mtt_true - 1.0)
        if not gm.all():
            ratio = np.nanmean(maps["cbf"][gm]) / np.nanmean(maps["cbf"][~gm])
            errs["gm_wm_cbf_ratio"] = [ratio / (cbf_t[gm][0] / cbf_t[~gm][0]) - 1.0]
        rows.setdefault(rel, []).append(errs)
    table = {}
    for rel, items in rows.items():
        keys = items[0].keys()
        table[rel] = {}
        for k in keys:
            vals = np.concatenate([np.asarray(i[k]) for i in items])
            table[rel][k] = float(np.median(vals))
            table[rel][f"max_{k}"] = float(np.max(np.abs(vals)))
        table[rel]["files"] = len(items)
    return table
