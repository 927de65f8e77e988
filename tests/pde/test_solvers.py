"""The 1D solvers against exact solutions: convergence orders, the exact shift, forcing, CFL."""

import math

import numpy as np
import pytest
import torch
from helpers import assert_close

from polydiff.core.errors import InputError
from polydiff.pde.solvers import (
    advection_exact,
    burgers_cole_hopf,
    grid_1d,
    grid_spacing,
    output_times,
    resample_grid,
    solve_advection,
    solve_burgers,
)


def observed_orders(errors):
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


def wave(x):
    return torch.sin(2 * math.pi * x) + 0.5 * torch.cos(4 * math.pi * x)


def test_advection_exact_shift_matches_the_analytic_solution():
    x, c, t_end = grid_1d(64), 0.37, 0.9
    u = advection_exact(wave(x)[None], c, t_end, 4)
    for k, t in enumerate(output_times(t_end, 4)):
        assert_close(u[0, k], wave(x - c * t), atol=1e-12)
    # a shift by a whole period returns the samples, including the Nyquist mode
    u0 = torch.randn(3, 16, dtype=torch.float64)
    assert_close(advection_exact(u0, 1.0, 1.0, 2)[:, -1], u0, atol=1e-12)
    assert_close(advection_exact(u0, 1 / 16, 1.0, 2)[:, -1], torch.roll(u0, 1, -1), atol=1e-12)


@pytest.mark.parametrize(("scheme", "order"), [("upwind", 1), ("lax_wendroff", 2)])
@pytest.mark.parametrize("c", [0.7, -0.7])
def test_advection_scheme_converges_at_its_order(scheme, order, c):
    errors = []
    for nx in (32, 64, 128):
        x = grid_1d(nx)
        u = solve_advection(wave(x)[None], c, 0.5, 3, dt=0.5 / (nx * abs(c)), scheme=scheme)
        errors.append(float((u[0, -1] - wave(x - c * 0.5)).abs().max()))
    assert all(abs(p - order) < 0.15 for p in observed_orders(errors)), errors


@pytest.mark.parametrize(
    ("boundary", "nu", "a", "modes"),
    [
        ("dirichlet", 0.01, 1.1, {1: 1.0}),
        ("dirichlet", 0.05, 2.0, {1: 1.0, 3: 0.5}),
        ("periodic", 0.01, 1.5, {1: 1.0, 2: 0.3}),
    ],
)
def test_unforced_burgers_converges_to_cole_hopf_at_second_order(boundary, nu, a, modes):
    # dt proportional to dx^2 (diffusion number 0.2): O(dt) + O(dx^2) errors both halve twice
    errors = []
    for nx in (32, 64, 128):
        x, t = grid_1d(nx, boundary), output_times(0.5, 3)
        exact = burgers_cole_hopf(x, t, nu, a, modes, boundary)
        dt = 0.2 * grid_spacing(nx, boundary) ** 2 / nu
        u = solve_burgers(exact[0][None], 0.5, 3, nu=nu, dt=dt, boundary=boundary)
        errors.append(float((u[0] - exact).abs().max()))
    assert errors[-1] < 1e-4
    assert all(p > 1.8 for p in observed_orders(errors)), errors


def test_forced_burgers_converges_to_a_manufactured_solution():
    # u = A exp(-t) sin(pi x) solves u_t + u u_x = nu u_xx + f for the f below (u = 0 at both ends)
    amp, nu = 1.5, 0.01

    def exact(t, x):
        return amp * math.exp(-t) * torch.sin(math.pi * x)

    errors = []
    for nx in (32, 64, 128):
        x = grid_1d(nx, "dirichlet")

        def forcing(t, x=x):
            u = exact(t, x)
            return (-1 + nu * math.pi**2) * u + math.pi * u * amp * math.exp(-t) * torch.cos(
                math.pi * x
            )

        dt = 0.05 * grid_spacing(nx, "dirichlet") ** 2 / nu
        u = solve_burgers(exact(0.0, x)[None], 1.0, 2, nu=nu, forcing=forcing, dt=dt)
        errors.append(float((u[0, -1] - exact(1.0, x)).abs().max()))
    assert errors[-1] < 1e-3
    assert all(p > 1.8 for p in observed_orders(errors)), errors


def test_forcing_array_is_interpolated_linearly_in_time():
    # f = (1 + 2 t) g(x) is linear in t, so the array on the output times equals the callable
    x, t = grid_1d(32, "dirichlet"), output_times(1.0, 5)
    g = torch.stack([torch.sin(math.pi * x), torch.exp(-((x - 0.4) ** 2) / 0.02)])
    u0 = 0.3 * torch.sin(2 * math.pi * x).repeat(2, 1)
    array = (1 + 2 * t)[None, :, None] * g[:, None, :]
    by_array = solve_burgers(u0, 1.0, 5, forcing=array, dt=1e-3)
    by_callable = solve_burgers(u0, 1.0, 5, forcing=lambda s: (1 + 2 * s) * g, dt=1e-3)
    assert_close(by_array, by_callable, atol=1e-12)
    assert (by_array - solve_burgers(u0, 1.0, 5, dt=1e-3)).abs().max() > 0.1


def test_uniform_forcing_on_a_periodic_domain_integrates_in_time():
    # u0 = 0 and f(t) uniform in x: u stays uniform and u(t) = int_0^t f (forward Euler: O(dt))
    nx, dt = 16, 1e-3
    t = output_times(1.0, 6)
    f = (torch.cos(3 * t)[None, :, None]).expand(1, 6, nx)
    u = solve_burgers(
        torch.zeros(1, nx, dtype=torch.float64), 1.0, 6, forcing=f, dt=dt, boundary="periodic"
    )
    assert float(u[0].std(-1).max()) < 1e-14
    integral = torch.tensor(np.interp(np.linspace(0, 1, 2001), t.numpy(), np.cos(3 * t.numpy())))
    expected = float(torch.trapezoid(integral, dx=1 / 2000))
    assert abs(float(u[0, -1, 0]) - expected) < 3 * dt


def test_solvers_are_batched_and_differentiable():
    x = grid_1d(32, "dirichlet")
    u0 = torch.stack([torch.sin(math.pi * x), 0.5 * torch.sin(2 * math.pi * x)])
    f = torch.zeros(2, 3, 32, dtype=torch.float64, requires_grad=True)
    u = solve_burgers(u0, 0.2, 3, forcing=f, dt=1e-3)
    assert u.shape == (2, 3, 32)
    assert_close(u[1], solve_burgers(u0[1:], 0.2, 3, dt=1e-3)[0], atol=1e-13)
    u[:, -1].pow(2).sum().backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda u0: solve_advection(u0, 1.0, 1.0, 3, dt=0.1), "dt: CFL"),
        (lambda u0: solve_advection(u0, 1.0, 1.0, 3, dt=0.01, scheme="ftcs"), "scheme"),
        (lambda u0: solve_burgers(u0, 1.0, 3, dt=0.1), "dt: diffusion number"),
        (lambda u0: solve_burgers(3 * u0, 1.0, 3, nu=0.01, dt=3e-3), "dt: forward Euler"),
        (lambda u0: solve_burgers(u0, 1.0, 3, forcing=torch.full((1, 3, 32), 20.0)), "dt: "),
        (lambda u0: solve_burgers(u0, 1.0, 3, nu=0.0), "nu"),
        (lambda u0: solve_burgers(u0, 1.0, 3, boundary="neumann"), "boundary"),
        (lambda u0: solve_burgers(u0, 1.0, 1), "nt"),
        (lambda u0: solve_burgers(u0, -1.0, 3), "t_end"),
        (lambda u0: solve_burgers(u0[0], 1.0, 3), "u0"),
        (lambda u0: solve_burgers(u0 * float("nan"), 1.0, 3), "u0"),
        (lambda u0: solve_burgers(u0, 1.0, 3, forcing=torch.zeros(1, 2, 32)), "forcing"),
        (lambda u0: solve_burgers(u0, 1.0, 3, forcing=torch.full((1, 3, 32), math.nan)), "forcing"),
    ],
)
def test_bad_solver_options_raise_input_error_naming_the_option(call, option):
    u0 = torch.sin(math.pi * grid_1d(32, "dirichlet"))[None]
    with pytest.raises(InputError, match=f"^{option}"):
        call(u0)


@pytest.mark.parametrize("boundary", ["dirichlet", "periodic"])
def test_resample_grid_keeps_nodes_and_converges_at_second_order(boundary):
    n = 16
    u = wave(grid_1d(n, boundary)) * torch.sin(math.pi * grid_1d(n, boundary))[None]
    assert_close(resample_grid(u, n, boundary), u, atol=1e-14)
    # the grid of 2n + 1 (Dirichlet) or 2n (periodic) points holds every node of the n-point grid
    fine = resample_grid(u, 2 * n + 1 if boundary == "dirichlet" else 2 * n, boundary)
    assert_close(fine[..., 1::2] if boundary == "dirichlet" else fine[..., ::2], u, atol=1e-14)

    def smooth(x):  # zero at both ends, periodic too
        return torch.sin(math.pi * x) ** 2 * wave(x)

    target = grid_1d(50, boundary)
    errors = [
        (resample_grid(smooth(grid_1d(m, boundary)), 50, boundary) - smooth(target)).abs().max()
        for m in (32, 64, 128)
    ]
    assert all(1.8 < order < 2.2 for order in observed_orders(errors))
