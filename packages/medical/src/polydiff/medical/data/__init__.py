"""Volumes from NIfTI / DICOM (with their affine), intensity scaling, and built-in phantoms."""

from polydiff.medical.data.intensity import IntensityScale, fit_scale, normalize, window
from polydiff.medical.data.phantoms import (
    PHANTOM_KINDS,
    phantom,
    phantom_slices,
    random_ellipsoids,
    shepp_logan_3d,
)
from polydiff.medical.data.volume import (
    Volume,
    load_dicom_series,
    load_nifti,
    save_nifti,
    volume_from_image,
)

__all__ = [
    "PHANTOM_KINDS",
    "IntensityScale",
    "Volume",
    "fit_scale",
    "load_dicom_series",
    "load_nifti",
    "normalize",
    "phantom",
    "phantom_slices",
    "random_ellipsoids",
    "save_nifti",
    "shepp_logan_3d",
    "volume_from_image",
    "window",
]
