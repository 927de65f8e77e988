"""The wrapped-normal diffusion baseline: its score against the core's wrapped-normal density, an
oracle network reproduced exactly by the predictor-corrector sampler, 2T network calls, periodic
loss, a tiny training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.core.method import load_method
from polydiff.core.torus import WrappedNormalMixture
from polydiff.crystal.crysbfn import config_for
from polydiff.crystal.data import synthetic, to_batch
from polydiff.crystal.diffcsp import T_MAX, DiffCSP, DiffCSPConfig, wrapped_normal_score
from polydiff.crystal.nets import CSPNetOutput


@pytest.fixture(scope="module")
def data():
    return synthetic(6, seed=4)


def make(data, **options) -> DiffCSP:
    torch.manual_seed(0)
    fitted = config_for(data)
    small = dict(hidden=32, layers=2, n_freq=8, steps=20)
    return DiffCSP(
        DiffCSPConfig(
            elements=fitted.elements, lattice_std=fitted.lattice_std, **{**small, **options}
        )
    )


@pytest.mark.parametrize("sigma", [0.01, 0.2, 0.5])
def test_wrapped_normal_score_is_the_core_density_gradient(sigma):
    mu = torch.tensor([[0.3]], dtype=torch.float64)
    x = torch.linspace(0, 1, 41, dtype=torch.float64)[:-1, None]
    expected = WrappedNormalMixture(mu, sigma, windings=6).score(x)
    got = wrapped_normal_score(x - mu, torch.full_like(x, sigma))
    assert torch.allclose(got, expected, atol=1e-8 / sigma**2)


class Oracle(nn.Module):
    """The exact sigma-scaled score and noise of a point mass at the target crystal."""

    def __init__(self, target, method):
        super().__init__()
        self.target, self.method = target, method
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, type_in, frac, lattice, cond, u, batch, edge_index):
        self.calls += 1
        sigma = self.method.sigma(u.double())[batch][:, None].expand_as(frac)
        score = sigma * wrapped_normal_score(frac - self.target.frac.double(), sigma)
        lat = self.target.lattice.reshape(-1, 9).double() / self.method.config.lattice_std
        t = (u.double() * T_MAX)[:, None]
        path = self.method.lattice_path
        eps = (lattice.reshape(-1, 9) - path.alpha(t) * lat) / path.sigma(t)
        return CSPNetOutput(score, type_in, eps.reshape(-1, 3, 3))


def test_oracle_is_reproduced_in_two_calls_per_step(data):
    method = make(data, steps=15)
    target = data[:3]
    method.net = Oracle(target, method)
    out = method.predict(target, generator=torch.Generator().manual_seed(0))
    assert method.net.calls == 15 * 2
    diff = (out.frac - target.frac + 0.5) % 1 - 0.5
    assert diff.abs().max() < 1e-4
    assert torch.allclose(out.lattice, target.lattice, atol=1e-3)
    assert out.formulas() == target.formulas()


def test_loss_is_periodic_and_training_lowers_it(data):
    method = make(data)
    batch = to_batch(data, method.vocab)

    def loss(b, seed):
        torch.manual_seed(seed)
        return method.loss_fn(method.net, b)["loss"].item()

    moved = batch.clone()
    moved.frac = batch.frac + torch.randint(-2, 3, batch.frac.shape)
    assert loss(moved, 3) == pytest.approx(loss(batch, 3), rel=1e-4)

    def held_out():
        with torch.no_grad():
            return sum(loss(batch, s) for s in range(4)) / 4

    before = held_out()
    opt = torch.optim.AdamW(method.net.parameters(), lr=1e-3)
    torch.manual_seed(1)
    for _ in range(40):
        opt.zero_grad()
        method.loss_fn(method.net, batch)["loss"].backward()
        opt.step()
    assert held_out() < 0.7 * before


def test_save_load_and_bad_config(data, tmp_path):
    method = make(data, steps=3)
    method.save(tmp_path / "m")
    loaded = load_method(tmp_path / "m")
    assert isinstance(loaded, DiffCSP) and loaded.config == method.config
    a = method.predict(["Li2O"], generator=torch.Generator().manual_seed(0))
    b = loaded.predict(["Li2O"], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.frac, b.frac) and math.isfinite(float(a.lattice.sum()))
    with pytest.raises(ValueError, match="sigma_begin < sigma_end"):
        DiffCSPConfig(sigma_begin=0.5, sigma_end=0.1)
