"""``perfmap simulate``: write DSC phantoms with ground truth and a manifest."""

from __future__ import annotations

import click

from ..core.curves import RESIDUE_SHAPES
from ..pipeline.acquisition import DSC_TE, DSC_TR
from ._common import handle_errors
from .options import kind_option, overwrite_option, seed_option, verbosity, verbosity_option

#: Fewest frames a phantom can have: the default 2 non-steady-state frames plus
#: 30 for baseline, bolus and recirculation (``perfmap.core.phantom`` refuses fewer).
MIN_FRAMES = 32
#: Fewest voxels a phantom has along x and y (``perfmap.core.phantom`` refuses fewer).
MIN_INPLANE = 16
#: Voxel size (mm) of the phantoms ``perfmap simulate`` writes (``make_phantom``'s default).
VOXEL_MM = (2.0, 2.0, 5.0)


def _parse_shape(ctx, param, value):
    try:
        shape = tuple(int(v) for v in value.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"{value!r} is not a grid size like 64x64x12")
    return shape


def _check_shape(shape) -> None:
    """Refuse, naming ``--shape``, a grid too small for the phantom's regions."""
    from ..core.phantom_parts import anatomy_masks
    from ..errors import ParameterError

    name = "x".join(map(str, shape))
    if min(shape[:2]) < MIN_INPLANE:
        raise ParameterError(f"--shape {name}: a phantom must be 3D with at least "
                             f"{MIN_INPLANE}x{MIN_INPLANE} voxels in-plane")
    try:
        anatomy_masks(shape, VOXEL_MM)       # every region (artery, tumour, ...) must fit
    except ParameterError as exc:
        raise ParameterError(f"--shape {name}: {exc}") from None


def _plausible(rng):
    """A callback refusing values outside an accepted acquisition range (README)."""

    def check(ctx, param, value):
        if value is not None and not (rng.lo <= value <= rng.hi):
            raise click.BadParameter(f"{value:g} {rng.unit} is not a plausible DSC {rng.name} "
                                     f"(accepted {rng.lo:g}-{rng.hi:g} {rng.unit})")
        return value

    return check


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@kind_option
@click.option("--subjects", "n_subjects", type=click.IntRange(min=1), default=1,
              show_default=True, help="Number of subjects.")
@click.option("--snr", type=float, default=50.0, show_default=True,
              help="Baseline SNR (mean baseline signal / noise SD); inf for no noise.")
@click.option("--hgg-fraction", type=click.FloatRange(0.0, 1.0), default=0.5,
              show_default=True, help="Fraction of high-grade gliomas.")
@click.option("--shape", default="64x64x12", show_default=True, callback=_parse_shape,
              help="Grid size XxYxZ.")
@click.option("--frames", "n_frames", type=click.IntRange(min=MIN_FRAMES), default=60,
              show_default=True, help=f"Number of dynamic frames (at least {MIN_FRAMES}: "
              "non-steady-state frames, baseline, bolus and recirculation).")
@click.option("--tr", type=float, default=1.5, callback=_plausible(DSC_TR),
              show_default=True, help=f"Frame interval (s, {DSC_TR.lo:g}-{DSC_TR.hi:g}).")
@click.option("--te", type=float, default=0.03, callback=_plausible(DSC_TE),
              show_default=True, help=f"Echo time (s, {DSC_TE.lo:g}-{DSC_TE.hi:g}).")
@click.option("--residue", type=click.Choice(RESIDUE_SHAPES), default="exponential",
              show_default=True, help="Residue function shape.")
@click.option("--delay", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Tissue bolus delay relative to the AIF (s).")
@click.option("--dispersion", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Exponential dispersion time constant (s).")
@click.option("--leakage", is_flag=True,
              help="DSC: contrast leakage in HGG tumours (Tofts extravasation, SPGR T1 effect, "
                   "a small T2* term); the truth stays the leak-free CBV/CBF.")
@click.option("--flip-angle", type=click.FloatRange(0.0, 90.0, min_open=True),
              help="DSC with --leakage: flip angle (degrees; default 30, the consensus "
                   "no-preload protocol).")
@click.option("--second-te", type=click.FloatRange(min=0.0, min_open=True),
              help="DSC: also write the series at this echo time (s) as a second echo.")
@click.option("--frame-interval", type=click.FloatRange(min=0.0, min_open=True), default=4.0,
              show_default=True, help="DCE: frame interval (s).")
@seed_option("Random seed.")
@overwrite_option
@verbosity_option
@handle_errors
def simulate(out_dir, kind, n_subjects, snr, hgg_fraction, shape, n_frames, tr, te, residue,
             delay, dispersion, leakage, flip_angle, second_te, frame_interval, seed,
             overwrite):
    """Write DSC (or, with --kind dce, DCE) phantoms with ground truth into OUT_DIR,
    with a manifest.tsv.

    Each subject gets a 4D series, a JSON sidecar, AIF/brain/tumour/reference
    masks and the true maps (DSC: CBF, CBV, MTT; DCE: Ktrans, ve, vp, kep, Fp, PS,
    T10, plus a variable-flip-angle series); the manifest feeds ``perfmap batch``.
    Prints the manifest's path (nothing with -q).
    """
    if kind == "dce":
        if leakage or flip_angle is not None or second_te is not None:
            raise click.UsageError("--leakage, --flip-angle and --second-te are DSC options")
        from ..simulate_dce import simulate_dce_cohort

        manifest = simulate_dce_cohort(out_dir, n_subjects=n_subjects, snr=snr,
                                       hgg_fraction=hgg_fraction, shape=shape,
                                       n_frames=n_frames, dt=frame_interval, seed=seed,
                                       overwrite=overwrite)
    else:
        from ..simulate import simulate_cohort

        _check_shape(shape)
        spec = None
        if leakage or flip_angle is not None:
            spec = {"flip_angle": flip_angle} if flip_angle is not None else True
        manifest = simulate_cohort(out_dir, n_subjects=n_subjects, snr=snr,
                                   hgg_fraction=hgg_fraction, shape=shape, n_frames=n_frames,
                                   tr=tr, te=te, residue=residue, delay=delay,
                                   dispersion=dispersion, seed=seed, overwrite=overwrite,
                                   leakage=spec, second_te=second_te)
    if verbosity() >= 0:
        click.echo(f"wrote {n_subjects} phantom(s) to {out_dir}", err=True)
        click.echo(str(manifest))
