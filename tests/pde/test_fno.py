"""The FNO baseline: properties of the Fourier layer, training, rollout, save / load."""

import math

import pytest
import torch
from helpers import assert_close

from polydiff.core import load_method
from polydiff.core.errors import InputError
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.fno import FNO, FNOConfig
from polydiff.pde.nets import SpectralConv1d

TINY = FNOConfig(nx=16, nt=8, modes=6, width=8, layers=2)


def test_spectral_conv_is_linear_shift_equivariant_and_band_limited():
    torch.manual_seed(0)
    layer = SpectralConv1d(2, 3, modes=4)
    v, w = torch.randn(2, 2, 16), torch.randn(2, 2, 16)
    assert_close(layer(2 * v + w), 2 * layer(v) + layer(w), atol=1e-5)
    assert_close(layer(torch.roll(v, 3, -1)), torch.roll(layer(v), 3, -1), atol=1e-5)
    x = torch.arange(16) / 16
    high = torch.cos(2 * math.pi * 5 * x).expand(1, 2, 16)  # wavenumber 5 >= modes
    assert layer(high).abs().max() < 1e-5
    with pytest.raises(InputError, match=r"^modes: 4 modes need nx >= 6"):
        layer(torch.randn(1, 2, 4))


def test_training_lowers_the_one_step_loss_and_the_rollout_error(tmp_path):
    data = generate_burgers(48, BurgersConfig(nx=16, nt=8, t_end=0.5), seed=0)
    u, f = torch.from_numpy(data.u), torch.from_numpy(data.f)
    torch.manual_seed(0)
    method = FNO(TINY)

    def rollout_error():
        return float((method.sample(u[:8, 0], f[:8]) - u[:8])[:, 1:].square().mean())

    with torch.no_grad():
        before = float(method.loss_fn(method.net, {"u": u, "f": f}))
    error_before = rollout_error()
    opt = torch.optim.Adam(method.net.parameters(), lr=3e-3)
    for _ in range(60):
        loss = method.loss_fn(method.net, {"u": u, "f": f})
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(method.loss_fn(method.net, {"u": u, "f": f}))
    assert after < 0.2 * before, (before, after)
    assert rollout_error() < 0.5 * error_before
    sim = method.sample(u[:2, 0], f[:2])
    assert sim.shape == (2, 8, 16) and torch.equal(sim[:, 0], u[:2, 0])
    again = load_method(method.save(tmp_path / "fno"))
    assert isinstance(again, FNO) and again.config == TINY
    assert_close(again.sample(u[:2, 0], f[:2]), sim)


def test_bad_sizes_raise_input_error():
    with pytest.raises(InputError, match=r"^modes: 20 modes need nx >= 38"):
        FNO(FNOConfig(nx=16, modes=20))
    method = FNO(TINY)
    with pytest.raises(InputError, match=r"^f: expected shape \[B, 8, 16\]"):
        method.sample(torch.zeros(2, 16), torch.zeros(2, 4, 16))
