"""CSPNet symmetries: rotations and reflections of the lattice, integer translations of single
atoms, a global fractional shift, permutations of the atoms within a crystal."""

from __future__ import annotations

import pytest
import torch

from polydiff.crystal.data import fully_connected_edges
from polydiff.crystal.nets import CSPNet, fourier_features

K = 5
NUM_ATOMS = torch.tensor([3, 4])


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = CSPNet(K, hidden=32, layers=2, n_freq=4).double()
    for p in net.parameters():  # no zero-initialised head: every output must move with the input
        torch.nn.init.normal_(p, std=0.3)
    n = int(NUM_ATOMS.sum())
    inputs = dict(
        types_in=torch.softmax(torch.randn(n, K, dtype=torch.float64), -1),
        frac=torch.rand(n, 3, dtype=torch.float64),
        lattice=torch.randn(2, 3, 3, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64),
        cond=torch.rand(n, 3, dtype=torch.float64),
        t=torch.tensor([0.3, 0.7], dtype=torch.float64),
        batch=torch.repeat_interleave(torch.arange(2), NUM_ATOMS),
        edge_index=fully_connected_edges(NUM_ATOMS),
    )
    return net.float(), inputs


def run(net, **inputs):
    out = net(**inputs)
    return out.coords.double(), out.types.double(), out.lattice.double()


def assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=2e-4, rtol=1e-4), (x - y).abs().max()


def random_orthogonal(reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q = q @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    return q


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_rotating_the_lattice_rotates_only_the_lattice_output(setup, reflect):
    net, inputs = setup
    coords, types, lattice = run(net, **inputs)
    q = random_orthogonal(reflect)
    moved = run(net, **{**inputs, "lattice": inputs["lattice"] @ q.T})
    assert_same((coords, types, lattice @ q.T), moved)
    assert not torch.allclose(lattice @ q.T, lattice, atol=1e-2)  # the check is not vacuous


def test_integer_translations_and_a_global_shift_change_nothing(setup):
    net, inputs = setup
    base = run(net, **inputs)
    jumps = torch.randint(-3, 4, inputs["frac"].shape).double()
    assert_same(base, run(net, **{**inputs, "frac": inputs["frac"] + jumps}))
    # the same shift for every atom of a crystal (another one per crystal)
    shift = torch.rand(2, 3, dtype=torch.float64)[inputs["batch"]]
    assert_same(base, run(net, **{**inputs, "frac": (inputs["frac"] + shift) % 1}))
    # a relative move is seen (the features are not blind to the structure)
    moved = inputs["frac"].clone()
    moved[0] += 0.2
    assert not torch.allclose(base[1], run(net, **{**inputs, "frac": moved})[1], atol=1e-3)


def test_permuting_atoms_within_crystals_permutes_the_atom_outputs(setup):
    net, inputs = setup
    coords, types, lattice = run(net, **inputs)
    perm = torch.cat([torch.randperm(3), 3 + torch.randperm(4)])
    permuted = {
        **inputs,
        **{k: inputs[k][perm] for k in ("types_in", "frac", "cond")},
    }
    got = run(net, **permuted)
    assert_same((coords[perm], types[perm], lattice), got)


def test_fourier_features_are_periodic():
    d = torch.rand(10, 3, dtype=torch.float64)
    assert torch.allclose(fourier_features(d, 6), fourier_features(d + 1, 6), atol=1e-10)
    assert fourier_features(d, 6).shape == (10, 36)
