"""The whole sampling loop compiles with fullgraph=True: no graph breaks and no host syncs from
the first step to the returned sample (single tensors, structured samples, conditioning and
hooks), and a compiled solver step also lowers through inductor."""

from __future__ import annotations

import pytest
import torch

from polydiff.core import CFG, paths, sample
from polydiff.core.discrete import MaskedDiffusion
from polydiff.core.param import Denoiser
from polydiff.core.solvers import get_solver

PATH = paths.VPLinear()
STEPS = 5
GRID = {"grid": "uniform", "t_start": 0.9, "t_end": 0.05}  # explicit ends: no host-side checks
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit internals


def _net(x, t):  # a cheap smooth stand-in for a network
    return torch.tanh(x) * t[:, None] + 0.1 * x


def _fixed_noise(like):
    return torch.full_like(like, 0.3)  # the same in both runs (a generator would advance)


def _compiled(fn, *args, backend: str = "eager"):
    torch._dynamo.reset()  # a fresh cache per case (the traced closures share code objects)
    return torch.compile(fn, fullgraph=True, backend=backend)(*args)


@pytest.mark.parametrize(
    "solver",
    ["ddim", "ddpm", "dpmpp_2m", "dpmpp_3m", "unipc", "deis", "euler", "heun", "flow_heun",
     "sde_dpmpp_2m", "pc_langevin"],
)  # fmt: skip
def test_whole_loop_of_every_continuous_solver_is_one_graph(solver):
    def run(x):
        return sample(_net, x, path=PATH, solver=solver, steps=STEPS, noise=_fixed_noise, **GRID)

    x = torch.randn(4, 2)
    torch.testing.assert_close(_compiled(run, x), run(x), rtol=1e-5, atol=1e-6)


def test_structured_sample_with_a_discrete_field_is_one_graph():
    """A product of a continuous and a masked-diffusion field, with a field mask."""
    vocab = 5
    tokens_path = MaskedDiffusion(vocab)  # the mask token is the extra index 5
    mask_id = tokens_path.mask_index
    present = torch.tensor([[True, True, False]] * 4)

    def model_fn(x, t):
        logits = torch.stack([x["tokens"].float() * k for k in range(vocab)], -1).cos()
        return {"coords": _net(x["coords"], t), "tokens": logits}

    def run(coords, tokens):
        return sample(
            model_fn, {"coords": coords, "tokens": tokens},
            path={"coords": PATH, "tokens": tokens_path},
            solver={"coords": "dpmpp_2m", "tokens": "mdlm"},
            prediction={"coords": "eps", "tokens": "logits"},
            steps=STEPS, mask={"tokens": present}, noise=_fixed_noise, **GRID,
        )  # fmt: skip

    coords, tokens = torch.randn(4, 2), torch.full((4, 3), mask_id)
    out, ref = _compiled(run, coords, tokens), run(coords, tokens)
    torch.testing.assert_close(out["coords"], ref["coords"], rtol=1e-5, atol=1e-6)
    assert torch.equal(out["tokens"], ref["tokens"])
    assert (out["tokens"][:, :2] != mask_id).any() and (out["tokens"][:, 2] == mask_id).all()


def test_conditioning_guidance_and_hooks_stay_in_the_graph():
    """CFG with an interval, an after-step hook and a before-step hook: still one graph."""

    def model_fn(x, t, cond):
        return _net(x, t) + cond

    class Damp:  # moves every step's result a little towards zero
        def after_step(self, info):
            return info.x_next - 0.01 * info.x0_hat

        def before_step(self, x, t, i, n, noise):
            return x * 0.999

    def run(x, cond):
        return sample(
            model_fn, x, path=PATH, steps=STEPS, cond=cond, noise=_fixed_noise,
            guidance=[CFG(2.0, uncond=torch.zeros_like(cond), interval=(0.2, 0.8))],
            hooks=[Damp()], **GRID,
        )  # fmt: skip

    x, cond = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(_compiled(run, x, cond), run(x, cond), rtol=1e-5, atol=1e-6)


def test_dpmpp_2m_step_compiles_with_inductor():
    solver, model = get_solver("dpmpp_2m"), Denoiser(_net, PATH, "eps")
    t0, t1, t2 = (torch.tensor(v, dtype=torch.float64) for v in (0.8, 0.6, 0.4))
    state = solver.step(solver.init(torch.randn(4, 2), t0), t0, t1, model, i=0, n=10, noise=None)

    def one_step(state, t_cur, t_next):
        return solver.step(state, t_cur, t_next, model, i=1, n=10, noise=None)

    out = _compiled(one_step, state, t1, t2, backend="inductor")
    torch.testing.assert_close(out.x, one_step(state, t1, t2).x, rtol=1e-5, atol=1e-6)
