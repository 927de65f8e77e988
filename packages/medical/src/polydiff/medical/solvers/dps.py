"""DPS: diffusion posterior sampling by gradient guidance through the Tweedie estimate."""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.solvers.common import (
    Reconstruction,
    SlicePrior,
    check_volume_problem,
    expand_t,
    resolve_norm2,
)


def dps(
    prior: SlicePrior,
    op: LinearOperator,
    y: Tensor,
    *,
    steps: int = 100,
    zeta: float = 1.5,
    op_norm2: float | None = None,
    generator: torch.Generator | None = None,
) -> Reconstruction:
    """Diffusion Posterior Sampling (Chung, Kim, Mccann, Klasky and Ye, 2023, "Diffusion
    Posterior Sampling for General Noisy Inverse Problems", ICLR, Algorithm 1), slice by slice:

        x0_hat(x_t) = (x_t - sigma_t eps_theta(x_t, t)) / alpha_t
        x'          = DDPM ancestral step: mean + std xi of q(x_next | x_t, x0_hat)  (Ho et al.
                      2020, Eq. 6-7)
        x_next      = x' - zeta grad_{x_t} ||y_k - A x0_hat_k||_2   for every slice k

    The norm is not squared (the paper's step size ``zeta_i = zeta / ||y - A x0_hat||`` on the
    squared norm); zeta 0.3-1.0 in the paper. The gradient goes through the network (autograd),
    so ``op`` must be differentiable (every operator here is). One network evaluation (with its
    backward pass) per step; returns the final ``x0_hat``. The gradient of the unsquared norm
    scales with ``||A||``, so the step is ``zeta / sqrt(L)`` with ``L = ||A||^2``
    (``op_norm2=None``: estimated; ``op_norm2=1``: ``zeta`` in absolute units).
    """
    if zeta < 0:
        raise ValueError(f"zeta must be >= 0, got {zeta}")
    shape = (y.shape[0], *op.in_shape)
    check_volume_problem(op, y, shape)
    path, nfe0 = prior.path, prior.nfe
    step = zeta / resolve_norm2(op, op_norm2) ** 0.5
    ts = prior.grid(steps).to(y.device)
    dtype = y.real.dtype if y.is_complex() else y.dtype
    x = torch.randn(shape, generator=generator, dtype=dtype).to(y.device)
    x = x * expand_t(path.sigma(ts[0]), x)
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            eps = prior.eps(x_, t)
            x0 = (x_ - expand_t(path.sigma(t), x) * eps) / expand_t(path.alpha(t), x)
            residual = (y - op.forward(x0)).abs().square().flatten(1).sum(1).sqrt()
            (grad,) = torch.autograd.grad(residual.sum(), x_)
        mean, std = path.posterior(x, x0.detach(), t, t_next)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = (mean + std * xi).to(x.dtype) - step * grad
        x0 = x0.detach()
    return Reconstruction(x0, prior.nfe - nfe0)
