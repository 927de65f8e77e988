"""CT operators: exact adjoints, exact line integrals, geometry, batching, caching, autograd."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from helpers import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

from polydiff.medical.operators.base import inner
from polydiff.medical.operators.ct import (
    FanBeamCT,
    LimitedAngleCT,
    ParallelBeamCT,
    RotateSumCT,
    default_n_det,
    siddon_lengths,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _dot_test(op, batch: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, *op.in_shape, generator=g, dtype=dtype)
    y = torch.randn(*batch, *op.out_shape, generator=g, dtype=dtype)
    lhs, rhs = inner(op.forward(x), y), inner(x, op.adjoint(y))
    return float(abs(lhs - rhs)) / max(float(abs(lhs)), 1e-300)  # 0 if both vanish


OPERATORS = {
    "parallel": lambda: ParallelBeamCT(16, n_views=8),
    "parallel-rect": lambda: ParallelBeamCT((12, 20), angles_deg=[0, 33.3, 90, 150], n_det=30),
    "limited": lambda: LimitedAngleCT(16, angle_range_deg=90, n_views=12),
    "fan": lambda: FanBeamCT(16, n_views=10),
    "rotate-sum": lambda: RotateSumCT(16, n_views=8),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(OPERATORS))
def test_adjoint_dot_product(name, dtype):
    op = OPERATORS[name]()
    assert _dot_test(op, (3,), dtype) < TOL[dtype]
    assert _dot_test(op, (2, 3), dtype, seed=1) < TOL[dtype]  # any leading dims


@pytest.mark.parametrize("name", list(OPERATORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(name, dtype):
    """In float32 too, the same projections and back-projections as in float64."""
    op = OPERATORS[name]()
    x = torch.rand(2, *op.in_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, back = op.forward(x.to(dtype)), op.adjoint(op.forward(x))
    assert y.dtype == dtype and op.adjoint(y).dtype == dtype
    assert_close(y.double(), op.forward(x), rtol=1e-5, atol=1e-5)
    assert_close(op.adjoint(y).double(), back, rtol=1e-5, atol=1e-4)


def test_adjoint_is_the_matrix_transpose():
    op = ParallelBeamCT(8, n_views=3, cache=False)
    a = op.to_dense()
    x = torch.randn(8, 8, dtype=torch.float64)
    y = torch.randn(3, op.out_shape[1], dtype=torch.float64)
    torch.testing.assert_close(op.forward(x).flatten(), a @ x.flatten())
    torch.testing.assert_close(op.adjoint(y).flatten(), a.T @ y.flatten())


def test_entries_and_reweighting():
    op = ParallelBeamCT(6, n_views=2, cache=False)
    rows, cols, vals = op.entries()
    dense = torch.zeros(op.to_dense().shape, dtype=torch.float64)
    dense[rows, cols] = vals
    torch.testing.assert_close(dense, op.to_dense())
    doubled = op.reweighted(torch.full((op.nnz,), 2.0))
    torch.testing.assert_close(doubled.to_dense(), 2 * op.to_dense())
    with pytest.raises(ValueError, match="weights must have shape"):
        op.reweighted(torch.ones(3))


def test_single_pixel_line_integrals_are_exact():
    # Pixel (3, 4) of an 8x8 image is centred at (x, y) = (0.5, -0.5); with 11 bins the bin
    # centres are the integers -5..5.
    img = torch.zeros(8, 8, dtype=torch.float64)
    img[3, 4] = 1.0
    op = ParallelBeamCT(8, angles_deg=[0, 90, 45], n_det=11, cache=False)
    p = op.forward(img)
    # 0 deg: rays x = s; s = 0 and s = 1 graze the pixel's edges x = 0 and x = 1 (length 0
    # on one side, 1 on the other, depending on the edge convention): total must be 1.
    assert float(p[0].sum()) == pytest.approx(1.0)
    assert float(p[1].sum()) == pytest.approx(1.0)
    # 45 deg: s = (x + y) / sqrt(2) = 0 passes through the pixel centre along its diagonal.
    assert float(p[2, 5]) == pytest.approx(math.sqrt(2), abs=1e-6)  # float32 storage


def test_siddon_segment_inside_image_sums_to_its_length():
    # A segment crossing the whole 10x10 image box diagonally: total length = 10 sqrt(2).
    p0 = torch.tensor([[-7.0, -7.0], [-9.0, 2.3]], dtype=torch.float64).numpy()
    p1 = torch.tensor([[7.0, 7.0], [9.0, 2.3]], dtype=torch.float64).numpy()
    ray, pix, length = siddon_lengths(p0, p1, 10, 10)
    assert length[ray == 0].sum() == pytest.approx(10 * math.sqrt(2))
    assert length[ray == 1].sum() == pytest.approx(10.0)  # horizontal ray through row 7
    assert set((pix[ray == 1] // 10).tolist()) == {7}


def _disk(n: int, radius: float) -> torch.Tensor:
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    # 4x4 supersampled disk, so the image approximates the continuous disk well
    sub = (torch.arange(4, dtype=torch.float64) - 1.5) / 4
    inside = torch.zeros(n, n, dtype=torch.float64)
    for dy in sub:
        for dx in sub:
            inside += ((xx + dx) ** 2 + (yy + dy) ** 2 <= radius**2).double()
    return inside / 16


@pytest.mark.parametrize("make", [ParallelBeamCT, RotateSumCT])
def test_projection_of_disk_matches_radon_transform(make):
    n, r = 48, 15.0
    op = make(n, n_views=6)
    s = torch.arange(op.out_shape[1], dtype=torch.float64) - (op.out_shape[1] - 1) / 2
    exact = 2 * torch.sqrt(torch.clamp(r**2 - s**2, min=0))  # chord length of the disk
    p = op.forward(_disk(n, r))
    rel = (p - exact).norm(dim=-1) / exact.norm()
    assert float(rel.max()) < 0.02


def test_sparse_and_rotate_sum_projectors_agree():
    n = 32
    x = torch.zeros(n, n, dtype=torch.float64)
    x[8:24, 10:20] = 1.0
    x = torch.nn.functional.avg_pool2d(x[None, None], 3, 1, 1)[0, 0]  # smooth: both accurate
    a, b = ParallelBeamCT(n, 5).forward(x), RotateSumCT(n, 5).forward(x)
    assert float((a - b).norm() / a.norm()) < 0.02


def test_fan_beam_tends_to_parallel_beam_far_from_source():
    n = 24
    far = 1e6
    fan = FanBeamCT(
        n,
        angles_deg=[0, 30, 100],
        source_distance=far,
        detector_distance=far,
        n_det=34,
        det_spacing=2.0,
        cache=False,
    )
    par = ParallelBeamCT(n, angles_deg=[0, 30, 100], n_det=34, cache=False)
    x = torch.rand(n, n, dtype=torch.float64)
    torch.testing.assert_close(fan.forward(x), par.forward(x), atol=1e-3, rtol=1e-4)


def test_fan_beam_rejects_source_inside_image():
    with pytest.raises(ValueError, match="source_distance"):
        FanBeamCT(32, source_distance=10.0)


def test_fan_beam_magnifies():
    # A centred point seen from a close source projects onto the central bin; an off-centre
    # point lands farther out on the detector than in parallel beam (magnification 1.5).
    n = 33
    img = torch.zeros(n, n, dtype=torch.float64)
    img[16, 26] = 1.0  # x = +10 from the centre
    fan = FanBeamCT(
        n,
        angles_deg=[0],
        source_distance=66,
        detector_distance=33,
        det_spacing=1.0,
        n_det=61,
        cache=False,
    )
    p = fan.forward(img)[0]
    u = torch.arange(61, dtype=torch.float64) - 30
    centroid = float((p * u).sum() / p.sum())
    assert centroid == pytest.approx(10 * 99 / 66, abs=0.5)


def test_limited_angle_geometry():
    op = LimitedAngleCT(16, angle_range_deg=90, n_views=6, start_deg=10)
    assert op.angles_deg == pytest.approx([10, 25, 40, 55, 70, 85])
    with pytest.raises(ValueError, match="angle_range_deg"):
        LimitedAngleCT(16, angle_range_deg=200)


def test_volume_is_projected_slice_by_slice():
    op = ParallelBeamCT(16, 4)
    vol = torch.rand(5, 16, 16)
    y = op.forward(vol)
    assert y.shape == (5, 4, op.out_shape[1])
    torch.testing.assert_close(y[3], op.forward(vol[3]))
    torch.testing.assert_close(op.normal(vol)[2], op.adjoint(op.forward(vol[2])))


def test_shape_mismatch_errors():
    op = ParallelBeamCT(16, 4)
    with pytest.raises(ValueError, match=r"expected trailing dims \(16, 16\)"):
        op.forward(torch.zeros(3, 16, 17))
    with pytest.raises(ValueError, match="adjoint"):
        op.adjoint(torch.zeros(3, 5, op.out_shape[1]))
    with pytest.raises(TypeError, match="real"):
        op.forward(torch.zeros(16, 16, dtype=torch.complex64))
    with pytest.raises(ValueError, match="image_size"):
        ParallelBeamCT(1)


def test_autograd_gradient_is_the_adjoint():
    op = ParallelBeamCT(12, 5)
    x = torch.randn(2, 12, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, *op.out_shape, dtype=torch.float64)
    (grad,) = torch.autograd.grad((op.forward(x) * w).sum(), x)
    torch.testing.assert_close(grad, op.adjoint(w))
    assert torch.autograd.gradcheck(lambda v: op.forward(v), (x[:1].detach().requires_grad_(),))


def test_matrix_cache_is_written_once_and_reused(tmp_path):
    first = ParallelBeamCT(10, 3, cache=tmp_path)
    files = list(tmp_path.glob("parallel-10x10-3v-*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = ParallelBeamCT(10, 3, cache=tmp_path)
    assert files[0].stat().st_mtime_ns == stamp
    torch.testing.assert_close(first.to_dense(), second.to_dense())
    ParallelBeamCT(10, 4, cache=tmp_path)  # a different geometry gets its own file
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_default_cache_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE_DIR", str(tmp_path))
    ParallelBeamCT(9, 2)
    assert len(list((tmp_path / "ct").glob("parallel-9x9-2v-*.npz"))) == 1


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    reference = ParallelBeamCT(10, 3, cache=tmp_path).to_dense()
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a matrix")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = ParallelBeamCT(10, 3, cache=tmp_path).to_dense()
    assert any("rebuilding" in str(w.message) for w in caught)
    torch.testing.assert_close(rebuilt, reference)


@pytest.mark.parametrize("make", [ParallelBeamCT, RotateSumCT, FanBeamCT])
def test_bad_geometry_arguments(make):
    with pytest.raises(ValueError, match="angles_deg"):
        make(16, angles_deg=[])
    with pytest.raises(ValueError, match="angles_deg"):
        make(16, angles_deg=[0.0, float("nan")])
    with pytest.raises(ValueError, match="det_spacing"):
        make(16, det_spacing=0.0)
    with pytest.raises(ValueError, match="n_det"):
        make(16, n_det=0)
    with pytest.raises(ValueError, match="n_views"):
        make(16, n_views=0)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    h=st.integers(3, 14),
    w=st.integers(3, 14),
    angles=st.lists(st.floats(-360, 360, allow_nan=False), min_size=1, max_size=5),
    extra_bins=st.integers(-3, 4),
    spacing=st.floats(0.3, 2.5),
    fan=st.booleans(),
)
def test_adjoint_holds_for_random_geometries(h, w, angles, extra_bins, spacing, fan):
    n_det = max(1, default_n_det((h, w)) + extra_bins)
    if fan:
        d = 0.6 * math.hypot(h, w) + spacing  # just outside the image
        op = FanBeamCT(
            (h, w),
            angles_deg=angles,
            source_distance=d,
            detector_distance=d,
            n_det=n_det,
            det_spacing=spacing,
            cache=False,
        )
    else:
        op = ParallelBeamCT(
            (h, w), angles_deg=angles, n_det=n_det, det_spacing=spacing, cache=False
        )
    assert _dot_test(op, (2,), torch.float64) < 1e-10
    assert op.forward(torch.ones(h, w, dtype=torch.float64)).min() >= 0  # lengths are >= 0


def test_rays_along_pixel_edges_split_between_both_neighbours():
    """0 degrees, odd detector on an even image: every ray runs along a pixel edge and must see
    the mean of the two columns it separates (before the fix it saw one side, chosen by
    round-off; on 64^3 that made the projector 2.2% off a smooth blob's analytic sinogram)."""
    n = 8
    x = torch.rand(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = ParallelBeamCT(n, angles_deg=[0.0, 90.0], n_det=11, cache=False)
    p = op.forward(x.float()).double()
    # rays run along y at 0 degrees: column sums; u = -5..5 sits on the edges x = u
    cols = torch.cat([torch.zeros(1), x.sum(0), torch.zeros(1)])  # padded outside the image
    edge = 0.5 * (cols[:-1] + cols[1:])  # the edges x = -4..4 between (padded) columns
    want = torch.cat([torch.zeros(1), edge, torch.zeros(1)])
    torch.testing.assert_close(p[0], want, atol=1e-5, rtol=1e-5)
    rows = torch.cat([torch.zeros(1), x.sum(1), torch.zeros(1)])
    want90 = torch.cat([torch.zeros(1), 0.5 * (rows[:-1] + rows[1:]), torch.zeros(1)])
    # at 90 degrees the rays run along x (row sums), in either detector direction
    err = min(float((p[1] - w).abs().max()) for w in (want90, want90.flip(0)))
    assert err < 1e-5
