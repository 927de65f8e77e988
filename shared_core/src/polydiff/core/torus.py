"""The torus: wrapping, von Mises sampling, a wrapped-normal mixture with exact diffused scores,
and score-based samplers that stay on the torus.

Coordinates live on [low, low + period)^d: fractional coordinates ([0, 1), DiffCSP) or angles
([-pi, pi), CrysBFN). The variance-exploding diffusion on the torus is
x_t = wrap(x_0 + sigma(t) eps) (De Bortoli et al. 2022, "Riemannian Score-Based Generative
Modelling"; Jiao et al. 2023, "Crystal Structure Prediction by Joint Equivariant Diffusion"
(DiffCSP)): its marginal is a wrapped normal, a sum over windings k of
N(x + k period; mu, s^2). Any VE path of the core (``polydiff.core.paths.VE``, sigma(t) = t)
drives it: the core ODE solvers with ``prediction="score"`` and ``xt_hook=wrap_hook()``, or
:class:`TorusPC` below.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polydiff.core.discrete.sampling import RandomSource, uniforms
from polydiff.core.solvers.base import SolverBase, State, register_solver
from polydiff.core.utils import expand_like

__all__ = [
    "ScoreModel",
    "TorusPC",
    "WrappedNormalMixture",
    "circular_moment",
    "sample_von_mises",
    "wrap",
    "wrap_hook",
]


def wrap(x: Tensor, low: float = 0.0, period: float = 1.0) -> Tensor:
    """Map x onto [low, low + period)."""
    return torch.remainder(x - low, period) + low


def wrap_hook(low: float = 0.0, period: float = 1.0):
    """x_t hook for ``polydiff.core.sample``: keep the state on the torus after every step."""

    def hook(x: Tensor, t: Tensor, noise) -> Tensor:
        return wrap(x, low, period)

    return hook


def circular_moment(x: Tensor, period: float = 1.0, dim: int = 0) -> Tensor:
    """First trigonometric moment E[exp(2 pi i x / period)] as a complex tensor (along dim)."""
    return torch.exp(1j * (2 * math.pi / period) * x.double()).mean(dim)


def sample_von_mises(
    loc: Tensor, concentration: Tensor, source: RandomSource = None, rounds: int = 20
) -> Tensor:
    """von Mises draws on [-pi, pi) by Best & Fisher's (1979) wrapped-Cauchy rejection sampler,
    vectorized with a fixed number of rounds (acceptance >= 0.66 per round, so 20 rounds leave a
    failure probability below 1e-9; failures fall back to the mode) and no host sync.
    ``source``: torch.Generator, the driver's noise(like) callable, or None."""
    loc, kappa = torch.broadcast_tensors(loc.double(), torch.as_tensor(concentration).double())
    kappa = kappa.clamp_min(1e-12)
    tau = 1 + torch.sqrt(1 + 4 * kappa**2)
    rho = (tau - torch.sqrt(2 * tau)) / (2 * kappa)
    r = (1 + rho**2) / (2 * rho)
    theta = torch.zeros_like(loc)
    done = torch.zeros_like(loc, dtype=torch.bool)
    for _ in range(rounds):
        u1, u2, u3 = (uniforms(loc.shape, loc.device, source) for _ in range(3))
        z = torch.cos(math.pi * u1)
        f = (1 + r * z) / (r + z)
        c = kappa * (r - f)
        accept = (c * (2 - c) - u2 > 0) | (torch.log(c / u2) + 1 - c >= 0)
        cand = torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1, 1))
        theta = torch.where(accept & ~done, cand, theta)
        done = done | accept
    # tiny concentrations: r overflows the proposal; the law is uniform there anyway
    uniform = (2 * uniforms(loc.shape, loc.device, source) - 1) * math.pi
    theta = torch.where(kappa < 1e-6, uniform, theta)
    return wrap(loc + theta, -math.pi, 2 * math.pi)


class WrappedNormalMixture:
    """sum_m w_m prod_d WN(x_d; mean_md, std_md^2) on [low, low + period)^d, with the exact density
    and score of its VE-diffused marginal (variance std^2 + sigma^2), truncated to |k| <= windings
    (terms beyond are below exp(-(windings - 1/2)^2 period^2 / (2 var)))."""

    def __init__(
        self,
        means: Tensor,
        stds: Tensor | float,
        weights: Tensor | None = None,
        *,
        low: float = 0.0,
        period: float = 1.0,
        windings: int = 4,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2:
            raise ValueError(f"means must be [components, dim], got shape {tuple(means.shape)}")
        M, dim = means.shape
        stds = torch.as_tensor(stds, dtype=torch.float64)
        stds = stds.reshape(-1, 1) if stds.dim() == 1 else stds  # one std per component
        stds = stds.expand(M, dim).contiguous()
        weights = torch.full((M,), 1.0 / M, dtype=torch.float64) if weights is None else weights
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if (stds <= 0).any() or weights.shape != (M,) or (weights < 0).any():
            raise ValueError("stds must be > 0 and weights nonnegative with one per component")
        self.means, self.stds = means, stds
        self.weights = weights / weights.sum()
        self.low, self.period, self.windings = low, period, windings

    def _terms(self, x: Tensor, sigma: Tensor | float):
        """Per (sample, component, dim, winding): the displacement d and the variance."""
        x = wrap(x.double(), self.low, self.period)
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
        sigma = sigma.reshape(-1, 1, 1) if sigma.dim() else sigma
        var = (self.stds.to(x.device) ** 2 + sigma**2).unsqueeze(-1)  # [B|1, M, d, 1]
        k = torch.arange(-self.windings, self.windings + 1, dtype=torch.float64, device=x.device)
        d = x[:, None, :, None] + k * self.period - self.means.to(x.device)[None, :, :, None]
        return d, var

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_sigma(x) [B] of the mixture diffused by VE noise sigma (scalar or [B])."""
        d, var = self._terms(x, sigma)
        log_n = -0.5 * d**2 / var - 0.5 * torch.log(2 * math.pi * var)
        log_wn = torch.logsumexp(log_n, -1).sum(-1)  # [B, M]
        return torch.logsumexp(torch.log(self.weights.to(x.device)) + log_wn, -1)

    def score(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """grad_x log p_sigma(x) [B, d]: per winding -(d / var), averaged with the winding and
        component responsibilities."""
        d, var = self._terms(x, sigma)
        log_n = -0.5 * d**2 / var - 0.5 * torch.log(2 * math.pi * var)
        log_wn = torch.logsumexp(log_n, -1)  # [B, M, d]
        grad_wn = (torch.softmax(log_n, -1) * (-d / var)).sum(-1)  # d/dx log WN, [B, M, d]
        resp = torch.softmax(torch.log(self.weights.to(x.device)) + log_wn.sum(-1), -1)
        return (resp.unsqueeze(-1) * grad_wn).sum(1).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return wrap(self.means[comp] + self.stds[comp] * eps, self.low, self.period)

    def circular_moment(self, harmonic: int = 1, sigma: float = 0.0) -> Tensor:
        """Exact E[exp(2 pi i h x_d / period)] per dim [d] (complex): for a wrapped normal it is
        exp(2 pi i h mean / period) exp(-2 pi^2 h^2 var / period^2)."""
        w = 2 * math.pi * harmonic / self.period
        var = self.stds**2 + sigma**2
        terms = torch.exp(1j * w * (self.means - self.low)) * torch.exp(-0.5 * w**2 * var)
        return (self.weights.unsqueeze(-1) * terms).sum(0) * torch.exp(
            torch.tensor(1j * w * self.low)
        )


class ScoreModel:
    """``model_fn(x, t) -> score`` carrying its VE path (``model.path``)."""

    def __init__(self, model_fn, path) -> None:
        self.model_fn, self.path = model_fn, path

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.model_fn(x, t)


@register_solver("torus_pc")
class TorusPC(SolverBase):
    """Predictor-corrector sampling of a VE diffusion on the torus (Song et al. 2021,
    "Score-Based Generative Modeling through SDEs", Alg. 2 for VE; DiffCSP's sampler for the
    fractional coordinates). Predictor: reverse diffusion x <- x + (sigma_t^2 - sigma_s^2) score +
    sqrt(sigma_t^2 - sigma_s^2) z; corrector: ``corrector_steps`` Langevin steps
    x <- x + eps score + sqrt(2 eps) z with eps = 2 (snr sigma_s)^2 (Song's 2 (snr ||z|| /
    ||score||)^2 with its typical ||score|| ~ ||z|| / sigma: the norm ratio is erratic in few
    dimensions). Every
    update is wrapped onto [low, low + period). The model returns the score (prediction "score");
    the path gives sigma(t) (any VE path, e.g. ``polydiff.core.paths.VE``)."""

    stochastic = True

    def __init__(
        self,
        path=None,
        *,
        corrector_steps: int = 1,
        snr: float = 0.16,
        low: float = 0.0,
        period: float = 1.0,
    ) -> None:
        if corrector_steps < 0 or snr <= 0 or period <= 0:
            raise ValueError("need corrector_steps >= 0, snr > 0 and period > 0")
        self.path, self.corrector_steps, self.snr = path, corrector_steps, snr
        self.low, self.period = low, period
        self.nfe_per_step = 1 + corrector_steps

    def wrap_model(self, model_fn, path, prediction: str, *, mu: Tensor | None = None):
        if prediction != "score" or mu is not None:
            raise ValueError("torus_pc: the model must return the score (prediction='score')")
        return ScoreModel(model_fn, path)

    def init(self, x: Tensor, t: Tensor) -> State:
        return State(x=wrap(x, self.low, self.period))

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None) -> State:
        path = getattr(model, "path", None) or self.path
        x = state.x
        t_cur = torch.as_tensor(t_cur, dtype=torch.float64, device=x.device)
        t_next = torch.as_tensor(t_next, dtype=torch.float64, device=x.device)
        var = expand_like(path.sigma(t_cur) ** 2 - path.sigma(t_next) ** 2, x)
        t_model = t_cur if t_cur.dim() else t_cur.expand(x.shape[0])
        x = x + var * model(x, t_model) + torch.sqrt(var) * _normals_like(x, noise)
        x = wrap(x, self.low, self.period)
        t_model = t_next if t_next.dim() else t_next.expand(x.shape[0])
        for _ in range(self.corrector_steps):
            score = model(x, t_model)
            eps = 2 * self.snr**2 * expand_like(path.sigma(t_next) ** 2, x)
            z = _normals_like(x, noise)
            x = wrap(x + eps * score + torch.sqrt(2 * eps) * z, self.low, self.period)
        return State(x=x)


def _normals_like(x: Tensor, source: RandomSource) -> Tensor:
    if source is None or isinstance(source, torch.Generator):
        return torch.randn(x.shape, generator=source, dtype=x.dtype, device=x.device)
    return source(x)
