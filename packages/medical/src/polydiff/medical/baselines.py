"""Classical reconstructions: back-projection, FBP, CG least squares and 3D TV-ADMM.

:func:`cg` is written for reuse by the diffusion solvers' data-consistency steps: fixed
iteration count, no host synchronisation, independent systems along leading batch dims.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from polydiff.core.progress import report
from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.operators.ct import FanBeamCT, ParallelBeamCT
from polydiff.medical.operators.difference import FiniteDifference

_TINY = 1e-30
_ROUNDOFF_FACTOR = 100.0  # residual norm below 100 eps ||b||: converged to round-off


def _dot(a: Tensor, b: Tensor, batch_dims: int) -> Tensor:
    """Re <a, b> summed over all but the first ``batch_dims`` dims, kept broadcastable."""
    prod = (torch.conj(a) * b).real if a.is_complex() else a * b
    dims = tuple(range(batch_dims, a.dim()))
    return prod.sum(dim=dims, keepdim=True) if dims else prod


def cg(
    apply_a: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    n_iter: int = 10,
    batch_dims: int = 0,
) -> Tensor:
    """Conjugate gradients for ``A x = b`` with ``A`` symmetric (Hermitian) positive
    semi-definite (Hestenes and Stiefel, 1952, "Methods of conjugate gradients for solving
    linear systems", J. Res. NBS 49(6)).

    Runs exactly ``n_iter`` iterations (no tolerance test, hence no host sync; once the
    residual falls below ``100 eps max(||b||, ||A x0||)`` (round-off) the iterate stays put).
    The first
    ``batch_dims`` dims of ``b`` index independent systems (e.g. ``batch_dims=1`` solves each
    slice separately); inner products reduce over the rest. Complex tensors use ``Re <., .>``.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    ax = apply_a(x)
    r = b - ax
    p = r.clone()
    rr = _dot(r, r, batch_dims)
    # Converged systems freeze: at the round-off floor, p drifts into the null space of a
    # singular A (a masked FFT), where rr / <p, A p> blows up. A relative floor, no host sync.
    # The round-off of r = b - A x scales with the larger of ||b|| and ||A x0||: a warm start
    # far larger than the data (DiffusionMBIR's x_t / alpha, ~150x at t = 1) raised r's floor
    # above 100 eps ||b||, and 5 CG steps on MRI then reached 1e11 in one call.
    eps = torch.finfo(b.real.dtype if b.is_complex() else b.dtype).eps
    scale = torch.maximum(_dot(b, b, batch_dims), _dot(ax, ax, batch_dims))
    floor = (_ROUNDOFF_FACTOR * eps) ** 2 * scale
    for _ in range(n_iter):
        ap = apply_a(p)
        alpha = rr / _dot(p, ap, batch_dims).clamp_min(_TINY)
        alpha = torch.where(rr > floor, alpha, torch.zeros_like(alpha))
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = _dot(r, r, batch_dims)
        p = r + (rr_new / rr.clamp_min(_TINY)) * p
        rr = rr_new
    return x


def back_projection(op: LinearOperator, y: Tensor) -> Tensor:
    """The unfiltered back-projection ``A^T y`` scaled by ``||A^T y||^2 / ||A A^T y||^2`` (the
    least-squares step length along ``A^T y``), a blurry start comparable in scale to ``x``."""
    g = op.adjoint(y)
    ag = op.forward(g)
    scale = _dot(g, g, 0) / _dot(ag, ag, 0).clamp_min(_TINY)
    return scale * g


def ramp_filter(sinogram: Tensor, det_spacing: float = 1.0) -> Tensor:
    """Filter each projection (last dim) with the band-limited ramp (Ram-Lak) filter.

    The spatial kernel of Kak and Slaney (1988), "Principles of Computerized Tomographic
    Imaging", Sec. 3.3: ``h(0) = 1/(4 tau^2)``, ``h(n) = 0`` for even n, ``-1/(n pi tau)^2``
    for odd n; convolved by FFT with zero padding (no wrap-around), scaled by ``tau``.
    """
    n = sinogram.shape[-1]
    size = 2 ** math.ceil(math.log2(2 * n))
    k = torch.arange(size, device=sinogram.device, dtype=sinogram.dtype)
    k = torch.minimum(k, size - k)  # symmetric kernel indices 0, 1, ..., 1
    tau = det_spacing
    h = torch.where(
        k % 2 == 1, -1.0 / (math.pi * k * tau).clamp_min(_TINY) ** 2, torch.zeros_like(k)
    )
    h[0] = 1.0 / (4 * tau**2)
    filtered = torch.fft.irfft(torch.fft.rfft(sinogram, n=size) * torch.fft.rfft(h), n=size)
    return tau * filtered[..., :n]


def _median_step_deg(angles_deg: Sequence[float], period: float) -> float:
    angles = sorted(a % period for a in angles_deg)
    steps = [b - a for a, b in itertools.pairwise(angles)]
    return statistics.median(steps) if steps else period


def fbp(op: ParallelBeamCT | FanBeamCT, y: Tensor) -> Tensor:
    """Filtered back-projection.

    Parallel beam (also limited angle): ``x = dtheta A^T (h * y)`` with the ramp filter ``h``,
    the parallel-beam inversion formula of Kak and Slaney (1988), Sec. 3.3, discretised with the
    angular step ``dtheta`` (the median view spacing: pi / n_views for a full scan). A
    limited-angle scan is integrated over its wedge only (the missing wedge shows as streaks).

    Fan beam (flat detector, full 360-degree scan): :func:`fbp_fan`.
    """
    if isinstance(op, FanBeamCT):
        return fbp_fan(op, y)
    if not isinstance(op, ParallelBeamCT):
        raise TypeError(
            f"fbp needs a ParallelBeamCT or FanBeamCT operator, got {type(op).__name__}"
        )
    dtheta = math.radians(_median_step_deg(op.angles_deg, 180.0))
    spacing = op.geometry.det_spacing
    # A^T interpolates with weights summing to ~1/spacing per view; restore unit weight.
    return dtheta * spacing * op.adjoint(ramp_filter(y, spacing))


def fbp_fan(op: FanBeamCT, y: Tensor) -> Tensor:
    """Fan-beam FBP for equispaced flat detectors over 360 degrees (Kak and Slaney, 1988,
    Sec. 3.4, equally spaced collinear detectors): with the detector scaled to the centre
    (``s = u D / D_sd``, ``D`` = source distance), weight ``R'(s) = R(s) D / sqrt(D^2 + s^2)``,
    filter with half the ramp, and back-project with the weight ``1 / U^2``,
    ``U = (D + p . d) / D`` the pixel's distance from the source along the central ray over D.
    The ray-driven ``A^T`` already spreads each ray over a width ``U ds`` at the pixel, so the
    remaining weight ``ds / U`` is folded into the matrix entries (:meth:`reweighted`).
    """
    g = op.geometry
    span = _median_step_deg(g.angles_deg, 360.0) * len(g.angles_deg)
    if abs(span - 360.0) > 1e-6 * 360:
        raise ValueError(
            f"fbp_fan needs views evenly covering 360 degrees (got {len(g.angles_deg)} views "
            f"spanning {span:.1f}); use cg_least_squares or tv_admm for short scans"
        )
    d_so, d_sd = g.source_distance, g.source_distance + g.detector_distance
    ds = g.det_spacing * d_so / d_sd
    s = (torch.arange(g.n_det, dtype=y.dtype, device=y.device) - (g.n_det - 1) / 2) * ds
    filtered = 0.5 * ramp_filter(y * (d_so / torch.sqrt(d_so**2 + s**2)), ds)
    dbeta = 2 * math.pi / len(g.angles_deg)
    return dbeta * ds * _fan_backprojector(op).adjoint(filtered)


def _fan_backprojector(op: FanBeamCT) -> LinearOperator:
    """``op`` with each entry (ray of view v, pixel p) divided by ``U_v(p)``; cached on ``op``."""
    if getattr(op, "_fbp_weighted", None) is None:
        g = op.geometry
        h, w = g.image_size
        rows, cols, _ = op.entries()
        beta = torch.deg2rad(torch.tensor(g.angles_deg, dtype=torch.float64))[rows // g.n_det]
        px = (cols % w).double() - (w - 1) / 2
        py = torch.div(cols, w, rounding_mode="floor").double() - (h - 1) / 2
        u = 1 + (-px * torch.sin(beta) + py * torch.cos(beta)) / g.source_distance
        op._fbp_weighted = op.reweighted(1 / u)
    return op._fbp_weighted


def cg_least_squares(
    op: LinearOperator, y: Tensor, x0: Tensor | None = None, n_iter: int = 20, damping: float = 0.0
) -> Tensor:
    """Least squares ``min_x ||A x - y||^2 + damping ||x||^2`` by CG on the normal equations
    ``(A^T A + damping I) x = A^T y`` over the whole volume; few iterations act as
    regularisation (early stopping)."""
    b = op.adjoint(y)
    return cg(lambda v: op.normal(v) + damping * v, b, x0, n_iter)


def soft_threshold(v: Tensor, threshold: float) -> Tensor:
    """The proximal map of ``threshold * ||.||_1``: ``sign(v) max(|v| - threshold, 0)``."""
    return torch.sign(v) * torch.clamp(v.abs() - threshold, min=0)


def tv_admm(
    op: LinearOperator,
    y: Tensor,
    x0: Tensor | None = None,
    lam: float = 0.05,
    rho: float = 2.0,
    n_iter: int = 100,
    n_cg: int = 5,
    axes: Sequence[int] = (0, 1, 2),
    circular: bool = False,
    nonnegative: bool = False,
) -> Tensor:
    """3D anisotropic TV reconstruction by ADMM (Boyd et al., 2011, "Distributed optimization
    and statistical learning via the alternating direction method of multipliers", Sec. 6.4,
    the generalized lasso):

        min_x 0.5 ||A x - y||^2 + lam ||D x||_1,  split z = D x, scaled dual u:
        x <- CG_{n_cg}(A^T A + rho D^T D, A^T y + rho D^T (z - u))   (warm-started)
        z <- soft(D x + u, lam / rho)
        u <- u + D x - z

    ``axes`` picks the difference directions of the (D, H, W) volume: (0, 1, 2) is 3D
    anisotropic TV, (0,) is TV along z only (DiffusionMBIR's / DDS's regulariser, there with
    ``circular=True``). ``nonnegative`` clamps x after each x-update (attenuation >= 0).
    The defaults (lam 0.05, rho 2) were tuned on the 64^3 Shepp-Logan in [0, 1] with 8 views
    (docs/medical.md); DiffusionMBIR's lam 0.04, rho 10 belong to its diffusion loop. Starts
    from :func:`back_projection` unless ``x0`` is given.
    """
    x = back_projection(op, y) if x0 is None else x0.clone()
    if x.dim() != 3:
        raise ValueError(f"tv_admm reconstructs one (D, H, W) volume, got shape {tuple(x.shape)}")
    d = FiniteDifference(x.shape, axes, circular)
    z = d.forward(x)
    u = torch.zeros_like(z)
    aty = op.adjoint(y)

    def gram(v: Tensor) -> Tensor:
        return op.normal(v) + rho * d.adjoint(d.forward(v))

    for k in range(n_iter):
        report(k + 1, n_iter, "tv_admm")
        x = cg(gram, aty + rho * d.adjoint(z - u), x, n_cg)
        if nonnegative:
            x = x.clamp_min(0)
        dx = d.forward(x)
        z = soft_threshold(dx + u, lam / rho)
        u = u + dx - z
    return x
