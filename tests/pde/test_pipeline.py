"""The whole-dataset jobs behind the pde verbs: any file format, fitting checks, prediction."""

import h5py
import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.pde.control import optimize_control
from polydiff.pde.data import BurgersConfig, generate_burgers, write_dataset
from polydiff.pde.fno import FNO, FNOConfig
from polydiff.pde.metrics import relative_l2
from polydiff.pde.pipeline import (
    check_fits,
    control,
    control_problem,
    predict,
    predict_on_grid,
    read_trajectories,
    score,
    simulate_coarse,
    subset,
)
from polydiff.pde.solvers import resample_grid
from polydiff.pde.wdno import WDNO, WDNOConfig


def test_read_trajectories_takes_either_layout(tmp_path):
    data = generate_burgers(3, BurgersConfig(nx=16, nt=5, t_end=0.5), seed=0)
    ours = read_trajectories(write_dataset(tmp_path / "ours.h5", data))
    assert np.array_equal(ours.u, data.u) and np.array_equal(ours.f, data.f)
    with h5py.File(tmp_path / "bench.h5", "w") as h5:
        h5["tensor"], h5["x-coordinate"] = data.u, data.x
        h5["t-coordinate"] = np.append(data.t, 0.625)  # PDEBench stores nt + 1 cell edges
    bench = read_trajectories(tmp_path / "bench.h5")
    assert np.array_equal(bench.u, data.u) and np.array_equal(bench.t, data.t) and bench.f is None


def test_predict_scores_and_refuses_other_grids():
    data = generate_burgers(5, BurgersConfig(nx=16, nt=4, t_end=0.5), seed=1)
    fno = FNO(FNOConfig(nx=16, nt=4, modes=4, width=8, layers=1))
    pred = predict(fno, data.u[:, 0], data.f, batch_size=2)  # three batches
    expected = fno.sample(torch.as_tensor(data.u[:, 0]), torch.as_tensor(data.f))
    np.testing.assert_allclose(pred, expected.numpy(), atol=1e-6)
    head = subset(data, 3)
    exact = score(head, data, "pred.h5")
    assert exact["relative_l2"] == 0 and exact["n"] == 3
    with pytest.raises(InputError, match=r"pred\.h5: predictions of shape"):
        score(data, head, "pred.h5")  # more predictions than true trajectories
    with pytest.raises(InputError, match=r"d\.h5: trajectories of nt x nx = 4 x 16"):
        check_fits(FNO(FNOConfig(nx=32, nt=4, modes=4)), data, "d.h5")


def test_coarse_solver_reproduces_the_data_on_its_grid_and_degrades_when_coarser():
    data = generate_burgers(6, BurgersConfig(nx=32, nt=5, t_end=0.5), seed=2)
    problem = control_problem(data)
    same = simulate_coarse(data.u[:, 0], data.f, problem, 32)
    np.testing.assert_allclose(same, data.u, atol=1e-5)
    truth = torch.as_tensor(data.u)
    errors = [
        relative_l2(torch.as_tensor(simulate_coarse(data.u[:, 0], data.f, problem, nx)), truth, 1)
        for nx in (8, 16)
    ]
    assert errors[0] > errors[1] > 1e-3
    with pytest.raises(InputError, match=r"^nx must be >= 2"):
        simulate_coarse(data.u[:, 0], data.f, problem, 1)


def test_predict_on_a_finer_grid():
    """The FNO rolls out on any grid (with zero weights it holds u0 exactly at 40 points); a
    WDNO predicts on its own grid between two interpolations, u0 kept exactly."""
    fine = generate_burgers(3, BurgersConfig(nx=40, nt=4, t_end=0.5), seed=1)
    fno = FNO(FNOConfig(nx=16, nt=4, modes=4, width=8, layers=1))
    for p in fno.net.parameters():
        p.data.zero_()
    held = predict_on_grid(fno, fine.u[:, 0], fine.f)
    np.testing.assert_allclose(held, np.repeat(fine.u[:, :1], 4, 1), atol=1e-6)
    with pytest.raises(InputError, match=r"^modes: 4 modes need nx >= 6"):
        predict_on_grid(fno, fine.u[:, 0, :4], fine.f[..., :4])
    torch.manual_seed(0)
    wdno = WDNO(WDNOConfig(nx=16, nt=4, channels=8, channel_mult=(1,)))
    pred = predict_on_grid(wdno, fine.u[:, 0], fine.f, steps=2, seed=3)
    assert pred.shape == fine.u.shape and np.array_equal(pred[:, 0], fine.u[:, 0])
    coarse = predict(
        wdno, resample_grid(torch.as_tensor(fine.u[:, 0]), 16),
        resample_grid(torch.as_tensor(fine.f), 16), steps=2, seed=3,
    )  # fmt: skip
    back = resample_grid(torch.as_tensor(coarse), 40).numpy()
    np.testing.assert_allclose(pred[:, 1:], back[:, 1:], atol=1e-6)


def test_a_control_sample_refined_by_gradient_steps_starts_the_gradient_method():
    """refine_steps: the sampled forcing is the starting point of the Adam baseline (the same
    forcing as optimize_control from it), and the steps lower J."""
    data = generate_burgers(3, BurgersConfig(nx=16, nt=4, t_end=0.5), seed=4)
    problem = control_problem(data, energy_weight=1e-3)
    torch.manual_seed(0)
    wdno = WDNO(WDNOConfig(nx=16, nt=4, channels=8, channel_mult=(1,), task="control"))
    wdno.fit_scale(torch.as_tensor(data.u), torch.as_tensor(data.f))
    u0, target = data.u[:, 0], data.u[:, -1]
    options = {"model": wdno, "guidance": 0.0, "steps": 2, "seed": 5}
    raw = control("wdno", u0, target, problem, 4, **options)
    refined = control("wdno", u0, target, problem, 4, **options, refine_steps=8, lr=0.05)
    start = torch.as_tensor(raw["f"]).double()
    u0_, target_ = torch.as_tensor(u0).double(), torch.as_tensor(target).double()
    expected, _ = optimize_control(u0_, target_, 4, problem, steps=8, lr=0.05, f_init=start)
    np.testing.assert_allclose(refined["f"], expected.float().numpy(), atol=1e-6)
    assert refined["J"].mean() < 0.5 * raw["J"].mean()
    with pytest.raises(InputError, match=r"^refine_steps"):
        control("wdno", u0, target, problem, 4, **options, refine_steps=-1)
