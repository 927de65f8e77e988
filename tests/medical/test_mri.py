"""Cartesian MRI: unitary centred FFT, exact adjoints, masks, noise, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polydiff.medical.operators import masks
from polydiff.medical.operators.base import inner
from polydiff.medical.operators.mri import CartesianMRI, fft2c, ifft2c

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
KINDS = ["uniform1d", "gaussian1d", "gaussian2d", "poisson"]


def test_centred_fft_is_unitary_and_centred():
    x = torch.randn(3, 10, 12, dtype=torch.complex128)
    torch.testing.assert_close(ifft2c(fft2c(x)), x)
    torch.testing.assert_close(fft2c(x).abs().pow(2).sum(), x.abs().pow(2).sum())  # Parseval
    k = fft2c(torch.ones(10, 12, dtype=torch.complex128))
    assert float(k.abs().argmax()) == 5 * 12 + 6  # DC at (H // 2, W // 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_adjoint_dot_product_real_images(kind, dtype):
    op = CartesianMRI(masks.make_mask(kind, (16, 20), 4, seed=1))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 20, generator=g, dtype=dtype)
    y = torch.complex(*(torch.randn(3, 16, 20, generator=g, dtype=dtype) for _ in range(2)))
    lhs, rhs = inner(op.forward(x), y), inner(x, op.adjoint(y))
    assert float(abs(lhs - rhs) / abs(lhs)) < TOL[dtype]
    assert op.adjoint(y).dtype == dtype


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_adjoint_dot_product_complex_images(dtype):
    op = CartesianMRI(masks.make_mask("gaussian2d", (16, 16), 3), real_input=False)
    x, y = torch.randn(2, 16, 16, dtype=dtype), torch.randn(2, 16, 16, dtype=dtype)
    lhs = torch.sum(torch.conj(op.forward(x)) * y)  # the full complex inner product
    rhs = torch.sum(torch.conj(x) * op.adjoint(y))
    tol = 1e-5 if dtype == torch.complex64 else 1e-10
    assert float(abs(lhs - rhs) / abs(lhs)) < tol


def test_normal_operator_is_a_projection_and_full_mask_is_identity():
    x = torch.randn(4, 12, 12, dtype=torch.complex128)
    op = CartesianMRI(masks.make_mask("poisson", (12, 12), 3), real_input=False)
    torch.testing.assert_close(op.normal(op.normal(x)), op.normal(x))
    full = CartesianMRI(torch.ones(12, 12, dtype=torch.bool), real_input=False)
    torch.testing.assert_close(full.normal(x), x)


def test_uniform1d_mask_lines_and_acs():
    m = masks.uniform1d_mask((8, 32), acceleration=4, acs_fraction=0.125)
    assert torch.equal(m, m[:1].expand(8, 32))  # whole readout lines
    cols = torch.nonzero(m[0]).flatten().tolist()
    assert set(range(14, 18)) <= set(cols)  # 4 ACS lines around DC = 16
    assert set(range(0, 32, 4)) <= set(cols)  # every 4th line, aligned on DC
    assert len(cols) == 8 + 3  # DC line 16 is in both sets


@pytest.mark.parametrize("fn", [masks.gaussian1d_mask, masks.gaussian2d_mask])
def test_gaussian_masks_hit_acceleration_and_are_seeded(fn):
    m = fn((32, 32), acceleration=4, generator=torch.Generator().manual_seed(3))
    assert masks.acceleration_of(m) == pytest.approx(4.0)
    assert bool(m[16, 16])  # DC in the ACS region
    again = fn((32, 32), acceleration=4, generator=torch.Generator().manual_seed(3))
    other = fn((32, 32), acceleration=4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(m, again) and not torch.equal(m, other)


def test_gaussian_density_decreases_from_centre():
    m = masks.gaussian2d_mask(
        (64, 64), acceleration=6, acs_fraction=0.0, generator=torch.Generator().manual_seed(0)
    )
    r = torch.cdist(
        torch.cartesian_prod(torch.arange(64.0), torch.arange(64.0)), torch.tensor([[32.0, 32.0]])
    ).reshape(64, 64)
    assert m[r < 10].float().mean() > 2 * m[r > 20].float().mean()


def test_poisson_disc_mask():
    m = masks.poisson_disc_mask((48, 48), acceleration=5, acs_fraction=0.1, seed=2)
    assert abs(masks.acceleration_of(m) - 5) / 5 < 0.05
    assert torch.equal(
        m, masks.poisson_disc_mask((48, 48), acceleration=5, acs_fraction=0.1, seed=2)
    )
    # variable density: dense centre, sparse periphery
    yy, xx = np.mgrid[:48, :48]
    r = np.hypot(yy - 24, xx - 24)
    dense, sparse = m.numpy()[(r > 6) & (r < 12)].mean(), m.numpy()[r > 20].mean()
    assert dense > 2 * sparse
    # Poisson-disc property outside the ACS box: no two samples at distance < 1 in the
    # periphery (where the radius is largest), i.e. no 4-neighbours there.
    outer = m.numpy() & (r > 20)
    assert not np.any(outer[1:, :] & outer[:-1, :]) and not np.any(outer[:, 1:] & outer[:, :-1])


def test_gaussian_noise_only_on_sampled_kspace():
    op = CartesianMRI(masks.make_mask("gaussian1d", (32, 32), 4))
    x = torch.zeros(200, 32, 32)
    y = op.measure(x, noise_std=0.5, generator=torch.Generator().manual_seed(0))
    sampled = op.mask.expand_as(y)
    assert torch.all(y[~sampled] == 0)
    assert float(y[sampled].abs().pow(2).mean()) == pytest.approx(0.25, rel=0.02)
    assert float(y[sampled].real.var()) == pytest.approx(0.125, rel=0.03)


def test_bad_masks_and_shapes():
    with pytest.raises(ValueError, match="mask must have shape"):
        CartesianMRI(torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        CartesianMRI(torch.full((8, 8), 0.5))
    op = CartesianMRI(torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"expected trailing dims \(8, 8\)"):
        op.forward(torch.zeros(4, 8, 9))
    with pytest.raises(ValueError, match="expected trailing dims"):
        op.adjoint(torch.zeros(9, 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="real_input"):
        op.forward(torch.zeros(8, 8, dtype=torch.complex64))
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.make_mask("radial", (8, 8))
    with pytest.raises(ValueError, match="acceleration"):
        masks.uniform1d_mask((8, 8), acceleration=0)
    with pytest.raises(ValueError, match="integer acceleration"):
        masks.uniform1d_mask((8, 8), acceleration=2.5)
    with pytest.raises(ValueError, match="noise_std"):
        op.measure(torch.zeros(8, 8), noise_std=-1)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    h=st.integers(2, 12),
    w=st.integers(2, 12),
    density=st.floats(0.0, 1.0),
    real_input=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_adjoint_holds_for_random_masks(h, w, density, real_input, seed):
    g = torch.Generator().manual_seed(seed)
    op = CartesianMRI(torch.rand(h, w, generator=g) < density, real_input=real_input)
    dtype = torch.float64 if real_input else torch.complex128
    x = torch.randn(3, h, w, generator=g, dtype=dtype)
    y = torch.randn(3, h, w, generator=g, dtype=torch.complex128)
    lhs, rhs = inner(op.forward(x), y), inner(x, op.adjoint(y))
    assert float(abs(lhs - rhs)) <= 1e-10 * max(float(abs(lhs)), 1.0)


def test_make_operator_by_name():
    from polydiff.medical.operators import (
        OPERATORS,
        FanBeamCT,
        LimitedAngleCT,
        ParallelBeamCT,
        RotateSumCT,
        make_operator,
    )

    expected = {
        "parallel": ParallelBeamCT,
        "limited_angle": LimitedAngleCT,
        "fan": FanBeamCT,
        "rotate_sum": RotateSumCT,
        "mri": CartesianMRI,
    }
    for kind in OPERATORS:
        op = make_operator(kind, (12, 16))
        assert type(op) is expected[kind] and op.in_shape == (12, 16)
    mri = make_operator("mri", 16, mask="gaussian2d", acceleration=3, seed=2, real_input=False)
    assert not mri.real_input and mri.acceleration == pytest.approx(3, rel=0.05)
    assert make_operator("parallel", 16, n_views=5).out_shape[0] == 5
    with pytest.raises(ValueError, match="unknown operator 'cone'"):
        make_operator("cone", 16)
