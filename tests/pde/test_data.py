"""Dataset generators, the polydiff HDF5 layout (round trip) and the PDEBench reader."""

import math
import re

import h5py
import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.pde.data import (
    BurgersConfig,
    burgers_forcing,
    burgers_initial,
    generate_advection,
    generate_burgers,
    read_dataset,
    read_pdebench,
    write_dataset,
)
from polydiff.pde.solvers import grid_1d, solve_burgers

SMALL = BurgersConfig(nx=32, nt=5, t_end=0.5)


def test_burgers_initial_states_and_forcings_follow_the_documented_ranges():
    rng = np.random.default_rng(0)
    x, t = grid_1d(128, "dirichlet").numpy(), np.linspace(0, 1, 11)
    u0 = burgers_initial(500, x, rng)
    assert u0.shape == (500, 128)
    assert (u0[:, x < 0.1] > -0.1).all() and u0.max() <= 2 and u0.min() >= -2
    assert u0[:, (x > 0.2) & (x < 0.4)].max(1).mean() > 0.5  # a positive bump on the left
    assert u0[:, (x > 0.6) & (x < 0.8)].min(1).mean() < -0.5  # a negative bump on the right
    f = burgers_forcing(500, x, t, rng)
    assert f.shape == (500, 11, 128)
    assert np.abs(f).max() <= 1.5 * 8 and (np.abs(f).max((1, 2)) > 0).all()


def test_generated_burgers_data_is_reproducible_and_solves_the_equation():
    data = generate_burgers(6, SMALL, seed=3)
    again = generate_burgers(6, SMALL, seed=3, batch=4)
    np.testing.assert_array_equal(data.u, again.u)
    assert data.u.shape == data.f.shape == (6, 5, 32)
    assert data.attrs["nu"] == 0.01 and math.isclose(data.attrs["dt"], 0.125)
    # the stored forcing alone determines the stored trajectory
    u = solve_burgers(
        torch.from_numpy(data.u[:, 0]).double(), 0.5, 5, forcing=torch.from_numpy(data.f).double()
    )
    np.testing.assert_allclose(data.u, u.numpy(), atol=1e-5)
    other = generate_burgers(6, SMALL, seed=4)
    assert np.abs(other.u - data.u).max() > 0.1


def test_generated_advection_is_the_exact_shift():
    data = generate_advection(4, nx=64, nt=3, t_end=1.0, c=0.25, seed=1)
    # u(t = 1) = u0(x - 0.25) is u0 rolled by 16 of the 64 points
    np.testing.assert_allclose(data.u[:, -1], np.roll(data.u[:, 0], 16, -1), atol=1e-5)


def test_dataset_round_trip(tmp_path):
    data = generate_burgers(3, SMALL, seed=0)
    read = read_dataset(write_dataset(tmp_path / "burgers.h5", data))
    np.testing.assert_array_equal(read.u, data.u)
    np.testing.assert_array_equal(read.f, data.f)
    np.testing.assert_array_equal(read.x, data.x)
    assert read.attrs == data.attrs
    unforced = generate_advection(2, nx=16, nt=3)
    assert read_dataset(write_dataset(tmp_path / "adv.h5", unforced)).f is None


def write_h5(path, datasets, attrs=None):
    with h5py.File(path, "w") as h5:
        for key, value in datasets.items():
            h5.create_dataset(key, data=value)
        h5.attrs.update(attrs or {})
    return path


def pdebench_file(path, nt_coords=4, **changes):
    datasets = {
        "tensor": np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32),
        "x-coordinate": np.linspace(0, 1, 8),
        "t-coordinate": np.linspace(0, 1, nt_coords),
    }
    datasets.update(changes)
    return write_h5(path, {k: v for k, v in datasets.items() if v is not None}, {"Nu": 0.001})


def test_pdebench_reader_takes_the_first_nt_time_edges(tmp_path):
    data = read_pdebench(pdebench_file(tmp_path / "pdebench.h5"))
    assert data.u.shape == (2, 3, 8) and data.t.shape == (3,)
    assert data.attrs["Nu"] == 0.001 and math.isclose(data.attrs["dx"], 1 / 7)
    assert read_pdebench(pdebench_file(tmp_path / "same.h5", nt_coords=3)).t.shape == (3,)


def polydiff_file(path, **changes):
    data = generate_advection(2, nx=8, nt=3)
    datasets = {"u": data.u, "f": np.zeros_like(data.u), "x": data.x, "t": data.t}
    datasets.update(changes)
    attrs = {"dt": 0.5, "dx": 0.125}
    return write_h5(path, {k: v for k, v in datasets.items() if v is not None}, attrs)


def with_nan(shape):
    a = np.zeros(shape, dtype=np.float32)
    a.flat[1] = np.nan
    return a


BAD_FILES = [
    ("pdebench", {"tensor": None}, "missing dataset 'tensor'"),
    ("pdebench", {"x-coordinate": None}, "missing dataset 'x-coordinate'"),
    ("pdebench", {"t-coordinate": None}, "missing dataset 't-coordinate'"),
    ("pdebench", {"tensor": np.zeros((2, 8))}, "'tensor' must be \\[N, nt, nx\\]"),
    ("pdebench", {"x-coordinate": np.linspace(0, 1, 9)}, "'x-coordinate' has shape"),
    ("pdebench", {"t-coordinate": np.linspace(0, 1, 7)}, "'t-coordinate' has shape"),
    ("pdebench", {"tensor": with_nan((2, 3, 8))}, "'tensor' contains NaN"),
    ("pdebench", {"x-coordinate": np.linspace(1, 0, 8)}, "'x-coordinate' must be finite and incr"),
    ("polydiff", {"u": None}, "missing dataset 'u'"),
    ("polydiff", {"x": None}, "missing dataset 'x'"),
    ("polydiff", {"f": np.zeros((2, 3, 4))}, "'f' has shape"),
    ("polydiff", {"u": with_nan((2, 3, 8))}, "'u' contains NaN"),
    ("polydiff", {"f": with_nan((2, 3, 8))}, "'f' contains NaN"),
    ("polydiff", {"t": np.array([0.0, np.nan, 1.0])}, "'t' must be finite"),
    ("polydiff", {"x": np.zeros(5)}, "'x' has shape"),
]


@pytest.mark.parametrize(("layout", "changes", "message"), BAD_FILES)
def test_bad_files_raise_input_error_naming_the_file_and_key(tmp_path, layout, changes, message):
    path = tmp_path / "bad.h5"
    if layout == "pdebench":
        pdebench_file(path, **changes)
        reader = read_pdebench
    else:
        polydiff_file(path, **changes)
        reader = read_dataset
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: {message}"):
        reader(path)


@pytest.mark.parametrize("reader", [read_dataset, read_pdebench])
def test_missing_or_non_hdf5_files_are_refused(tmp_path, reader):
    with pytest.raises(InputError, match="no such file"):
        reader(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        reader(tmp_path / "text.h5")


def test_missing_attribute_and_bad_generator_options(tmp_path):
    data = generate_advection(2, nx=8, nt=3)
    path = write_h5(tmp_path / "noattrs.h5", {"u": data.u, "x": data.x, "t": data.t})
    with pytest.raises(InputError, match="missing attribute 'dt'"):
        read_dataset(path)
    with pytest.raises(InputError, match=r"^n:"):
        generate_burgers(0, SMALL)
    with pytest.raises(InputError, match=r"^boundary:"):
        generate_burgers(1, BurgersConfig(nx=8, nt=3, boundary="open"))
