"""WDNO (simulation): coefficients round trip, known channels held, training lowers the loss."""

import dataclasses

import pytest
import torch
from helpers import assert_close
from torch import nn

from polydiff.core import load_method
from polydiff.core.errors import InputError
from polydiff.core.utils import expand_like
from polydiff.pde.control import ControlProblem, control_objective, evaluate_control
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.wdno import WDNO, WDNOConfig

TINY = WDNOConfig(nx=16, nt=8, wavelet="bior2.4", channels=8, channel_mult=(1, 2))


@pytest.fixture(scope="module")
def data():
    d = generate_burgers(48, BurgersConfig(nx=16, nt=8, t_end=0.5), seed=0)
    return torch.from_numpy(d.u), torch.from_numpy(d.f)


def fitted(data, config=TINY):
    torch.manual_seed(0)
    method = WDNO(config)
    method.fit_scale(*data)
    return method


@pytest.mark.parametrize(
    ("wavelet", "shape"), [("bior2.4", (48, 12, 4, 8)), ("none", (48, 3, 8, 16))]
)
def test_coefficients_round_trip_and_scales(data, wavelet, shape):
    u, f = data
    method = fitted(data, dataclasses.replace(TINY, wavelet=wavelet))
    coeffs = method.encode(u, f, u[:, 0])
    assert coeffs.shape == shape
    assert_close(coeffs.abs().amax((0, 2, 3)).max(), torch.tensor(1.0), atol=1e-6)
    u_back, f_back = method.decode(coeffs)
    assert_close(u_back, u, atol=1e-5)
    assert_close(f_back, f, atol=1e-5)


@pytest.mark.parametrize("wavelet", ["bior2.4", "none"])
def test_sampling_holds_the_known_channels(data, wavelet):
    u, f = data
    method = fitted(data, dataclasses.replace(TINY, wavelet=wavelet))
    gen = torch.Generator().manual_seed(0)
    coeffs = method.sample_coefficients(u[:4, 0], f[:4], steps=4, generator=gen)
    known = method.encode(u[:4], f[:4], u[:4, 0])
    assert_close(coeffs[:, method.known], known[:, method.known], atol=1e-6)
    assert coeffs[:, ~method.known].abs().max() <= TINY.clamp + 1e-6
    assert_close(method.decode(coeffs)[1], f[:4], atol=1e-5)
    sim = method.sample(u[:4, 0], f[:4], steps=4, generator=torch.Generator().manual_seed(0))
    assert sim.shape == (4, 8, 16)
    assert_close(sim[:, 0], u[:4, 0])


def test_training_lowers_the_loss_and_the_simulation_error(data):
    u, f = data
    method = fitted(data)
    fixed = {"u": u[:16], "f": f[:16]}

    def eval_loss():
        torch.manual_seed(123)  # the same times and noise every time
        with torch.no_grad():
            return float(method.loss_fn(method.net, fixed))

    def sim_error():
        gen = torch.Generator().manual_seed(0)
        sim = method.sample(u[:8, 0], f[:8], steps=10, generator=gen)
        return float((sim - u[:8])[:, 1:].square().mean())

    before, error_before = eval_loss(), sim_error()
    opt = torch.optim.Adam(method.net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(80):
        idx = torch.randint(0, 48, (16,), generator=gen)
        loss = method.loss_fn(method.net, {"u": u[idx], "f": f[idx]})
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, error_after = eval_loss(), sim_error()
    assert after < 0.3 * before, (before, after)
    assert error_after < 0.5 * error_before, (error_before, error_after)


def test_save_and_load_give_the_same_samples(data, tmp_path):
    u, f = data
    method = fitted(data)
    again = load_method(method.save(tmp_path / "wdno"))
    assert isinstance(again, WDNO) and again.config == TINY
    assert_close(again.net.scale, method.net.scale)
    a = method.sample(u[:2, 0], f[:2], steps=3, generator=torch.Generator().manual_seed(5))
    b = again.sample(u[:2, 0], f[:2], steps=3, generator=torch.Generator().manual_seed(5))
    assert_close(a, b, atol=1e-6)


def test_bad_sizes_raise_input_error(data):
    u, f = data
    with pytest.raises(InputError, match=r"^nt: 6 must be a multiple of 4"):
        WDNO(WDNOConfig(nx=16, nt=6, channels=8))
    method = fitted(data)
    with pytest.raises(InputError, match=r"^u0: expected shape \[B, 16\]"):
        method.sample(u[:2, 0, :8], f[:2])
    with pytest.raises(InputError, match=r"^f: expected shape \[B, 8, 16\]"):
        method.sample(u[:2, 0], f[:2, :4])
    with pytest.raises(InputError, match=r"^u0: contains NaN"):
        method.sample(u[:2, 0] * float("nan"), f[:2])


def test_energy_loss_weight_measures_the_error_in_field_units(data):
    """With an orthonormal wavelet (Haar) the squared coefficients of u sum to those of u, so the
    energy-weighted loss of a network that predicts zeros, times the mean squared scale, is the
    mean of u^2 (at any diffusion time)."""
    u, f = data
    config = dataclasses.replace(TINY, wavelet="haar", loss_weight="energy")
    method = fitted((u, f), config)
    unknown = ~method.known
    zero_net = lambda x, t: torch.zeros_like(x)  # noqa: E731
    loss = method.loss_fn(zero_net, {"u": u, "f": f})
    mean_square_scale = method.net.scale[unknown].square().mean()
    assert_close(loss * mean_square_scale, u.float().square().mean(), rtol=1e-5)
    uniform = fitted((u, f), dataclasses.replace(config, loss_weight="uniform"))
    assert not torch.isclose(uniform.loss_fn(zero_net, {"u": u, "f": f}), loss)
    with pytest.raises(InputError, match=r"^loss_weight: expected one of"):
        WDNOConfig(loss_weight="bands")


@pytest.mark.parametrize(("train_times", "upper_half"), [("uniform", 0.5), ("high", 0.75)])
def test_training_times_follow_their_density(data, train_times, upper_half):
    u, f = data
    method = fitted((u, f), dataclasses.replace(TINY, train_times=train_times))
    seen = []

    def recording_net(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    torch.manual_seed(0)
    for _ in range(25):  # 25 x 48 = 1200 draws: the fraction's standard error is 0.0125-0.0144
        method.loss_fn(recording_net, {"u": u, "f": f})
    t = torch.cat(seen).double()
    lo, hi = method.path.t_end, method.path.t_start
    assert lo <= t.min() and t.max() <= hi
    assert abs(float((t > (lo + hi) / 2).double().mean()) - upper_half) < 0.05
    with pytest.raises(InputError, match=r"^train_times: expected one of"):
        WDNOConfig(train_times="low")


class FlatPriorDenoiser(nn.Module):
    """x0 = x_t / alpha(t): the exact denoiser of a flat (improper) prior, so that guided
    sampling is plain descent on the objective."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def forward(self, x, t):
        return x / expand_like(self.path.alpha(t), x).to(x.dtype)


def test_control_guidance_lowers_the_objective_and_holds_the_states(data):
    u, f = data
    method = fitted(data, dataclasses.replace(TINY, task="control"))
    method.net.unet = FlatPriorDenoiser(method.path)
    u0, target = u[:8, 0], u[:8, -1]

    def objective(guidance):
        gen = torch.Generator().manual_seed(0)
        options = {"guidance": guidance, "energy_weight": 0.01, "eta": 0.0, "steps": 10}
        u_gen, f_gen = method.control(u0, target, generator=gen, **options)
        return float(control_objective(u_gen[:, -1], target, f_gen, 0.01).mean())

    costs = [objective(g) for g in (0.0, 3.0, 30.0)]
    assert costs[0] > costs[1] > costs[2] and costs[2] < 0.2 * costs[0], costs
    coeffs = method.control_coefficients(u0, target, guidance=3.0, steps=4)
    known = method.encode(u[:8], f[:8], u0, target)
    assert_close(coeffs[:, method.known], known[:, method.known], atol=1e-6)
    with pytest.raises(InputError, match=r"^task: this model was trained for 'control'"):
        method.sample(u0, f[:8])
    with pytest.raises(InputError, match=r"^task: expected one of"):
        WDNOConfig(task="optimise")


def test_guidance_through_the_solver_lowers_the_true_objective(data):
    """With ``solver``, J's tracking term is judged on the solver's final state under the
    predicted forcing, so guidance lowers J as the true solver measures it."""
    u, _ = data
    method = fitted(data, dataclasses.replace(TINY, task="control"))
    method.net.unet = FlatPriorDenoiser(method.path)
    u0, target = u[:8, 0], u[:8, -1]
    problem = ControlProblem(t_end=0.5, energy_weight=0.01)

    def true_objective(guidance):
        gen = torch.Generator().manual_seed(0)
        options = {"guidance": guidance, "energy_weight": 0.01, "eta": 0.0, "steps": 10}
        _, f_gen = method.control(u0, target, solver=problem.solve, generator=gen, **options)
        return float(evaluate_control(u0.double(), f_gen.double(), target, problem).mean())

    costs = [true_objective(g) for g in (0.0, 3.0, 30.0)]
    assert costs[0] > costs[1] > costs[2] and costs[2] < 0.5 * costs[0], costs
