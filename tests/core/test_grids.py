"""Time grids: endpoints, spacing laws, validation."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close

from polydiff.core import grids, paths

F64 = torch.float64


@pytest.mark.parametrize("kind", grids.GRIDS)
def test_endpoints_and_monotone(kind):
    path = paths.VPLinear()
    ts = grids.make_grid(kind, 10, path)
    assert ts.shape == (11,) and ts.dtype == F64
    assert float(ts[0]) == pytest.approx(path.t_start)
    if kind != "flow_shift":  # the shift moves every time except 0 and 1
        assert float(ts[-1]) == pytest.approx(path.t_end)
    assert (ts[1:] < ts[:-1]).all()


def test_logsnr_grid_is_uniform_in_lambda():
    for path in (paths.VPLinear(), paths.VPCosine(), paths.VE(), paths.OUVE()):
        lam = path.log_snr(grids.logsnr(12, path))
        d = lam[1:] - lam[:-1]
        assert_close(d, d.mean().expand_as(d), rtol=1e-7, atol=1e-9)


def test_karras_matches_eq5_on_ve():
    ts = grids.karras(8, paths.VE(0.002, 80.0), rho=7.0)
    i = torch.arange(9, dtype=F64)
    ref = (80 ** (1 / 7) + i / 8 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert_close(ts, ref)


def test_quadratic_and_flow_shift():
    q = grids.quadratic(4, t_start=1.0, t_end=0.01)
    assert_close(q.sqrt(), torch.linspace(1.0, 0.1, 5, dtype=F64))
    f = grids.flow_shift(4, paths.Flow(), t_end=0.0, shift=3.0)
    u = torch.linspace(1.0, 0.0, 5, dtype=F64)
    assert_close(f, 3 * u / (1 + 2 * u))
    assert (f[1:-1] > u[1:-1]).all()  # more time spent at high noise


def test_custom_validation():
    assert_close(grids.custom([1.0, 0.5, 0.1]), torch.tensor([1.0, 0.5, 0.1], dtype=F64))
    per_sample = grids.custom(torch.tensor([[1.0, 0.9], [0.5, 0.4], [0.1, 0.05]]))
    assert per_sample.shape == (3, 2)
    with pytest.raises(ValueError, match="strictly decreasing"):
        grids.custom([0.1, 0.5])
    with pytest.raises(ValueError, match="at least 2"):
        grids.custom([0.5])
    with pytest.raises(ValueError, match="non-finite"):
        grids.custom([1.0, float("nan")])
    with pytest.raises(ValueError, match="unknown grid"):
        grids.make_grid("cosine", 4, paths.VPLinear())
    with pytest.raises(ValueError, match="positive int"):
        grids.uniform(0, paths.VPLinear())
    with pytest.raises(ValueError, match="lambda is infinite"):
        grids.logsnr(4, paths.Flow(), t_start=1.0)
