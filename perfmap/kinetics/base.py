"""Common types of the tracer-kinetic models.

A model is constructed with its options and called on dense arrays::

    model = get_model("etofts")(fit_delay=False)
    fit = model.fit(conc, aif_plasma, times)     # conc (n, T) mM, aif (T,) mM, times (T,) s
    fit.params["ktrans"]                         # (n,) float32, 1/min

Time is in seconds inside every model; rates are converted to the reported
units (Ktrans, kep in 1/min; Fp, PS in ml/100 ml/min; volumes in ml/ml) only in
:meth:`KineticModel.to_maps`. Voxels are fitted in chunks (bounded memory), all
voxels of a chunk at once by :func:`perfmap.core.lsq.batched_lm` started from a
linear (closed-form) estimate; there is no Python loop over voxels.

A voxel is failed (NaN in every map, counted in ``info["failures"]``) when its
curve holds NaN/Inf, its fit does not converge, or it ends on an implausible
bound (e.g. Ktrans at its upper limit): it never keeps its starting value.

With ``fit_delay=True`` the arterial delay is fitted per voxel: every voxel is
fitted (briefly) with the AIF shifted to each delay of a grid, the best grid
delay is refined by a parabola through the costs of it and its neighbours, and
the fit is completed at the refined and at the best grid delay, keeping the
better. A best delay on the edge of the grid fails the voxel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import numpy as np

from ..core.lsq import batched_lm
from ..errors import InputDataError, ParameterError, ShapeError
from .convolution import shift_curve
from .fitting import ArterialInput, fit_with_delay_grid, normal_equations

#: (T, k) float64 elements per working array; sets the automatic chunk size.
ELEMENTS_PER_CHUNK = 1 << 21


@dataclass
class KineticFit:
    """Result of fitting a kinetic model to ``n`` concentration curves.

    Attributes
    ----------
    params : dict of str to ndarray, shape (n,), float32
        Parameter maps in the model's reported units (see ``info["units"]``);
        with a fitted delay also ``"delay"`` (s). NaN where failed.
    failed : ndarray of bool, shape (n,)
        True where the voxel could not be fitted.
    rms : ndarray, shape (n,), float32
        Root-mean-square residual (mM); NaN where failed.
    info : dict
        Model, options, units, failure counts by cause and iteration counts
        (JSON-serialisable).
    """

    params: dict
    failed: np.ndarray
    rms: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        """Number of voxels that could not be fitted."""
        return int(np.count_nonzero(self.failed))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]


class KineticModel(ABC):
    """Base class of the tracer-kinetic models (subclasses registered by name).

    Parameters
    ----------
    fit_delay : bool
        Fit an arterial delay per voxel (grid search and refinement).
    delay_range : (float, float)
        Delays searched (s); the OSIPI convention (-10, 10) by default.
    delay_step : float
        Grid step of the delay search (s).
    max_iter : int
        Most Levenberg-Marquardt iterations per voxel.
    chunk_size : int, optional
        Voxels per chunk; by default about 2 million float64 values per
        working array (e.g. 20 000 voxels of 100 frames).
    n_threads : int
        Chunks fitted in parallel threads (NumPy releases the GIL); results do
        not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.kinetics import get_model
    >>> t = np.arange(0, 240.0, 2.0)
    >>> aif = 5 * (t / 20) * np.exp(1 - t / 20)
    >>> model = get_model("etofts")(fit_delay=True)
    >>> c = model.predict({"ktrans": [0.1, 0.3], "ve": [0.2, 0.4], "vp": [0.05, 0.02]},
    ...                   aif, t, delay=2.0)
    >>> fit = model.fit(c, aif, t)
    >>> [round(float(v), 3) for v in fit.params["ktrans"]], fit.params["delay"].round(1).tolist()
    ([0.1, 0.3], [2.0, 2.0])
    """

    name: ClassVar[str] = ""
    #: fitted parameters, in the order of ``x`` (time in s)
    internal: ClassVar[tuple] = ()
    #: reported maps and their units
    units: ClassVar[dict] = {}

    def __init__(self, fit_delay: bool = False, delay_range=(-10.0, 10.0),
                 delay_step: float = 1.0, max_iter: int = 100,
                 chunk_size: Optional[int] = None, n_threads: int = 1):
        lo, hi = (float(v) for v in delay_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ParameterError(f"delay_range must be (low, high) with low < high, got {delay_range!r}")
        if not (np.isfinite(delay_step) and 0 < delay_step <= hi - lo):
            raise ParameterError(f"delay_step must be in (0, {hi - lo:g}] s, got {delay_step!r}")
        if int(max_iter) < 1:
            raise ParameterError(f"max_iter must be a positive integer, got {max_iter!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if int(n_threads) < 1:
            raise ParameterError(f"n_threads must be a positive integer, got {n_threads!r}")
        self.fit_delay = bool(fit_delay)
        self.delay_range = (lo, hi)
        self.delay_step = float(delay_step)
        self.max_iter = int(max_iter)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.n_threads = int(n_threads)

    # -- for subclasses ---------------------------------------------------
    @abstractmethod
    def bounds(self) -> tuple:
        """``(lower, upper, x_scale)``, arrays of shape (P,) in internal units."""

    @abstractmethod
    def implausible(self, x: np.ndarray) -> np.ndarray:
        """True (k,) where fitted ``x`` (k, P) sits on a bound the data cannot justify."""

    @abstractmethod
    def start(self, y: np.ndarray, inp: ArterialInput) -> np.ndarray:
        """Linear starting estimate (k, P) from curves ``y`` (T, k); finite, in bounds."""

    @abstractmethod
    def curves(self, x: np.ndarray, inp: ArterialInput, jacobian: bool) -> tuple:
        """Model curves (T, k) for ``x`` (k, P) and, if asked, the Jacobian columns."""

    @abstractmethod
    def to_maps(self, x: np.ndarray) -> dict:
        """Reported maps (reported units) from fitted ``x`` (k, P)."""

    @abstractmethod
    def from_maps(self, maps: dict) -> np.ndarray:
        """``x`` (k, P) from reported maps (inverse of :meth:`to_maps`)."""

    def project(self, x: np.ndarray) -> np.ndarray:
        """Map a trial ``x`` onto the feasible set (default: the box only)."""
        return x

    # -- public -----------------------------------------------------------
    def params(self) -> dict:
        """Options for the provenance JSON."""
        out = {"model": self.name, "fit_delay": self.fit_delay, "max_iter": self.max_iter}
        if self.fit_delay:
            out.update(delay_range_s=list(self.delay_range), delay_step_s=self.delay_step)
        return out

    def predict(self, params: dict, aif_plasma, times, delay=None) -> np.ndarray:
        """Model concentration curves (n, T), mM, for parameter maps in reported units.

        Parameters
        ----------
        params : dict of str to array_like, shape (n,) or scalars
            The model's maps in reported units (Tofts models accept ``ve`` or
            ``kep`` with ``ktrans``).
        aif_plasma : array_like, shape (T,)
            Plasma AIF (mM).
        times : array_like, shape (T,)
            Frame times (s).
        delay : float or array_like, shape (n,), optional
            Arterial delay (s): the AIF is shifted later before the model applies.
            By default ``params["delay"]`` if present (maps of a delay fit).

        Returns
        -------
        ndarray, shape (n, T), float64

        Examples
        --------
        >>> import numpy as np
        >>> from perfmap.kinetics import get_model
        >>> t = np.arange(0.0, 4.0)
        >>> get_model("patlak")().predict({"ktrans": 60.0, "vp": 0.5}, np.ones(4), t).tolist()
        [[0.5, 1.5, 2.5, 3.5]]
        """
        if delay is None and "delay" in params:               # a fit with fit_delay=True
            delay = params["delay"]
        x = self.from_maps({k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in params.items()})
        aif = np.asarray(aif_plasma, np.float64)
        if delay is not None:
            d = np.broadcast_to(np.asarray(delay, np.float64), (x.shape[0],))
            aif = shift_curve(aif, times, d)
        model, _ = self.curves(x, ArterialInput(aif, times), False)
        return model.T.copy()

    def fit(self, conc, aif_plasma, times) -> KineticFit:
        """Fit every row of ``conc``.

        Parameters
        ----------
        conc : array_like, shape (n, T)
            Tissue concentration curves (mM), time last. Not modified.
        aif_plasma : array_like, shape (T,)
            Plasma arterial input function (mM) on the same times.
        times : array_like, shape (T,)
            Frame times (s), strictly increasing.

        Returns
        -------
        KineticFit

        Raises
        ------
        ShapeError
            ``conc`` not 2-D, AIF or times not matching its frames, too few frames.
        ParameterError
            Times not finite and strictly increasing.
        InputDataError
            AIF with NaN/Inf or without any positive value.
        """
        conc, aif, times = self._check(conc, aif_plasma, times)
        n, T = conc.shape
        grid = self._delay_grid()
        per_chunk = self.chunk_size or max(1, ELEMENTS_PER_CHUNK // (T * (grid.size or 1)))
        names = list(self.units) + (["delay"] if self.fit_delay else [])
        maps = {k: np.full(n, np.nan, np.float32) for k in names}
        failed = np.ones(n, bool)
        rms = np.full(n, np.nan, np.float32)
        iters = np.zeros(n, np.int64)
        counts = dict(nonfinite_input=0, not_converged=0, at_bound=0, delay_at_range_edge=0)

        def job(s):                       # chunks write disjoint slices: thread-safe
            e = min(s + per_chunk, n)
            y = np.ascontiguousarray(conc[s:e].T, dtype=np.float64)
            bad = ~np.all(np.isfinite(y), axis=0)
            y[:, bad] = 0.0
            out = self._fit_chunk(y, aif, times, grid)
            ok, chunk_counts = self._judge(out, bad)
            chunk_maps = self.to_maps(out["x"])
            if self.fit_delay:
                chunk_maps["delay"] = out["delay"]
            ok &= np.all([np.isfinite(v) for v in chunk_maps.values()], axis=0)
            for key, val in chunk_maps.items():
                maps[key][s:e] = np.where(ok, val, np.nan)
            rms[s:e] = np.where(ok, np.sqrt(out["cost"] / T), np.nan)
            failed[s:e] = ~ok
            iters[s:e] = out["n_iter"]
            return chunk_counts

        starts = range(0, n, per_chunk)
        if self.n_threads > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=self.n_threads) as pool:
                results = list(pool.map(job, starts))
        else:
            results = [job(s) for s in starts]
        for chunk_counts in results:
            for key, val in chunk_counts.items():
                counts[key] += val
        units = dict(self.units, **({"delay": "s"} if self.fit_delay else {}))
        info = dict(self.params(), units=units, n_voxels=int(n), n_failed=int(failed.sum()),
                    failures=counts, median_iterations=float(np.median(iters)) if n else 0.0)
        return KineticFit(params=maps, failed=failed, rms=rms, info=info)

    # -- internals --------------------------------------------------------
    def _check(self, conc, aif, times):
        conc = np.asarray(conc)
        if conc.ndim != 2:
            raise ShapeError(f"conc must be 2-D (voxels, time), got shape {conc.shape}")
        T = conc.shape[1]
        aif = np.asarray(aif, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64)
        if aif.ndim != 1 or aif.shape[0] != T:
            raise ShapeError(f"the AIF must be 1-D with {T} frames, got shape {aif.shape}")
        if times.ndim != 1 or times.shape[0] != T:
            raise ShapeError(f"times must be 1-D with {T} frames, got shape {times.shape}")
        if T < len(self.internal) + 2:
            raise ShapeError(f"the {self.name} model needs at least {len(self.internal) + 2} "
                             f"frames, got {T}")
        if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
            raise ParameterError("frame times must be finite and strictly increasing (s)")
        if not np.all(np.isfinite(aif)):
            raise InputDataError("the AIF contains NaN or Inf values")
        if not np.max(aif) > 0:
            raise InputDataError("the AIF has no positive value: no contrast arrived")
        return conc, aif, times

    def _delay_grid(self) -> np.ndarray:
        if not self.fit_delay:
            return np.empty(0)
        lo, hi = self.delay_range
        return lo + self.delay_step * np.arange(int(np.floor((hi - lo) / self.delay_step + 1e-9)) + 1)

    def solve(self, y, inp: ArterialInput, x0=None, max_iter: Optional[int] = None):
        """Bounded LM fit of time-major curves ``y`` (T, k) in internal units.

        Starts from :meth:`start` unless ``x0`` (k, P) is given; returns the
        :class:`perfmap.core.lsq.LMResult` (no failure rules applied: see :meth:`fit`).
        """
        lo, hi, scale = self.bounds()
        if x0 is None:
            x0 = self.start(y, inp)
        full = y.shape[1]

        def evaluate(x, rows):
            yy = y if rows.size == full else y[:, rows]
            model, cols = self.curves(x, inp.select(rows), True)
            model -= yy
            return normal_equations(model, cols)

        return batched_lm(evaluate, x0, lo, hi, scale, max_iter=max_iter or self.max_iter,
                          project=self.project)

    def _fit_chunk(self, y, aif, times, grid) -> dict:
        if grid.size:
            return fit_with_delay_grid(self, y, aif, times, grid, self.delay_step)
        res = self.solve(y, ArterialInput(aif, times))
        return dict(x=res.x, cost=res.cost, converged=res.converged, n_iter=res.n_iter)

    def _judge(self, out, bad) -> tuple:
        x = out["x"]
        at_bound = self.implausible(x)
        conv = out["converged"] & np.isfinite(out["cost"])
        edge = out.get("edge", np.zeros(x.shape[0], bool))
        counts = dict(nonfinite_input=int(np.count_nonzero(bad)),
                      not_converged=int(np.count_nonzero(~bad & ~conv)),
                      at_bound=int(np.count_nonzero(~bad & conv & at_bound)),
                      delay_at_range_edge=int(np.count_nonzero(~bad & conv & ~at_bound & edge)))
        return ~bad & conv & ~at_bound & ~edge, counts
