"""CT forward models as sparse system matrices with an exact transpose.

Each row of the system matrix is one ray; its entries are the exact intersection lengths of the ray
with the square pixels (Siddon, 1985, "Fast calculation of the exact radiological path for a
three-dimensional CT array", Med. Phys. 12(2)), so ``A x`` is the line integral of the
piecewise-constant image and ``A^T`` is the matrix transpose, i.e. the exact adjoint.

Conventions (shared by every CT operator here, including :class:`RotateSumCT`):
image ``x[..., i, j]`` is the pixel centred at ``(x, y) = (j - (W-1)/2, i - (H-1)/2)`` in pixel
units; a parallel ray at angle ``theta`` and detector coordinate ``s`` is the line
``{s e + t d}`` with ``e = (cos theta, sin theta)``, ``d = (-sin theta, cos theta)``;
sinograms have shape ``(..., n_views, n_det)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polydiff.core.io import atomic_path
from polydiff.medical._files import cache_dir
from polydiff.medical.operators.base import LinearOperator

_BUILDER_VERSION = 3  # bump when the matrix builder changes, to invalidate cached files


def _as_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or any(int(n) != n or n < 2 for n in hw):
        raise ValueError(f"image_size must be an int >= 2 or a pair (H, W), got {image_size!r}")
    return int(hw[0]), int(hw[1])


def default_n_det(image_size: int | Sequence[int]) -> int:
    """Detector bins that cover the image diagonal at unit spacing: ``ceil(sqrt(H^2 + W^2))``."""
    h, w = _as_hw(image_size)
    return math.ceil(math.hypot(h, w))


def uniform_angles(n_views: int, range_deg: float = 180.0, start_deg: float = 0.0) -> list[float]:
    """``n_views`` angles in degrees, ``linspace(start, start + range)`` without the endpoint."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if not 0 < range_deg <= 360:
        raise ValueError(f"angle range must be in (0, 360] degrees, got {range_deg}")
    return [start_deg + range_deg * k / n_views for k in range(n_views)]


def _angles(
    angles_deg: Sequence[float] | None, n_views: int, range_deg: float
) -> tuple[float, ...]:
    """Explicit angles (validated) or ``n_views`` uniform angles over ``range_deg``."""
    if angles_deg is None:
        return tuple(uniform_angles(n_views, range_deg))
    angles = tuple(float(a) for a in angles_deg)
    if not angles or not all(math.isfinite(a) for a in angles):
        raise ValueError(f"angles_deg must be a non-empty list of finite angles, got {angles_deg}")
    return angles


def _detector(n_det: int | None, det_spacing: float, image_size: tuple[int, int]) -> int:
    """Validated detector bin count (default: cover the image diagonal)."""
    if not det_spacing > 0:
        raise ValueError(f"det_spacing must be > 0, got {det_spacing}")
    n = default_n_det(image_size) if n_det is None else int(n_det)
    if n < 1:
        raise ValueError(f"n_det must be >= 1, got {n_det}")
    return n


def siddon_lengths(
    p0: np.ndarray, p1: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact intersection lengths of segments ``p0 -> p1`` with the pixels of an H x W image.

    Siddon (1985): a segment crosses the pixel edges ``x = -W/2 + j`` and ``y = -H/2 + i`` at
    parameters ``alpha`` in [0, 1]; between two consecutive crossings it lies in one pixel (found
    from the midpoint) with length ``diff(alpha) * |p1 - p0|``. ``p0``/``p1``: (n, 2) arrays of
    ``(x, y)``. Returns ``(ray, pixel, length)`` with ``pixel = i * W + j``.
    """
    d = p1 - p0
    seg_len = np.hypot(d[:, 0], d[:, 1])
    x_edges = np.arange(width + 1) - width / 2
    y_edges = np.arange(height + 1) - height / 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ax = (x_edges[None, :] - p0[:, :1]) / d[:, :1]
        ay = (y_edges[None, :] - p0[:, 1:]) / d[:, 1:]
    # Rays parallel to an axis never cross those edges: park the crossings at 0 (zero length).
    ends = np.tile([0.0, 1.0], (len(p0), 1))
    alpha = np.concatenate(
        [
            ends,
            np.nan_to_num(ax, nan=0.0, posinf=0.0, neginf=0.0),
            np.nan_to_num(ay, nan=0.0, posinf=0.0, neginf=0.0),
        ],
        axis=1,
    )
    alpha = np.sort(np.clip(alpha, 0.0, 1.0), axis=1)
    length = np.diff(alpha, axis=1) * seg_len[:, None]
    mid = 0.5 * (alpha[:, 1:] + alpha[:, :-1])
    fx = p0[:, :1] + mid * d[:, :1] + width / 2  # position in pixel units from the left edge
    fy = p0[:, 1:] + mid * d[:, 1:] + height / 2
    # A ray running along a pixel edge (an axis-aligned view whose detector bin sits on a pixel
    # boundary) is the limit of rays on either side: half its length goes to each neighbour.
    # Plain flooring gave it to one side only, depending on round-off in cos / sin.
    tiny = 1e-9 * seg_len[:, None]
    on_x = (np.abs(d[:, :1]) < tiny) & (np.abs(fx - np.round(fx)) < 1e-9)
    on_y = (np.abs(d[:, 1:]) < tiny) & (np.abs(fy - np.round(fy)) < 1e-9)
    j = np.where(on_x, np.round(fx), np.floor(fx)).astype(np.int64)
    i = np.where(on_y, np.round(fy), np.floor(fy)).astype(np.int64)
    length = np.where(on_x | on_y, 0.5 * length, length)
    ray = np.broadcast_to(np.arange(len(p0))[:, None], length.shape)
    # the other half: the pixel left of (or below) the edge
    i = np.concatenate([i, i - on_y], axis=1)
    j = np.concatenate([j, j - on_x], axis=1)
    ray = np.concatenate([ray, ray], axis=1)
    length = np.concatenate([length, np.where(on_x | on_y, length, 0.0)], axis=1)
    keep = (length > 1e-9) & (i >= 0) & (i < height) & (j >= 0) & (j < width)
    return ray[keep], (i * width + j)[keep], length[keep]


@dataclass(frozen=True)
class CTGeometry:
    """Everything that determines a CT system matrix (also the key of its cache file).

    ``kind`` is ``"parallel"`` or ``"fan"`` (flat detector). Angles in degrees. For fan beam,
    ``source_distance`` / ``detector_distance`` are the distances of the source and of the
    detector from the rotation centre, and ``det_spacing`` is the bin width on the detector.
    """

    kind: str
    image_size: tuple[int, int]
    angles_deg: tuple[float, ...]
    n_det: int
    det_spacing: float = 1.0
    source_distance: float = 0.0
    detector_distance: float = 0.0

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": _BUILDER_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def ray_endpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """Ray start and end points, (n_views * n_det, 2) each, view-major."""
        h, w = self.image_size
        theta = np.deg2rad(np.asarray(self.angles_deg, dtype=np.float64))[:, None]
        e = np.stack([np.cos(theta), np.sin(theta)], -1)  # detector axis, (V, 1, 2)
        d = np.stack([-np.sin(theta), np.cos(theta)], -1)  # central ray direction
        u = ((np.arange(self.n_det) - (self.n_det - 1) / 2) * self.det_spacing)[None, :, None]
        if self.kind == "parallel":
            reach = math.hypot(h, w)  # beyond the image on both sides
            p0, p1 = u * e - reach * d, u * e + reach * d
        elif self.kind == "fan":
            p1 = self.detector_distance * d + u * e
            p0 = np.broadcast_to(-self.source_distance * d, p1.shape)
        else:
            raise ValueError(f"unknown CT geometry kind {self.kind!r}")
        return p0.reshape(-1, 2), p1.reshape(-1, 2)


def build_system_matrix(geometry: CTGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays ``(crow, col, val)`` of the system matrix, rows = rays, cols = pixels."""
    h, w = geometry.image_size
    p0, p1 = geometry.ray_endpoints()
    n_rays = len(p0)
    chunk = max(1, 4_000_000 // (h + w + 4))  # bounds the (rays x crossings) work arrays
    rays, cols, vals = [], [], []
    for start in range(0, n_rays, chunk):
        r, c, v = siddon_lengths(p0[start : start + chunk], p1[start : start + chunk], h, w)
        rays.append(r + start)
        cols.append(c)
        vals.append(v)
    ray, col, val = (np.concatenate(a) for a in (rays, cols, vals))
    # A ray running exactly along a pixel edge can be split by rounding into two segments of
    # the same pixel: merge such duplicates (summing lengths) so every (ray, pixel) is unique.
    key, where = np.unique(ray * (h * w) + col, return_inverse=True)  # sorted: row-major
    val = np.bincount(where, weights=val, minlength=len(key))
    ray, col = key // (h * w), key % (h * w)
    crow = np.zeros(n_rays + 1, dtype=np.int64)
    np.cumsum(np.bincount(ray, minlength=n_rays), out=crow[1:])
    return crow, col, val.astype(np.float32)


def load_or_build_matrix(
    geometry: CTGeometry, cache: bool | str | Path = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The system matrix of ``geometry``, read from the cache or built and cached (atomically).

    ``cache``: True = the user cache folder (see :func:`polydiff.medical._files.cache_dir`,
    override with ``$POLYDIFF_CACHE_DIR``), a path = that folder, False = never touch the disk.
    A cache file that cannot be read is rebuilt with a warning.
    """
    if cache is False:
        return build_system_matrix(geometry)
    folder = cache_dir("ct") if cache is True else Path(cache)
    h, w = geometry.image_size
    name = f"{geometry.kind}-{h}x{w}-{len(geometry.angles_deg)}v-{geometry.n_det}d-{geometry.key()}"
    path = folder / f"{name}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["crow"], f["col"], f["val"]
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"rebuilding unreadable CT matrix cache {path}: {err}", stacklevel=2)
    crow, col, val = build_system_matrix(geometry)

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, crow=crow, col=col.astype(np.int32), val=val)
    return crow, col, val


class _SparseMatmul(torch.autograd.Function):
    """``A @ X`` whose backward uses the stored transpose (fast, exact gradients for DPS)."""

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor, a_t: Tensor) -> Tensor:
        ctx.a_t = a_t
        return a @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return ctx.a_t @ grad, None, None


class SparseMatrixOperator(LinearOperator):
    """A real linear operator stored as a CSR matrix and its explicitly stored transpose.

    The matrices are converted lazily to the dtype/device of the input (one copy per pair),
    so the operator is device-agnostic. Differentiable with respect to its input.
    """

    def __init__(
        self,
        crow: np.ndarray,
        col: np.ndarray,
        val: np.ndarray,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
    ) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        n_rows, n_cols = math.prod(self.out_shape), math.prod(self.in_shape)
        if len(crow) != n_rows + 1:
            raise ValueError(f"matrix has {len(crow) - 1} rows, out_shape needs {n_rows}")
        with warnings.catch_warnings():  # torch flags sparse CSR as beta on every construction
            warnings.simplefilter("ignore", UserWarning)
            self._a = torch.sparse_csr_tensor(
                torch.as_tensor(crow, dtype=torch.int64),
                torch.as_tensor(np.asarray(col, dtype=np.int64)),
                torch.as_tensor(val, dtype=torch.float64),
                size=(n_rows, n_cols),
                check_invariants=False,
            )
            self._a_t = self._a.to_sparse_coo().t().coalesce().to_sparse_csr()
        self._copies: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    @property
    def nnz(self) -> int:
        return int(self._a.values().numel())

    def to_dense(self) -> Tensor:
        """The full matrix (float64), for tests on small geometries."""
        return self._a.to_dense()

    def entries(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(row, col, value)`` of every stored entry, in storage (row-major) order."""
        crow = self._a.crow_indices()
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1), crow.diff())
        return rows, self._a.col_indices(), self._a.values()

    def reweighted(self, weights: Tensor) -> SparseMatrixOperator:
        """The operator whose matrix entries are ``value * weights`` (one weight per entry of
        :meth:`entries`), e.g. for distance-weighted back-projection."""
        if weights.shape != (self.nnz,):
            raise ValueError(f"weights must have shape ({self.nnz},), got {tuple(weights.shape)}")
        crow, col = self._a.crow_indices().numpy(), self._a.col_indices().numpy()
        val = (self._a.values() * weights.double().cpu()).numpy()
        return SparseMatrixOperator(crow, col, val, self.in_shape, self.out_shape)

    def _matrices(self, like: Tensor) -> tuple[Tensor, Tensor]:
        if like.is_complex():
            raise TypeError(f"{type(self).__name__} takes real tensors, got {like.dtype}")
        key = (like.dtype, like.device)
        if key not in self._copies:
            self._copies[key] = tuple(
                m.to(dtype=like.dtype, device=like.device) for m in (self._a, self._a_t)
            )
        return self._copies[key]

    def _apply(self, a: Tensor, a_t: Tensor, v: Tensor, n_out: int) -> Tensor:
        cols = v.reshape(v.shape[0], -1).t().contiguous()  # (n_in, B)
        return _SparseMatmul.apply(cols, a, a_t).t().reshape(v.shape[0], n_out)

    def _forward(self, x: Tensor) -> Tensor:
        a, a_t = self._matrices(x)
        return self._apply(a, a_t, x, math.prod(self.out_shape)).reshape(-1, *self.out_shape)

    def _adjoint(self, y: Tensor) -> Tensor:
        a, a_t = self._matrices(y)
        return self._apply(a_t, a, y, math.prod(self.in_shape)).reshape(-1, *self.in_shape)


def parallel_geometry(
    image_size: int | Sequence[int],
    n_views: int,
    angles_deg: Sequence[float] | None = None,
    n_det: int | None = None,
    det_spacing: float = 1.0,
) -> CTGeometry:
    """The parallel-beam geometry of :class:`ParallelBeamCT` and :class:`RotateSumCT` (see
    :class:`ParallelBeamCT` for the arguments)."""
    hw = _as_hw(image_size)
    angles = _angles(angles_deg, n_views, 180.0)
    return CTGeometry("parallel", hw, angles, _detector(n_det, det_spacing, hw), float(det_spacing))


class ParallelBeamCT(SparseMatrixOperator):
    """2D parallel-beam CT (the Radon transform) applied slice by slice: ``(..., H, W) ->
    (..., n_views, n_det)``.

    Args:
        image_size: H = W, or (H, W), in pixels (pixel size 1).
        n_views: number of angles spread over [0, 180) degrees without the endpoint
            (DiffusionMBIR's sparse-view setting); ignored if ``angles_deg`` is given.
        angles_deg: explicit projection angles in degrees.
        n_det: detector bins; default ``ceil(sqrt(H^2 + W^2))`` covers the image diagonal.
        det_spacing: bin width in pixels.
        cache: where to cache the system matrix (see :func:`load_or_build_matrix`).
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        n_views: int = 8,
        angles_deg: Sequence[float] | None = None,
        n_det: int | None = None,
        det_spacing: float = 1.0,
        cache: bool | str | Path = True,
    ) -> None:
        self.geometry = g = parallel_geometry(image_size, n_views, angles_deg, n_det, det_spacing)
        matrices = load_or_build_matrix(g, cache)
        super().__init__(*matrices, g.image_size, (len(g.angles_deg), g.n_det))

    @property
    def angles_deg(self) -> tuple[float, ...]:
        return self.geometry.angles_deg


class LimitedAngleCT(ParallelBeamCT):
    """Parallel-beam CT whose views cover only ``angle_range_deg`` (e.g. 90 degrees).

    ``n_views`` angles ``linspace(start, start + range)`` without the endpoint, so the angular
    step equals that of a full 180-degree scan with ``n_views * 180 / range`` views.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        angle_range_deg: float = 90.0,
        n_views: int = 60,
        start_deg: float = 0.0,
        n_det: int | None = None,
        det_spacing: float = 1.0,
        cache: bool | str | Path = True,
    ) -> None:
        if not 0 < angle_range_deg <= 180:
            raise ValueError(f"angle_range_deg must be in (0, 180], got {angle_range_deg}")
        angles = uniform_angles(n_views, angle_range_deg, start_deg)
        super().__init__(
            image_size, angles_deg=angles, n_det=n_det, det_spacing=det_spacing, cache=cache
        )


class FanBeamCT(SparseMatrixOperator):
    """2D fan-beam CT with a flat detector, applied slice by slice.

    At view ``beta`` the source sits at ``-source_distance * d`` and the detector centre at
    ``+detector_distance * d`` (``d = (-sin beta, cos beta)``), the detector axis along
    ``(cos beta, sin beta)``; rays run from the source to the bin centres.

    Args:
        image_size: H = W, or (H, W).
        n_views: angles over [0, 360) degrees without endpoint (ignored if ``angles_deg`` given).
        source_distance: source-to-centre distance in pixels (default 2 * max(H, W)).
        detector_distance: centre-to-detector distance (default max(H, W)).
        n_det, det_spacing: detector bins and their width; the default spacing is the
            magnification (bins of one pixel at the centre) and the default count covers the fan
            through the image's circumscribed circle.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        n_views: int = 16,
        angles_deg: Sequence[float] | None = None,
        source_distance: float | None = None,
        detector_distance: float | None = None,
        n_det: int | None = None,
        det_spacing: float | None = None,
        cache: bool | str | Path = True,
    ) -> None:
        h, w = _as_hw(image_size)
        radius = math.hypot(h, w) / 2
        d_so = 2.0 * max(h, w) if source_distance is None else float(source_distance)
        d_od = float(max(h, w)) if detector_distance is None else float(detector_distance)
        if d_so <= radius or d_od <= radius:
            raise ValueError(
                f"source_distance ({d_so}) and detector_distance ({d_od}) must exceed the image "
                f"half-diagonal {radius:.2f} so that source and detector lie outside the image"
            )
        magnification = (d_so + d_od) / d_so
        spacing = magnification if det_spacing is None else float(det_spacing)
        if n_det is None:  # cover the fan through the image's circumscribed circle
            half_width = (d_so + d_od) * math.tan(math.asin(radius / d_so))
            n_det = math.ceil(2 * half_width / spacing) + 1 if spacing > 0 else 1
        n_det = _detector(n_det, spacing, (h, w))
        angles = _angles(angles_deg, n_views, 360.0)
        self.geometry = CTGeometry("fan", (h, w), angles, int(n_det), spacing, d_so, d_od)
        super().__init__(*load_or_build_matrix(self.geometry, cache), (h, w), (len(angles), n_det))

    @property
    def angles_deg(self) -> tuple[float, ...]:
        return self.geometry.angles_deg


class RotateSumCT(LinearOperator):
    """Parallel-beam CT by rotating the image with ``grid_sample`` and summing along rays.

    The approach of DiffusionMBIR's projector; same geometry and conventions as
    :class:`ParallelBeamCT`, so the two approximate the same Radon transform (bilinear instead
    of piecewise-constant pixels). Fully differentiable and GPU-friendly, but on CPU much slower
    than the sparse matrix; kept for that comparison and as an autograd option. Its adjoint is
    the exact adjoint of the discrete map (a vector-Jacobian product), not a back-rotation.
    """

    def __init__(self, image_size: int | Sequence[int], n_views: int = 8, **geometry: Any) -> None:
        """``geometry``: :class:`ParallelBeamCT`'s ``angles_deg``, ``n_det``, ``det_spacing``."""
        g = parallel_geometry(image_size, n_views, **geometry)
        h, w = g.image_size
        self.n_det, self.det_spacing, self.angles_deg = g.n_det, g.det_spacing, g.angles_deg
        self.in_shape, self.out_shape = (h, w), (len(g.angles_deg), self.n_det)
        self._n_t = math.ceil(math.hypot(h, w)) + 1  # samples along each ray, unit step
        self._grids: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def _grid(self, like: Tensor) -> Tensor:
        key = (like.dtype, like.device)
        if key not in self._grids:
            h, w = self.in_shape
            kw = {"dtype": like.dtype, "device": like.device}
            theta = torch.deg2rad(torch.tensor(self.angles_deg, **kw))[:, None, None]
            s = (torch.arange(self.n_det, **kw) - (self.n_det - 1) / 2) * self.det_spacing
            t = torch.arange(self._n_t, **kw) - (self._n_t - 1) / 2
            s, t = s[None, None, :], t[None, :, None]
            x = s * torch.cos(theta) - t * torch.sin(theta)  # (V, T, n_det)
            y = s * torch.sin(theta) + t * torch.cos(theta)
            grid = torch.stack([x / ((w - 1) / 2), y / ((h - 1) / 2)], dim=-1)
            self._grids[key] = grid.reshape(1, -1, self.n_det, 2)
        return self._grids[key]

    def _forward(self, x: Tensor) -> Tensor:
        grid = self._grid(x)
        b = x.shape[0]
        samples = F.grid_sample(
            x[:, None],
            grid.expand(b, -1, -1, -1),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )
        return samples.reshape(b, len(self.angles_deg), self._n_t, self.n_det).sum(dim=2)

    def _adjoint(self, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x = torch.zeros(
                y.shape[0], *self.in_shape, dtype=y.dtype, device=y.device, requires_grad=True
            )
            (g,) = torch.autograd.grad(
                self._forward(x), x, grad_outputs=y, create_graph=y.requires_grad
            )
        return g
