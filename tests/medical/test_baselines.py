"""Classical baselines: CG on known systems, differences' adjoints, and each reconstruction
improving on the back-projection start on a tiny volume."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polydiff.medical.baselines import (
    back_projection,
    cg,
    cg_least_squares,
    fbp,
    ramp_filter,
    soft_threshold,
    tv_admm,
)
from polydiff.medical.data.phantoms import shepp_logan_3d
from polydiff.medical.metrics import psnr
from polydiff.medical.operators.base import inner
from polydiff.medical.operators.ct import FanBeamCT, LimitedAngleCT, ParallelBeamCT
from polydiff.medical.operators.difference import FiniteDifference
from polydiff.medical.operators.masks import make_mask
from polydiff.medical.operators.mri import CartesianMRI


@pytest.fixture(scope="module")
def tiny():
    return shepp_logan_3d(24, seed=1).double()


@pytest.mark.parametrize("circular", [False, True])
def test_finite_difference_adjoint_and_values(circular):
    d = FiniteDifference((4, 5, 6), axes=(0, 2), circular=circular)
    x, y = (
        torch.randn(2, 4, 5, 6, dtype=torch.float64),
        torch.randn(2, 2, 4, 5, 6, dtype=torch.float64),
    )
    assert float(abs(inner(d.forward(x), y) - inner(x, d.adjoint(y)))) < 1e-10
    dx = d.forward(x)
    torch.testing.assert_close(dx[:, 0, 1], x[:, 2] - x[:, 1])
    last = dx[:, 1, :, :, -1]
    expected = x[:, :, :, 0] - x[:, :, :, -1] if circular else torch.zeros_like(last)
    torch.testing.assert_close(last, expected)
    assert float(d.forward(torch.ones(4, 5, 6)).abs().max()) == 0.0  # constants have no TV


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    axes=st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
    circular=st.booleans(),
)
def test_finite_difference_adjoint_random_shapes(shape, axes, circular):
    d = FiniteDifference(shape, axes=axes, circular=circular)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    y = torch.randn(2, *d.out_shape, generator=g, dtype=torch.float64)
    assert float(abs(inner(d.forward(x), y) - inner(x, d.adjoint(y)))) < 1e-10


def test_cg_solves_spd_system_batched():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) + 0.5 * torch.eye(6, dtype=torch.float64)  # 3 SPD systems
    b = torch.randn(3, 6, generator=g, dtype=torch.float64)
    x = cg(lambda v: (a @ v[..., None])[..., 0], b, n_iter=6, batch_dims=1)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    # extra iterations after convergence leave the solution unchanged (no division by zero)
    torch.testing.assert_close(
        cg(lambda v: (a @ v[..., None])[..., 0], b, n_iter=40, batch_dims=1), x
    )


def test_cg_complex_hermitian():
    m = torch.randn(5, 5, dtype=torch.complex128)
    a = m @ m.conj().T + torch.eye(5)
    b = torch.randn(5, dtype=torch.complex128)
    torch.testing.assert_close(cg(lambda v: a @ v, b, n_iter=5), torch.linalg.solve(a, b))


def test_soft_threshold():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    torch.testing.assert_close(soft_threshold(v, 0.5), torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))


def test_ramp_filter_frequency_response():
    # The Ram-Lak filter multiplies a low-frequency cosine by |f| (cycles per sample).
    n = 256
    s = torch.arange(n, dtype=torch.float64)
    f = 4 / n
    out = ramp_filter(torch.cos(2 * torch.pi * f * s))
    mid = slice(64, 192)  # away from the truncation ends
    torch.testing.assert_close(
        out[mid], f * torch.cos(2 * torch.pi * f * s[mid]), atol=2e-3, rtol=0
    )


def test_fbp_inverts_the_radon_transform_of_a_smooth_image(tiny):
    blob = _blob(32)
    op = ParallelBeamCT(32, n_views=90)
    x = fbp(op, op.forward(blob))
    assert float((x - blob).norm() / blob.norm()) < 0.03  # correct scale and position
    sharp = fbp(ParallelBeamCT(24, n_views=90), ParallelBeamCT(24, n_views=90).forward(tiny))
    assert float(psnr(sharp, tiny)) > 21.0
    with pytest.raises(TypeError, match="ParallelBeamCT or FanBeamCT"):
        fbp(CartesianMRI(torch.ones(8, 8)), torch.zeros(8, 8))


def _blob(n: int) -> torch.Tensor:
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.exp(-((xx - 3) ** 2 + (yy + 2) ** 2) / (2 * 4.0**2))


@pytest.mark.parametrize(
    "geometry",
    [{}, {"source_distance": 45, "detector_distance": 60}, {"det_spacing": 0.7}],
    ids=["default", "close-source", "fine-detector"],
)
def test_fan_beam_fbp_inverts_a_smooth_image(geometry):
    blob = _blob(32)
    op = FanBeamCT(32, n_views=180, **geometry)
    x = fbp(op, op.forward(blob))
    assert float((x - blob).norm() / blob.norm()) < 0.04


def test_fan_beam_fbp_needs_a_full_scan():
    op = FanBeamCT(16, angles_deg=[0, 10, 20, 30])
    with pytest.raises(ValueError, match="360 degrees"):
        fbp(op, op.forward(torch.rand(16, 16)))


@pytest.mark.parametrize(
    ("make_op", "ls_gain"),
    [
        (lambda: ParallelBeamCT(24, n_views=6), 1.0),
        (lambda: LimitedAngleCT(24, angle_range_deg=90, n_views=20), 1.0),
        (lambda: FanBeamCT(24, n_views=8), 1.0),
        # MRI: A^T A is a projection, so the zero-filled start already is the minimum-norm
        # least-squares solution; CG can only keep it, TV must improve it.
        (lambda: CartesianMRI(make_mask("uniform1d", (24, 24), 4)), -0.1),
    ],
    ids=["sparse-view", "limited-angle", "fan-beam", "mri-x4"],
)
def test_reconstructions_improve_on_back_projection(tiny, make_op, ls_gain):
    op = make_op()
    y = op.measure(tiny, noise_std=0.01, generator=torch.Generator().manual_seed(0))
    start = back_projection(op, y)
    p0 = float(psnr(start, tiny))
    p_cg = float(psnr(cg_least_squares(op, y, start, n_iter=15), tiny))
    p_tv = float(psnr(tv_admm(op, y, start, lam=0.02, rho=1.0, n_iter=30), tiny))
    p_tvz = float(
        psnr(tv_admm(op, y, start, lam=0.02, rho=1.0, n_iter=30, axes=(0,), circular=True), tiny)
    )
    assert p_cg > p0 + ls_gain
    assert p_tv > max(p_cg, p0) + 0.8  # the 3D TV prior helps beyond least squares
    assert p_tvz > p0 + 1.0


def test_cg_least_squares_reaches_exact_solution_when_well_posed(tiny):
    op = CartesianMRI(torch.ones(24, 24, dtype=torch.bool))  # fully sampled: A^T A = I
    x = cg_least_squares(op, op.forward(tiny), n_iter=2)
    torch.testing.assert_close(x, tiny)


def test_tv_admm_rejects_non_volume():
    op = ParallelBeamCT(8, 2)
    with pytest.raises(ValueError, match="one \\(D, H, W\\) volume"):
        tv_admm(op, torch.zeros(2, 3, 2, op.out_shape[1]))


def test_cg_stays_put_once_converged_on_a_singular_system():
    """Noiseless undersampled MRI: A^T A is a projection, CG converges in a few iterations and
    must not blow up in the null space afterwards (it did, to 1e8, before the round-off floor)."""
    gt = shepp_logan_3d(32, seed=1)  # at 32^2 the unguarded CG reached 1e9 by iteration 30
    op = CartesianMRI(make_mask("uniform1d", (32, 32), acceleration=8))
    y = op.forward(gt)
    few, many = cg_least_squares(op, y, n_iter=5), cg_least_squares(op, y, n_iter=30)
    assert torch.isfinite(many).all()
    torch.testing.assert_close(many, few, atol=1e-4, rtol=1e-4)
    residual = (op.forward(many) - y).abs().norm() / y.abs().norm()
    assert float(residual) < 1e-4


def test_cg_from_a_warm_start_far_larger_than_the_data_stays_finite():
    """DiffusionMBIR warm-starts CG at x_t / alpha (~150x the signal early on). On masked-FFT
    MRI one CG step solves the system; the round-off floor must then scale with ||A x0||, not
    only with ||b||: with the floor at 100 eps ||b||, 5 steps from such a start reached 1e11."""
    gt = shepp_logan_3d(32, seed=1)
    op = CartesianMRI(make_mask("uniform1d", (32, 32), acceleration=4))
    b = op.adjoint(op.forward(gt))
    x0 = 600 * torch.randn(32, 32, 32, generator=torch.Generator().manual_seed(0))
    one, five = cg(op.normal, b, x0, n_iter=1), cg(op.normal, b, x0, n_iter=5)
    assert torch.isfinite(five).all()
    torch.testing.assert_close(five, one, atol=1e-3, rtol=1e-4)
