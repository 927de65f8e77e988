"""Named reconstructions: the registry calls the baselines and solvers it names, with relative
penalties, validated values for null options and clear errors."""

from __future__ import annotations

import pytest
import torch

from polydiff.medical import baselines
from polydiff.medical.data import shepp_logan_3d
from polydiff.medical.operators import make_operator
from polydiff.medical.prior import PriorConfig, SlicePriorMethod
from polydiff.medical.reconstruction import list_reconstructions, reconstruct
from polydiff.medical.solvers import (
    dds,
    diffusion_mbir,
    dps,
    operator_norm2,
    red_diff,
    validated_params,
)

SIZE = 16
CLASSICAL = ["back_projection", "adjoint", "fbp", "cg", "tv_admm"]
DIFFUSION = ["dds", "dps", "red_diff", "diffusion_mbir"]


@pytest.fixture(scope="module")
def problem():
    op = make_operator("parallel", SIZE, n_views=6)
    return op, op.forward(shepp_logan_3d(SIZE, seed=4))


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    config = PriorConfig(
        image_size=SIZE, unet_overrides={"channels": 8, "channel_mult": (1, 2), "groups": 4}
    )
    return SlicePriorMethod(config).slice_prior()


def test_every_method_of_the_cli_and_the_benchmark_is_named():
    assert list_reconstructions() == CLASSICAL + DIFFUSION
    assert list_reconstructions(needs_prior=True) == DIFFUSION
    assert list_reconstructions(needs_prior=False) == CLASSICAL


def test_classical_methods_are_the_baselines(problem):
    op, y = problem
    same = torch.testing.assert_close
    same(reconstruct("back_projection", None, op, y).x, baselines.back_projection(op, y))
    same(reconstruct("adjoint", None, op, y).x, op.adjoint(y))
    same(reconstruct("fbp", None, op, y).x, baselines.fbp(op, y))
    rec = reconstruct("cg", None, op, y)
    assert rec.options == {"n_iter": 30} and rec.nfe == 0 and rec.seconds >= 0
    same(rec.x, baselines.cg_least_squares(op, y, n_iter=30), rtol=0, atol=0)
    rec = reconstruct("tv_admm", None, op, y, n_iter=3)
    norm2 = operator_norm2(op)
    assert rec.options == {"lam": 1e-4, "rho": 4e-3, "n_iter": 3, "n_cg": 5, "nonnegative": True}
    want = baselines.tv_admm(op, y, lam=1e-4 * norm2, rho=4e-3 * norm2, n_iter=3, nonnegative=True)
    same(rec.x, want, rtol=0, atol=0)


def test_null_options_take_the_modalitys_validated_values():
    mri = make_operator("mri", SIZE, mask="uniform1d", acceleration=4, seed=0)
    y = mri.forward(shepp_logan_3d(SIZE, seed=4))
    assert reconstruct("tv_admm", None, mri, y, n_iter=1).options["lam"] == 1.6e-3
    assert reconstruct("tv_admm", None, mri, y, n_iter=1, lam=0.01).options["lam"] == 0.01
    la = make_operator("limited_angle", SIZE, n_views=6)
    y = la.forward(shepp_logan_3d(SIZE, seed=4))
    assert reconstruct("tv_admm", None, la, y, n_iter=1).options["lam"] == 2.5e-5


@pytest.mark.parametrize(
    ("name", "solver", "options"),
    [
        ("dds", dds, {"steps": 2}),
        ("dps", dps, {"steps": 2, "zeta": 1.0}),
        ("red_diff", red_diff, {"steps": 2}),
        ("diffusion_mbir", diffusion_mbir, {"steps": 2, "corrector_steps": 0}),
    ],
)
def test_diffusion_methods_are_the_solvers(problem, prior, name, solver, options):
    op, y = problem
    rec = reconstruct(name, prior, op, y, generator=torch.Generator().manual_seed(3), **options)
    want = solver(prior, op, y, generator=torch.Generator().manual_seed(3), **options)
    assert rec.nfe == want.nfe and rec.options.items() >= options.items()
    filled = {k: v for k, v in rec.options.items() if k not in options}
    assert filled == {k: validated_params(name, op)[k] for k in filled}  # nulls: the picks
    torch.testing.assert_close(rec.x, want.x, rtol=0, atol=0)


def test_null_dps_step_and_lists_become_what_the_solver_takes(problem, prior):
    op, y = problem
    rec = reconstruct("dps", prior, op, y, steps=1, zeta=None, clip=[0, 1])
    assert rec.options == {"steps": 1, "zeta": 2.0, "clip": (0, 1)}  # sparse-view CT's pick


def test_a_start_named_by_method_is_that_reconstruction_then_the_warm_start(problem, prior):
    """start="tv_admm" (CCDF warm start) = TV-ADMM with start_options, then DDS from its volume
    at t_start: the same volume as the two calls made by hand; the options name the start."""
    op, y = problem
    tv = {"n_iter": 3}
    rec = reconstruct("dds", prior, op, y, steps=2, start="tv_admm", t_start=0.3,
                      start_options=tv, generator=torch.Generator().manual_seed(0))  # fmt: skip
    first = reconstruct("tv_admm", None, op, y, **tv)
    by_hand = reconstruct("dds", prior, op, y, steps=2, start=first.x, t_start=0.3,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(rec.x, by_hand.x, rtol=0, atol=0)
    assert rec.options["start"] == "tv_admm" and rec.options["t_start"] == 0.3 and rec.nfe == 2
    with pytest.raises(ValueError, match="unknown reconstruction 'magic'"):
        reconstruct("dds", prior, op, y, steps=2, start="magic", t_start=0.3)


def test_real_anatomy_takes_the_picks_made_on_a_real_head(problem, prior):
    """anatomy=True: TV-ADMM's smaller TV weight and DDS's warm start from it (20 CG steps,
    t_start 0.2) where the real-anatomy benchmark tuned them; start="noise" opts out of the
    warm start; limited-angle CT (not tuned on real data) keeps the phantom picks."""
    op, y = problem
    tv = reconstruct("tv_admm", None, op, y, n_iter=1, anatomy=True).options
    assert (tv["lam"], tv["rho"]) == (5e-5, 1.6e-2)
    assert validated_params("tv_admm", "mri", anatomy=True)["n_iter"] == 300
    assert validated_params("tv_admm", "limited_angle", anatomy=True) == validated_params(
        "tv_admm", "limited_angle"
    )
    seed = {"generator": torch.Generator().manual_seed(0)}
    rec = reconstruct("dds", prior, op, y, steps=2, anatomy=True, start_options={"n_iter": 2},
                      **seed)  # fmt: skip
    first = reconstruct("tv_admm", None, op, y, n_iter=2, anatomy=True)
    by_hand = reconstruct("dds", prior, op, y, steps=2, start=first.x, t_start=0.2, n_cg=20,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(rec.x, by_hand.x, rtol=0, atol=0)
    assert rec.options["start"] == "tv_admm" and rec.options["n_cg"] == 20
    cold = reconstruct("dds", prior, op, y, steps=1, anatomy=True, start="noise").options
    assert cold["start"] is None and cold["t_start"] == 1.0 and cold["n_cg"] == 20


def test_bad_calls_are_one_clear_error(problem, prior):
    op, y = problem
    with pytest.raises(ValueError, match="unknown reconstruction 'magic'; choose one of"):
        reconstruct("magic", None, op, y)
    with pytest.raises(ValueError, match=r"dds needs a slice prior"):
        reconstruct("dds", None, op, y)
    with pytest.raises(ValueError, match=r"cg: unknown options \['steps'\]; known: "):
        reconstruct("cg", None, op, y, steps=3)
    mri = make_operator("mri", SIZE)
    with pytest.raises(ValueError, match="fbp needs a parallel, limited_angle or fan CT"):
        reconstruct("fbp", None, mri, mri.forward(torch.rand(2, SIZE, SIZE)))


def test_scores_table_and_strict_json_metrics(problem):
    from polydiff.medical.metrics import volume_metrics
    from polydiff.medical.reconstruction import metrics_json, scores_table

    op, y = problem
    gt = shepp_logan_3d(SIZE, seed=4)
    rec = reconstruct("cg", None, op, y)
    m = volume_metrics(rec.x, gt)
    scores = rec.scores(gt)
    assert scores == {"psnr": m.psnr, "ssim": m.ssim, "seconds": rec.seconds, "nfe": 0}
    assert f"| cg | {m.psnr:.2f} | {m.ssim:.3f} | " in scores_table({"cg": scores})
    as_json = metrics_json(rec.x, gt, per_slice=True)
    assert as_json["psnr"] == m.psnr and len(as_json["per_slice"]["axial"]["psnr"]) == SIZE
    assert metrics_json(gt, gt)["psnr"] is None  # infinite: no JSON number
