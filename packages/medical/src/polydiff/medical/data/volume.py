"""Volumes from NIfTI files and DICOM series, keeping the affine and voxel sizes.

A :class:`Volume` holds ``data`` as a ``(D, H, W)`` tensor with slices first: for a NIfTI array
indexed ``(i, j, k)`` (in RAS+ after canonicalisation: i -> right, j -> anterior, k -> superior)
``data[k, j, i]`` is that voxel, so ``data[k]`` is an axial slice, ``data[:, j]`` coronal and
``data[:, :, i]`` sagittal. ``affine`` is the NIfTI voxel-to-world matrix of the ``(i, j, k)``
array, so writing ``data`` back with :func:`save_nifti` reproduces the input's geometry.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.io import atomic_write_bytes


@dataclass
class Volume:
    """A 3D image: ``data`` (D, H, W) float tensor, ``affine`` 4x4 voxel (i, j, k) -> world (mm)."""

    data: Tensor
    affine: np.ndarray

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel sizes (mm) along the array axes ``(i, j, k)`` = ``(W, H, D)`` of ``data``."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel sizes (mm) in the order of ``data``'s axes ``(D, H, W)``."""
        return self.voxel_size[::-1]

    def to_image(self) -> nib.Nifti1Image:
        """The nibabel image (array in ``(i, j, k)`` order, float32)."""
        array = self.data.detach().cpu().permute(2, 1, 0).numpy().astype(np.float32)
        image = nib.Nifti1Image(array, self.affine)
        image.header.set_xyzt_units("mm")
        return image


def _check_volume(array: np.ndarray, source: str) -> np.ndarray:
    """Squeeze trailing singleton dims and reject what cannot be a 3D volume."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"{source}: expected a 3D volume, got an array of shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{source}: the volume is empty (shape {array.shape})")
    if np.iscomplexobj(array):
        raise InputError(f"{source}: complex-valued volumes are not supported")
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise InputError(f"{source}: {bad} of {array.size} voxels are NaN or infinite")
    return array


def volume_from_image(
    image: nib.spatialimages.SpatialImage, source: str = "image", canonical: bool = True
) -> Volume:
    """A :class:`Volume` from a nibabel image; ``canonical`` reorients to RAS+ first
    (``nibabel.as_closest_canonical``: axis flips/permutations only, no resampling)."""
    if canonical:
        if len(image.shape) > 3 and all(n == 1 for n in image.shape[3:]):
            image = nib.Nifti1Image(
                np.asarray(image.dataobj).reshape(image.shape[:3]), image.affine
            )
        if len(image.shape) == 3:
            image = nib.as_closest_canonical(image)
    array = _check_volume(np.asanyarray(image.dataobj), source)  # scaled by slope/intercept
    data = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 1, 0), dtype=np.float32))
    return Volume(data=data, affine=np.asarray(image.affine, dtype=np.float64))


def load_nifti(path: str | os.PathLike, canonical: bool = True) -> Volume:
    """Read a 3D NIfTI file (``.nii`` / ``.nii.gz``) with its affine, scaled by its slope/inter.

    Raises FileNotFoundError for a missing file and InputError (a ValueError) naming the file
    when it is not a regular file, not NIfTI, cut short, not 3D (2D, or 4D with more than one
    volume), empty or contains NaN/inf.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    if not path.is_file():  # a FIFO would block the reader
        raise InputError(f"{path}: not a regular file (a folder, FIFO or device)")
    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises several types for unreadable files
        reason = str(err).strip().split("\n")[0]
        raise InputError(f"{path}: not a readable NIfTI file ({reason})") from err
    try:  # nibabel reads the voxels lazily: a cut file fails only here
        return volume_from_image(image, str(path), canonical)
    except (EOFError, OSError, zlib.error) as err:
        reason = str(err).strip().split("\n")[0]
        raise InputError(f"{path}: truncated or damaged NIfTI file ({reason})") from err


def save_nifti(
    volume: Volume | Tensor, path: str | os.PathLike, affine: np.ndarray | None = None
) -> Path:
    """Write a volume atomically as NIfTI (float32). A bare ``(D, H, W)`` tensor needs ``affine``
    (or gets the identity: 1 mm voxels)."""
    if isinstance(volume, Tensor):
        affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        volume = Volume(volume, affine)
    if volume.data.dim() != 3:
        raise ValueError(
            f"save_nifti: expected a (D, H, W) volume, got shape {tuple(volume.data.shape)}"
        )
    if np.asarray(volume.affine).shape != (4, 4):
        raise ValueError(f"save_nifti: affine must be 4x4, got {np.shape(volume.affine)}")
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"save_nifti: {path} must end in .nii or .nii.gz")
    data = volume.to_image().to_bytes()  # single-file NIfTI-1
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, data)


def load_dicom_series(folder: str | os.PathLike, canonical: bool = True) -> Volume:
    """Read one DICOM series (a folder of 2D slices) into a :class:`Volume`.

    pydicom is imported on first use (a dependency of polydiff-medical, but an install without
    it still reads NIfTI and gets a clear ImportError here).

    Slices are sorted by their position along the slice normal (ImagePositionPatient projected
    on the cross product of the ImageOrientationPatient cosines), pixel values are rescaled with
    RescaleSlope/RescaleIntercept (CT: Hounsfield units), and the affine maps DICOM's LPS
    patient coordinates to NIfTI's RAS. Files without pixel data are ignored; a folder holding
    several series (different SeriesInstanceUID) is an error.
    """
    try:
        import pydicom
    except ImportError as err:
        raise ImportError(
            "reading DICOM needs pydicom, which is not installed: pip install pydicom"
        ) from err
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM folder not found: {folder}")
    slices = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(f)
        except Exception:  # not DICOM: skip (folders often hold README/DICOMDIR files)
            continue
        if "PixelData" in ds:
            slices.append(ds)
    if not slices:
        raise ValueError(f"{folder}: no DICOM files with pixel data")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise ValueError(f"{folder}: holds {len(series)} DICOM series; put one series per folder")
    try:
        cosines = np.array(slices[0].ImageOrientationPatient, dtype=np.float64)
        row_spacing, col_spacing = (float(v) for v in slices[0].PixelSpacing)
        positions = np.array([ds.ImagePositionPatient for ds in slices], dtype=np.float64)
    except AttributeError as err:
        raise ValueError(f"{folder}: DICOM slices lack geometry tags ({err})") from err
    row_cos, col_cos = cosines[:3], cosines[3:]
    normal = np.cross(row_cos, col_cos)
    order = np.argsort(positions @ normal)
    slices, positions = [slices[i] for i in order], positions[order]
    shapes = {ds.pixel_array.shape for ds in slices}
    if len(shapes) != 1:
        raise ValueError(f"{folder}: slices have different sizes {sorted(shapes)}")
    pixels = np.stack(
        [
            ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1))
            + float(getattr(ds, "RescaleIntercept", 0))
            for ds in slices
        ]
    )
    if len(slices) > 1:
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
    else:
        step = normal * float(getattr(slices[0], "SliceThickness", 1.0) or 1.0)
    affine_lps = np.eye(4)
    # array (i, j, k) = (column, row, slice): columns advance along the row cosines.
    affine_lps[:3, 0] = row_cos * col_spacing
    affine_lps[:3, 1] = col_cos * row_spacing
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps  # LPS -> RAS
    array = pixels.transpose(2, 1, 0)  # (slice, row, col) -> (i, j, k)
    return volume_from_image(nib.Nifti1Image(array, affine), str(folder), canonical)
