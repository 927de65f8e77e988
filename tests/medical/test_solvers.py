"""Diffusion reconstruction solvers against ground truth.

With a Gaussian prior on the slices (exact score from polydiff.core.testing), a linear CT
operator and Gaussian noise, the posterior is Gaussian in closed form. Each slice of the test
volume repeats one of two measurements, so the average over the repeats of a solver's
reconstructions estimates what it converges to; it must land near the closed-form posterior mean.
Then: on a tiny Shepp-Logan volume with a Gaussian prior fitted to phantom slices, every solver
beats the back-projection start.
"""

from __future__ import annotations

import pytest
import torch

from polydiff.core.paths import VPLinear
from polydiff.core.testing import GaussianMixture
from polydiff.medical.baselines import back_projection, cg_least_squares, tv_admm
from polydiff.medical.data import phantom_slices, shepp_logan_3d
from polydiff.medical.metrics import psnr
from polydiff.medical.operators import (
    CartesianMRI,
    LimitedAngleCT,
    LinearOperator,
    ParallelBeamCT,
    make_mask,
    make_operator,
)
from polydiff.medical.operators.difference import FiniteDifference
from polydiff.medical.solvers import (
    ADMMTVz,
    SlicePrior,
    dds,
    diffusion_mbir,
    dps,
    modality,
    operator_norm2,
    red_diff,
    validated_params,
)
from polydiff.medical.solvers.validated import VALIDATED

PATH = VPLinear()


def slice_model(gmm: GaussianMixture, kind: str = "eps"):
    """The exact prediction of a Gaussian mixture on flattened slices, as a 2D ``model_fn``."""
    f = gmm.model(PATH, kind)
    return lambda x, t: f(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def dense_matrix(op, n: int) -> torch.Tensor:
    return op.forward(torch.eye(n * n).reshape(-1, n, n)).reshape(n * n, -1).T.double()


class GaussianProblem:
    """8x8 slices ~ N(0.5, S) with a squared-exponential S; 3-view CT, noise std 0.05."""

    n, repeats, sigma_y = 8, 16, 0.05

    def __init__(self) -> None:
        n = self.n
        ij = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1)
        ij = ij.reshape(-1, 2).double()
        cov = 0.25 * torch.exp(-((ij[:, None] - ij[None]) ** 2).sum(-1) / 8.0)
        cov = cov + 1e-3 * torch.eye(n * n)
        mean = torch.full((n * n,), 0.5, dtype=torch.float64)
        self.gmm = GaussianMixture(mean[None], cov[None])
        self.op = ParallelBeamCT(n, n_views=3, cache=False)
        g = torch.Generator().manual_seed(1)
        x_true = self.gmm.sample(2, generator=g).float().reshape(2, n, n)
        y2 = self.op.measure(x_true, self.sigma_y, generator=g)
        self.y = y2.repeat_interleave(self.repeats, 0)  # (32, 3, n_det)
        a = dense_matrix(self.op, n)
        gain = cov @ a.T @ torch.linalg.inv(a @ cov @ a.T + self.sigma_y**2 * torch.eye(a.shape[0]))
        yv = y2.reshape(2, -1).double()
        self.posterior_mean = (mean + (yv - mean @ a.T) @ gain.T).reshape(2, n, n)

    def error(self, x: torch.Tensor) -> float:
        """Relative error of the per-measurement average of ``x`` to the posterior mean."""
        avg = x.double().reshape(2, self.repeats, self.n, self.n).mean(1)
        return float((avg - self.posterior_mean).norm() / self.posterior_mean.norm())

    def prior(self) -> SlicePrior:
        return SlicePrior(slice_model(self.gmm), PATH)


@pytest.fixture(scope="module")
def gaussian():
    return GaussianProblem()


@pytest.mark.parametrize(
    ("solver", "kwargs", "nfe"),
    [
        (dds, {"steps": 30, "lam": 0.0, "clip": None}, 30),
        (dds, {"steps": 30, "lam": 0.0, "gamma": 1.0, "op_norm2": 1.0, "clip": None}, 30),
        (dps, {"steps": 100, "zeta": 0.3, "op_norm2": 1.0, "clip": None}, 100),
        (red_diff, {"steps": 100, "lam": 1.0, "lr": 0.1, "op_norm2": 1.0}, 100),
        (diffusion_mbir, {"steps": 60, "lam": 0.0, "rho": 1.0, "clip": None}, 120),
    ],
    ids=["dds", "dds-noisy", "dps", "red-diff", "diffusion-mbir"],
)
def test_reconstruction_moves_to_the_closed_form_posterior_mean(gaussian, solver, kwargs, nfe):
    start = gaussian.error(back_projection(gaussian.op, gaussian.y))
    rec = solver(gaussian.prior(), gaussian.op, gaussian.y, generator=_gen(), **kwargs)
    assert rec.x.shape == (32, 8, 8) and rec.x.dtype == torch.float32
    assert rec.nfe == nfe
    assert start > 0.4
    assert gaussian.error(rec.x) < 0.3 * start


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def phantom():
    n = 16
    slices = phantom_slices(24, n, seed=100).double().reshape(-1, n * n)
    cov = torch.cov(slices.T) + 1e-4 * torch.eye(n * n)
    gmm = GaussianMixture(slices.mean(0)[None], cov[None])
    return gmm, shepp_logan_3d(n, seed=3)


@pytest.mark.parametrize(
    ("solver", "kwargs", "gain_db"),
    [
        (dds, {"steps": 20}, 4.0),
        (dds, {"steps": 20, "clip": (0.0, 1.0)}, 4.0),
        (dps, {"steps": 100, "zeta": 0.75}, 1.0),
        (red_diff, {"steps": 50, "lam": 1.0, "lr": 0.1, "op_norm2": 1.0}, 3.0),
        (
            diffusion_mbir,
            {"steps": 100, "rho": 1.0, "lam": 0.04, "corrector_steps": 0, "op_norm2": 1.0},
            1.0,
        ),
    ],
    ids=["dds", "dds-clip", "dps", "red-diff", "diffusion-mbir"],
)
def test_improves_on_back_projection_of_a_tiny_phantom(phantom, solver, kwargs, gain_db):
    gmm, gt = phantom
    op = ParallelBeamCT(16, n_views=8, cache=False)
    y = op.forward(gt)
    prior = SlicePrior(slice_model(gmm), PATH)
    rec = solver(prior, op, y, generator=_gen(), **kwargs)
    assert float(psnr(rec.x, gt)) > float(psnr(back_projection(op, y), gt)) + gain_db


@pytest.mark.parametrize(
    ("solver", "kwargs"),
    [(dds, {}), (red_diff, {"lam": 0.25, "lr": 0.05}), (dps, {"zeta": 2.5})],
    ids=["dds", "red-diff", "dps"],
)
def test_mri_improves_on_zero_filling(phantom, solver, kwargs):
    # DPS with its defaults: a residual norm per slice (not over the volume) made the nearly
    # empty end slices' pushes pure noise and diverged on MRI (-18 dB in the benchmark)
    gmm, gt = phantom
    op = CartesianMRI(make_mask("uniform1d", (16, 16), acceleration=4))
    y = op.forward(gt)
    prior = SlicePrior(slice_model(gmm), PATH)
    rec = solver(prior, op, y, steps=20, generator=_gen(), **kwargs)
    assert float(psnr(rec.x, gt)) > float(psnr(back_projection(op, y), gt)) + 0.5


@pytest.mark.parametrize("n_cg", [1, 5])
def test_diffusion_mbir_with_several_cg_steps_improves_on_zero_filling_on_mri(phantom, n_cg):
    # 5 CG steps per step with the persistent TV split froze the first steps' noise in the
    # null space of the mask: 3.5 dB on the benchmark's MRI x4, here 3.4 dB (zero-filled 17.7;
    # restarted split: 18.9 / 19.4 dB with 1 / 5 CG steps)
    gmm, gt = phantom
    op = CartesianMRI(make_mask("uniform1d", (16, 16), acceleration=4))
    y = op.forward(gt)
    prior = SlicePrior(slice_model(gmm), PATH)
    kw = {"steps": 100, "corrector_steps": 0, "n_cg": n_cg, "rho": 1.6e-3, "lam": 1.6e-5}
    rec = diffusion_mbir(prior, op, y, generator=_gen(), **kw)
    assert float(psnr(rec.x, gt)) > float(psnr(back_projection(op, y), gt)) + 1.0


def test_dds_with_a_restarted_split_beats_the_kept_one_on_mri(phantom):
    # the kept split restores the first, blurry estimates' z-differences in the unsampled
    # k-space at every step (benchmark, MRI x4, 100 steps: 22.5 vs 36.0 dB); here 20.1 vs 21.1
    gmm, gt = phantom
    op = CartesianMRI(make_mask("uniform1d", (16, 16), acceleration=4))
    y = op.forward(gt)
    prior = SlicePrior(slice_model(gmm), PATH)
    kept = dds(prior, op, y, steps=50, generator=_gen())
    restarted = dds(prior, op, y, steps=50, persistent_split=False, generator=_gen())
    assert float(psnr(restarted.x, gt)) > float(psnr(kept.x, gt)) + 0.5


def test_dds_ends_on_the_data_and_not_below_plain_cg(phantom):
    # 5 CG steps per DDS step left the last iterate 5% off limited-angle data (4% in the
    # benchmark), where DDS then ended below plain CG; the final CG steps fix both
    gmm, gt = phantom
    op = LimitedAngleCT(16, angle_range_deg=90, n_views=30, cache=False)
    y = op.forward(gt)
    x_cg = cg_least_squares(op, y, n_iter=30)

    def residual(x: torch.Tensor) -> float:
        return float((op.forward(x) - y).norm() / y.norm())

    prior = SlicePrior(slice_model(gmm), PATH)
    rec = dds(prior, op, y, steps=10, generator=_gen())
    assert float(psnr(rec.x, gt)) >= float(psnr(x_cg, gt))
    assert 0.0 <= float(rec.x.min()) and float(rec.x.max()) <= 1.0  # the final clamp
    unclamped = dds(prior, op, y, steps=10, clip=None, generator=_gen())
    assert residual(unclamped.x) < 2 * residual(x_cg)
    mbir = diffusion_mbir(prior, op, y, steps=30, corrector_steps=0, clip=None, generator=_gen())
    assert residual(mbir.x) < 0.05  # 0.31 without the final CG steps


def test_dds_warm_start_begins_at_the_forward_process_of_its_start():
    """start + t_start (CCDF): the first network input is alpha(T) start + sigma(T) xi at
    T = t_start, with xi the generator's first draw, and the steps stay in [0, t_start]."""
    calls = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((x.reshape(-1, 8, 8).clone(), t.clone()))
        return torch.zeros_like(x)

    op = ParallelBeamCT(8, n_views=4, cache=False)
    start = torch.rand(3, 8, 8)
    dds(SlicePrior(model, PATH), op, op.forward(start), steps=3, start=start, t_start=0.3,
        generator=_gen())  # fmt: skip
    t = torch.tensor(0.3, dtype=torch.float64)
    xi = torch.randn(3, 8, 8, generator=_gen())
    want = xi * PATH.sigma(t).float() + PATH.alpha(t).float() * start
    torch.testing.assert_close(calls[0][0], want)
    assert len(calls) == 3
    assert float(calls[0][1].max()) == pytest.approx(0.3)
    assert all(float(c[1].max()) < 0.3 for c in calls[1:])


def test_dds_warm_start_keeps_what_its_start_knows(phantom):
    """Started near the truth at a low noise level, DDS ends closer to it than from noise
    with the same 4 steps (the start is used, not overwritten; 23.3 vs 20.8 dB here)."""
    gmm, gt = phantom
    op = ParallelBeamCT(16, n_views=4, cache=False)
    y = op.forward(gt)
    prior = SlicePrior(slice_model(gmm), PATH)
    cold = dds(prior, op, y, steps=4, generator=_gen())
    warm = dds(prior, op, y, steps=4, start=gt, t_start=0.1, generator=_gen())
    assert float(psnr(warm.x, gt)) > float(psnr(cold.x, gt)) + 1.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_start": 0.5},
        {"t_start": 0.0, "start": "gt"},
        {"t_start": 1.5, "start": "gt"},
        {"t_start": 0.5, "start": "wrong"},
    ],
    ids=["no-start", "zero", "above-1", "wrong-shape"],
)
def test_dds_refuses_a_bad_warm_start(kwargs):
    op = ParallelBeamCT(8, n_views=4, cache=False)
    gt = torch.rand(3, 8, 8)
    starts = {"gt": gt, "wrong": torch.rand(2, 8, 8)}
    kwargs = {k: starts.get(v, v) if k == "start" else v for k, v in kwargs.items()}
    prior = SlicePrior(lambda x, t: torch.zeros_like(x), PATH)
    with pytest.raises(ValueError, match="start"):
        dds(prior, op, op.forward(gt), steps=2, generator=_gen(), **kwargs)


def test_admm_step_is_the_tv_z_admm_baseline():
    """Repeated ADMMTVz calls are tv_admm with TV along z (same splitting, same CG)."""
    torch.manual_seed(0)
    op = ParallelBeamCT(8, n_views=4, cache=False)
    gt = torch.rand(6, 8, 8)
    y = op.forward(gt)
    x0 = torch.rand(6, 8, 8)
    want = tv_admm(op, y, x0, lam=0.05, rho=2.0, n_iter=7, n_cg=3, axes=(0,), circular=True)
    admm, x = ADMMTVz(op, y, (6, 8, 8), lam=0.05, rho=2.0, n_cg=3), x0
    admm.z = admm.dz.forward(x0)  # tv_admm starts the split at D x0 (DiffusionMBIR: at 0)
    for _ in range(7):
        x = admm(x)
    torch.testing.assert_close(x, want)


def test_restarted_split_forgets_earlier_calls():
    """persistent=False: every call is one ADMM iteration started at its input (z = soft(D_z x),
    u = 0), so a call does not depend on the iterates before it; the persistent split does."""
    torch.manual_seed(0)
    op = ParallelBeamCT(8, n_views=4, cache=False)
    y = op.forward(torch.rand(6, 8, 8))
    x, noisy = torch.rand(6, 8, 8), 100 * torch.randn(6, 8, 8)
    fresh = ADMMTVz(op, y, (6, 8, 8), lam=0.05, rho=2.0, n_cg=3, persistent=False)(x)
    for persistent in (False, True):
        admm = ADMMTVz(op, y, (6, 8, 8), lam=0.05, rho=2.0, n_cg=3, persistent=persistent)
        admm(noisy)  # an earlier, much noisier iterate
        same = torch.allclose(admm(x), fresh, atol=1e-5)
        assert same != persistent


def test_proximal_step_solves_the_regularised_normal_equations():
    """lam = 0, weight w: the x-update is (A^T A + w I)^-1 (A^T y + w anchor) (DDS, noisy)."""
    torch.manual_seed(0)
    n, w = 8, 0.7
    op = ParallelBeamCT(n, n_views=3, cache=False)
    y = op.forward(torch.rand(2, n, n))
    anchor = torch.rand(2, n, n, dtype=torch.float64)
    admm = ADMMTVz(op, y.double(), (2, n, n), lam=0.0, n_cg=200, weight=w)
    x = admm(torch.zeros_like(anchor), anchor)
    a = dense_matrix(op, n)
    rhs = y.double().reshape(2, -1) @ a + w * anchor.reshape(2, -1)
    want = torch.linalg.solve(a.T @ a + w * torch.eye(n * n, dtype=torch.float64), rhs.T).T
    torch.testing.assert_close(x.reshape(2, -1), want, rtol=1e-6, atol=1e-8)


def test_slice_prior_converts_predictions_chunks_and_counts(gaussian):
    x = torch.randn(5, 8, 8, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    eps = SlicePrior(slice_model(gaussian.gmm, "eps"), PATH)
    x0 = SlicePrior(slice_model(gaussian.gmm, "x0"), PATH, "x0", chunk=2)
    torch.testing.assert_close(x0.eps(x, t), eps.eps(x, t))
    assert x0.nfe == 1 and eps.nfe == 1  # one call over the volume, even in chunks of 2
    with pytest.raises(ValueError, match="D, H, W"):
        eps(x[0], t)
    with pytest.raises(ValueError, match="chunk"):
        SlicePrior(slice_model(gaussian.gmm), PATH, chunk=0)


@pytest.mark.parametrize("solver", [dds, dps, red_diff, diffusion_mbir])
def test_bad_measurements_are_rejected(gaussian, solver):
    with pytest.raises(ValueError, match="measurements y have shape"):
        solver(gaussian.prior(), gaussian.op, gaussian.y[..., :-1], steps=2)


def test_bad_parameters_are_rejected(gaussian):
    p, op, y = gaussian.prior(), gaussian.op, gaussian.y
    with pytest.raises(ValueError, match="eta"):
        dds(p, op, y, eta=1.5)
    for solver in (dds, dps, diffusion_mbir):
        with pytest.raises(ValueError, match="clip"):
            solver(p, op, y, clip=(1.0, 0.0))
    for solver in (dds, diffusion_mbir):
        with pytest.raises(ValueError, match="final_cg"):
            solver(p, op, y, final_cg=-1)
    with pytest.raises(ValueError, match="gamma"):
        dds(p, op, y, gamma=0.0)
    with pytest.raises(ValueError, match="zeta"):
        dps(p, op, y, zeta=-1.0)
    with pytest.raises(ValueError, match="x_init"):
        red_diff(p, op, y, x_init=torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="rho"):
        diffusion_mbir(p, op, y, rho=0.0)
    for solver in (dds, dps):
        with pytest.raises(ValueError, match="steps"):
            solver(p, op, y, steps=0)


def test_relative_admm_step_scales_its_parameters_by_the_operator_norm(gaussian):
    op, y = gaussian.op, gaussian.y
    step = ADMMTVz.relative(op, y, lam=0.5, rho=2.0, n_cg=3, gamma=4.0, op_norm2=8.0)
    assert (step.lam, step.rho, step.weight, step.n_cg) == (4.0, 16.0, 2.0, 3)
    assert step.shape == (32, 8, 8) and step.persistent
    hard = ADMMTVz.relative(op, y, lam=0.5, rho=2.0, n_cg=3, persistent=False)
    assert hard.weight == 0.0 and not hard.persistent
    assert hard.rho == pytest.approx(2.0 * operator_norm2(op))


class Scaled(LinearOperator):
    """``c A``: the same measurements in other units (e.g. another pixel size)."""

    def __init__(self, op: LinearOperator, c: float) -> None:
        self.op, self.c = op, c
        self.in_shape, self.out_shape = op.in_shape, op.out_shape

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * self.op.forward(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.c * self.op.adjoint(y)


def test_operator_norm_is_the_largest_eigenvalue_of_the_gram_matrix():
    op = ParallelBeamCT(8, n_views=4, cache=False)
    a = dense_matrix(op, 8)
    want = float(torch.linalg.eigvalsh(a.T @ a).max())
    assert abs(operator_norm2(op) - want) < 1e-3 * want
    mri = CartesianMRI(make_mask("uniform1d", (8, 8), acceleration=2))
    assert abs(operator_norm2(mri) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("solver", "kwargs"),
    [
        (dds, {"steps": 6}),
        (dds, {"steps": 6, "gamma": 3.0}),
        (dps, {"steps": 6, "zeta": 1.0}),
        (red_diff, {"steps": 6, "lam": 1.0}),
        (diffusion_mbir, {"steps": 6, "corrector_steps": 0}),
    ],
    ids=["dds", "dds-noisy", "dps", "red-diff", "diffusion-mbir"],
)
def test_relative_parameters_make_solvers_invariant_to_the_operator_scale(phantom, solver, kwargs):
    """Measuring in other units (A -> 4 A, y -> 4 y) gives the same reconstruction when the
    parameters are relative to ||A||^2 (the default), and a different one in absolute units."""
    gmm, gt = phantom
    op = ParallelBeamCT(16, n_views=8, cache=False)
    y = op.forward(gt)
    prior = SlicePrior(slice_model(gmm), PATH)

    def rec(o, yy, **extra):
        return solver(prior, o, yy, generator=_gen(), **kwargs, **extra).x

    base = rec(op, y)
    scaled = rec(Scaled(op, 4.0), 4.0 * y)
    assert torch.allclose(scaled, base, atol=1e-4, rtol=1e-4)
    absolute = rec(Scaled(op, 4.0), 4.0 * y, op_norm2=operator_norm2(op))
    assert (absolute - base).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("kind", "kwargs", "expected"),
    [
        ("parallel", {"n_views": 8}, "sparse_view"),
        ("fan", {"n_views": 8}, "sparse_view"),
        ("rotate_sum", {"n_views": 8}, "sparse_view"),
        ("limited_angle", {"n_views": 6, "angle_range_deg": 90}, "limited_angle"),
        ("mri", {"acceleration": 4}, "mri"),
    ],
)
def test_validated_parameters_follow_the_operators_modality(kind, kwargs, expected):
    op = make_operator(kind, 16, **kwargs)
    assert modality(op) == expected
    assert validated_params("tv_admm", op) == VALIDATED[expected]["tv_admm"]
    assert validated_params("dps", op)["zeta"] == VALIDATED[expected]["dps"]["zeta"]
    noisy = validated_params("dds", op, noisy=True)
    assert noisy["gamma"] == VALIDATED[expected]["dds_noisy"]["gamma"]
    assert "gamma" not in validated_params("dds", op)  # noiseless: hard consistency
    assert validated_params("dds", op)["persistent_split"] == (expected != "mri")
    validated_params("tv_admm", op)["lam"] = -1.0  # a copy: the table is unchanged
    assert VALIDATED[expected]["tv_admm"]["lam"] > 0


def test_validated_parameters_differ_between_ct_and_mri_and_reject_unknowns():
    # picked on the validation phantom: MRI wants a 4x larger DPS step than CT
    assert (
        validated_params("dps", "mri")["zeta"] == 4 * validated_params("dps", "sparse_view")["zeta"]
    )
    with pytest.raises(ValueError, match="no validated parameters for FiniteDifference"):
        modality(FiniteDifference((2, 4, 4), axes=(0,)))
    with pytest.raises(ValueError, match="modality 'pet'"):
        validated_params("dds", "pet")
    with pytest.raises(ValueError, match="method 'fbp'"):
        validated_params("fbp", "mri")
