"""Data: phantoms (values, determinism), NIfTI round trip and bad files, DICOM series, intensity."""

from __future__ import annotations

import gzip
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from polydiff.medical.data.intensity import IntensityScale, fit_scale, normalize, window
from polydiff.medical.data.phantoms import (
    phantom_slices,
    random_ellipsoids,
    render_ellipsoids,
    shepp_logan_3d,
)
from polydiff.medical.data.volume import Volume, load_dicom_series, load_nifti, save_nifti

# ---------------------------------------------------------------- phantoms


def test_shepp_logan_values_at_known_points():
    v = shepp_logan_3d(65)  # odd size: voxel 32 is the exact centre
    assert v.shape == (65, 65, 65)
    assert float(v[32, 32, 32]) == pytest.approx(0.2)  # brain: 1 - 0.8
    assert float(v[0, 0, 0]) == 0.0  # outside the head
    # skull shell on the x axis: |x| in (0.6624, 0.69) -> voxel 32 + 0.675 * 32 = 53.6
    assert float(v[32, 32, 54]) == pytest.approx(1.0)
    assert float(v.min()) == 0.0 and float(v.max()) == pytest.approx(1.0)


def test_render_single_ellipsoid_volume():
    # Voxel centres span [-1, 1] with spacing 2/63: inside-count x voxel volume ~ 4/3 pi r^3.
    eye = torch.eye(3, dtype=torch.float64)[None]
    v = render_ellipsoids(64, torch.tensor([1.0]), torch.full((1, 3), 0.5), torch.zeros(1, 3), eye)
    assert float(v.sum()) * (2 / 63) ** 3 == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.01)


@pytest.mark.parametrize("make", [shepp_logan_3d, random_ellipsoids])
def test_phantoms_are_deterministic_per_seed(make):
    a, b, c = make(20, seed=5), make(20, seed=5), make(20, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32 and float(a.min()) >= 0.0


def test_random_shepp_logan_keeps_head_structure():
    base, jittered = shepp_logan_3d(32), shepp_logan_3d(32, seed=1)
    assert float((jittered - base).abs().mean()) > 0.0
    # still mostly the same head: most voxels agree in being inside/outside
    assert float(((jittered > 0) == (base > 0)).float().mean()) > 0.9


def test_random_ellipsoids_range():
    v = random_ellipsoids((16, 20, 24), seed=0)
    assert v.shape == (16, 20, 24)
    assert float(v.max()) == pytest.approx(1.0) and float(v.min()) == 0.0


def test_phantom_slices_stack():
    s = phantom_slices(2, 12, kind="ellipsoids", seed=3)
    assert s.shape == (24, 12, 12)
    torch.testing.assert_close(s[12:], random_ellipsoids(12, seed=4))
    with pytest.raises(ValueError, match="kind"):
        phantom_slices(1, 8, kind="brain")


def test_bad_phantom_arguments():
    with pytest.raises(ValueError, match="shape"):
        shepp_logan_3d((8, 8))
    with pytest.raises(ValueError, match="jitter"):
        shepp_logan_3d(8, seed=0, jitter=2.0)


# ---------------------------------------------------------------- NIfTI


def _affine() -> np.ndarray:
    a = np.diag([0.8, 1.2, 2.5, 1.0])
    a[:3, 3] = [-10.0, 20.0, 5.0]
    return a


def test_nifti_round_trip_keeps_data_affine_and_voxel_size(tmp_path):
    data = torch.rand(6, 7, 8)  # (D, H, W)
    path = save_nifti(Volume(data, _affine()), tmp_path / "vol.nii.gz")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temp left
    back = load_nifti(path)
    torch.testing.assert_close(back.data, data)
    np.testing.assert_allclose(back.affine, _affine())
    assert back.voxel_size == pytest.approx((0.8, 1.2, 2.5))
    assert back.spacing == pytest.approx((2.5, 1.2, 0.8))
    array = np.asarray(nib.load(path).dataobj)
    assert array.shape == (8, 7, 6)  # NIfTI (i, j, k) = (W, H, D)
    assert array[3, 2, 1] == pytest.approx(float(data[1, 2, 3]))


def test_nifti_is_reoriented_to_canonical(tmp_path):
    # An LPS-stored volume (x and y flipped): canonical loading flips the array back to RAS.
    array = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(array, affine), tmp_path / "lps.nii")
    vol = load_nifti(tmp_path / "lps.nii")
    assert np.all(np.diag(vol.affine)[:3] > 0)
    expected = array[::-1, ::-1, :].transpose(2, 1, 0)
    np.testing.assert_allclose(vol.data.numpy(), expected)
    # world coordinates of a voxel are unchanged by the reorientation
    raw = load_nifti(tmp_path / "lps.nii", canonical=False)
    world_raw = raw.affine @ np.array([1, 2, 3, 1.0])
    world_can = vol.affine @ np.array([5 - 1 - 1, 6 - 1 - 2, 3, 1.0])
    np.testing.assert_allclose(world_raw, world_can)


def test_real_nifti_from_nibabel_ships(tmp_path):
    import os

    path = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")
    vol = load_nifti(path)
    assert vol.data.shape == (25, 41, 33) and vol.voxel_size == pytest.approx((2.0, 2.0, 2.0))
    again = load_nifti(save_nifti(vol, tmp_path / "copy.nii"))
    torch.testing.assert_close(again.data, vol.data)
    np.testing.assert_allclose(again.affine, vol.affine)


def test_singleton_fourth_dimension_is_accepted(tmp_path):
    array = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(array[..., None], np.eye(4)), tmp_path / "a.nii")
    data = load_nifti(tmp_path / "a.nii").data
    assert data.shape == (6, 5, 4)
    assert torch.equal(data, torch.from_numpy(array.transpose(2, 1, 0).copy()))  # (D, H, W)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((8, 9), np.float32), "expected a 3D volume"),
        (np.ones((4, 4, 4, 3), np.float32), "expected a 3D volume"),
        (np.ones((4, 0, 4), np.float32), "empty"),
        (np.full((4, 4, 4), np.nan, np.float32), "64 of 64 voxels are NaN"),
        (np.ones((4, 4, 4), np.complex64), "complex-valued"),
    ],
    ids=["2d", "4d", "empty", "nan", "complex"],
)
def test_bad_nifti_files_raise_clear_errors(tmp_path, array, message):
    path = tmp_path / "bad.nii"
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    with pytest.raises(ValueError, match=message) as err:
        load_nifti(path)
    assert "bad.nii" in str(err.value)


def test_missing_and_garbage_nifti(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.nii"):
        load_nifti(tmp_path / "nothere.nii")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"definitely not nifti" * 30))
    with pytest.raises(ValueError, match=r"garbage\.nii\.gz: not a readable NIfTI"):
        load_nifti(garbage)


def test_save_nifti_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="expected a"):
        save_nifti(torch.zeros(4, 4), tmp_path / "x.nii")
    with pytest.raises(ValueError, match=r"must end in \.nii"):
        save_nifti(torch.zeros(4, 4, 4), tmp_path / "x.npy")
    with pytest.raises(ValueError, match="4x4"):
        save_nifti(torch.zeros(4, 4, 4), tmp_path / "x.nii", affine=np.eye(3))


# ---------------------------------------------------------------- DICOM


def _write_dicom_series(folder, volume_hu: np.ndarray, spacing=(0.7, 0.6), thickness=2.0):
    """A synthetic axial CT series (LPS: rows along +y, columns along +x), shuffled file order."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    series = generate_uid()
    n = volume_hu.shape[0]
    for k in np.random.default_rng(0).permutation(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"s{k}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SeriesInstanceUID = series
        ds.Modality = "CT"
        ds.InstanceNumber = int(k) + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-50.0, -40.0, 10.0 + thickness * k]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = thickness
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows, ds.Columns = volume_hu.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (volume_hu[k] + 1024).astype(np.uint16).tobytes()
        ds.save_as(folder / f"s{k}.dcm", enforce_file_format=True)


def test_dicom_series_geometry_and_values(tmp_path):
    hu = np.random.default_rng(1).integers(-1000, 2000, size=(4, 5, 6)).astype(np.float64)
    _write_dicom_series(tmp_path, hu)
    (tmp_path / "README.txt").write_text("not dicom")  # ignored
    vol = load_dicom_series(tmp_path)
    # LPS -> RAS flips x and y; canonical reorientation flips them back into increasing order.
    expected = hu[:, ::-1, ::-1]  # (slice, row, col) with rows/cols reversed
    np.testing.assert_allclose(vol.data.numpy(), expected)
    assert vol.voxel_size == pytest.approx((0.6, 0.7, 2.0))
    # world position (RAS) of the first stored pixel: LPS (-50, -40, 10) -> RAS (50, 40, 10)
    idx = np.array([5, 4, 0, 1.0])  # that pixel sits at the flipped end after canonicalisation
    np.testing.assert_allclose(vol.affine @ idx, [50.0, 40.0, 10.0, 1.0])


def test_dicom_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dicom_series(tmp_path / "nowhere")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no DICOM files"):
        load_dicom_series(tmp_path)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if pydicom were not installed
    with pytest.raises(ImportError, match="pip install pydicom"):
        load_dicom_series(tmp_path)


# ---------------------------------------------------------------- intensity


def test_window_and_inverse_scale():
    hu = torch.tensor([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    torch.testing.assert_close(window(hu, center=40, width=400), torch.tensor([0, 0, 0.5, 1, 1]))
    x, scale = normalize(hu)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    torch.testing.assert_close(scale.inverse(x), hu)
    robust = fit_scale(torch.cat([torch.zeros(999), torch.tensor([1e6])]), "percentile")
    assert robust.high < 1e6
    with pytest.raises(ValueError, match="high > low"):
        IntensityScale(1.0, 1.0)
    with pytest.raises(ValueError, match="width"):
        window(hu, 0, 0)
