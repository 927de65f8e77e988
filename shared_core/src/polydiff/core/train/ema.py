"""Exponential moving average (EMA) of network weights.

Polyak & Juditsky (1992), "Acceleration of stochastic approximation by averaging"; the
exponential form theta_ema <- beta * theta_ema + (1 - beta) * theta is what DDPM (Ho et al., 2020)
and EDM (Karras et al., 2022) evaluate and release.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_decay_at", "make_ema", "update_ema"]


def make_ema(net: nn.Module) -> nn.Module:
    """A frozen copy of `net` (same device/dtype) to hold the averaged weights.

    Call `.eval()` on it before inference; Lightning switches train/eval modes during training.
    """
    ema = copy.deepcopy(net)
    ema.requires_grad_(False)
    return ema


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """Decay used at optimizer step `step` (0-based count of EMA updates done so far).

    With `warmup`, beta_n = min(decay, (1 + n) / (10 + n)) (the `num_updates` rule of TensorFlow's
    ExponentialMovingAverage), so early, random weights are forgotten quickly.
    """
    if warmup:
        return min(decay, (1.0 + step) / (10.0 + step))
    return decay


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, in place; buffers are copied.

    Pure device-side work (no host synchronisation). Buffers such as BatchNorm statistics are
    not averaged but copied, as is customary.
    """
    ema_params = list(ema.parameters())
    net_params = list(net.parameters())
    if len(ema_params) != len(net_params):
        raise ValueError(f"EMA has {len(ema_params)} parameters but the network {len(net_params)}")
    if ema_params:
        # lerp(a, b, w) = a + w (b - a) = decay * a + (1 - decay) * b with w = 1 - decay.
        torch._foreach_lerp_(ema_params, [p.detach() for p in net_params], 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)
