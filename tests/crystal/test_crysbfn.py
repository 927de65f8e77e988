"""CrysBFN: the loss is periodic, a tiny training run lowers it, sampling makes N network calls and
returns the given compositions, an oracle network is reproduced exactly by both samplers, the
Bayesian-update sampler's parameters follow the flow distribution, best-of-k keeps the most
spread candidate, save/load round trips, bad options are refused by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.core.errors import InputError
from polydiff.core.method import load_method
from polydiff.crystal.crysbfn import CrysBFN, CrysBFNConfig, config_for, most_spread
from polydiff.crystal.data import Crystals, min_distance, read_crystals, synthetic, to_batch
from polydiff.crystal.nets import CSPNetOutput

SMALL = dict(hidden=32, layers=2, n_freq=8, bank_size=4096)


@pytest.fixture(scope="module")
def data():
    return synthetic(8, seed=2)


def make(data, **options) -> CrysBFN:
    torch.manual_seed(0)
    return CrysBFN(config_for(data, **{**SMALL, **options}))


def seeded_loss(method, batch, seed=5):
    torch.manual_seed(seed)
    return method.loss_fn(method.net, batch)


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_loss_is_periodic_in_the_coordinates(data, task):
    """Integer translations of single atoms and one shift of a whole crystal leave the loss as
    it is (same draws): the flows, the network and the loss all live on the torus."""
    method = make(data, task=task)
    batch = to_batch(data, method.vocab)
    base = seeded_loss(method, batch)
    moved = batch.clone()
    moved.frac = batch.frac + torch.randint(-2, 3, batch.frac.shape)
    shifted = batch.clone()
    shifted.frac = (batch.frac + torch.rand(len(data), 3)[batch.batch]) % 1
    for other in (moved, shifted):
        got = seeded_loss(method, other)
        for key in base:
            assert got[key].item() == pytest.approx(base[key].item(), rel=1e-3, abs=1e-3), key
    assert set(base) == (
        {"loss", "coord", "lattice", "type"} if task == "gen" else {"loss", "coord", "lattice"}
    )


def test_shift_invariant_coordinate_loss_ignores_the_origin_of_each_crystal(data):
    """A global shift of one crystal's predicted coordinates (per axis) changes CrysBFN's loss
    but not the shift-invariant one, which still sees relative errors; flat weights are the mean
    of the N-step weights at every step."""
    method = make(data, steps=4)  # shift invariant by default
    plain = make(data, shift_invariant=False, steps=4)
    crystal = torch.repeat_interleave(torch.arange(len(data)), data.num_atoms)
    gen = torch.Generator().manual_seed(0)
    x = (2 * torch.rand(len(crystal), 3, generator=gen, dtype=torch.float64) - 1) * math.pi
    x_hat = x + 0.1 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    shift = (2 * torch.rand(len(data), 3, generator=gen, dtype=torch.float64) - 1) * math.pi
    i = torch.randint(1, 5, (len(data),), generator=gen)[crystal]
    args = (crystal, len(data))
    inv, moved = (method._coord_loss(y, x, i, *args) for y in (x_hat, x_hat + shift[crystal]))
    assert moved.item() == pytest.approx(inv.item(), rel=1e-9)
    assert plain._coord_loss(x_hat + shift[crystal], x, i, *args) > 10 * inv
    bumped = x_hat.clone()
    bumped[0] += 0.5  # one atom moved relative to the rest of its crystal
    assert method._coord_loss(bumped, x, i, *args) > inv
    flat = make(data, coord_weights="flat", shift_invariant=False, steps=4)
    mean_weight = plain.coord_flow.loss_weight(torch.arange(1, 5)).mean()
    expected = mean_weight * (x_hat - x).pow(2).sum(-1).mean()
    assert flat._coord_loss(x_hat, x, i, *args).item() == pytest.approx(expected.item())


def test_tiny_training_run_lowers_the_loss(data):
    method = make(data)
    batch = to_batch(data, method.vocab)

    def held_out() -> float:  # the same draws each time
        with torch.no_grad():
            return sum(seeded_loss(method, batch, s)["loss"].item() for s in range(4)) / 4

    before = held_out()
    torch.manual_seed(1)
    opt = torch.optim.AdamW(method.net.parameters(), lr=1e-3)
    for _ in range(40):
        opt.zero_grad()
        method.loss_fn(method.net, batch)["loss"].backward()
        opt.step()
    after = held_out()
    assert after < 0.5 * before, (before, after)


class CountingNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args):
        self.calls += 1
        return self.net(*args)


def test_predict_keeps_compositions_and_makes_n_calls(data):
    method = make(data, steps=7)
    method.net = CountingNet(method.net)
    out = method.predict(data[:3], generator=torch.Generator().manual_seed(0))
    assert method.net.calls == 7
    assert out.formulas() == data[:3].formulas() and out.names == tuple(out.formulas())
    assert ((out.frac >= 0) & (out.frac < 1)).all() and torch.isfinite(out.lattice).all()
    again = method.predict(data[:3], generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.frac, out.frac) and torch.equal(again.lattice, out.lattice)
    chunked = method.predict(data[:3], generator=torch.Generator().manual_seed(0), batch_size=2)
    assert method.net.calls == 7 * 4 and chunked.formulas() == out.formulas()
    assert torch.equal(chunked.num_atoms, out.num_atoms)
    by_formula = method.predict(["Li2O", "MgSiO3"], generator=torch.Generator().manual_seed(0))
    assert by_formula.formulas() == ["Li2O1", "Mg1Si1O3"]


def test_one_element_training_set_predicts_and_refuses_generation():
    """carbon-24 holds carbon only: CSP needs no type flow; generation has nothing to choose."""
    carbon = synthetic(3, seed=4).structures()
    for s in carbon:
        s.replace_species({e: "C" for e in s.composition.elements})
    data = read_crystals(carbon, check_geometry=False)
    method = make(data, steps=3)
    assert method.config.elements == (6,) and method.type_flow is None
    loss = seeded_loss(method, to_batch(data, method.vocab))["loss"]
    assert torch.isfinite(loss)
    out = method.predict(data, generator=torch.Generator().manual_seed(0))
    assert out.formulas() == data.formulas()
    with pytest.raises(InputError, match=r"elements: task 'gen' needs at least 2 elements"):
        make(data, task="gen")


def test_bayes_sampler_and_best_of_k_make_their_calls(data):
    method = make(data, steps=5, sampler="bayes")
    method.net = CountingNet(method.net)
    g = torch.Generator().manual_seed(0)
    bayes = method.predict(data[:3], generator=g)
    assert method.net.calls == 5 and bayes.formulas() == data[:3].formulas()
    end_back = method.predict(
        data[:3], generator=torch.Generator().manual_seed(0), sampler="end_back"
    )
    assert not torch.equal(end_back.frac, bayes.frac)
    best = method.predict(data[:3], generator=torch.Generator().manual_seed(0), candidates=3)
    assert method.net.calls == 5 + 5 + 15 and best.formulas() == data[:3].formulas()


def test_most_spread_keeps_the_candidate_with_the_farthest_closest_atoms(data):
    crystals = data[:2]
    squeezed = Crystals(
        crystals.frac * 0.01, crystals.lattice, crystals.numbers, crystals.num_atoms, crystals.names
    )
    mixed = Crystals.cat([squeezed[0], crystals[1]])
    picked = most_spread([mixed, crystals, squeezed])
    assert torch.equal(picked.frac, crystals.frac)  # the unsqueezed one of each pair
    spread = [min_distance(s) for s in picked.structures()]
    assert spread == [min_distance(s) for s in crystals.structures()]


def test_bayes_updates_from_the_prior_reach_the_flow_distribution(data):
    """With a constant prediction x, i Bayesian updates from the prior are a draw of the flow
    at step i: the coordinate concentration and mean direction match flow_sample's
    distribution, the lattice precision is exactly sigma_1^(-2t) with mu ~ N(gamma x,
    gamma (1 - gamma)), the type logits accumulate beta_1 t^2 (BFN Sec. 4, 6)."""
    method = make(data, task="gen", steps=6)
    flow, n, K, M = method.coord_flow, 6, len(method.vocab), 20000
    x = torch.full((M, 3), 0.7, dtype=torch.float64)
    lat = torch.full((M, 9), -0.4, dtype=torch.float64)
    k = torch.zeros(M, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    params = (
        (2 * torch.rand(M, 3, generator=g, dtype=torch.float64) - 1) * math.pi,
        torch.zeros(M, 3, dtype=torch.float64),
        torch.zeros(M, 9, dtype=torch.float64),
        torch.ones(M, 1, dtype=torch.float64),
        torch.full((M, K), -math.log(K), dtype=torch.float64),
    )
    for i in range(4):
        params = method._bayes_update(flow, i, n, params, (x, lat, k), g)
    m, conc, mu, rho, log_theta = params
    m_flow, c_flow = flow.flow_sample(x, 4, g)
    assert float(conc.mean()) == pytest.approx(float(c_flow.mean()), rel=0.02)
    assert float(conc.std()) == pytest.approx(float(c_flow.std()), rel=0.05)
    assert float(torch.cos(m - x).mean()) == pytest.approx(
        float(torch.cos(m_flow - x).mean()), abs=0.01
    )
    s1, t = method.lattice_flow.sigma_1, 4 / n
    assert torch.allclose(rho, torch.full_like(rho, s1 ** (-2 * t)))
    gamma = 1 - s1 ** (2 * t)
    assert float(mu.mean()) == pytest.approx(gamma * -0.4, abs=0.005)
    assert float(mu.var()) == pytest.approx(gamma * (1 - gamma), rel=0.03)
    beta = method.type_flow.beta_1 * t**2
    gap = log_theta[:, 0] - log_theta[:, 1:].mean(-1)  # mean beta K of the sender sums
    assert float(gap.mean()) == pytest.approx(beta * K, rel=0.03)


class Oracle(nn.Module):
    """Outputs that make x_hat and l_hat the target crystal whatever the input."""

    def __init__(self, target, method):
        super().__init__()
        self.target, self.method = target, method
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, type_in, frac, lattice, cond, t, batch, edge_index):
        coords = 2 * math.pi * (self.target.frac.double() - frac)
        lat = self.target.lattice.reshape(-1, 9).double() / self.method.config.lattice_std
        g = self.method.lattice_flow.gamma(t.double().clamp_min(1e-6))[:, None]
        eps = (lattice.reshape(-1, 9) - g * lat) / torch.sqrt(g * (1 - g))
        return CSPNetOutput(coords, type_in, eps.reshape(-1, 3, 3))


@pytest.mark.parametrize("sampler", ["end_back", "bayes"])
def test_oracle_network_is_reproduced(data, sampler):
    method = make(data)
    target = data[:4]
    method.net = Oracle(target, method)
    out = method.predict(target, generator=torch.Generator().manual_seed(1), sampler=sampler)
    diff = (out.frac - target.frac + 0.5) % 1 - 0.5
    assert diff.abs().max() < 1e-5
    assert torch.allclose(out.lattice, target.lattice, atol=1e-4)
    assert torch.equal(out.numbers, target.numbers)


def test_generate_draws_counts_and_types_from_the_training_support(data):
    method = make(data, task="gen", steps=4)
    out = method.generate(5, generator=torch.Generator().manual_seed(0))
    seen = {n for n, k in enumerate(method.config.atom_counts) if k}
    assert len(out) == 5 and set(out.num_atoms.tolist()) <= seen
    assert set(out.numbers.tolist()) <= set(method.vocab.numbers)


def test_save_and_load_round_trip(data, tmp_path):
    method = make(data, steps=3)
    method.save(tmp_path / "model")
    loaded = load_method(tmp_path / "model")
    assert isinstance(loaded, CrysBFN) and loaded.config == method.config
    a = method.predict(data[:2], generator=torch.Generator().manual_seed(0))
    b = loaded.predict(data[:2], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.frac, b.frac) and torch.allclose(a.lattice, b.lattice)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.predict(["UO2"]), "composition UO2: element U is outside the vocabulary"),
        (lambda m: m.predict(["Li80O40"]), "composition Li80O40: 120 atoms, more than the max"),
        (lambda m: m.predict(["Li2.5O"]), "composition Li2.5O: needs whole atom counts"),
        (lambda m: m.predict(["Xx2"]), "composition Xx2: not a chemical formula"),
        (lambda m: m.predict([]), "no compositions given"),
        (lambda m: m.generate(2), "generate needs a model trained for task 'gen'"),
        (lambda m: CrysBFNConfig(task="dft"), "task must be one of"),
        (lambda m: CrysBFNConfig(steps=0), "steps must be a positive integer"),
        (lambda m: CrysBFNConfig(lattice_sigma_1=1.5), "lattice_sigma_1 must be in"),
        (lambda m: CrysBFNConfig(coord_weights="snr"), "coord_weights must be one of"),
        (lambda m: CrysBFNConfig(sampler="ode"), "sampler must be one of"),
        (lambda m: m.predict(["Li2O"], sampler="ode"), "sampler must be one of"),
        (lambda m: m.predict(["Li2O"], candidates=0), "candidates must be a positive integer"),
    ],
)
def test_bad_options_are_refused_by_name(data, call, message):
    method = make(data, steps=2)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        call(method)
