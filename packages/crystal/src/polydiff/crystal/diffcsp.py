"""The wrapped-normal diffusion baseline for CSP (DiffCSP).

Jiao et al. (2023), "Crystal Structure Prediction by Joint Equivariant Diffusion" (DiffCSP),
Sec. 4: fractional coordinates diffuse on the torus, f_t = wrap(f + sigma_t eps) with sigma_t
geometric from 0.005 to 0.5 over T = 1000 steps, and the network learns the wrapped-normal score
(here scaled by sigma_t, target sigma_t grad log WN); the lattice vec(L)/std follows a cosine VP
path (Nichol & Dhariwal 2021) with noise prediction. Sampling is DiffCSP's predictor-corrector
loop: per step a Langevin corrector (step step_lr (sigma_t / sigma_1)^2) and a reverse-diffusion
predictor on the coordinates with an ancestral DDPM step on the lattice, each one network call
(2T calls with one corrector step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.functional import one_hot

from polydiff.core.errors import InputError, check_number
from polydiff.core.method import Method, register_method
from polydiff.core.paths import VPCosine
from polydiff.core.torus import wrap
from polydiff.crystal.crysbfn import CrystalConfig, check_positive_ints, sample_in_chunks
from polydiff.crystal.data import (
    Crystals,
    ElementVocab,
    fully_connected_edges,
    parse_compositions,
)

__all__ = ["DiffCSP", "DiffCSPConfig", "wrapped_normal_score"]

T_MAX = VPCosine.t_start  # the cosine path's alpha vanishes at t = 1


def wrapped_normal_score(d: Tensor, sigma: Tensor, windings: int = 3) -> Tensor:
    """d/dx log sum_k N(x - mu + k; 0, sigma^2) at d = x - mu on the unit torus (terms beyond
    |k| = windings are below exp(-(windings - 1/2)^2 / (2 sigma^2)): negligible to sigma 0.5)."""
    d = wrap(d, -0.5, 1.0).unsqueeze(-1)
    k = torch.arange(-windings, windings + 1, dtype=d.dtype, device=d.device)
    s2 = sigma.unsqueeze(-1) ** 2
    shifted = d + k
    w = torch.softmax(-(shifted**2) / (2 * s2), -1)
    return (w * (-shifted / s2)).sum(-1)


@dataclass(frozen=True)
class DiffCSPConfig(CrystalConfig):
    """DiffCSP settings: ``steps`` T, ``sigma_begin`` / ``sigma_end`` of the coordinates,
    ``step_lr`` and ``corrector_steps`` of the Langevin corrector."""

    steps: int = 1000
    sigma_begin: float = 0.005
    sigma_end: float = 0.5
    step_lr: float = 1e-5
    corrector_steps: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("steps",))
        if not 0 < self.sigma_begin < self.sigma_end:
            raise InputError(
                f"need 0 < sigma_begin < sigma_end, got {self.sigma_begin}, {self.sigma_end}"
            )
        check_number("corrector_steps", self.corrector_steps, minimum=0)
        check_number("step_lr", self.step_lr, positive=True)


@register_method
class DiffCSP(Method):
    """Wrapped-normal diffusion for CSP (see module docstring); same data, batches and outputs as
    :class:`polydiff.crystal.crysbfn.CrysBFN` (task "csp")."""

    domain, name, config_class = "crystal", "diffcsp", DiffCSPConfig

    def __init__(self, config: DiffCSPConfig, net: nn.Module | None = None) -> None:
        super().__init__(config, net)
        self.vocab = ElementVocab(config.elements)
        self.lattice_path = VPCosine()

    def build_net(self) -> nn.Module:
        return self.config.build_net(cond_dim=0)

    def sigma(self, u: Tensor) -> Tensor:
        """Coordinate noise at normalised time u in (0, 1]: sigma_begin^(1 - u) sigma_end^u."""
        c = self.config
        return c.sigma_begin ** (1 - u) * c.sigma_end**u

    def _net(self, net, types, frac, lat, u, batch, edges):
        """(sigma-scaled score [N, 3], noise prediction [B, 9]) at time u [B]."""
        type_in = 2.0 * one_hot(types, len(self.vocab)).float() - 1
        cond = frac.new_zeros(len(frac), 0)
        out = net(type_in, frac, lat.reshape(-1, 3, 3), cond, u, batch, edges)
        return out.coords.double(), out.lattice.reshape(-1, 9).double()

    def loss_fn(self, net: nn.Module, batch) -> dict[str, Tensor]:
        """Denoising score matching on the torus (target sigma grad log WN) plus the lattice noise
        prediction error, at one step k = 1..T per crystal."""
        n, B = self.config.steps, int(batch.num_atoms.shape[0])
        device = batch.frac.device
        u = torch.randint(1, n + 1, (B,), device=device).double() / n
        sigma = self.sigma(u)[batch.batch][:, None]
        f = batch.frac.double()
        f_t = wrap(f + sigma * torch.randn_like(f))
        target = sigma * wrapped_normal_score(f_t - f, sigma.expand_as(f))
        lat = batch.lattice.reshape(B, 9).double() / self.config.lattice_std
        eps = torch.randn_like(lat)
        t = (u * T_MAX)[:, None]
        lat_t = self.lattice_path.alpha(t) * lat + self.lattice_path.sigma(t) * eps
        score, eps_hat = self._net(net, batch.types, f_t, lat_t, u, batch.batch, batch.edge_index)
        coord = (score - target).pow(2).sum(-1).mean()
        lattice = (eps_hat - eps).pow(2).sum(-1).mean()
        return {
            "loss": (coord + lattice).float(),
            "coord": coord.detach().float(),
            "lattice": lattice.detach().float(),
        }

    @torch.no_grad()
    def _sample(self, types: Tensor, counts: Tensor, generator) -> Crystals:
        c, device = self.config, self.device
        B, N = len(counts), int(counts.sum())
        counts, types = counts.to(device), types.to(device)
        batch = torch.repeat_interleave(torch.arange(B, device=device), counts)
        edges = fully_connected_edges(counts)

        def normal(*shape, last=False):  # the last step adds no noise (as DiffCSP)
            z = torch.randn(shape, generator=generator, dtype=torch.float64).to(device)
            return z * (not last)

        f = torch.rand((N, 3), generator=generator, dtype=torch.float64).to(device)
        lat = normal(B, 9)
        self.net.eval()
        for k in range(c.steps, 0, -1):
            u = torch.full((B,), k / c.steps, dtype=torch.float64, device=device)
            sigma = float(self.sigma(torch.tensor(k / c.steps)))
            sigma_prev = float(self.sigma(torch.tensor((k - 1) / c.steps))) if k > 1 else 0.0
            step = c.step_lr * (sigma / c.sigma_begin) ** 2
            for _ in range(c.corrector_steps):  # Langevin at the current noise level
                score, _ = self._net(self.net, types, f, lat, u, batch, edges)
                z = normal(N, 3, last=k == 1)
                f = wrap(f + step * score / sigma + math.sqrt(2 * step) * z)
            score, eps_hat = self._net(self.net, types, f, lat, u, batch, edges)
            var = sigma**2 - sigma_prev**2  # reverse VE step to sigma_prev
            f = wrap(f + var * score / sigma + math.sqrt(var) * normal(N, 3, last=k == 1))
            lat = self._ancestral(lat, eps_hat, k, normal)
        crystals = Crystals(
            f.float().cpu() % 1.0,
            (lat * c.lattice_std).reshape(B, 3, 3).float().cpu(),
            self.vocab.decode(types).cpu(),
            counts.cpu(),
            tuple(f"sample {j}" for j in range(B)),
        )
        return replace(crystals, names=tuple(crystals.formulas()))

    def _ancestral(self, lat: Tensor, eps_hat: Tensor, k: int, normal) -> Tensor:
        """DDPM's ancestral step q(l_s | l_t, l_hat) of the cosine path from step k to k - 1."""
        path, n = self.lattice_path, self.config.steps
        t = torch.tensor(k / n * T_MAX, dtype=torch.float64)
        s = torch.tensor((k - 1) / n * T_MAX, dtype=torch.float64)
        a_t, s_t, a_s, s_s = path.alpha(t), path.sigma(t), path.alpha(s), path.sigma(s)
        l_hat = (lat - s_t * eps_hat) / a_t
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        mean = a_ts * s_s**2 / s_t**2 * lat + a_s * var_ts / s_t**2 * l_hat
        std = torch.sqrt(var_ts * s_s**2 / s_t**2)
        return mean + std * normal(*lat.shape)

    def predict(self, compositions, *, generator=None, batch_size: int = 256) -> Crystals:
        """One structure per composition (as :meth:`CrysBFN.predict`) in
        ``steps * (1 + corrector_steps)`` network calls per batch."""
        numbers, counts = parse_compositions(compositions, self.vocab, self.config.max_atoms)
        types = self.vocab.encode(numbers)
        return sample_in_chunks(self._sample, types, counts, generator, batch_size)

    def sample(self, compositions, **options) -> Crystals:
        return self.predict(compositions, **options)
