"""Acquisition kinds: how a series of each kind becomes a fitted model.

A kind (``dsc``; ``dce`` is one more entry) names its array model, its
methods and what it needs from the acquisition; its step list lives with the
model (:attr:`perfmap.models.DSCModel.steps`). :func:`perfmap.pipeline.compute`
looks the kind up here, so adding a kind is registering a :class:`Kind`, not
editing ``compute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..io.volume import Volume4D
from .acquisition import DSC_TE, DSC_TR, check_frame_interval, check_value, check_voxel_size

_KINDS: dict = {}


@dataclass(frozen=True)
class Kind:
    """One acquisition kind.

    Attributes
    ----------
    name : str
        ``--kind`` value.
    description : str
        One line for help texts.
    default_method : str
        ``--method`` default.
    methods : callable
        ``methods() -> list of str``, the registered method names.
    build_model : callable
        ``build_model(volume, method, method_params, **options)`` returns
        ``(model, fit_inputs)``: the array model and the extra arrays its
        ``fit`` takes (read from files named in ``options``). It checks the
        acquisition values the kind needs and raises
        :class:`perfmap.errors.ParameterError` naming the file and the option.
    map_names : tuple of str
        Maps written as ``STEM_<name>.nii.gz`` (a model may add optional ones).
    options : tuple of str
        The keyword options ``build_model`` takes (others are refused by name).
    """

    name: str
    description: str
    default_method: str
    methods: Callable[[], list]
    build_model: Callable
    map_names: tuple
    options: tuple = ()


def register_kind(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (a second kind of the same name is refused)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"a kind named {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def available_kinds() -> list:
    """Names of the registered kinds, sorted."""
    return sorted(_KINDS)


def get_kind(name: str) -> Kind:
    """The kind registered as ``name``; an unknown name lists the valid ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ParameterError(f"unknown kind {name!r}; choose one of: "
                             f"{', '.join(available_kinds())}") from None


# ------------------------------------------------------------------ DSC

def _require(volume: Volume4D, value, name: str, option: str, key: str) -> None:
    if value is None:
        raise ParameterError(
            f"{volume.source}: the {name} is missing: give {option} in seconds or add "
            f"{key} to a JSON sidecar next to the input")


def _dsc_model(volume: Volume4D, method: str, method_params: dict, *, kh=None, rho=None,
               baseline_frames=None, n_skip=None, leakage=None, second_echo=None, te2=None):
    from ..deconv.registry import check_parameter_names
    from ..models import DSCModel

    check_parameter_names(method, method_params)
    _require(volume, volume.te, "echo time (TE)", "--te", "EchoTime")
    _require(volume, volume.tr, "repetition time (TR)", "--tr", "RepetitionTime")
    check_value(volume.te, DSC_TE, volume.source, volume.meta.get("te_source", "header"))
    check_value(volume.tr, DSC_TR, volume.source, volume.meta.get("tr_source", "header"))
    check_frame_interval(volume.frame_times, DSC_TR, volume.source,
                         volume.meta.get("frame_times_source", "frame times"))
    check_voxel_size(np.linalg.norm(volume.affine[:3, :3], axis=0), volume.source)
    fit_inputs = {}
    if second_echo is not None:
        echo = _second_echo(volume, second_echo, te2)
        te2, fit_inputs["second_echo"] = echo.te, echo.data
    elif te2 is not None:
        raise ParameterError("--te2 is the echo time of --second-echo; give --second-echo too")
    extra = {k: v for k, v in (("kh", kh), ("rho", rho)) if v is not None}
    model = DSCModel(method, te=volume.te, tr=volume.tr, baseline_frames=baseline_frames,
                     n_skip=n_skip, leakage=leakage, te2=te2, **extra, **method_params)
    return model, fit_inputs


def _second_echo(volume: Volume4D, path, te2) -> Volume4D:
    """The other echo of a dual-echo series: same grid, frames and TR, another TE."""
    from ..io.series import load_series

    echo = load_series(path, te=te2)
    where = f"{echo.source} (second echo)"
    if echo.data.shape != volume.data.shape:
        raise ParameterError(f"{where}: shape {echo.data.shape} differs from the series' "
                             f"{volume.data.shape}; both echoes must have the same grid and "
                             "frames")
    if not np.allclose(echo.affine, volume.affine, atol=1e-3):
        raise ParameterError(f"{where}: its grid (affine) differs from the series'")
    if echo.tr is not None and volume.tr is not None and \
            not np.isclose(echo.tr, volume.tr, rtol=1e-3):
        raise ParameterError(f"{where}: TR {echo.tr:g} s differs from the series' "
                             f"{volume.tr:g} s")
    _require(echo, echo.te, "echo time (TE) of the second echo", "--te2", "EchoTime")
    check_value(echo.te, DSC_TE, where, echo.meta.get("te_source", "header"))
    if np.isclose(echo.te, volume.te, rtol=1e-6):
        raise ParameterError(f"{where}: its echo time {echo.te:g} s equals the series' TE; "
                             "the two echoes need different TEs (give --te2)")
    return echo


def _deconv_methods() -> list:
    from ..deconv import available

    return available()


DSC = register_kind(Kind(
    name="dsc", description="DSC-MRI: dR2*, deconvolution; CBF, CBV, MTT, Tmax, TTP",
    default_method="osvd", methods=_deconv_methods, build_model=_dsc_model,
    map_names=("cbf", "cbv", "mtt", "tmax", "ttp"),
    options=("kh", "rho", "baseline_frames", "n_skip", "leakage", "second_echo", "te2")))
