"""Bayesian Flow Networks: continuous, discrete and circular (von Mises) flows and their samplers.

Graves, Srivastava, Atkinson & Gomez (2023), "Bayesian Flow Networks" (BFN): a sender adds noise of
accuracy alpha to the data, a receiver keeps the Bayesian posterior over the data as its input
parameters theta, and the network maps theta to an output distribution. Circular data (angles,
fractional coordinates) follow Wu et al. (2025), "A Periodic Bayesian Flow for Material
Generation" (CrysBFN), whose von Mises update is non-additive in the accuracy.

Time. BFN time t runs 0 (prior) -> 1 (data). So that the core driver's decreasing grids run these
samplers unchanged, the solvers are stepped in s = 1 - t (``t_start = 1``, ``t_end = 0``) and call
the model with the BFN time t. A sampler of n steps makes n + 1 network calls: one per step and the
final output at t = 1, taken in the last step.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import i0e, i1e
from torch import Tensor

from polydiff.core.discrete.sampling import RandomSource, sample_categorical, uniforms
from polydiff.core.solvers.base import SolverBase, State, register_solver
from polydiff.core.torus import sample_von_mises, wrap
from polydiff.core.utils import append_dims

__all__ = [
    "BFNModel",
    "CircularBFN",
    "CircularBFNSampler",
    "CircularBFNState",
    "ContinuousBFN",
    "ContinuousBFNSampler",
    "ContinuousBFNState",
    "DiscreteBFN",
    "DiscreteBFNSampler",
    "DiscreteBFNState",
    "von_mises_entropy",
]


def _normals(like: Tensor, source: RandomSource) -> Tensor:
    """Standard normals shaped like ``like``: from the driver's noise(like) or a generator."""
    if source is None or isinstance(source, torch.Generator):
        return torch.randn(like.shape, generator=source, dtype=like.dtype, device=like.device)
    if callable(source):
        return source(like)
    raise TypeError(
        f"noise must be a torch.Generator, a noise(like) callable or None, got {type(source)}"
    )


def _time(t: Tensor | float, like: Tensor) -> Tensor:
    """A BFN time as a float64 tensor broadcastable against ``like`` (0-dim, [B] or [B, L])."""
    t = torch.as_tensor(t, dtype=torch.float64, device=like.device)
    return append_dims(t, like.dim()) if t.dim() else t


# ----------------------------------------------------------------------------- continuous data


class ContinuousBFN:
    """Continuous-data Bayesian flow (BFN Sec. 4). Input parameters: mean mu and precision rho of a
    Gaussian belief over x, prior N(0, 1). Accuracy schedule beta(t) = sigma_1^(-2t) - 1, so the
    precision is rho(t) = sigma_1^(-2t) and gamma(t) = beta / (1 + beta) = 1 - sigma_1^(2t).
    Data are assumed scaled to about unit range (sigma_1 is the final output resolution)."""

    t_start, t_end = 1.0, 0.0  # driver time s = 1 - t

    def __init__(self, sigma_1: float = math.sqrt(1e-3)) -> None:
        if not 0 < sigma_1 < 1:
            raise ValueError(f"sigma_1 must be in (0, 1), got {sigma_1}")
        self.sigma_1 = sigma_1

    def beta(self, t: Tensor) -> Tensor:
        return self.sigma_1 ** (-2 * t) - 1

    def gamma(self, t: Tensor) -> Tensor:
        return 1 - self.sigma_1 ** (2 * t)

    def log_snr(self, s: Tensor) -> Tensor:
        """log(gamma/(1 - gamma)) of the flow mu ~ N(gamma x, gamma (1 - gamma)), in driver time."""
        g = self.gamma(1 - torch.as_tensor(s, dtype=torch.float64))
        return torch.log(g) - torch.log1p(-g)

    def sender_sample(self, x: Tensor, alpha: Tensor, noise: RandomSource = None) -> Tensor:
        """y ~ N(x, alpha^-1 I): the sender distribution."""
        return x + _normals(x, noise) / torch.sqrt(alpha)

    def update(self, mu: Tensor, rho: Tensor, y: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """Bayesian update of N(mu, 1/rho) by y ~ N(x, 1/alpha): rho' = rho + alpha,
        mu' = (rho mu + alpha y) / rho'."""
        rho_new = rho + alpha
        return (rho * mu + alpha * y) / rho_new, rho_new

    def flow_sample(self, x: Tensor, t: Tensor | float, noise: RandomSource = None) -> Tensor:
        """mu ~ p_F(mu | x; t) = N(gamma(t) x, gamma(t)(1 - gamma(t)) I): the input at time t."""
        g = self.gamma(_time(t, x)).to(x.dtype)
        return g * x + torch.sqrt(g * (1 - g)) * _normals(x, noise)

    def output_from_eps(self, mu: Tensor, eps_hat: Tensor, t: Tensor | float, t_min: float = 1e-6):
        """x_hat = mu/gamma - sqrt((1 - gamma)/gamma) eps_hat (BFN Sec. 4), 0 for t < t_min."""
        t = _time(t, mu)
        g = self.gamma(t.clamp_min(t_min)).to(mu.dtype)
        x_hat = mu / g - torch.sqrt((1 - g) / g) * eps_hat
        return torch.where(t < t_min, torch.zeros_like(x_hat), x_hat)

    def loss(self, x_hat: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Continuous-time loss L^inf = -ln(sigma_1) sigma_1^(-2t) ||x - x_hat||^2 per sample [B]
        (BFN Sec. 4), averaged over t ~ U(0, 1)."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        w = -math.log(self.sigma_1) * self.sigma_1 ** (-2 * t)
        return w * (x - x_hat).double().pow(2).reshape(x.shape[0], -1).sum(-1)

    def discrete_loss_weight(self, i: Tensor, n: int) -> Tensor:
        """n-step loss weight n (1 - sigma_1^(2/n)) / (2 sigma_1^(2i/n)), i = 1..n
        (BFN Sec. 4)."""
        i = torch.as_tensor(i, dtype=torch.float64)
        return n * (1 - self.sigma_1 ** (2 / n)) / (2 * self.sigma_1 ** (2 * i / n))


# ----------------------------------------------------------------------------- discrete data


class DiscreteBFN:
    """Discrete-data Bayesian flow over K classes (BFN Sec. 6). Input parameters: categorical
    probabilities theta (stored as logits log theta), prior uniform. Accuracy beta(t) = beta_1 t^2.
    """

    t_start, t_end = 1.0, 0.0

    def __init__(self, num_classes: int, beta_1: float = 3.0) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if beta_1 <= 0:
            raise ValueError(f"beta_1 must be > 0, got {beta_1}")
        self.num_classes, self.beta_1 = num_classes, beta_1

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_1 * t**2

    def log_snr(self, s: Tensor) -> Tensor:
        """log beta(t) in driver time (-inf at t = 0, so the driver picks a uniform grid)."""
        return torch.log(self.beta(1 - torch.as_tensor(s, dtype=torch.float64)))

    def sender_sample(self, x: Tensor, alpha: Tensor, noise: RandomSource = None) -> Tensor:
        """y ~ N(alpha (K e_x - 1), alpha K I): the sender distribution of tokens x."""
        K = self.num_classes
        mean = alpha * (K * torch.nn.functional.one_hot(x.long(), K).double() - 1)
        return mean + torch.sqrt(alpha * K) * _normals(mean, noise)

    def update(self, log_theta: Tensor, y: Tensor) -> Tensor:
        """theta' = e^y theta / sum_k e^y_k theta_k, in log space (normalized)."""
        return torch.log_softmax(log_theta + y, -1)

    def flow_sample(self, x: Tensor, t: Tensor | float, noise: RandomSource = None) -> Tensor:
        """theta = softmax(y), y ~ N(beta(t)(K e_x - 1), beta(t) K I): the input at time t.
        Returns log theta."""
        beta = self.beta(_time(t, x)).unsqueeze(-1)
        return torch.log_softmax(self.sender_sample(x, beta, noise), -1)

    def loss(self, probs: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Continuous-time loss L^inf = K beta_1 t ||e_x - e_hat||^2 per sample [B] with
        e_hat = output probabilities (BFN Sec. 6)."""
        K = self.num_classes
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        err = (torch.nn.functional.one_hot(x.long(), K).double() - probs.double()).pow(2)
        return K * self.beta_1 * t * err.reshape(x.shape[0], -1).sum(-1)


# ----------------------------------------------------------------------------- circular data


def von_mises_entropy(kappa: float) -> float:
    """H(kappa) = log(2 pi I0(kappa)) - kappa I1(kappa)/I0(kappa) (scaled Bessels: no overflow)."""
    return math.log(2 * math.pi) + math.log(i0e(kappa)) + kappa - kappa * i1e(kappa) / i0e(kappa)


_GRID = np.linspace(-np.pi, np.pi, 1 << 12, endpoint=False)


def _expected_resultant(prior: float, alpha: float) -> float:
    """E|prior + alpha e^{i z}|, z ~ vM(0, alpha), by the periodic trapezoid rule (exponential
    convergence; 2^12 nodes resolve kappa up to ~1e5)."""
    log_w = alpha * (np.cos(_GRID) - 1)
    w = np.exp(log_w)
    r = np.sqrt(prior**2 + alpha**2 + 2 * prior * alpha * np.cos(_GRID))
    return float((w * r).sum() / w.sum())


@functools.lru_cache(maxsize=16)
def _circular_schedule(n: int, beta_1: float) -> tuple[np.ndarray, np.ndarray]:
    """CrysBFN's linear-entropy schedule: beta_i solves H(beta_i) = H(0) + (i/n)(H(beta_1) - H(0)),
    and the sender accuracy alpha_i solves E|beta_(i-1) + alpha_i e^{i z}| = beta_i, z ~ vM(0,
    alpha_i) (the expected concentration after the non-additive update reaches beta_i). The
    reference root-finds alpha_i on Monte Carlo estimates; here the expectation is a quadrature."""
    h0, h1 = von_mises_entropy(0.0), von_mises_entropy(beta_1)
    betas = [0.0]
    for i in range(1, n + 1):
        target = h0 + (i / n) * (h1 - h0)
        betas.append(
            beta_1 if i == n else brentq(lambda k, h=target: von_mises_entropy(k) - h, 0.0, beta_1)
        )
    alphas = [betas[1]]  # from the prior (c = 0) the concentration after one update is alpha
    for i in range(2, n + 1):
        b_prev, b = betas[i - 1], betas[i]
        gap = lambda a, b0=b_prev, b1=b: _expected_resultant(b0, a) - b1  # noqa: E731
        alphas.append(brentq(gap, b - b_prev, 10 * b + 10))
    return np.array(betas[1:]), np.array(alphas)


class CircularBFN:
    """Periodic Bayesian flow on angles in [-pi, pi) (CrysBFN). The belief over x is
    vM(m, c), prior c = 0; a sender sample y ~ vM(x, alpha) updates c' e^{i m'} = c e^{i m} +
    alpha e^{i y}, so the concentration after n steps is random (|sum_j alpha_j e^{i y_j}|), not
    the sum of accuracies. The schedule has n fixed steps (training and sampling share it)."""

    t_start, t_end = 1.0, 0.0

    def __init__(self, n_steps: int, beta_1: float = 1e3) -> None:
        if n_steps < 1 or beta_1 <= 0:
            raise ValueError(f"need n_steps >= 1 and beta_1 > 0, got {n_steps}, {beta_1}")
        self.n_steps, self.beta_1 = n_steps, float(beta_1)
        betas, alphas = _circular_schedule(n_steps, float(beta_1))
        self.betas = torch.from_numpy(betas)  # target concentration after step i = 1..n
        self.alphas = torch.from_numpy(alphas)  # sender accuracy of step i = 1..n

    def log_snr(self, s: Tensor) -> Tensor:
        return torch.log(torch.as_tensor(1 - s, dtype=torch.float64))

    def sender_sample(self, x: Tensor, alpha: Tensor, noise: RandomSource = None) -> Tensor:
        """y ~ vM(x, alpha)."""
        return sample_von_mises(x, alpha, noise)

    @staticmethod
    def update(m: Tensor, c: Tensor, y: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior of vM(x; m, c) times the likelihood vM(y; x, alpha) (CrysBFN):
        m' = atan2(alpha sin y + c sin m, alpha cos y + c cos m),
        c' = sqrt(alpha^2 + c^2 + 2 alpha c cos(y - m))."""
        re = alpha * torch.cos(y) + c * torch.cos(m)
        im = alpha * torch.sin(y) + c * torch.sin(m)
        return torch.atan2(im, re), torch.sqrt(re**2 + im**2)

    def flow_sample(self, x: Tensor, i: int, noise: RandomSource = None) -> tuple[Tensor, Tensor]:
        """(m, c) after i sender updates from the prior:
        c e^{i m} = sum_{j<=i} alpha_j e^{i y_j}."""
        re = torch.zeros_like(x, dtype=torch.float64)
        im = torch.zeros_like(re)
        for a in self.alphas[:i].tolist():
            y = sample_von_mises(x, torch.tensor(a, dtype=torch.float64), noise)
            re, im = re + a * torch.cos(y), im + a * torch.sin(y)
        return torch.atan2(im, re), torch.sqrt(re**2 + im**2)

    def flow_bank(self, size: int, noise: RandomSource = None) -> tuple[Tensor, Tensor]:
        """Flow draws at x = 0 for every step count k = 0..n, ``size`` each: (m0, c0), [n + 1,
        size] float64; row 0 is the prior (m uniform, c = 0). The sender is equivariant under
        rotations, so (m - x, c) of the flow does not depend on x: a flow sample at any x is a
        bank entry rotated by x (exact in distribution; CrysBFN's trick to avoid drawing
        k x atoms x 3 von Mises variates per training batch). See :meth:`flow_from_bank`."""
        zero = torch.zeros(size, dtype=torch.float64)
        m = [(2 * uniforms(zero.shape, zero.device, noise) - 1) * math.pi]
        c = [zero]
        re, im = zero.clone(), zero.clone()
        for a in self.alphas.tolist():
            y = sample_von_mises(zero, torch.tensor(a, dtype=torch.float64), noise)
            re, im = re + a * torch.cos(y), im + a * torch.sin(y)
            m.append(torch.atan2(im, re))
            c.append(torch.sqrt(re**2 + im**2))
        return torch.stack(m), torch.stack(c)

    @staticmethod
    def flow_from_bank(
        x: Tensor, k: Tensor | int, bank: tuple[Tensor, Tensor], generator=None
    ) -> tuple[Tensor, Tensor]:
        """(m, c) after k updates (int or a tensor broadcastable to x) drawn from a
        :meth:`flow_bank`: an independent bank entry per element, rotated by x."""
        m0, c0 = (b.to(x.device) for b in bank)
        k = torch.as_tensor(k, device=x.device).long().expand(x.shape)
        j = torch.randint(m0.shape[1], x.shape, generator=generator, device=x.device)
        return wrap(x.double() + m0[k, j], -math.pi, 2 * math.pi), c0[k, j]

    def entropy_condition(self, c: Tensor) -> Tensor:
        """Network input for the concentration:
        (log(c + 1e-7) - log 1e-7) / (log beta_1 - log 1e-7)."""
        lo = math.log(1e-7)
        return (torch.log(c + 1e-7) - lo) / (math.log(self.beta_1) - lo)

    def loss_weight(self, i: Tensor) -> Tensor:
        """n alpha_i I1(alpha_i)/I0(alpha_i), i = 1..n (CrysBFN's n-step loss)."""
        a = self.alphas.to(torch.as_tensor(i).device)[torch.as_tensor(i).long() - 1]
        return self.n_steps * a * torch.special.i1e(a) / torch.special.i0e(a)

    def loss(self, x_hat: Tensor, x: Tensor, i: Tensor) -> Tensor:
        """Per-sample loss [B]: weight(i) * sum of the squared shortest angular differences."""
        d = wrap(x_hat.double() - x.double(), -math.pi, 2 * math.pi)
        return self.loss_weight(i) * d.pow(2).reshape(x.shape[0], -1).sum(-1)


# ----------------------------------------------------------------------------- samplers


class BFNModel:
    """The user's network with its flow attached (``model.path``): ``model_fn(theta, t)``, where
    theta is mu (continuous), theta probabilities [.., K] (discrete) or the pair (m, c) passed as
    ``model_fn(m, t, c)`` (circular); t is the BFN time. Output: x_hat (prediction "x0"), eps_hat
    (prediction "eps", continuous only) or class logits (prediction "logits", discrete)."""

    def __init__(self, model_fn, path, prediction: str) -> None:
        self.model_fn, self.path, self.prediction = model_fn, path, prediction

    def __call__(self, theta: Tensor, t: Tensor, *extra: Tensor) -> Tensor:
        out = self.model_fn(theta, t, *extra)
        if self.prediction == "eps":
            return self.path.output_from_eps(theta, out, t)
        return out


class _BFNSolver(SolverBase):
    nfe_per_step = 1
    stochastic = True
    path_type: type = ContinuousBFN
    predictions: tuple[str, ...] = ("x0",)

    def __init__(self, path=None) -> None:
        self.path = path

    def wrap_model(self, model_fn, path, prediction: str, *, mu: Tensor | None = None):
        if prediction not in self.predictions:
            raise ValueError(
                f"{type(self).__name__}: prediction must be one of {self.predictions}, "
                f"got {prediction!r}"
            )
        if mu is not None:
            raise ValueError("Bayesian flow solvers take no mean-reverting condition mu")
        return BFNModel(model_fn, path, prediction)


def _batch_time(t: Tensor, x: Tensor) -> Tensor:
    """BFN time for the model call: [B] (or [B, L] when given per position)."""
    return t if t.dim() else t.expand(x.shape[0])


@dataclass(frozen=True)
class ContinuousBFNState(State):
    """x: the receiver mean mu during sampling, the final output x_hat after the last step."""

    rho: Tensor  # [B, ...] precision of the belief (broadcastable against x)


@register_solver("bfn_continuous")
class ContinuousBFNSampler(_BFNSolver):
    """BFN sampling for continuous data (BFN Alg. 3, any time grid): x_hat = model(mu, t);
    y ~ N(x_hat, 1/alpha) with alpha = beta(t_next) - beta(t); Bayesian update of (mu, rho).
    The last step returns x_hat(mu, 1). ``x_init`` is the prior mean (zeros)."""

    predictions = ("x0", "eps")

    def init(self, x: Tensor, t: Tensor | float = 1.0) -> ContinuousBFNState:
        return ContinuousBFNState(
            x=x,
            rho=torch.ones((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device),
        )

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None):
        path: ContinuousBFN = self._path(model)
        mu = state.x
        t, t_n = 1 - _time(t_cur, mu), 1 - _time(t_next, mu)
        x_hat = model(mu, _batch_time(1 - torch.as_tensor(t_cur, dtype=torch.float64), mu))
        alpha = (path.beta(t_n) - path.beta(t)).to(mu.dtype)
        y = path.sender_sample(x_hat, alpha, noise)
        mu, rho = path.update(mu, state.rho, y, alpha)
        if i == n - 1:  # final output at t = 1 (Python-int branch: no host sync)
            t_out = 1 - torch.as_tensor(t_next, dtype=torch.float64, device=mu.device)
            return ContinuousBFNState(x=model(mu, _batch_time(t_out, mu)), rho=rho)
        return ContinuousBFNState(x=mu, rho=rho)


@dataclass(frozen=True)
class DiscreteBFNState(State):
    """x: tokens drawn from the output distribution (the final sample after the last step)."""

    log_theta: Tensor  # [B, ..., K] receiver's categorical parameters (log probabilities)


@register_solver("bfn_discrete")
class DiscreteBFNSampler(_BFNSolver):
    """BFN sampling for discrete data (BFN Alg. 9, any time grid): p = softmax(model(theta, t));
    k ~ p; y ~ N(alpha (K e_k - 1), alpha K I), alpha = beta(t_next) - beta(t); theta <- e^y theta.
    The last step draws the tokens from p(theta, 1). ``x_init`` is a token template [B, ...]."""

    path_type = DiscreteBFN
    predictions = ("logits",)

    def init(self, x: Tensor, t: Tensor | float = 1.0) -> DiscreteBFNState:
        if x.is_floating_point() and not torch.equal(x, x.round()):  # once, before the loop
            raise ValueError("bfn_discrete: x_init must be an integer token template")
        x = x.long()  # theta is allocated at the first step, where K is known from the path
        empty = torch.zeros(*x.shape, 0, dtype=torch.float64, device=x.device)
        return DiscreteBFNState(x=x, log_theta=empty)

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None):
        path: DiscreteBFN = self._path(model)
        K = path.num_classes
        log_theta = state.log_theta
        if log_theta.shape[-1] == 0:  # first step: uniform prior theta = 1/K
            log_theta = torch.full(
                (*state.x.shape, K), -math.log(K), dtype=torch.float64, device=state.x.device
            )
        t_cur = torch.as_tensor(t_cur, dtype=torch.float64, device=state.x.device)
        t, t_n = 1 - _time(t_cur, state.x), 1 - _time(t_next, state.x)
        logits = model(log_theta.exp(), _batch_time(1 - t_cur, state.x))
        k = sample_categorical(logits, noise)
        alpha = (path.beta(t_n) - path.beta(t)).unsqueeze(-1)
        log_theta = path.update(log_theta, path.sender_sample(k, alpha, noise))
        if i == n - 1:
            t_out = 1 - torch.as_tensor(t_next, dtype=torch.float64, device=state.x.device)
            k = sample_categorical(model(log_theta.exp(), _batch_time(t_out, state.x)), noise)
        return DiscreteBFNState(x=k, log_theta=log_theta)


@dataclass(frozen=True)
class CircularBFNState(State):
    """x: the receiver mean angle m during sampling, the final output x_hat after the last step."""

    c: Tensor  # receiver concentration, same shape as x


@register_solver("bfn_circular")
@register_solver("bfn_circular_end_back", mode="end_back")
class CircularBFNSampler(_BFNSolver):
    """Sampling on the circle with a CrysBFN flow; step i uses the path's alpha_(i+1), so the
    driver must run exactly ``path.n_steps`` steps (the grid only sets the model's time
    t = 1 - s). ``x_init`` is any tensor of the data shape (prior: m = 0, c = 0); outputs are
    angles in [-pi, pi).

    - ``mode="sequential"`` (BFN Alg. 3 structure): x_hat = model(m, t, c); y ~ vM(x_hat,
      alpha_i); (m, c) <- circular update; the last step adds the output at t = 1 (n + 1 calls).
    - ``mode="end_back"`` (CrysBFN's sampler): x_hat = model(m, t, c), then (m, c) are redrawn
      from the flow at step i given x_hat (i fresh sender samples); the prediction of the last
      step is the output (n calls).
    """

    path_type = CircularBFN

    def __init__(self, path=None, *, mode: str = "sequential") -> None:
        super().__init__(path)
        if mode not in ("sequential", "end_back"):
            raise ValueError(f"mode must be 'sequential' or 'end_back', got {mode!r}")
        self.mode = mode

    def init(self, x: Tensor, t: Tensor | float = 1.0) -> CircularBFNState:
        return CircularBFNState(x=torch.zeros_like(x), c=torch.zeros_like(x))

    def step(self, state, t_cur, t_next, model, *, i: int, n: int, noise=None):
        path: CircularBFN = self._path(model)
        if n != path.n_steps:
            raise ValueError(f"bfn_circular: the flow has {path.n_steps} steps, the grid has {n}")
        m, c = state.x, state.c
        t_model = _batch_time(1 - torch.as_tensor(t_cur, dtype=torch.float64, device=m.device), m)
        x_hat = model(m, t_model, c)
        if self.mode == "end_back":
            if i == n - 1:
                return CircularBFNState(x=wrap(x_hat, -math.pi, 2 * math.pi), c=c)
            m, c = path.flow_sample(x_hat.double(), i + 1, noise)
            return CircularBFNState(x=m.to(state.x.dtype), c=c.to(state.x.dtype))
        alpha = path.alphas[i].to(device=m.device, dtype=m.dtype)
        y = path.sender_sample(x_hat, alpha, noise).to(m.dtype)
        m, c = path.update(m, c, y, alpha)
        if i == n - 1:
            t_out = _batch_time(
                1 - torch.as_tensor(t_next, dtype=torch.float64, device=m.device), m
            )
            return CircularBFNState(x=wrap(model(m, t_out, c), -math.pi, 2 * math.pi), c=c)
        return CircularBFNState(x=m, c=c)
