"""Affine Gaussian paths x_t = alpha(t) x0 + sigma(t) eps and mean-reverting paths toward mu.

Every path exposes alpha, sigma, their time derivatives, the half log-SNR
lambda(t) = log(alpha/sigma) and its inverse, the linear SDE coefficients (f, g^2), marginals,
Gaussian posteriors q(x_s | x_t, x0) and prior sampling.

Mean-reverting paths (``mean_reverting = True``) have x_t = alpha x0 + (1 - alpha) mu + sigma eps:
in the centered variable y = x - mu they are ordinary affine paths, which is how solvers treat them
(the MR Sampler of Li et al. 2025 is DPM-Solver++ applied to x - mu).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.functional import softplus

from polydiff.core.utils import expand_like


def as_time(t: Tensor | float, like: Tensor | None = None) -> Tensor:
    """Time as a float64 tensor (times are kept in float64; coefficients are cast at use)."""
    device = like.device if like is not None else None
    if isinstance(t, Tensor):
        if t.dtype == torch.float64 and (device is None or t.device == device):
            return t  # already a time (the common case in a sampling loop: no call)
        return t.to(dtype=torch.float64, device=device if device is not None else t.device)
    return torch.tensor(float(t), dtype=torch.float64, device=device)


class AffinePath:
    """Base class: subclasses define ``alpha``, ``sigma``, ``d_alpha``, ``d_sigma``.

    Attributes ``t_start`` / ``t_end`` are the default sampling interval (``t_start > t_end``);
    ``t_min`` / ``t_max`` bound the domain searched by the generic :meth:`t_of_log_snr`.
    """

    mean_reverting: bool = False
    t_start: float = 1.0
    t_end: float = 1e-3
    t_min: float = 0.0
    t_max: float = 1.0

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha / sigma) (half the log signal-to-noise ratio)."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def d_log_snr(self, t: Tensor) -> Tensor:
        return self.d_alpha(t) / self.alpha(t) - self.d_sigma(t) / self.sigma(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` by bisection (lambda is strictly decreasing in t).

        A fixed number of iterations and no data-dependent branching, so no host sync.
        """
        lam = as_time(lam)
        lo = torch.full_like(lam, self.t_min)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # mid is too early: the answer lies later
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def drift(self, t: Tensor) -> Tensor:
        """f(t) of the forward SDE dx = f(t) x dt + g(t) dw (in the centered variable)."""
        return self.d_alpha(t) / self.alpha(t)

    def diffusion2(self, t: Tensor) -> Tensor:
        """g(t)^2 = d sigma^2/dt - 2 f sigma^2 = -2 sigma^2 d lambda/dt (Kingma et al. 2021)."""
        return -2.0 * self.sigma(t) ** 2 * self.d_log_snr(t)

    # ---- distributions -------------------------------------------------------------------
    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor, mu: Tensor | None = None) -> Tensor:
        """Sample of q(x_t | x0): alpha x0 + (1 - alpha) mu + sigma eps with eps = ``noise``."""
        t = as_time(t, x0)
        a, s = expand_like(self.alpha(t), x0), expand_like(self.sigma(t), x0)
        x = a * x0 + s * noise
        return x if mu is None else x + (1 - a) * mu

    def posterior(
        self, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor, mu: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and std of the Gaussian q(x_s | x_t, x0) for s < t (Ho et al. 2020, Eq. 7).

        With alpha_ts = alpha_t / alpha_s and sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2:
        mean = alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_ts^2 / sigma_t^2 x0,
        var = sigma_ts^2 sigma_s^2 / sigma_t^2 (in the centered variable for mean-reverting paths).
        """
        t, s = as_time(t, x_t), as_time(s, x_t)
        a_t, s_t, a_s, s_s = self.alpha(t), self.sigma(t), self.alpha(s), self.sigma(s)
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        c_x = expand_like(a_ts * s_s**2 / s_t**2, x_t)
        c_0 = expand_like(a_s * var_ts / s_t**2, x_t)
        std = expand_like((var_ts * s_s**2 / s_t**2).clamp_min(0).sqrt(), x_t)
        if mu is None:
            return c_x * x_t + c_0 * x0, std
        return c_x * (x_t - mu) + c_0 * (x0 - mu) + mu, std

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        t: float | None = None,
        mu: Tensor | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """x_T ~ N(mu, sigma(T)^2 I) at T = ``t`` (default ``t_start``); mu = 0 if not given.

        The alpha(T) x0 term is dropped (alpha(T) ~ 0 for VP/flow; for VE, sigma(T) >> data).
        """
        if mu is not None:
            device = mu.device
        sigma_t = float(self.sigma(as_time(self.t_start if t is None else t)))
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return sigma_t * z if mu is None else mu + sigma_t * z

    def sample_t(
        self, batch: int, *, generator: torch.Generator | None = None, device=None
    ) -> Tensor:
        """Training times, uniform on [t_end, t_start] (float64, shape [batch])."""
        u = torch.rand(batch, generator=generator, dtype=torch.float64, device=device)
        return self.t_end + (self.t_start - self.t_end) * u

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class _LinearBeta(AffinePath):
    """Shared algebra of paths with log alpha = -B(t)/2, B(t) = b0 t + (b1 - b0) t^2 / 2 and
    sigma = scale * sqrt(1 - alpha^2). Inverse lambda is closed form (a quadratic in t)."""

    b0: float
    b1: float
    scale: float = 1.0

    def _B(self, t: Tensor) -> Tensor:
        return self.b0 * t + 0.5 * (self.b1 - self.b0) * t**2

    def _beta(self, t: Tensor) -> Tensor:
        return self.b0 + (self.b1 - self.b0) * t

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._B(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.scale * torch.sqrt(-torch.expm1(-self._B(t)))

    def d_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self._beta(t) * self.alpha(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        # sigma^2 = scale^2 (1 - alpha^2)  =>  2 sigma sigma' = scale^2 beta alpha^2
        return self.scale**2 * self._beta(t) * self.alpha(t) ** 2 / (2 * self.sigma(t))

    def log_snr(self, t: Tensor) -> Tensor:
        B = self._B(t)
        return -0.5 * B - 0.5 * torch.log(-torch.expm1(-B)) - math.log(self.scale)

    def d_log_snr(self, t: Tensor) -> Tensor:
        B = self._B(t)
        return -0.5 * self._beta(t) / (-torch.expm1(-B))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        lam = as_time(lam) + math.log(self.scale)
        B = softplus(-2 * lam)  # alpha^2 = sigmoid(2 lam)  =>  B = -log alpha^2
        d = self.b1 - self.b0
        return 2 * B / (self.b0 + torch.sqrt(self.b0**2 + 2 * d * B))


class VPLinear(_LinearBeta):
    """Variance-preserving path with linear betas (Song et al. 2021, "Score-Based Generative
    Modeling through SDEs", the VP SDE): log alpha = -(b0 t + (b1 - b0) t^2 / 2) / 2,
    sigma = sqrt(1 - alpha^2)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.b0, self.b1 = float(beta_min), float(beta_max)


class MeanReverting(_LinearBeta):
    """Mean-reverting SDE of IR-SDE (Luo et al. 2023, "Image Restoration with Mean-Reverting
    Stochastic Differential Equations"): dx = theta_t (mu - x) dt + sigma_t dw with
    sigma_t^2 = 2 lam^2 theta_t, so alpha = exp(-theta_bar(t)), sigma = lam sqrt(1 - alpha^2).
    Here theta_t is linear in t, theta_bar(t) = theta_min t + (theta_max - theta_min) t^2 / 2."""

    mean_reverting = True

    def __init__(self, lam: float = 0.2, theta_min: float = 0.1, theta_max: float = 10.0) -> None:
        if lam <= 0 or not 0 <= theta_min < theta_max:
            raise ValueError(
                f"need lam > 0 and 0 <= theta_min < theta_max, got {lam}, {theta_min}, {theta_max}"
            )
        self.lam = float(lam)
        self.scale = self.lam
        self.b0, self.b1 = 2.0 * theta_min, 2.0 * theta_max


class VPCosine(AffinePath):
    """Cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", Eq. 17):
    alpha(t) = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s)), sigma = sqrt(1 - alpha^2).
    Sampling starts at t = 0.9946 as in DPM-Solver (lambda is -inf at t = 1)."""

    t_start = 0.9946

    def __init__(self, s: float = 0.008) -> None:
        if s < 0:
            raise ValueError(f"cosine offset s must be >= 0, got {s}")
        self.s = float(s)

    def _theta(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * (t + self.s) / (1 + self.s)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(self._theta(t)) / math.cos(0.5 * math.pi * self.s / (1 + self.s))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0))

    def d_alpha(self, t: Tensor) -> Tensor:
        c = 0.5 * math.pi / (1 + self.s)
        return -c * torch.sin(self._theta(t)) / math.cos(0.5 * math.pi * self.s / (1 + self.s))

    def d_sigma(self, t: Tensor) -> Tensor:
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        alpha = torch.sqrt(torch.sigmoid(2 * as_time(lam)))
        theta = torch.acos(alpha * math.cos(0.5 * math.pi * self.s / (1 + self.s)))
        return theta * (1 + self.s) / (0.5 * math.pi) - self.s


class VE(AffinePath):
    """Variance-exploding path in EDM's parameterization (Karras et al. 2022, "Elucidating the
    Design Space of Diffusion-Based Generative Models", Table 1): alpha = 1, sigma(t) = t."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.t_start, self.t_end = float(sigma_max), float(sigma_min)
        self.t_min, self.t_max = 0.0, float(sigma_max)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def log_snr(self, t: Tensor) -> Tensor:
        return -torch.log(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return torch.exp(-as_time(lam))

    def sample_t(
        self, batch: int, *, generator: torch.Generator | None = None, device=None
    ) -> Tensor:
        """EDM's log-normal training noise levels, ln sigma ~ N(-1.2, 1.2^2) (Karras et al.
        2022, Table 1, "Training")."""
        z = torch.randn(batch, generator=generator, dtype=torch.float64, device=device)
        return torch.exp(-1.2 + 1.2 * z)


EDM = VE


class Flow(AffinePath):
    """Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): alpha = 1 - t,
    sigma = t; the velocity dx_t/dt = eps - x0."""

    t_start = 1.0

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-as_time(lam))


class OUVE(AffinePath):
    """SGMSE's Ornstein-Uhlenbeck variance-exploding SDE (Richter et al. 2023, "Speech
    Enhancement and Dereverberation with Diffusion-based Generative Models"):
    dx = theta (mu - x) dt + g(t) dw with g(t) = s_min (s_max/s_min)^t sqrt(2 ln(s_max/s_min)).

    alpha = exp(-theta t); with k = ln(s_max/s_min),
    sigma^2 = s_min^2 k / (theta + k) (exp(2 k t) - exp(-2 theta t)).
    Sampling runs from t = 1 down to SGMSE's t_eps = 0.03.
    """

    mean_reverting = True
    t_end = 0.03

    def __init__(self, theta: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5) -> None:
        if theta <= 0 or not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"need theta > 0 and 0 < sigma_min < sigma_max, got {theta}, "
                f"{sigma_min}, {sigma_max}"
            )
        self.theta, self.sigma_min, self.sigma_max = (
            float(theta),
            float(sigma_min),
            float(sigma_max),
        )

    @property
    def _k(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def g(self, t: Tensor) -> Tensor:
        """SGMSE's diffusion coefficient g(t) (for reference; equals sqrt(diffusion2(t)))."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t * math.sqrt(2 * self._k)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-self.theta * t)

    def _var(self, t: Tensor) -> Tensor:
        k, th = self._k, self.theta
        c = self.sigma_min**2 * k / (th + k)
        return c * (torch.exp(2 * k * t) - torch.exp(-2 * th * t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(self._var(t))

    def d_alpha(self, t: Tensor) -> Tensor:
        return -self.theta * self.alpha(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        k, th = self._k, self.theta
        c = self.sigma_min**2 * k / (th + k)
        d_var = c * (2 * k * torch.exp(2 * k * t) + 2 * th * torch.exp(-2 * th * t))
        return d_var / (2 * self.sigma(t))


__all__ = [
    "EDM",
    "OUVE",
    "VE",
    "AffinePath",
    "Flow",
    "MeanReverting",
    "VPCosine",
    "VPLinear",
    "as_time",
]
