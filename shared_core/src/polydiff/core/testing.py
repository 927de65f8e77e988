"""Exact-score targets for testing solvers without training.

:class:`GaussianMixture` gives E[x0 | x_t] in closed form for any affine or mean-reverting path, so
every parameterization (eps, x0, v, score, velocity) is exact; :func:`reference_ode` solves the
probability-flow ODE to high accuracy with scipy's DOP853 in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from polydiff.core.param import from_x0
from polydiff.core.paths import AffinePath, as_time
from polydiff.core.utils import append_dims


class GaussianMixture:
    """sum_k pi_k N(m_k, S_k) in D dimensions.

    Args:
        means: [K, D].
        covs: [K, D, D] (full), [K, D] (diagonal), [K] or a float (isotropic std^2 per component).
        weights: [K] mixture weights (normalized here), uniform if None.
    """

    def __init__(self, means, covs, weights=None) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise ValueError(f"means must be [K, D], got shape {tuple(self.means.shape)}")
        K, D = self.means.shape
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 0:
            covs = covs.expand(K)
        if covs.ndim == 1:
            covs = covs[:, None, None] * torch.eye(D, dtype=torch.float64)
        elif covs.ndim == 2:
            covs = torch.diag_embed(covs)
        if covs.shape != (K, D, D):
            raise ValueError(
                f"covs must broadcast to [K, D, D] = [{K}, {D}, {D}], got {tuple(covs.shape)}"
            )
        self.covs = covs
        w = (
            torch.ones(K, dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        if w.shape != (K,) or (w < 0).any():
            raise ValueError("weights must be a non-negative [K] vector")
        self.weights = w / w.sum()
        self.chol = torch.linalg.cholesky(self.covs)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + (self.chol[k] @ z[..., None])[..., 0]

    def _components(self, x: Tensor, t: Tensor, path: AffinePath, mu: Tensor | None):
        """Per component: log N(y; alpha m_k, alpha^2 S_k + sigma^2 I) and E[x0 - mu | y, k]."""
        x = x.to(torch.float64)
        y = x if mu is None else x - mu.to(torch.float64)
        t = as_time(t, x).reshape(-1)  # [1] (shared time: one factorization) or [B]
        a, s = path.alpha(t)[:, None, None, None], path.sigma(t)[:, None, None, None]
        eye = torch.eye(self.dim, dtype=torch.float64, device=x.device)
        means = self.means.to(x.device)[None]  # [1, K, D]
        if mu is not None:
            means = means - mu.to(torch.float64)[:, None, :]
        covs = self.covs.to(x.device)[None]  # [1, K, D, D]
        C = a**2 * covs + s**2 * eye  # [B, K, D, D]
        L = torch.linalg.cholesky(C)
        r = (y[:, None, :] - a[..., 0] * means)[..., None]  # [B, K, D, 1]
        sol = torch.cholesky_solve(r, L.expand(r.shape[0], *L.shape[1:]))
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        logp = (
            -0.5 * (r * sol).sum((-2, -1)) - 0.5 * logdet - 0.5 * self.dim * math.log(2 * math.pi)
        )
        mean_k = means + (a * covs @ sol)[..., 0]
        return logp, mean_k

    def _rows(self, x: Tensor, t: Tensor, mu: Tensor | None):
        """x [..., D] as rows [N, D] (i.i.d. positions), with t ([] or per row) and mu to match;
        t may have x's leading shape or x's shape with a trailing 1 (per-position times)."""
        if x.ndim == 2:
            return x, t, mu
        t = as_time(t, x)
        if t.ndim == x.ndim:
            t = t.squeeze(-1)
        rows = x.reshape(-1, self.dim)
        if t.ndim > 0:  # leading-aligned, like expand_like
            t = append_dims(t, x.ndim - 1)
            t = t.expand(x.shape[:-1]).reshape(-1)
        return rows, t, None if mu is None else mu.expand_as(x).reshape(-1, self.dim)

    def posterior_mean(
        self, x: Tensor, t: Tensor, path: AffinePath, mu: Tensor | None = None
    ) -> Tensor:
        """E[x0 | x_t = x] (uncentered), float64, for x [B, D] and t of shape [] or [B]; or x
        [B, L, ..., D] of i.i.d. positions with a time per position ([B, L, ...] or x's shape
        with a trailing 1)."""
        rows, t, mu = self._rows(x, t, mu)
        logp, mean_k = self._components(rows, t, path, mu)
        resp = torch.softmax(logp + torch.log(self.weights.to(x.device)), dim=-1)
        x0 = (resp[..., None] * mean_k).sum(1)
        x0 = x0 if mu is None else x0 + mu.to(torch.float64)
        return x0.reshape(x.shape)

    def log_prob(self, x: Tensor, t: Tensor, path: AffinePath, mu: Tensor | None = None) -> Tensor:
        """log p_t(x) of the marginal at time t (for t -> 0 on a path with sigma -> 0: the data)."""
        logp, _ = self._components(x, t, path, mu)
        return torch.logsumexp(logp + torch.log(self.weights.to(x.device)), dim=-1)

    def model(
        self, path: AffinePath, prediction: str = "eps", mu: Tensor | None = None
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """An exact ``model_fn(x, t)`` returning ``prediction`` in ``x``'s dtype."""

        def model_fn(x: Tensor, t: Tensor) -> Tensor:
            x0 = self.posterior_mean(x, t, path, mu)
            x64 = x.to(torch.float64)
            if mu is not None:
                x0, x64 = x0 - mu.to(torch.float64), x64 - mu.to(torch.float64)
            pred = from_x0(x0, prediction, x64, as_time(t, x), path)
            if prediction == "x0" and mu is not None:
                pred = pred + mu.to(torch.float64)
            return pred.to(x.dtype)

        return model_fn


def pf_ode_velocity(
    gmm: GaussianMixture, path: AffinePath, x: Tensor, t: Tensor, mu: Tensor | None = None
) -> Tensor:
    """dx/dt of the probability-flow ODE: alpha' x0_hat + sigma' eps_hat (centered)."""
    x0 = gmm.posterior_mean(x, t, path, mu)
    y = x.to(torch.float64)
    if mu is not None:
        x0, y = x0 - mu, y - mu
    return from_x0(x0, "velocity", y, as_time(t, x), path)


def reference_ode(
    gmm: GaussianMixture,
    path: AffinePath,
    x_start: Tensor,
    t_start: float,
    t_end: float,
    *,
    mu: Tensor | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> Tensor:
    """High-accuracy solution of the probability-flow ODE from t_start to t_end (scipy DOP853,
    float64; the whole batch as one system). Returns float64 [B, D].

    The ODE is integrated in lambda = log(alpha/sigma) on x~ = (x - mu)/alpha, where it reads
    dx~/dlambda = D(x, t(lambda)) - x~ (Karras et al. 2022, Eq. 4 with sigma~ = e^{-lambda}): the
    same trajectory as dx/dt = alpha' x0_hat + sigma' eps_hat, but smooth, so DOP853 takes far fewer
    steps at rtol 1e-12.
    """
    from scipy.integrate import solve_ivp

    shape = x_start.shape
    mu64 = None if mu is None else mu.to(torch.float64)
    lam0, lam1 = (float(path.log_snr(as_time(t))) for t in (t_start, t_end))

    def rhs(lam: float, flat: np.ndarray) -> np.ndarray:
        t = path.t_of_log_snr(torch.tensor(lam, dtype=torch.float64))
        x_tilde = torch.from_numpy(flat).view(shape)
        y = path.alpha(t) * x_tilde
        D = gmm.posterior_mean(y if mu64 is None else y + mu64, t, path, mu64)
        D = D if mu64 is None else D - mu64
        return (D - x_tilde).reshape(-1).numpy()

    y0 = x_start.detach().to(torch.float64)
    y0 = y0 if mu64 is None else y0 - mu64
    x_tilde0 = (y0 / path.alpha(as_time(t_start))).reshape(-1).numpy()
    sol = solve_ivp(rhs, (lam0, lam1), x_tilde0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference ODE solve failed: {sol.message}")
    y1 = torch.from_numpy(sol.y[:, -1].copy()).view(shape) * path.alpha(as_time(t_end))
    return y1 if mu64 is None else y1 + mu64


def marginal_cdf_1d(gmm: GaussianMixture, path: AffinePath, x: np.ndarray, t: float) -> np.ndarray:
    """CDF of the 1-D marginal p_t (for Wasserstein-1 checks of SDE samplers)."""
    from scipy.stats import norm

    if gmm.dim != 1:
        raise ValueError("marginal_cdf_1d needs a 1-D mixture")
    tt = as_time(t)
    a, s = float(path.alpha(tt)), float(path.sigma(tt))
    m = gmm.means[:, 0].numpy() * a
    sd = np.sqrt(a**2 * gmm.covs[:, 0, 0].numpy() + s**2)
    return (gmm.weights.numpy() * norm.cdf((x[:, None] - m) / sd)).sum(-1)


def wasserstein1_1d(samples: Tensor, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """W1 between an empirical 1-D sample and a distribution given by its CDF:
    int |F_n(x) - F(x)| dx on a fine grid."""
    s = np.sort(samples.detach().to(torch.float64).reshape(-1).numpy())
    lo, hi = s[0] - 1.0, s[-1] + 1.0
    grid = np.linspace(lo, hi, 20001)
    emp = np.searchsorted(s, grid, side="right") / s.size
    return float(np.trapezoid(np.abs(emp - cdf(grid)), grid))


__all__ = [
    "GaussianMixture",
    "marginal_cdf_1d",
    "pf_ode_velocity",
    "reference_ode",
    "wasserstein1_1d",
]
