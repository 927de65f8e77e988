"""PSNR and SSIM for volumes: per slice along the three axes and over the whole volume.

The data range is that of the ground truth (``gt.max() - gt.min()``) everywhere, so slice and
volume scores are comparable. SSIM follows Wang, Bovik, Sheikh and Simoncelli (2004), "Image
quality assessment: from error visibility to structural similarity", IEEE TIP 13(4), Eq. (13):
Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, population
(co)variances, mean over the map without a window-radius border; identical to
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

AXES = {"axial": 0, "coronal": 1, "sagittal": 2}  # for (D, H, W) volumes in RAS order


def _check_pair(x: Tensor, gt: Tensor) -> None:
    if x.shape != gt.shape:
        raise ValueError(f"reconstruction shape {tuple(x.shape)} != ground truth {tuple(gt.shape)}")


def data_range_of(gt: Tensor) -> float:
    return float(gt.max() - gt.min())


def psnr(
    x: Tensor, gt: Tensor, data_range: float | None = None, dims: tuple[int, ...] | None = None
) -> Tensor:
    """``10 log10(L^2 / MSE)`` with ``L = gt.max() - gt.min()`` unless given; the MSE is taken
    over ``dims`` (all by default), so ``dims=(-2, -1)`` gives one PSNR per slice."""
    _check_pair(x, gt)
    L = data_range_of(gt) if data_range is None else float(data_range)
    if L <= 0:
        raise ValueError("data_range must be > 0 (a constant ground truth has no range)")
    mse = (
        ((x.double() - gt.double()) ** 2).mean(dim=dims)
        if dims
        else ((x.double() - gt.double()) ** 2).mean()
    )
    return 10 * torch.log10(L**2 / mse)


def _gaussian_kernel(sigma: float, truncate: float = 3.5) -> Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage.gaussian_filter's radius
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    return k / k.sum()


def _blur_valid(x: Tensor, kernel: Tensor, n_dims: int) -> Tensor:
    """Separable Gaussian over the last ``n_dims`` dims, 'valid' (no padding): exactly the
    interior that skimage keeps after cropping the window radius."""
    shape = x.shape
    out = x.reshape(-1, 1, *shape[-n_dims:])
    conv = {2: F.conv2d, 3: F.conv3d}[n_dims]
    for d in range(n_dims):
        view = [1, 1] + [1] * n_dims
        view[2 + d] = kernel.numel()
        out = conv(out, kernel.reshape(view))
    return out.reshape(*shape[:-n_dims], *out.shape[2:])


def ssim_map(
    x: Tensor,
    gt: Tensor,
    data_range: float,
    n_dims: int = 2,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """SSIM map of Wang et al. (2004), Eq. (13), over the last ``n_dims`` dims (interior only)."""
    _check_pair(x, gt)
    x, y = x.double(), gt.double()
    w = _gaussian_kernel(sigma).to(x.device)
    if any(n < w.numel() for n in x.shape[-n_dims:]):
        raise ValueError(f"SSIM needs every image side >= {w.numel()}, got {tuple(x.shape)}")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _blur_valid(x, w, n_dims), _blur_valid(y, w, n_dims)
    var_x = _blur_valid(x * x, w, n_dims) - mu_x**2
    var_y = _blur_valid(y * y, w, n_dims) - mu_y**2
    cov = _blur_valid(x * y, w, n_dims) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


def ssim(x: Tensor, gt: Tensor, data_range: float | None = None, n_dims: int = 2) -> Tensor:
    """Mean SSIM over the last ``n_dims`` dims (2: one value per slice of a stack; 3: volume)."""
    L = data_range_of(gt) if data_range is None else float(data_range)
    return ssim_map(x, gt, L, n_dims).flatten(start_dim=x.dim() - n_dims).mean(-1)


@dataclass
class VolumeMetrics:
    """Scores of one reconstruction: volume PSNR / 3D SSIM, and per-axis means of the slice
    scores (``per_slice[axis]`` holds the slice values, axes named as in :data:`AXES`)."""

    psnr: float
    ssim: float
    psnr_axis: dict[str, float] = field(default_factory=dict)
    ssim_axis: dict[str, float] = field(default_factory=dict)
    per_slice: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Flat summary: psnr, ssim, psnr_axial, ..., ssim_sagittal."""
        out = {"psnr": self.psnr, "ssim": self.ssim}
        out |= {f"psnr_{a}": v for a, v in self.psnr_axis.items()}
        out |= {f"ssim_{a}": v for a, v in self.ssim_axis.items()}
        return out


def _ssim_or_nan(x: Tensor, gt: Tensor, L: float, n_dims: int) -> Tensor:
    """SSIM, or NaN where a side is shorter than the Gaussian window (a small volume still gets
    its PSNR; SSIM is undefined there)."""
    if any(n < _gaussian_kernel(1.5).numel() for n in x.shape[-n_dims:]):
        return torch.full(x.shape[: x.dim() - n_dims], math.nan, dtype=torch.float64)
    return ssim(x, gt, L, n_dims)


def volume_metrics(x: Tensor, gt: Tensor) -> VolumeMetrics:
    """PSNR and SSIM of a (D, H, W) reconstruction against the ground truth: over the volume
    (3D SSIM) and per slice along the axial, coronal and sagittal axes (2D SSIM), all with the
    data range of ``gt``. Slices where both volumes agree exactly have infinite PSNR; SSIM is
    NaN along an axis whose slices are smaller than its 11-sample window."""
    _check_pair(x, gt)
    if x.dim() != 3:
        raise ValueError(f"volume_metrics expects (D, H, W) volumes, got shape {tuple(x.shape)}")
    L = data_range_of(gt)
    result = VolumeMetrics(psnr=float(psnr(x, gt, L)), ssim=float(_ssim_or_nan(x, gt, L, 3)))
    for name, axis in AXES.items():
        xs, gs = x.movedim(axis, 0), gt.movedim(axis, 0)
        p, s = psnr(xs, gs, L, dims=(-2, -1)), _ssim_or_nan(xs, gs, L, 2)
        result.psnr_axis[name] = (
            float(p[torch.isfinite(p)].mean()) if bool(torch.isfinite(p).any()) else math.inf
        )
        result.ssim_axis[name] = float(s.mean())
        result.per_slice[name] = {"psnr": p.tolist(), "ssim": s.tolist()}
    return result
