"""Discrete diffusion paths over token sequences: masked (absorbing) and uniform.

Tokens are integer tensors [B, L]; models return logits [B, L, K] over the K data classes.
Time t is a scalar, a time per row [B] or a time per position [B, L] (block / streaming use).
"""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.core.discrete.schedules import DiscreteSchedule, get_discrete_schedule

__all__ = ["MaskedDiffusion", "UniformDiffusion", "per_position"]


def per_position(t: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a time (scalar, per row [B] or per position [B, L]) to x's shape, in float64."""
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    if t.dim() == 0:
        return t.expand(x.shape)
    if t.dim() == 1 and t.shape[0] == x.shape[0]:
        return t.view(-1, *([1] * (x.dim() - 1))).expand(x.shape)
    if t.shape == x.shape:
        return t
    raise ValueError(f"time of shape {tuple(t.shape)} does not fit tokens {tuple(x.shape)}")


def _schedule(schedule: DiscreteSchedule | str) -> DiscreteSchedule:
    return get_discrete_schedule(schedule) if isinstance(schedule, str) else schedule


class _DiscretePath:
    """Shared by both paths; ``t_start``/``t_end`` is the interval the driver's grids use."""

    t_start: float = 1.0
    t_end: float = 0.0

    def __init__(self, num_classes: int, schedule: DiscreteSchedule | str = "loglinear") -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.schedule = _schedule(schedule)

    def alpha(self, t: Tensor) -> Tensor:
        return self.schedule.alpha(t)

    def dalpha(self, t: Tensor) -> Tensor:
        return self.schedule.dalpha(t)

    def log_snr(self, t: Tensor) -> Tensor:
        """log(alpha / (1 - alpha)): the discrete analogue of the logSNR (+inf at t = 0)."""
        a = self.alpha(torch.as_tensor(t, dtype=torch.float64))
        return torch.log(a) - torch.log1p(-a)

    def _check_logits(self, logits: Tensor, z: Tensor) -> None:
        if logits.shape != (*z.shape, self.num_classes):
            raise ValueError(
                f"logits must have shape {(*z.shape, self.num_classes)} (tokens + num_classes), "
                f"got {tuple(logits.shape)}"
            )


class MaskedDiffusion(_DiscretePath):
    """Masked (absorbing-state) diffusion: q(z_t | x) = alpha_t delta_x + (1 - alpha_t) delta_m.

    Sahoo et al. (2024), "Simple and Effective Masked Diffusion Language Models" (MDLM); Shi et al.
    (2024), "Simplified and Generalized Masked Diffusion" (MD4). The mask token m is index
    ``num_classes`` by default (an extra state) or any index inside the vocabulary (e.g. a
    tokenizer's [MASK]); in the latter case the model's logit for m is ignored (SUBS).
    """

    def __init__(
        self,
        num_classes: int,
        mask_index: int | None = None,
        schedule: DiscreteSchedule | str = "loglinear",
    ) -> None:
        super().__init__(num_classes, schedule)
        self.mask_index = num_classes if mask_index is None else mask_index
        if not 0 <= self.mask_index <= num_classes:
            raise ValueError(f"mask_index must be in [0, {num_classes}], got {mask_index}")
        self.num_states = max(num_classes, self.mask_index + 1)

    def prior(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
        """z_1: every position masked."""
        return torch.full(shape, self.mask_index, dtype=torch.long, device=device)

    def sample_marginal(
        self, x0: Tensor, t: Tensor | float, generator: torch.Generator | None = None
    ) -> Tensor:
        """z_t ~ q(z_t | x): keep each token with probability alpha_t, else mask it."""
        alpha = self.alpha(per_position(t, x0))
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        return torch.where(u < alpha, x0, torch.full_like(x0, self.mask_index))

    def x0_log_probs(self, logits: Tensor, z_t: Tensor) -> Tensor:
        """SUBS parameterization (MDLM): the mask is never predicted (logit -inf) and
        unmasked positions carry over their token (one-hot)."""
        self._check_logits(logits, z_t)
        if self.mask_index < self.num_classes:
            logits = logits.index_fill(
                -1, torch.tensor([self.mask_index], device=z_t.device), -1e30
            )
        log_p = torch.log_softmax(logits.double(), dim=-1)
        unmasked = (z_t != self.mask_index).unsqueeze(-1)
        carry = torch.full_like(log_p, float("-inf")).scatter(
            -1, z_t.clamp(max=self.num_classes - 1).unsqueeze(-1), 0.0
        )
        return torch.where(unmasked, carry, log_p)

    def posterior_probs(
        self, x0_probs: Tensor, z_t: Tensor, t: Tensor | float, s: Tensor | float
    ) -> Tensor:
        """q(z_s | z_t, x) over the num_states states (MDLM): at masked positions
        [(alpha_s - alpha_t)/(1 - alpha_t)] x + [(1 - alpha_s)/(1 - alpha_t)] delta_m, unmasked
        positions are copied. x may be one-hot or the model's x_theta (probabilities [B, L, K])."""
        a_t, a_s = self.alpha(per_position(t, z_t)), self.alpha(per_position(s, z_t))
        c_tok = ((a_s - a_t) / (1 - a_t)).unsqueeze(-1)
        c_mask = ((1 - a_s) / (1 - a_t)).unsqueeze(-1)
        x = torch.zeros(*z_t.shape, self.num_states, dtype=torch.float64, device=z_t.device)
        x[..., : self.num_classes] = x0_probs.double()
        delta_m = torch.nn.functional.one_hot(
            torch.full_like(z_t, self.mask_index), self.num_states
        ).double()
        copy = torch.nn.functional.one_hot(z_t, self.num_states).double()
        masked = (z_t == self.mask_index).unsqueeze(-1)
        return torch.where(masked, c_tok * x + c_mask * delta_m, copy)

    def nelbo_weight(self, t: Tensor) -> Tensor:
        """alpha'_t / (1 - alpha_t) (MDLM); -1/t for the log-linear schedule."""
        return self.dalpha(t) / (1 - self.alpha(t))

    def loss(self, logits: Tensor, x0: Tensor, z_t: Tensor, t: Tensor | float) -> Tensor:
        """Continuous-time NELBO integrand per token [B, L] (MDLM):
        [alpha'_t / (1 - alpha_t)] log x_theta(z_t)[x], nonzero only at masked positions.
        Sum over positions and average over t ~ U[0, 1] (antithetic) for the NELBO in nats."""
        log_p = self.x0_log_probs(logits, z_t).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        masked = z_t == self.mask_index
        w = self.nelbo_weight(per_position(t, z_t))
        return torch.where(masked, w * log_p, torch.zeros_like(log_p))


class UniformDiffusion(_DiscretePath):
    """Uniform-noise diffusion: q(z_t | x) = Cat(alpha_t x + (1 - alpha_t) / K).

    Schiff et al. (2025), "Simple Guidance Mechanisms for Discrete Diffusion Models" (UDLM);
    Sahoo et al. (2025), "The Diffusion Duality" (Duo). The model output x_theta that the UDLM loss
    trains is the leave-one-out denoiser p(x^l | z_t^{-l}) (Uniform Diffusion Models Revisited);
    plugged into q(z_s | z_t, x) it gives the exact per-token reverse marginal.
    """

    def prior(
        self,
        shape: tuple[int, ...],
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """z_1 (for alpha_1 ~ 0): independent uniform tokens."""
        return torch.randint(self.num_classes, shape, generator=generator, device=device)

    def sample_marginal(
        self, x0: Tensor, t: Tensor | float, generator: torch.Generator | None = None
    ) -> Tensor:
        """z_t ~ q(z_t | x): keep with probability alpha_t, else a uniform token (maybe x again)."""
        alpha = self.alpha(per_position(t, x0))
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        noise = torch.randint(self.num_classes, x0.shape, generator=generator, device=x0.device)
        return torch.where(u < alpha, x0, noise)

    def posterior_probs(
        self, x0_probs: Tensor, z_t: Tensor, t: Tensor | float, s: Tensor | float
    ) -> Tensor:
        """q(z_s | z_t, x) = q(z_t | z_s) q(z_s | x) / q(z_t | x) (Duo / UDLM), with
        q(z_t | z_s) = Cat((alpha_t/alpha_s) z_s + (1 - alpha_t/alpha_s)/K). x may be one-hot or
        x_theta; the numerator is linear in x, so plugging x_theta in is the UDLM sampler."""
        K = self.num_classes
        a_t = self.alpha(per_position(t, z_t)).unsqueeze(-1)
        a_s = self.alpha(per_position(s, z_t)).unsqueeze(-1)
        a_ts = a_t / a_s
        onehot_t = torch.nn.functional.one_hot(z_t, K).double()
        q_t_given_s = a_ts * onehot_t + (1 - a_ts) / K  # as a function of z_s = j
        q_s_given_x = a_s * x0_probs.double() + (1 - a_s) / K
        num = q_t_given_s * q_s_given_x
        return num / num.sum(-1, keepdim=True)

    def loo_to_posterior_logits(self, logits: Tensor, z_t: Tensor, t: Tensor | float) -> Tensor:
        """p(x^l | z_t) from the leave-one-out p(x^l | z_t^{-l}): multiply by q(z_t^l | x^l),
        i.e. logit[z_t] += log1p(K alpha / (1 - alpha))."""
        a = self.alpha(per_position(t, z_t))
        bonus = torch.log1p(self.num_classes * a / (1 - a))
        return logits.double().scatter_add(-1, z_t.unsqueeze(-1), bonus.unsqueeze(-1))

    def posterior_to_loo_logits(self, logits: Tensor, z_t: Tensor, t: Tensor | float) -> Tensor:
        """Inverse of loo_to_posterior_logits."""
        a = self.alpha(per_position(t, z_t))
        bonus = torch.log1p(self.num_classes * a / (1 - a))
        return logits.double().scatter_add(-1, z_t.unsqueeze(-1), -bonus.unsqueeze(-1))

    def loss(self, logits: Tensor, x0: Tensor, z_t: Tensor, t: Tensor | float) -> Tensor:
        """Continuous-time NELBO integrand per token [B, L] (UDLM, Schiff et al. 2025):
        with xbar = K alpha x + (1 - alpha) 1, xbar_theta likewise and i = z_t,
        alpha'/(K alpha) [K/xbar_i - K/xbar_theta_i
                          - sum_j (xbar_j/xbar_i) log(xbar_theta_i xbar_j / (xbar_theta_j xbar_i))].
        """
        self._check_logits(logits, z_t)
        K = self.num_classes
        tt = per_position(t, z_t)
        a, da = self.alpha(tt).unsqueeze(-1), self.dalpha(tt)
        x = torch.nn.functional.one_hot(x0, K).double()
        xbar = K * a * x + (1 - a)
        xbar_theta = K * a * torch.softmax(logits.double(), -1) + (1 - a)
        i = z_t.unsqueeze(-1)
        xbar_i = xbar.gather(-1, i)
        xbar_theta_i = xbar_theta.gather(-1, i)
        log_ratio = (
            torch.log(xbar_theta_i) + torch.log(xbar) - torch.log(xbar_theta) - torch.log(xbar_i)
        )
        bracket = K / xbar_i - K / xbar_theta_i - (xbar / xbar_i * log_ratio).sum(-1, keepdim=True)
        return (da / (K * a.squeeze(-1))) * bracket.squeeze(-1)
