"""What the ``polydiff pde`` verbs call: one function per job on whole datasets (read any
trajectory file, check that a model fits it, predict, measure a model's loss, produce and judge
control forcings, score predictions)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from polydiff.core import Method
from polydiff.core.errors import InputError, check_number
from polydiff.core.io import read_json
from polydiff.pde.control import ControlProblem, control_objective, optimize_control
from polydiff.pde.data import BurgersConfig, PDEData, read_dataset, read_pdebench
from polydiff.pde.fno import FNO
from polydiff.pde.metrics import trajectory_metrics
from polydiff.pde.solvers import resample_grid
from polydiff.pde.wdno import WDNO

SHIPPED = Path(__file__).parent / "checkpoints"
GUIDE_BY = ("model", "solver")


def shipped_model(name: str = "burgers-wdno-64") -> tuple[Path, BurgersConfig]:
    """The folder of a model shipped with polydiff-pde and the ``BurgersConfig`` of the data it
    was trained on (its ``data.json``; the README says how it was trained and what it scores)."""
    folder = SHIPPED / name
    if not (folder / "data.json").is_file():
        known = sorted(p.name for p in SHIPPED.glob("*/data.json"))
        raise InputError(f"model: no shipped model {name!r} (shipped: {known or 'none'})")
    return folder, BurgersConfig(**read_json(folder / "data.json")["config"])


def read_trajectories(path: str | os.PathLike) -> PDEData:
    """A dataset in the polydiff layout, or a PDEBench 1D file (recognised by its ``tensor``)."""
    if Path(path).is_file() and h5py.is_hdf5(path):
        with h5py.File(path, "r") as h5:
            if "tensor" in h5 and "u" not in h5:
                return read_pdebench(path)
    return read_dataset(path)


def check_fits(method: Method, data: PDEData, source: str) -> None:
    """An InputError naming ``source`` unless its trajectories have the model's nt x nx."""
    c = method.config
    nt, nx = data.u.shape[1:]
    if (nt, nx) != (c.nt, c.nx):
        raise InputError(
            f"{source}: trajectories of nt x nx = {nt} x {nx}, the model was trained on "
            f"{c.nt} x {c.nx}"
        )


def subset(data: PDEData, n: int | None) -> PDEData:
    """The first ``n`` trajectories (all with None)."""
    if n is None:
        return data
    check_number("n", n, minimum=1)
    f = None if data.f is None else data.f[:n]
    return PDEData(u=data.u[:n], x=data.x, t=data.t, f=f, attrs=dict(data.attrs))


def forcing_of(data: PDEData) -> np.ndarray:
    """The stored forcing, or zeros for unforced equations."""
    return np.zeros_like(data.u) if data.f is None else data.f


@torch.no_grad()
def predict(
    method: Method, u0, f, *, steps: int = 50, eta: float = 1.0, batch_size: int = 64, seed=0
) -> np.ndarray:
    """Trajectories [N, nt, nx] from initial states u0 [N, nx] under forcings f [N, nt, nx], in
    batches; WDNO samples with DDIM (``steps``, ``eta``, one generator seeded by ``seed``), the
    FNO rolls out deterministically."""
    check_number("steps", steps, minimum=1)
    check_number("batch_size", batch_size, minimum=1)
    u0, f = torch.as_tensor(np.asarray(u0)), torch.as_tensor(np.asarray(f))
    generator = torch.Generator().manual_seed(seed)
    diffusion = isinstance(method, WDNO)
    options = {"steps": steps, "eta": eta, "generator": generator} if diffusion else {}
    out = [
        method.sample(u0[lo : lo + batch_size], f[lo : lo + batch_size], **options).float()
        for lo in range(0, len(u0), batch_size)
    ]
    return torch.cat(out).numpy()


def predict_on_grid(method: Method, u0, f, boundary: str = "dirichlet", **options) -> np.ndarray:
    """``predict`` on the grid of u0 [N, n] and f [N, nt, n], whatever the model's nx: the FNO
    rolls out on it directly (resolution-free layers); a WDNO, whose coefficients are tied to
    its grid, predicts on its own nx from u0 and f moved there by ``resample_grid`` and its
    trajectory is interpolated back, u[:, 0] = u0 (WDNO's super-resolution model is not built:
    this is the interpolation baseline it would be judged against)."""
    u0, f = np.asarray(u0), np.asarray(f)
    nx = method.config.nx
    if isinstance(method, FNO) or u0.shape[-1] == nx:
        return predict(method, u0, f, **options)
    coarse = predict(
        method, resample_grid(torch.as_tensor(u0), nx, boundary),
        resample_grid(torch.as_tensor(f), nx, boundary), **options,
    )  # fmt: skip
    fine = resample_grid(torch.as_tensor(coarse), u0.shape[-1], boundary).numpy()
    fine[:, 0] = u0
    return fine


@torch.no_grad()
def model_loss(method: Method, data: PDEData, *, n: int = 256, repeats: int = 4, seed=0) -> float:
    """The training loss of ``method`` (as it is, e.g. the exported EMA weights) on the first
    ``n`` trajectories, averaged over ``repeats`` seeded draws of the diffusion times and noise:
    a number that a resumed or finished run reports the same."""
    u = torch.as_tensor(data.u[:n], dtype=torch.float32)
    batch = {"u": u, "f": torch.as_tensor(forcing_of(data)[:n], dtype=torch.float32)}
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        losses = [float(method.loss_fn(method.net, batch)) for _ in range(repeats)]
    finally:
        torch.random.set_rng_state(state)
    return float(np.mean(losses))


def simulate_coarse(u0, f, problem: ControlProblem, nx: int) -> np.ndarray:
    """The numerical baseline for simulation: ``solve_burgers`` (``problem``'s physics) on the
    coarser grid of ``nx`` points, from u0 [N, n] and f [N, nt, n] interpolated onto it
    (``resample_grid``), the trajectory interpolated back: [N, nt, n]."""
    check_number("nx", nx, minimum=2)
    u0, f = torch.as_tensor(np.asarray(u0)).double(), torch.as_tensor(np.asarray(f)).double()
    n = u0.shape[-1]
    coarse = problem.solve(
        resample_grid(u0, nx, problem.boundary), resample_grid(f, nx, problem.boundary)
    )
    return resample_grid(coarse, n, problem.boundary).float().numpy()


def control_problem(data: PDEData, energy_weight: float = 0.0) -> ControlProblem:
    """The Burgers control problem of a dataset: its nu, horizon and boundary."""
    if data.attrs.get("equation", "burgers") != "burgers" or "nu" not in data.attrs:
        raise InputError("data: control needs a Burgers dataset (attribute 'nu')")
    check_number("energy_weight", energy_weight, minimum=0)
    boundary = data.attrs.get("boundary", "dirichlet")
    return ControlProblem(float(data.t[-1]), float(data.attrs["nu"]), energy_weight, None, boundary)


def control(
    name: str, u0, target, problem: ControlProblem, nt: int, *, model: Method | None = None,
    guidance: float = 1.0, guide_by: str = "model", steps: int = 50, eta: float = 1.0,
    lr: float = 0.1, refine_steps: int = 0, seed: int = 0,
) -> dict:  # fmt: skip
    """Forcings [N, nt, nx] steering u0 [N, nx] to target [N, nx] by ``name``: "wdno" (a WDNO
    control model's guided sampling, ``steps`` DDIM steps; ``guide_by`` "model": J of the
    predicted final state, as in WDNO, or "solver": J of the solver's final state under the
    predicted forcing by ``problem.solve``, the solver that judges it; DDIM noise ``eta``; see
    ``WDNO.control_coefficients``; ``refine_steps`` > 0: then as many Adam steps of lr ``lr``
    through the solver from the sampled forcing, the sample as the gradient method's starting
    point) or "gradient" (``steps`` Adam steps of lr ``lr`` through the solver from no
    forcing); J by the true solver. Returns the forcing f, the true
    trajectory u under it, J [N] and the seconds the method took."""
    if guide_by not in GUIDE_BY:
        raise InputError(f"guide_by: expected one of {GUIDE_BY}, got {guide_by!r}")
    check_number("refine_steps", refine_steps, minimum=0)
    check_number("eta", eta, minimum=0)
    u0, target = torch.as_tensor(np.asarray(u0)).double(), torch.as_tensor(np.asarray(target))
    start = time.perf_counter()
    if name == "gradient":
        f, _ = optimize_control(u0, target.double(), nt, problem, steps=steps, lr=lr)
    elif name == "wdno":
        if model is None or getattr(model.config, "task", None) != "control":
            raise InputError("model: the wdno control method needs a WDNO trained for control")
        generator = torch.Generator().manual_seed(seed)
        solver = problem.solve if guide_by == "solver" else None
        _, f = model.control(
            u0.float(), target.float(), guidance=guidance, energy_weight=problem.energy_weight,
            solver=solver, steps=steps, eta=eta, generator=generator,
        )  # fmt: skip
        if refine_steps:
            f, _ = optimize_control(
                u0, target.double(), nt, problem, steps=refine_steps, lr=lr, f_init=f
            )
    else:
        raise InputError(f"methods: unknown control method {name!r} (wdno | gradient)")
    seconds = time.perf_counter() - start
    u = problem.solve(u0, f.double())
    j = control_objective(u[:, -1], target.double(), f.double(), problem.energy_weight)
    return {"f": f.float().numpy(), "u": u.float().numpy(), "J": j.numpy(), "seconds": seconds}


def score(pred: PDEData, truth: PDEData, source: str, from_time: int = 1) -> dict[str, float]:
    """``trajectory_metrics`` of predictions against the first as many true trajectories; an
    InputError naming ``source`` when the grids differ or there are more predictions."""
    n, nt, nx = pred.u.shape
    if (nt, nx) != truth.u.shape[1:] or n > len(truth.u):
        raise InputError(
            f"{source}: predictions of shape {pred.u.shape} do not fit the data of shape "
            f"{truth.u.shape} (same nt, nx and at most as many trajectories)"
        )
    if not 0 <= from_time < nt:
        raise InputError(f"from_time: expected 0 <= from_time < nt = {nt}, got {from_time}")
    metrics = trajectory_metrics(torch.as_tensor(pred.u), torch.as_tensor(truth.u[:n]), from_time)
    return {**metrics, "n": n}


__all__ = [
    "GUIDE_BY",
    "check_fits",
    "control",
    "control_problem",
    "forcing_of",
    "model_loss",
    "predict",
    "predict_on_grid",
    "read_trajectories",
    "score",
    "shipped_model",
    "simulate_coarse",
    "subset",
]
