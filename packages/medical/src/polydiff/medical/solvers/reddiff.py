"""RED-diff: variational posterior sampling, the diffusion prior as a regulariser of Adam steps."""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.core.progress import report
from polydiff.core.utils import expand_like
from polydiff.medical.baselines import cg_least_squares
from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.solvers.common import (
    Reconstruction,
    SlicePrior,
    resolve_norm2,
    volume_shape,
)


@torch.no_grad()
def red_diff(
    prior: SlicePrior,
    op: LinearOperator,
    y: Tensor,
    *,
    steps: int = 100,
    lam: float = 1.0,
    lr: float = 0.003,
    betas: tuple[float, float] = (0.9, 0.99),
    x_init: Tensor | None = None,
    n_init_cg: int = 10,
    op_norm2: float | None = None,
    generator: torch.Generator | None = None,
) -> Reconstruction:
    """RED-diff (Mardani, Song, Kautz and Vahdat, 2024, "A Variational Perspective on Solving
    Inverse Problems with Diffusion Models", ICLR, Algorithm 1 / Eq. 9-11): fit the mean ``mu``
    of q(x0 | y) = N(mu, 0) by Adam on

        loss(mu) = 0.5 mean((y - A mu)^2) + lam SNR_t^-1 mean(sg(eps_theta(x_t, t) - eps) mu),
        x_t = alpha_t mu + sigma_t eps,   SNR_t^-1 = sigma_t / alpha_t,

    with t running down the grid (one noise draw and one network evaluation per step). The
    gradient ``A^T (A mu - y) / m + lam SNR^-1 (eps_hat - eps) / n`` (m, n: the measurement
    and volume sizes) and Adam are written out, so no graph is kept (and torch.optim, whose
    first use imports the compiler stack, is not needed). ``mu`` starts at a pseudo-inverse
    ``A^+ y``, here ``n_init_cg`` CG least-squares iterations (or ``x_init``).

    Scale: the data term's gradient grows with ``L = ||A||^2``, so the loss is divided by ``L``
    (``lam`` relative to it; the same minimiser as ``lam_abs = lam L``, and Adam's epsilon sees
    the same numbers in any units). ``op_norm2=None``: estimated; ``op_norm2=1``: the paper's
    absolute ``lam``, right for orthonormal MRI or inpainting where ``L = 1``.
    """
    if lam < 0 or lr <= 0:
        raise ValueError(f"need lam >= 0 and lr > 0, got {lam}, {lr}")
    shape = volume_shape(op, y)
    path, nfe0 = prior.path, prior.nfe
    ts = prior.grid(steps).to(y.device)
    mu = cg_least_squares(op, y, n_iter=n_init_cg) if x_init is None else x_init.clone()
    if tuple(mu.shape) != shape:
        raise ValueError(f"x_init has shape {tuple(mu.shape)}, expected {shape}")
    mu = mu.detach()
    m, n = y.numel(), mu.numel()
    norm2 = resolve_norm2(op, op_norm2)
    beta1, beta2 = betas
    m1, m2 = torch.zeros_like(mu), torch.zeros_like(mu)  # Adam's moment estimates
    for i in range(steps):
        t = ts[i + 1]  # the grid's interior and end: t_start itself carries no signal on VP
        a, s = expand_like(path.alpha(t), mu), expand_like(path.sigma(t), mu)
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype).to(mu.device)
        eps_hat = prior.eps(a * mu + s * eps, t).detach()
        grad_obs = op.adjoint(op.forward(mu) - y) / m
        if grad_obs.is_complex():
            raise ValueError("red_diff needs a real adjoint (CartesianMRI(real_input=True))")
        grad = grad_obs / norm2 + lam * (s / a) * (eps_hat - eps) / n
        # Adam (Kingma and Ba, 2015, "Adam: A Method for Stochastic Optimization", Alg. 1)
        m1 = beta1 * m1 + (1 - beta1) * grad
        m2 = beta2 * m2 + (1 - beta2) * grad.square()
        m1_hat, m2_hat = m1 / (1 - beta1 ** (i + 1)), m2 / (1 - beta2 ** (i + 1))
        mu = mu - lr * m1_hat / (m2_hat.sqrt() + 1e-8)
        report(i + 1, steps, "red_diff")
    return Reconstruction(mu, prior.nfe - nfe0)
