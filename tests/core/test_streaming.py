"""The rolling buffer for streaming denoising, on exact scores of i.i.d. positions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import assert_close

from polydiff.core import paths, sample
from polydiff.core.discrete import MaskedDiffusion
from polydiff.core.streaming import RollingBuffer
from polydiff.core.testing import GaussianMixture, marginal_cdf_1d, wasserstein1_1d

F64 = torch.float64
GMM = GaussianMixture([[-2.0, 0.5], [1.5, 1.0], [0.3, -2.0]], [0.3, 0.5, 0.2], [0.3, 0.4, 0.3])
VP = paths.VPLinear()
T0, T1 = 1.0, 1e-3
NO_FINAL = {"lower_order_final": False}


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("ddim", {}),
        ("euler", {}),
        ("heun", {}),
        ("dpmpp_2s", {}),
        ("dpmpp_2m", NO_FINAL),
        ("dpmpp_3m", NO_FINAL),
        ("unipc", NO_FINAL),
        ("deis", NO_FINAL),
    ],
)
def test_popped_positions_equal_the_non_streaming_solve(name, kw):
    """Every popped position (from the first buffer and pushed later) equals the solve of its
    starting noise alone on the buffer's grid, though it shared each model call with positions
    at other noise levels (and the multistep history slots of the pushed ones were reset)."""
    W, B, count = 6, 3, 9
    gen = torch.Generator().manual_seed(0)
    x_init = torch.randn(B, W, 2, dtype=F64, generator=gen)
    fresh = torch.randn(count, B, 2, dtype=F64, generator=gen)
    buf = RollingBuffer(
        GMM.model(VP), path=VP, window=W, shape=(2,), batch=B, solver=name, solver_kwargs=kw,
        grid="logsnr", t_start=T0, t_end=T1, x_init=x_init, dtype=F64,
    )  # fmt: skip
    popped = []
    while len(popped) < count:
        y = buf.step(fresh[len(popped)])
        if y is not None:
            popped.append(y)
    assert buf.steps == W - 1 + count
    starts = torch.cat([x_init, fresh.transpose(0, 1)], 1)  # stream position p starts at [:, p]
    for p, y in enumerate(popped):
        alone = sample(
            GMM.model(VP), starts[:, p], path=VP, solver=name, grid=buf.levels, solver_kwargs=kw
        )
        assert_close(y, alone, rtol=1e-10, atol=1e-12, msg=f"{name} position {p}")


def test_one_model_call_per_step_on_the_whole_buffer_with_a_time_per_position():
    W, B = 4, 2
    seen = []

    def model(x, t):
        seen.append((tuple(x.shape), t.clone()))
        return GMM.model(VP)(x, t)

    buf = RollingBuffer(model, path=VP, window=W, shape=(2,), batch=B, dtype=F64)
    assert [buf.step() is None for _ in range(W - 1)] == [True] * (W - 1)
    out = buf.stream(3)
    assert out.shape == (B, 3, 2) and buf.x.shape == (B, W, 2)
    assert len(seen) == W - 1 + 3 and all(s == (B, W, 2) for s, _ in seen)
    levels = buf.levels.to(F64)
    # warm-up: slot k waits at t_0 for k steps; then the pyramid t_{W-1}, ..., t_0 front to back
    assert torch.equal(seen[0][1][0], levels[[0, 0, 0, 0]].to(seen[0][1]))
    assert torch.equal(seen[2][1][0], levels[[2, 1, 0, 0]].to(seen[2][1]))
    for _, t in seen[W - 1 :]:
        assert torch.equal(t[0], levels[[3, 2, 1, 0]].to(t))


def test_positions_of_any_shape():
    gmm3 = GaussianMixture([[0.0, 1.0, -1.0]], [0.5])
    buf = RollingBuffer(
        gmm3.model(VP), path=VP, window=3, shape=(2, 3), batch=2, solver="unipc",
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    out = buf.stream(4)
    assert out.shape == (2, 4, 2, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["ddpm", "euler_maruyama"])
def test_stochastic_stream_has_the_data_distribution(name):
    """Popped positions of a stochastic stream are samples of the data: their Wasserstein-1
    distance to the exact 1-D marginal is about the non-streaming sampler's (the prior: ~0.5)."""
    gmm = GaussianMixture([[-1.5], [1.0]], [0.1, 0.2], [0.4, 0.6])
    W, B = 12, 300
    gen = torch.Generator().manual_seed(1)
    buf = RollingBuffer(
        gmm.model(VP), path=VP, window=W, shape=(1,), batch=B, solver=name, grid="logsnr",
        t_start=T0, t_end=T1, dtype=F64, generator=gen,
    )  # fmt: skip
    out = buf.stream(4)  # 1200 samples
    cdf = lambda x: marginal_cdf_1d(gmm, VP, x, T1)  # noqa: E731
    w1 = wasserstein1_1d(out, cdf)
    x_T = torch.randn(4 * B, 1, dtype=F64, generator=gen)
    ref = sample(gmm.model(VP), x_T, path=VP, solver=name, grid=buf.levels, generator=gen)
    w1_ref = wasserstein1_1d(ref, cdf)  # the sampler's own bias at 12 steps (ddpm: ~0.2)
    assert w1 < 1.5 * w1_ref + 0.03, (w1, w1_ref)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window must be a positive int"),
        ({"window": 2.5}, "window must be a positive int"),
        ({"batch": 0}, "batch must be a positive int"),
        ({"shape": (0,)}, "shape must be positive ints"),
        ({"solver": "torus_pc"}, "cannot hold paused positions"),
        ({"grid": torch.tensor([1.0, 0.5, 0.1])}, "window \\+ 1 = 5 times"),
        ({"x_init": torch.zeros(2, 3, 2)}, "x_init has shape"),
        ({"solver": "deis", "path": paths.Flow()}, "needs alpha > 0"),
        ({"path": MaskedDiffusion(3), "solver": "mdlm"}, "path must be an affine path"),
    ],
)
def test_bad_arguments_are_one_clear_error(kwargs, match):
    args = {"path": VP, "window": 4, "shape": (2,), "batch": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        RollingBuffer(GMM.model(VP), **args)


def test_bad_fresh_and_count_are_one_clear_error():
    buf = RollingBuffer(GMM.model(VP), path=VP, window=1, shape=(2,), batch=2)
    with pytest.raises(ValueError, match="fresh has shape"):
        buf.step(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="count must be a positive int"):
        buf.stream(0)


def test_the_docs_example_runs():
    """docs/core.md's per-position / streaming example runs as written and holds its context."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "core.md").read_text()
    section = doc.split("## Per-position and paused times")[1].split("\n## ")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(code, scope)
    assert scope["frames"].shape == (2, 20, 2) and torch.isfinite(scope["frames"]).all()
    assert torch.equal(scope["x"][:, 0], scope["x_T"][:, 0])
