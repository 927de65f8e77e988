"""The autoregressive FNO baseline for simulation (Li et al. 2021, "Fourier Neural Operator for
Parametric Partial Differential Equations"): one network step maps the state at t_k and the
forcing at t_k and t_{k+1} (plus the coordinate x) to the state at t_{k+1}; trained one step
ahead on true states (teacher forcing), rolled out from u0 to simulate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.core import Method, register_method
from polydiff.core.errors import InputError
from polydiff.core.method import Config
from polydiff.pde.checks import batch_of
from polydiff.pde.nets import FNO1d


@dataclass(frozen=True)
class FNOConfig(Config):
    nx: int = 128
    nt: int = 16
    modes: int = 16
    width: int = 32
    layers: int = 4


@register_method
class FNO(Method):
    """``loss_fn`` takes a dict with ``u`` and ``f`` [B, nt, nx]; ``sample(u0, f)`` rolls out."""

    domain, name, config_class = "pde", "fno", FNOConfig

    def build_net(self) -> nn.Module:
        c = self.config
        if c.nx // 2 + 1 < c.modes:
            raise InputError(f"modes: {c.modes} modes need nx >= {2 * (c.modes - 1)}, got {c.nx}")
        return FNO1d(4, 1, modes=c.modes, width=c.width, layers=c.layers)

    def step(self, net: nn.Module, u: Tensor, f_now: Tensor, f_next: Tensor) -> Tensor:
        """u at the next output time from u, f now and f next ([B, nx] each): u + net(...)."""
        x = torch.linspace(0, 1, u.shape[-1], dtype=u.dtype, device=u.device).expand_as(u)
        return u + net(torch.stack([u, f_now, f_next, x], 1))[:, 0]

    def loss_fn(self, net: nn.Module, batch: dict) -> Tensor:
        """One-step-ahead MSE over every consecutive pair of times."""
        c = self.config
        u = batch_of("u", batch["u"], (c.nt, c.nx), torch.float32)
        f = batch_of("f", batch["f"], (c.nt, c.nx), torch.float32)
        pred = self.step(
            net, u[:, :-1].flatten(0, 1), f[:, :-1].flatten(0, 1), f[:, 1:].flatten(0, 1)
        )
        return (pred - u[:, 1:].flatten(0, 1)).square().mean()

    @torch.no_grad()
    def sample(self, u0: Tensor, f: Tensor) -> Tensor:
        """Roll out from u0 [B, n] under f [B, nt, n]: u [B, nt, n] with u[:, 0] = u0. Any grid
        of n >= 2 (modes - 1) points on [0, 1] works, not only the training grid nx: the spectral
        and pointwise layers are resolution-free (the FNO's zero-shot super-resolution)."""
        c = self.config
        n = torch.as_tensor(u0).shape[-1]
        u = [batch_of("u0", u0, (n,), torch.float32)]
        f = batch_of("f", f, (c.nt, n), torch.float32)
        for k in range(c.nt - 1):
            u.append(self.step(self.net, u[-1], f[:, k], f[:, k + 1]))
        return torch.stack(u, 1)


__all__ = ["FNO", "FNOConfig"]
