"""Structured samples: the product process against single-tensor sampling and exact targets."""

from __future__ import annotations

import pytest
import torch

from polydiff.core import SMC, paths, sample
from polydiff.core.discrete import MaskedDiffusion
from polydiff.core.testing import GaussianMixture

F64 = torch.float64
VP = paths.VPLinear()
GMM = GaussianMixture([[-1.0, 0.5], [1.0, -0.5]], [[0.2, 0.1], [0.3, 0.2]])
MODEL = GMM.model(VP, "eps")


def _split_model(calls=None):
    """The exact 2-D mixture as a joint model of two 1-D fields u and v."""

    def model_fn(x, t):
        if calls is not None:
            calls.append(t)
        eps = MODEL(torch.cat((x["u"], x["v"]), 1), t)
        return {"u": eps[:, :1], "v": eps[:, 1:]}

    return model_fn


@pytest.mark.parametrize("solver", ["dpmpp_2m", "unipc", "ddim", "deis"])
def test_coupled_fields_equal_the_joint_single_tensor_run(solver):
    """Two fields of one 2-D mixture, stepped by one solver each from one joint call per step,
    reproduce the single-tensor run of the 2-D mixture."""
    x_T = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    calls = []
    out = sample(
        _split_model(calls), {"u": x_T[:, :1], "v": x_T[:, 1:]}, path={"u": VP, "v": VP},
        solver={"u": solver, "v": solver}, steps=8, grid="logsnr",
    )  # fmt: skip
    ref = sample(MODEL, x_T, path=VP, solver=solver, steps=8, grid="logsnr")
    assert len(calls) == 8  # one network call per step, shared by the fields
    assert torch.allclose(torch.cat((out["u"], out["v"]), 1), ref, rtol=1e-12, atol=1e-12)


def test_a_continuous_and_a_discrete_field_match_their_separate_runs():
    """Independent fields: each field of the product equals its own single-tensor run, bit for
    bit (the continuous ODE draws no noise, so the discrete field sees the same stream)."""
    path_b = MaskedDiffusion(4, mask_index=4)
    logits = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(3))

    def discrete(z, t):
        return logits.expand(z.shape[0], -1, -1)

    def joint(x, t):
        return {"a": MODEL(x["a"], t), "b": discrete(x["b"], t)}

    x_a = torch.randn(3, 2, dtype=F64)
    x_b = path_b.prior((3, 5))
    out = sample(
        joint, {"a": x_a, "b": x_b}, path={"a": VP, "b": path_b},
        solver={"a": "dpmpp_2m", "b": "mdlm"}, prediction={"a": "eps", "b": "logits"},
        steps=10, t_end=1e-3, generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    a = sample(MODEL, x_a, path=VP, solver="dpmpp_2m", steps=10, grid="uniform", t_end=1e-3)
    b = sample(
        discrete, x_b, path=path_b, solver="mdlm", prediction="logits", steps=10,
        grid="uniform", t_end=1e-3, generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    assert torch.equal(out["a"], a) and torch.equal(out["b"], b)
    assert out["b"].dtype == x_b.dtype


def test_paused_positions_of_every_field_stay_clean():
    """Per-position times shared by two fields (states and actions of a plan, horizon H): the
    first position is clean context, paused at t = 0 for every step; the rest is denoised as
    in a single-tensor run of the same per-position grid."""
    horizon, steps = 4, 6
    model = GaussianMixture([[0.5], [-0.5]], [[0.1], [0.2]]).model(VP, "eps")

    def model_fn(x, t):
        return {k: model(v, t) for k, v in x.items()}

    gen = torch.Generator().manual_seed(3)
    x = {k: torch.randn(5, horizon, 1, dtype=F64, generator=gen) for k in ("states", "actions")}
    moving = torch.linspace(0.9, 1e-3, steps + 1, dtype=F64)
    ts = torch.stack([torch.zeros_like(moving), *[moving] * (horizon - 1)], 1)
    ts = ts[:, None].expand(steps + 1, 5, horizon)  # [n+1, B, H]
    kw = {"steps": steps, "grid": ts}
    out = sample(model_fn, x, path=dict.fromkeys(x, VP), solver=dict.fromkeys(x, "dpmpp_2m"), **kw)
    for k, v in x.items():
        assert torch.equal(out[k][:, 0], v[:, 0])  # the clean context is never touched
        torch.testing.assert_close(out[k], sample(model, v, path=VP, **kw), rtol=0, atol=1e-12)
        assert not torch.equal(out[k][:, 1:], v[:, 1:])


def test_after_step_hooks_see_every_field_of_the_step():
    """A hook on a structured sample gets each field's x0_hat and eps (as the joint run's) and
    its replacement of x_next reaches every field's solver state."""
    x_T = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    seen = []

    def hook(info):
        seen.append((info, info.x_next))  # info.x_next becomes the hook's result afterwards
        return {k: v * 0.5 for k, v in info.x_next.items()}

    out = sample(
        _split_model(), {"u": x_T[:, :1], "v": x_T[:, 1:]}, path={"u": VP, "v": VP},
        solver={"u": "ddim", "v": "ddim"}, steps=3, hooks=[hook],
    )  # fmt: skip
    (first, first_next), (second, _), (_, last_next) = seen
    x0_joint = GMM.model(VP, "x0")(x_T, first.t.expand(6))
    torch.testing.assert_close(torch.cat((first.x0_hat["u"], first.x0_hat["v"]), 1), x0_joint)
    assert torch.equal(second.x_t["u"], first_next["u"] * 0.5)  # the replacement was used
    assert torch.equal(out["v"], last_next["v"] * 0.5)


def test_masked_entries_keep_their_values():
    x_T = torch.randn(4, 3, 2, dtype=F64)
    present = torch.tensor([[True, True, False]]).expand(4, 3)

    def model_fn(x, t):
        return {"pos": torch.tanh(x["pos"])}

    out = sample(model_fn, {"pos": x_T}, path={"pos": VP}, solver={"pos": "ddim"}, steps=5,
                 mask={"pos": present})  # fmt: skip
    assert torch.equal(out["pos"][:, 2], x_T[:, 2])
    assert not torch.equal(out["pos"][:, :2], x_T[:, :2])


def test_smc_reindexes_every_field_together():
    """Reward on field u only: u is tilted to N(m + b s^2, s^2), v keeps its law and stays
    paired with u (fields are independent here, so v's law is unchanged)."""
    gmm = GaussianMixture([[0.5, -0.3]], [[0.64, 0.25]])
    model = gmm.model(VP, "eps")

    def joint(x, t):
        eps = model(torch.cat((x["u"], x["v"]), 1), t)
        return {"u": eps[:, :1], "v": eps[:, 1:]}

    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(4000, 2, dtype=F64, generator=g)
    smc = SMC(lambda x0: x0["u"][:, 0], scale=1.0)
    out = sample(
        joint, {"u": x_T[:, :1], "v": x_T[:, 1:]}, path={"u": VP, "v": VP},
        solver={"u": "sde_dpmpp_2m", "v": "sde_dpmpp_2m"}, steps=40, grid="logsnr", smc=smc,
        generator=g,
    )  # fmt: skip
    assert out["u"].mean().item() == pytest.approx(0.5 + 0.64, abs=0.08)
    assert out["u"].std().item() == pytest.approx(0.8, abs=0.08)
    assert out["v"].mean().item() == pytest.approx(-0.3, abs=0.05)


def test_bad_structured_arguments_are_one_clear_error():
    x = {"u": torch.randn(2, 1, dtype=F64)}
    fn = _split_model()
    with pytest.raises(ValueError, match=r"path must be a dict with the fields \['u'\]"):
        sample(fn, x, path=VP, solver={"u": "ddim"}, steps=2)
    with pytest.raises(ValueError, match="solver must be a dict"):
        sample(fn, x, path={"u": VP}, solver="ddim", steps=2)
    with pytest.raises(ValueError, match="single-evaluation solvers"):
        sample(fn, x, path={"u": VP}, solver={"u": "heun"}, steps=2)
    with pytest.raises(ValueError, match="mask= is for structured samples"):
        sample(MODEL, torch.randn(2, 2), path=VP, steps=2, mask={"u": torch.ones(2)})
