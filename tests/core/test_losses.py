"""Training losses: exact targets, weightings consistent across parameterizations."""

from __future__ import annotations

import pytest
import torch

from polydiff.core import paths
from polydiff.core.losses import diffusion_loss, loss_weight
from polydiff.core.param import PREDICTIONS, from_x0

F64 = torch.float64


def _setup(path, seed=0, mu=None):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(6, 3, dtype=F64, generator=g)
    noise = torch.randn(6, 3, dtype=F64, generator=g)
    t = torch.linspace(path.t_end, min(path.t_start, 0.95), 6, dtype=F64)
    return x0, noise, t


@pytest.mark.parametrize(
    "path",
    [paths.VPLinear(), paths.VE(), paths.Flow(), paths.OUVE()],
    ids=lambda p: type(p).__name__,
)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_exact_prediction_has_zero_loss(path, prediction):
    x0, noise, t = _setup(path)
    mu = torch.full_like(x0, 0.7) if path.mean_reverting else None

    def oracle(x_t, t_):
        y, y0 = (x_t, x0) if mu is None else (x_t - mu, x0 - mu)
        out = from_x0(y0, prediction, y, t, path)
        return out + mu if (prediction == "x0" and mu is not None) else out

    loss = diffusion_loss(oracle, x0, path, prediction=prediction, t=t, noise=noise, mu=mu)
    assert loss.shape == (6,) and loss.abs().max() < 1e-18


@pytest.mark.parametrize("weighting", ["edm", "min_snr"])
def test_weightings_are_the_same_objective_for_every_prediction(weighting):
    """A model whose x0 estimate is off by delta gets the same weighted loss whatever it outputs."""
    path = paths.VPLinear()
    x0, noise, t = _setup(path, 1)
    delta = 0.1 * torch.randn_like(x0)
    losses = []
    for prediction in PREDICTIONS:

        def model(x_t, t_, prediction=prediction):
            return from_x0(x0 + delta, prediction, x_t, t, path)

        losses.append(
            diffusion_loss(
                model, x0, path, prediction=prediction, t=t, noise=noise, weighting=weighting
            )
        )
    for other in losses[1:]:
        assert torch.allclose(other, losses[0], rtol=1e-9, atol=1e-12)


def test_flow_matching_and_score_matching_targets():
    f = paths.Flow()
    x0, noise, t = _setup(f, 2)
    loss = diffusion_loss(
        lambda x, t_: torch.zeros_like(x), x0, f, prediction="velocity", t=t, noise=noise
    )
    assert torch.allclose(loss, ((noise - x0) ** 2).mean(1))  # u = eps - x0
    o = paths.OUVE()
    mu = torch.ones_like(x0)
    score = torch.randn_like(x0)
    loss = diffusion_loss(
        lambda x, t_: score, x0, o, prediction="score", weighting="sigma2", t=t, noise=noise, mu=mu
    )
    sig = o.sigma(t)[:, None]
    assert torch.allclose(loss, ((score * sig + noise) ** 2).mean(1))  # SGMSE: |sigma s + z|^2


def test_edm_weight_and_errors():
    ve = paths.VE()
    t = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    assert torch.allclose(loss_weight(ve, t, "x0", "edm"), (t**2 + 0.25) / (t * 0.5) ** 2)
    with pytest.raises(ValueError, match="unknown weighting"):
        loss_weight(ve, t, "x0", "p2")
    with pytest.raises(ValueError, match="noise shape"):
        diffusion_loss(lambda x, t_: x, torch.zeros(2, 3), ve, noise=torch.zeros(2, 4))
    t_train = ve.sample_t(10000, generator=torch.Generator().manual_seed(0))
    assert torch.log(t_train).mean().item() == pytest.approx(-1.2, abs=0.05)
