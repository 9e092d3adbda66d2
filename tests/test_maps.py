"""Perfusion-map formulas (perfmap.core.maps) on curves with known integrals."""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.core import maps
from perfmap.deconv import DeconvFit


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_integral_is_the_trapezoid_rule(dtype, rtol):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, (500, 47)).astype(dtype)
    np.testing.assert_allclose(maps.trapezoid_integral(x, 1.3), np.trapezoid(x.astype(np.float64), dx=1.3,
                                                                    axis=-1), rtol=rtol)
    times = np.cumsum(rng.uniform(0.5, 2.0, 47))
    np.testing.assert_allclose(maps.trapezoid_integral(x, 1.0, times),
                               np.trapezoid(x.astype(np.float64), times, axis=-1), rtol=rtol)
    assert maps.trapezoid_integral(x, 1.3).dtype == np.float64
    assert maps.trapezoid_integral(np.ones((2, 1)), 1.0).tolist() == [0.0, 0.0]   # one frame: no area
    np.testing.assert_allclose(maps.trapezoid_integral(np.arange(5), 0.5), 0.5 * 8.0)  # ints promoted


def test_cbv_and_maps_from_a_known_residue():
    """Tissue = 0.04 * AIF (CBV 4 ml/100 g with kH = rho = 1); flow 0.01/s gives
    CBF 60 ml/100 g/min and MTT 4 s; TTP is the AIF's peak time."""
    dt = 1.5
    aif = np.array([0, 0, 2.0, 6.0, 4.0, 1.0, 0.5, 0.0])
    conc = np.stack([0.04 * aif, 0.02 * aif]).astype(np.float32)
    fit = DeconvFit(flow=np.array([0.01, 0.01]), tmax=np.array([0.0, 1.5]),
                    failed=np.array([False, True]))
    out = maps.perfusion_maps(conc, aif, dt, fit, kh=1.0, rho=1.0)
    assert all(v.dtype == np.float32 and v.shape == (2,) for v in out.values())
    np.testing.assert_allclose(out["cbv"][0], 4.0, rtol=1e-6)
    np.testing.assert_allclose(out["cbf"][0], 60.0, rtol=1e-6)
    np.testing.assert_allclose(out["mtt"][0], 4.0, rtol=1e-6)
    assert out["ttp"][0] == 3 * dt and out["tmax"][0] == 0.0
    assert all(np.isnan(v[1]) for v in out.values())      # a failed fit is NaN, never 0


def test_cbv_from_the_backends_volume_when_given_else_the_integral():
    """Tissue = 0.04 * AIF (integral ratio 0.04); a backend that reports its own
    volume 0.03 (F = 0.01/s, MTT 3 s) gets CBV 3 ml/100 g and MTT 3 s from it,
    not 4 ml/100 g and 4 s from the integral; without ``volume`` the integral is used."""
    dt = 1.5
    aif = np.array([0, 0, 2.0, 6.0, 4.0, 1.0, 0.5, 0.0])
    conc = np.stack([0.04 * aif, 0.04 * aif, 0.0 * aif])
    base = dict(flow=np.array([0.01, 0.01, 0.0]), tmax=np.array([0.0, 0.0, 0.0]),
                failed=np.array([False, True, False]))
    integral = DeconvFit(**base)
    fitted = DeconvFit(**base, volume=np.array([0.03, 0.03, 0.0], np.float32))
    assert maps.volume_source(integral) == "integral" and maps.volume_source(fitted) == "fit"
    kh, rho = 0.73, 1.04
    a = maps.perfusion_maps(conc, aif, dt, integral, kh=kh, rho=rho)
    b = maps.perfusion_maps(conc, aif, dt, fitted, kh=kh, rho=rho)
    np.testing.assert_allclose(a["cbv"][0], kh / rho * 100 * 0.04, rtol=1e-6)
    np.testing.assert_allclose(b["cbv"][0], kh / rho * 100 * 0.03, rtol=1e-6)
    np.testing.assert_allclose([a["mtt"][0], b["mtt"][0]], [4.0, 3.0], rtol=1e-6)
    np.testing.assert_array_equal(a["cbf"], b["cbf"])       # CBF is the flow either way
    np.testing.assert_array_equal(a["tmax"], b["tmax"])
    np.testing.assert_array_equal(a["ttp"], b["ttp"])
    # a failed fit stays NaN whatever volume it reports; zero flow and volume give no MTT
    assert all(np.isnan(v[1]) for v in b.values()) and np.isnan(b["mtt"][2])
    with pytest.raises(ValueError, match="volume"):
        maps.perfusion_maps(conc, aif, dt, DeconvFit(**base, volume=np.ones(2)))
