"""Exact conversions between the five parameterizations of an affine path, and EDM preconditioning.

For y = alpha x0 + sigma eps (y = x - mu on mean-reverting paths):
  eps,  x0 = (y - sigma eps) / alpha
  v     = alpha eps - sigma x0      (Salimans & Ho 2022, "Progressive Distillation"; for
          paths that are not variance-preserving, x0 = (alpha y - sigma v) / (alpha^2 + sigma^2))
  score = grad log p_t(x) = -eps / sigma
  velocity = dx_t/dt = alpha' x0 + sigma' eps   (the flow-matching target)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from polydiff.core.paths import AffinePath, as_time
from polydiff.core.utils import expand_like

PREDICTIONS = ("eps", "x0", "v", "score", "velocity")


def _check(kind: str) -> None:
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction {kind!r}; expected one of {PREDICTIONS}")


def _coef(c: Tensor, y: Tensor) -> Tensor:
    # expand_like, minus the reshape of a 0-dim coefficient (it broadcasts against y as it is)
    return c.to(dtype=y.dtype) if c.ndim == 0 else expand_like(c, y)


def to_x0(pred: Tensor, kind: str, y: Tensor, t: Tensor, path: AffinePath) -> Tensor:
    """x0 (centered: x0 - mu on mean-reverting paths) from a ``kind`` prediction at (y, t)."""
    _check(kind)
    t = as_time(t, y)
    a, s = _coef(path.alpha(t), y), _coef(path.sigma(t), y)
    if kind == "x0":
        return pred
    if kind == "eps":
        return (y - s * pred) / a
    if kind == "score":
        return (y + s**2 * pred) / a
    if kind == "v":
        return (a * y - s * pred) / (a**2 + s**2)
    # u = alpha' x0 + sigma' (y - alpha x0)/sigma  =>  x0 = (u sigma - sigma' y)/(alpha' sigma -
    # alpha sigma'); finite where alpha = 0 (flow at t = 1: x0 = y - t u)
    da, ds = expand_like(path.d_alpha(t), y), expand_like(path.d_sigma(t), y)
    return (pred * s - ds * y) / (da * s - a * ds)


def from_x0(x0: Tensor, kind: str, y: Tensor, t: Tensor, path: AffinePath) -> Tensor:
    """The ``kind`` prediction equivalent to the (centered) data prediction ``x0`` at (y, t)."""
    _check(kind)
    if kind == "x0":
        return x0
    t = as_time(t, y)
    a, s = expand_like(path.alpha(t), y), expand_like(path.sigma(t), y)
    eps = (y - a * x0) / s
    if kind == "eps":
        return eps
    if kind == "score":
        return -eps / s
    if kind == "v":
        return a * eps - s * x0
    return expand_like(path.d_alpha(t), y) * x0 + expand_like(path.d_sigma(t), y) * eps


def convert(pred: Tensor, src: str, dst: str, y: Tensor, t: Tensor, path: AffinePath) -> Tensor:
    """Convert a prediction between any two parameterizations (exact, through x0)."""
    return from_x0(to_x0(pred, src, y, t, path), dst, y, t, path)


class Denoiser:
    """Turns a user ``model_fn(x, t) -> prediction`` into the data prediction solvers integrate.

    Solvers work in the centered variable y = x - mu; ``__call__(y, t)`` returns x0 - mu. The user's
    network sees the uncentered x and a time of shape [B] (or [B, L]) in ``x``'s dtype. On
    mean-reverting paths an "x0" network predicts x0 itself, and "v" is alpha eps - sigma (x0 - mu).
    """

    def __init__(
        self,
        model_fn: Callable[[Tensor, Tensor], Tensor],
        path: AffinePath,
        prediction: str = "eps",
        mu: Tensor | None = None,
    ) -> None:
        _check(prediction)
        self.model_fn, self.path, self.prediction, self.mu = model_fn, path, prediction, mu
        self.model_dtype: torch.dtype | None = None  # set by the driver: the network's input dtype

    def model_time(self, x: Tensor, t: Tensor) -> Tensor:
        dtype = x.real.dtype if x.is_complex() else x.dtype  # a real time, also for complex data
        if t.dtype != dtype:
            t = t.to(dtype=dtype)
        return t.expand(x.shape[0]) if t.ndim == 0 else t

    def __call__(self, y: Tensor, t: Tensor) -> Tensor:
        x = y if self.mu is None else y + self.mu
        if self.model_dtype is not None and x.dtype != self.model_dtype:
            x = x.to(self.model_dtype)  # e.g. a bf16 network; solver arithmetic stays in fp32
        pred = self.model_fn(x, self.model_time(x, t))
        if pred.dtype != y.dtype:
            pred = pred.to(y.dtype)
        if self.prediction == "x0" and self.mu is not None:
            pred = pred - self.mu  # the network predicts x0 itself; solvers want x0 - mu
        return to_x0(pred, self.prediction, y, t, self.path)


class EDMPrecond(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1 and Eq. 7):
    D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), with
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4.

    On a path with alpha != 1, the network sees the scaled x / alpha at noise level sigma / alpha
    (the VE form of the same ODE), so ``forward(x, t)`` returns an x0 prediction on any path.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, path: AffinePath | None = None):
        super().__init__()
        self.net = net  # F(x_in, c_noise) -> raw output shaped like x
        self.sigma_data = float(sigma_data)  # expected std of the data
        self.path = path  # None: t is EDM's sigma (alpha = 1)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
        c_in = 1 / torch.sqrt(sigma**2 + sd**2)
        c_noise = torch.log(sigma) / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: Tensor, t: Tensor, **net_kwargs: Any) -> Tensor:
        t64 = as_time(t, x)
        if self.path is None:
            alpha, sigma = torch.ones_like(t64), t64
        else:
            alpha, sigma = self.path.alpha(t64), self.path.sigma(t64) / self.path.alpha(t64)
        x_scaled = x / expand_like(alpha, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        F = self.net(expand_like(c_in, x) * x_scaled, c_noise.to(x.dtype), **net_kwargs)
        return expand_like(c_skip, x) * x_scaled + expand_like(c_out, x) * F.to(x.dtype)


__all__ = ["PREDICTIONS", "Denoiser", "EDMPrecond", "convert", "from_x0", "to_x0"]
