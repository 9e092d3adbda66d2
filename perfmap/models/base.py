"""What every array model shares: a step list run over a work record, and a Fit.

A model (:class:`perfmap.models.DSCModel`, later ``DCEModel``) is built with
its acquisition and method parameters and fitted to arrays. Fitting runs the
model's **steps** in order (DESIGN section 2: ``baseline -> dR2* -> [denoise]
-> [leakage] -> AIF -> fit`` for DSC), each a function that reads and adds
fields of one :class:`Work` record. A step is an entry in the model's list,
with a condition saying when it applies, so adding a step (leakage correction,
denoising) is adding an entry, not editing a function.

The :class:`Fit` keeps the voxel rows and the backend's result and derives each
map on first access (DIPY ``reconst`` style), as a 3D float32 array that is NaN
outside the brain mask and where a voxel could not be fitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..core.series import scatter


@dataclass(frozen=True)
class Step:
    """One named step of a model's fit.

    Attributes
    ----------
    name : str
        Short name (timings in the JSON are ``<name>_s``).
    run : callable
        ``run(model, work)``: reads and sets attributes of ``work``.
    applies : callable, optional
        ``applies(model) -> bool``; the step is skipped when it returns False
        (optional steps such as denoising or leakage correction).
    """

    name: str
    run: Callable[[Any, "Work"], None]
    applies: Optional[Callable[[Any], bool]] = None


@dataclass
class Work:
    """The record the steps of one fit share (inputs, intermediate and final arrays).

    Steps add attributes freely (``work.conc = ...``); :attr:`info` collects
    what goes into the provenance, :attr:`timings` the seconds per step.
    """

    signal: np.ndarray
    info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def __getattr__(self, name):
        # Only reached for attributes no step has set yet.
        raise AttributeError(f"no step has produced {name!r} yet")


def run_steps(model, steps, work: Work) -> Work:
    """Run the applicable ``steps`` of ``model`` over ``work``, timing each one."""
    for step in steps:
        if step.applies is not None and not step.applies(model):
            continue
        t0 = time.perf_counter()
        step.run(model, work)
        work.timings[f"{step.name}_s"] = round(time.perf_counter() - t0, 4)
    return work


class Fit:
    """Base of the fitted-model results: 3D maps derived on first access.

    Subclasses set :attr:`map_names` and :attr:`map_units` and implement
    :meth:`_voxel_maps`, returning every map for the fitted voxels (rows in C
    order of :attr:`brain_mask`) as float32 arrays.
    """

    map_names: tuple = ()
    map_units: dict = {}

    def __init__(self, brain_mask: np.ndarray):
        self.brain_mask = brain_mask
        self._rows: Optional[dict] = None
        self._volumes: dict = {}

    def _voxel_maps(self) -> dict:
        raise NotImplementedError

    def voxel_values(self, name: str) -> np.ndarray:
        """Map ``name`` for the brain voxels only (C order of :attr:`brain_mask`)."""
        if self._rows is None:
            self._rows = self._voxel_maps()
        return self._rows[name]

    def map(self, name: str) -> np.ndarray:
        """Map ``name`` as a 3D float32 array (NaN outside the mask and where not fitted)."""
        if name not in self.map_names:
            raise KeyError(f"no map {name!r}; this fit has {', '.join(self.map_names)}")
        if name not in self._volumes:
            self._volumes[name] = scatter(self.voxel_values(name), self.brain_mask)
        return self._volumes[name]

    @property
    def maps(self) -> dict:
        """Every map, ``name -> 3D float32 array``."""
        return {name: self.map(name) for name in self.map_names}
