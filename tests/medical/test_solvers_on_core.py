"""DDS and DPS on the core driver: the same numbers as their own loops had, to the bit.

The reference loops below are the two samplers as they were written before they moved onto
``polydiff.core.sample`` (the pre-move code, step for step); a fixed seed must give the same
volume. The step hooks alone are checked against the core's own DDIM / DDPM solvers.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import assert_close

from polydiff.core.paths import VPLinear
from polydiff.core.sample import sample
from polydiff.core.testing import GaussianMixture
from polydiff.medical.data import phantom_slices, shepp_logan_3d
from polydiff.medical.operators import CartesianMRI, ParallelBeamCT, make_mask
from polydiff.medical.solvers import ADMMTVz, SlicePrior, dds, dps
from polydiff.medical.solvers.common import final_consistency, operator_norm2
from polydiff.medical.solvers.dds import DecomposedStep
from polydiff.medical.solvers.dps import AncestralStep

PATH = VPLinear()
N = 12


@pytest.fixture(scope="module")
def gmm() -> GaussianMixture:
    slices = phantom_slices(24, N, seed=100).double().reshape(-1, N * N)
    cov = torch.cov(slices.T) + 1e-4 * torch.eye(N * N)
    return GaussianMixture(slices.mean(0)[None], cov[None])


def slice_prior(gmm: GaussianMixture) -> SlicePrior:
    f = gmm.model(PATH, "eps")
    return SlicePrior(lambda x, t: f(x.reshape(x.shape[0], -1), t).reshape(x.shape), PATH)


def problem(modality: str) -> tuple:
    x = shepp_logan_3d(N, seed=3)[:6]
    if modality == "ct":
        op = ParallelBeamCT(N, n_views=4, cache=False)
    else:
        op = CartesianMRI(make_mask("uniform1d", (N, N), acceleration=4))
    return op, op.measure(x, 0.01, generator=torch.Generator().manual_seed(5))


def _normal(shape: tuple, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=like.dtype).to(like.device)


def _coef(c: torch.Tensor) -> torch.Tensor:
    """A time coefficient as the samplers broadcast it against a (D, H, W) volume."""
    return c.float().reshape(1, 1, 1)


def reference_dds(prior, op, y, steps, eta, clip, gamma, persistent, grid, final_cg, g):
    """DDS's own loop (Chung et al. 2024, Algorithm 3) with the solver's default scales."""
    shape, path, norm2 = (y.shape[0], *op.in_shape), prior.path, operator_norm2(op)
    weight = 0.0 if gamma is None else norm2 / gamma
    dc = ADMMTVz(op, y, shape, 1.6e-4 * norm2, 1.6e-2 * norm2, 5, weight, persistent)
    ts = prior.grid(steps, grid)
    x = _normal(shape, g, dc.aty) * path.sigma(ts[0]).float()
    for t, t_next in itertools.pairwise(ts):
        eps = prior.eps(x, t)
        x0 = (x - _coef(path.sigma(t)) * eps) / _coef(path.alpha(t))
        x0 = dc(x0 if clip is None else x0.clamp(*clip))
        xi = _normal(x.shape, g, x)
        a_n, s_n = _coef(path.alpha(t_next)), _coef(path.sigma(t_next))
        x = a_n * x0 + s_n * (eta * xi + (1 - eta**2) ** 0.5 * eps)
    return final_consistency(op, dc.aty, x0, final_cg, weight, clip)


def reference_dps(prior, op, y, steps, zeta, clip, g):
    """DPS's own loop (Chung et al. 2023, Algorithm 1) with the volume-normalised step."""
    path, step = prior.path, zeta / operator_norm2(op) ** 0.5
    ts = prior.grid(steps)
    like = torch.empty((), dtype=torch.float32)
    x = _normal((y.shape[0], *op.in_shape), g, like) * path.sigma(ts[0]).float()
    for t, t_next in itertools.pairwise(ts):
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            x0 = (x_ - _coef(path.sigma(t)) * prior.eps(x_, t)) / _coef(path.alpha(t))
            residual = (y - op.forward(x0)).abs().square().sum().sqrt() * y.shape[0] ** 0.5
            (grad,) = torch.autograd.grad(residual, x_)
        x0 = x0.detach()
        mean, std = path.posterior(x, x0 if clip is None else x0.clamp(*clip), t, t_next)
        x = (mean + std * _normal(x.shape, g, x)).to(x.dtype) - step * grad
    return x0


@pytest.mark.parametrize("modality", ["ct", "mri"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 6},
        {"steps": 5, "eta": 0.5, "clip": None, "gamma": 1.0, "persistent_split": False},
        {"steps": 4, "grid": "uniform", "final_cg": 0},
    ],
    ids=["default", "noisy-restarted", "uniform"],
)
def test_dds_on_the_driver_gives_its_own_loops_volume_to_the_bit(gmm, modality, kwargs):
    op, y = problem(modality)
    prior = slice_prior(gmm)
    rec = dds(prior, op, y, generator=torch.Generator().manual_seed(0), **kwargs)
    options = {"eta": 0.85, "clip": (0.0, 1.0), "gamma": None, "persistent_split": True}
    options |= {"grid": "logsnr", "final_cg": 20} | kwargs
    want = reference_dds(
        prior, op, y, options["steps"], options["eta"], options["clip"], options["gamma"],
        options["persistent_split"], options["grid"], options["final_cg"],
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert rec.nfe == kwargs["steps"]
    assert torch.equal(rec.x, want), float((rec.x - want).abs().max())


@pytest.mark.parametrize("modality", ["ct", "mri"])
@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_dps_on_the_driver_gives_its_own_loops_volume_to_the_bit(gmm, modality, clip):
    op, y = problem(modality)
    prior = slice_prior(gmm)
    rec = dps(
        prior, op, y, steps=5, zeta=4.0, clip=clip, generator=torch.Generator().manual_seed(0)
    )
    want = reference_dps(prior, op, y, 5, 4.0, clip, torch.Generator().manual_seed(0))
    assert rec.nfe == 5
    assert torch.equal(rec.x, want), float((rec.x - want).abs().max())


def _exact_run(gmm: GaussianMixture, solver: str, hooks: list) -> torch.Tensor:
    f = gmm.model(PATH, "eps")
    x = PATH.prior_sample((4, N * N), generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    return sample(f, x, path=PATH, solver=solver, steps=8, grid="uniform", hooks=hooks, generator=g)


def test_ancestral_step_is_the_drivers_ddpm_step(gmm):
    """On the deterministic DDIM solver, the hook takes DDPM's step: the "ddpm" solver's
    sample from the same noise, up to the rounding of its other arrangement."""
    ddpm = _exact_run(gmm, "ddpm", [])
    hooked = _exact_run(gmm, "ddim", [AncestralStep(None)])
    assert not torch.equal(hooked, _exact_run(gmm, "ddim", []))
    assert_close(hooked, ddpm, rtol=1e-5, atol=1e-5)


def test_decomposed_step_without_correction_or_noise_is_ddim(gmm):
    step = DecomposedStep(lambda x0: x0, eta=0.0, clip=None)
    assert_close(_exact_run(gmm, "ddim", [step]), _exact_run(gmm, "ddim", []), 1e-5, 1e-5)
    clamped = DecomposedStep(lambda x0: x0, eta=0.0, clip=(0.0, 0.5))
    _exact_run(gmm, "ddim", [clamped])
    assert float(clamped.x0.max()) <= 0.5 and float(clamped.x0.min()) >= 0.0
