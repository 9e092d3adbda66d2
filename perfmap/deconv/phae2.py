"""PHAE2: a physics-informed encoder that fits flow, MTT, delay and residue shape.

``--method phae2`` goes beyond the PHAE paper (``--method phae``, which
estimates only MTT and takes CBV from the integral of the noisy curve). Its
encoder (:mod:`perfmap.neural.phae2`) returns, for every voxel's (tissue,
AIF) pair, everything the physics decoder needs to reproduce the whole
tissue curve: the amplitude (CBV), MTT, the tissue delay and the residue
shape; it was trained only through that decoder (reconstruction error, no
reference maps).

What the fit holds
------------------
``flow``
    ``F = CBV_fit / MTT`` (1/s) from the fitted amplitude, so the CBF map is
    ``(kH/rho) 100 60 F`` without the noisy integral.
``tmax``
    The fitted tissue delay ``d`` (s): the decoded residue ``F R(t - d)`` is
    monotone, so ``argmax k = d``. Rounded to 1 ms.
``mtt``
    The encoder's MTT (s).
``volume``
    ``F * MTT``, the integral of the fitted residue ``F R`` (the integral
    ratio of the decoded, noise-free tissue curve): the CBV map of
    :func:`perfmap.core.maps.perfusion_maps` is ``(kH/rho) 100 F MTT`` from
    it, not the integral of the noisy measured curve, so the MTT map
    ``60 CBV / CBF`` is the encoder's MTT and ``CBV = CBF MTT / 60`` holds
    (the JSON says ``cbv_source: "fit"``). ``--method phae`` keeps the
    paper's integral CBV.
``failed``
    Non-finite curves, and curves with no positive value (no bolus: they
    cannot be normalised). An all-zero curve is not a failure: flow 0,
    volume 0, Tmax 0, MTT NaN.
``info``
    Counts of failures and of outputs at the bounds of the model's ranges,
    the median fitted residue shape and the weights' SHA-256.

Curves on any frame interval are interpolated onto the model grid (64 frames
of 1.5 s around the AIF peak for the shipped weights). Inference runs in
fixed-size batches (the last padded) in float32, so results do not depend on
the chunk size. torch is imported only when the backend is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .base import Backend, DeconvFit, positive_int
from .registry import register


@dataclass
class _State:
    plan: Any
    dt: float
    n_frames: int


@register("phae2")
class PHAE2(Backend):
    """Physics-informed encoder: CBF, MTT, delay (Tmax) and residue shape from the curve.

    Parameters
    ----------
    model : path, optional
        PHAE2 weights (default: the shipped ``models/phae2_dsc.pt``).
    device : {"auto", "cpu", "cuda"}
    batch_size : int
        Curves per forward pass (every pass has this size).
    threads : int, optional
        CPU threads for torch.
    chunk_size, keep_residue
        See :class:`perfmap.deconv.Backend`; the kept residue is
        ``F R(t - Tmax)`` on the acquisition grid.

    Raises
    ------
    perfmap.errors.ModelError
        Missing, unreadable, unsafe or mismatching weights (at construction).
    """

    needs_torch = True

    def __init__(self, model: Optional[str] = None, device: str = "auto",
                 batch_size: int = 4096, threads: Optional[int] = None,
                 chunk_size: int = 16384, keep_residue: bool = False):
        super().__init__(chunk_size=chunk_size, keep_residue=keep_residue)
        import torch

        from ..neural import phae2 as net
        from ..neural.weights import resolve_device, sha256

        self.batch_size = positive_int("batch_size", batch_size)
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.threads = threads
        self.model_path = Path(model) if model not in (None, "", "default") \
            else net.default_model_path()
        self.device = resolve_device(device)
        self.device_request = str(device)
        model_, self.config, self.meta = net.load_model(self.model_path, "cpu")
        self._model = model_.to(self.device)
        self.sha256 = sha256(self.model_path)

    def params(self) -> dict:
        c = self.config
        return {"model": str(self.model_path), "model_sha256": self.sha256,
                "device": str(self.device), "device_requested": self.device_request,
                "batch_size": self.batch_size, "model_dt_s": c["dt"],
                "model_frames": c["n_frames"], "mtt_range_s": [c["mtt_min"], c["mtt_max"]],
                "delay_range_s": [c["delay_min"], c["delay_max"]],
                "decoder_residue": c["residue"]}

    def prepare(self, aif: np.ndarray, dt: float, n_frames: int) -> _State:
        from ..neural.data import grid_plan

        return _State(plan=grid_plan(aif, dt, self.config), dt=dt, n_frames=n_frames)

    def _encode(self, x: np.ndarray, aif_row: np.ndarray) -> dict:
        import torch

        n, bs = len(x), self.batch_size
        out = {k: np.full(n, np.nan) for k in ("flow_rel", "mtt", "delay", "p")}
        with torch.inference_mode():
            for s in range(0, n, bs):
                part = x[s:s + bs]
                m = len(part)
                if m < bs:
                    pad = np.zeros((bs - m,) + part.shape[1:], np.float32)
                    pad[:, 1] = aif_row
                    part = np.concatenate([part, pad])
                par = self._model.params(torch.from_numpy(part).to(self.device))
                for k in out:
                    out[k][s:s + m] = par[k][:m].double().cpu().numpy()
        return out

    def _fit_chunk(self, conc: np.ndarray, state: _State) -> DeconvFit:
        from ..neural.phae2_data import prepare

        x, scale, failed = prepare(conc, state.plan)
        zero = ~np.any(conc != 0, axis=1)
        par = self._encode(x, state.plan.aif)
        mtt = par["mtt"]
        flow = par["flow_rel"] * scale
        failed = (failed & ~zero) | ~np.isfinite(flow)
        flow = np.where(failed, np.nan, np.where(zero, 0.0, flow))
        tmax = np.where(failed, np.nan, np.where(zero, 0.0, np.round(par["delay"], 3)))
        mtt = np.where(failed | zero, np.nan, mtt)
        # the fitted residue integrates to F * MTT (R integrates to MTT)
        volume = np.where(failed, np.nan, np.where(zero, 0.0, flow * mtt))
        residue = None
        if self.keep_residue:
            residue = self._residue(flow, mtt, par["p"], tmax, state)
        c, ok = self.config, ~failed & ~zero
        info = {"time_grid": state.plan.info,
                "failed_no_bolus": int(np.count_nonzero(failed)),
                "mtt_at_bound": int(np.count_nonzero(ok & ((mtt < c["mtt_min"] * 1.01)
                                                           | (mtt > c["mtt_max"] * 0.99)))),
                "delay_at_bound": int(np.count_nonzero(ok & (
                    (par["delay"] < c["delay_min"] + 0.01)
                    | (par["delay"] > c["delay_max"] - 0.01)))),
                "residue_shape_p_median": float(np.median(par["p"][ok])) if ok.any()
                else None,
                "tmax": "fitted tissue delay of the decoded residue (s)",
                "volume": "fit: CBV = (kH/rho) 100 F MTT from the fitted amplitude",
                "model": str(self.model_path), "model_sha256": self.sha256}
        return DeconvFit(flow=flow.astype(np.float32), tmax=tmax.astype(np.float32),
                         failed=failed, mtt=mtt.astype(np.float32), residue=residue, info=info,
                         volume=volume.astype(np.float32))

    def _residue(self, flow, mtt, p, tmax, state):
        from scipy.special import gammaln

        lag = np.arange(state.n_frames) * state.dt - np.nan_to_num(tmax)[:, None]
        m = np.nan_to_num(mtt, nan=1.0)[:, None]
        t = np.clip(lag, 0.0, None)
        kind = self.config["residue"]
        if kind == "stretched":
            pp = np.nan_to_num(p, nan=1.0)[:, None]
            r = np.exp(-(t / (m / np.exp(gammaln(1.0 + 1.0 / pp)))) ** pp)
        elif kind == "lorentzian":
            r = 1.0 / (1.0 + (np.pi * t / (2.0 * m)) ** 2)
        else:
            r = np.exp(-t / m)
        return (np.nan_to_num(flow)[:, None] * np.where(lag >= 0, r, 0.0)).astype(np.float32)

    def merge_info(self, infos):
        """Sum the per-chunk counts; the median shape is the voxel-weighted mean of chunks."""
        if not infos:
            return {}
        merged = dict(infos[0][1])
        for key in ("failed_no_bolus", "mtt_at_bound", "delay_at_bound"):
            merged[key] = int(sum(i.get(key, 0) for _, i in infos))
        vals = [(n, i["residue_shape_p_median"]) for n, i in infos
                if i.get("residue_shape_p_median") is not None]
        merged["residue_shape_p_median"] = float(sum(n * v for n, v in vals)
                                                 / sum(n for n, _ in vals)) if vals else None
        return merged
