"""Real anatomy that installs offline: the training volumes of the anatomy prior, the real
subjects held out from it, and randomly augmented 2D slices cut from any orientation.

Training: the MNI ICBM152 2009a symmetric template shipped in nilearn's wheel (Fonov et al.,
2011, "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 54), its T1
image and its grey / white matter maps, which give slices of random tissue contrast (T1-like,
T2-like, PD-like: the idea of SynthSeg, Billot et al., 2023, MedIA 86). Held out (real
single subjects, never in training): nibabel's ``example4d.nii.gz`` (an EPI head, for tuning)
and dipy's ``aniso_vox.nii.gz`` (a b0 head, for testing).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import torch
import torch.nn.functional as F
from torch import Tensor

from polydiff.medical.data.intensity import fit_scale
from polydiff.medical.data.volume import Volume, load_nifti, volume_from_image

#: the held-out real subjects by role: never in the anatomy prior's training slices
HELD_OUT = {"tune": "example4d", "test": "aniso_vox"}


@dataclass(frozen=True)
class Source:
    """A training volume ``(D, H, W)`` in [0, 1] with its voxel spacing (mm, same order)."""

    data: Tensor
    spacing: tuple[float, float, float]


def held_out_file(name: str) -> Path:
    """The file of a held-out subject: ``example4d`` (nibabel's test data, an EPI time series
    of which the first frame is used) or ``aniso_vox`` (dipy's sample data, a b0 volume)."""
    if name == "example4d":
        from nibabel.testing import data_path

        return Path(data_path) / "example4d.nii.gz"
    if name == "aniso_vox":
        from dipy.data import get_fnames

        return Path(get_fnames(name="aniso_vox"))
    raise ValueError(f"held-out volume {name!r}: choose one of {sorted(HELD_OUT.values())}")


def held_out_volume(role: str) -> Volume:
    """The held-out real subject for ``role`` (``tune`` or ``test``) as a RAS+ :class:`Volume`
    in its own units (the first frame of a 4D series)."""
    if role not in HELD_OUT:
        raise ValueError(f"role {role!r}: choose one of {sorted(HELD_OUT)}")
    path = held_out_file(HELD_OUT[role])
    image = nib.load(path)
    if len(image.shape) == 4:
        image = image.slicer[..., 0]
        return volume_from_image(image, str(path))
    return load_nifti(path)


@functools.lru_cache(maxsize=1)
def mni152_sources(pool: int = 2) -> tuple[Source, ...]:
    """The MNI152 template's T1 and its tissue maps (grey matter, white matter, and CSF as
    the rest of the brain mask), each average-pooled by ``pool`` (1 mm -> 2 mm: slices are
    cut at 2.5-4 mm pixels, so this keeps them from aliasing) and scaled to [0, 1]. Cached:
    the tensors are shared, read them only."""
    from nilearn.datasets import (
        load_mni152_gm_template,
        load_mni152_template,
        load_mni152_wm_template,
    )

    def tensor(image: nib.Nifti1Image) -> tuple[Tensor, tuple[float, float, float]]:
        vol = volume_from_image(image, "MNI152 template")
        data = F.avg_pool3d(vol.data[None, None], pool, ceil_mode=True)[0, 0]
        return data / data.max(), tuple(pool * s for s in vol.spacing)

    t1, spacing = tensor(load_mni152_template(resolution=1))
    grey, _ = tensor(load_mni152_gm_template(resolution=1))
    white, _ = tensor(load_mni152_wm_template(resolution=1))
    csf = ((t1 > 0.02).float() - grey - white).clamp(0, 1)
    return Source(t1, spacing), Source(torch.stack([grey, white, csf]), spacing)


def _rotation(angles: Tensor) -> Tensor:
    """The rotation ``Rx(a) Ry(b) Rz(c)`` for ``angles = (a, b, c)`` in radians."""
    c, s = torch.cos(angles), torch.sin(angles)
    rx = torch.tensor([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
    ry = torch.tensor([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    rz = torch.tensor([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    return rx @ ry @ rz


# slice orientations: the volume directions (x = W, y = H, z = D) that the slice's columns, rows
# and normal follow: axial (normal z), coronal (normal y), sagittal (normal x)
_ORIENTATIONS = (
    torch.eye(3),
    torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]),
    torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),
)


def _slice_grid(source: Source, size: int, g: torch.Generator) -> Tensor:
    """A random oblique slice plane as a ``grid_sample`` grid ``(1, 1, size, size, 3)``: one
    of the three orientations, rotated by up to 10 degrees about each axis, a field of view of
    0.8-1.25 times the larger in-plane extent (per-axis aspect change up to 10%), flipped at
    random along each in-plane axis, shifted up to 8% in plane and placed through the middle
    half of the volume along its normal."""

    def u(lo: float, hi: float, n: int = 1) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    depth, height, width = source.data.shape[-3:]
    dz, dy, dx = source.spacing
    half = torch.tensor([width * dx, height * dy, depth * dz]) / 2  # mm, (x, y, z)
    axes = _ORIENTATIONS[int(torch.randint(3, (1,), generator=g))]
    rotation = _rotation(u(-math.radians(10), math.radians(10), 3)) @ axes
    in_plane = (axes.T @ half)[:2]
    fov = in_plane.max() * u(0.8, 1.25) * u(0.9, 1.1, 2)
    flips = torch.where(torch.rand(2, generator=g) < 0.5, -1.0, 1.0)
    shift = torch.cat([u(-0.08, 0.08, 2) * fov, u(-0.5, 0.5) * (axes.T @ half)[2]])
    scale = torch.diag(torch.cat([fov * flips, torch.ones(1)]))
    theta = torch.cat([(rotation @ scale) / half[:, None], (rotation @ shift / half)[:, None]], 1)
    return F.affine_grid(theta[None], [1, 1, 1, size, size], align_corners=False)


def _contrast(source: Source, grid: Tensor, g: torch.Generator) -> Tensor:
    """The slice of ``source`` on ``grid``; a stack of tissue maps gets random intensities
    per tissue: evenly spaced levels in [0, 1] in random order, jittered (distinct tissues stay
    distinct)."""
    maps = F.grid_sample(source.data.reshape(1, -1, *source.data.shape[-3:]), grid,
                         align_corners=False)[0, :, 0]  # fmt: skip
    if maps.shape[0] == 1:
        return maps[0]
    levels = torch.randperm(maps.shape[0], generator=g) / (maps.shape[0] - 1)
    weights = levels * (0.8 + 0.2 * torch.rand(1, generator=g)) + 0.15 * torch.rand(1, generator=g)
    return torch.einsum("c,chw->hw", weights, maps)


def _window(x: Tensor, g: torch.Generator) -> Tensor:
    """A random intensity window (low 0-10%, high 70-100% of the slice's maximum, clipped),
    a random gamma in [0.7, 1.4] and a random Gaussian blur (sigma 0-1 pixel)."""
    top = x.max().clamp_min(1e-6)
    low, high = torch.tensor([0.0, 0.7]) + torch.rand(2, generator=g) * torch.tensor([0.1, 0.3])
    x = ((x / top - low) / (high - low)).clamp(0, 1)
    x = x ** float(math.exp(math.log(2) * (torch.rand(1, generator=g) - 0.5)))
    sigma = float(torch.rand(1, generator=g))
    if sigma > 0.2:
        r = torch.arange(-2, 3, dtype=x.dtype)
        k = torch.exp(-(r**2) / (2 * sigma**2))
        k = k / k.sum()
        padded = F.pad(x[None, None], (2, 2, 2, 2), mode="replicate")
        x = F.conv2d(padded, (k[:, None] * k)[None, None])[0, 0]
    return x


def augmented_slices(sources: Sequence[Source], n: int, size: int, seed: int = 0) -> Tensor:
    """``n`` random ``size x size`` slices ``(n, size, size)`` in [0, 1] of ``sources`` (picked
    uniformly): random orientation, small rotation, scale, flips and shift
    (:func:`_slice_grid`), random tissue contrast for tissue-map stacks, random intensity
    window, gamma and blur. Seeded: the same arguments give the same slices."""
    if n < 1 or size < 8 or not sources:
        raise ValueError(f"augmented_slices needs n >= 1, size >= 8 and sources; got {n}, {size}")
    g = torch.Generator().manual_seed(int(seed))
    out = torch.empty(n, size, size)
    for i in range(n):
        source = sources[int(torch.randint(len(sources), (1,), generator=g))]
        out[i] = _window(_contrast(source, _slice_grid(source, size, g), g), g)
    return out


def anatomy_slices(n: int, size: int, seed: int = 0) -> Tensor:
    """The anatomy prior's training set: ``n`` augmented slices of the MNI152 sources."""
    return augmented_slices(mni152_sources(), n, size, seed)


def normalized(volume: Volume) -> Tensor:
    """A real volume mapped to [0, 1] by its 0.5 / 99.5 percentiles, clipped."""
    return fit_scale(volume.data, "percentile").forward(volume.data, clip=True)
