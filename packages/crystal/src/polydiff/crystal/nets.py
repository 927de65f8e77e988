"""CSPNet: periodic E(3)-invariant message passing over the atoms of each crystal.

Jiao et al. (2023), "Crystal Structure Prediction by Joint Equivariant Diffusion" (DiffCSP), Sec. 4:
every pair of atoms of a crystal exchanges a message built from both node states, the lattice
inner products L L^T (invariant under rotations and reflections of the lattice) and Fourier
features of their fractional difference (invariant under integer translations of either atom and
under a global shift of all fractional coordinates). Outputs: a per-atom update of the
fractional coordinates (invariant, so ``m + update`` moves with a global shift), type logits
(invariant) and a lattice output ``M(h) L`` (equivariant: rotating L rotates it alike).
CrysBFN conditions each atom on its three coordinate entropies besides the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.core.nn import TimeMLP, sinusoidal_embedding

__all__ = ["CSPNet", "CSPNetOutput", "fourier_features", "scatter_mean"]


def scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of the rows of ``values`` that share an index (zeros where none does)."""
    total = values.new_zeros(size, values.shape[-1]).index_add_(0, index, values)
    count = torch.bincount(index, minlength=size).clamp_min(1).to(values.dtype)
    return total / count[:, None]


def fourier_features(frac_diff: Tensor, n_freq: int) -> Tensor:
    """[sin 2 pi k d, cos 2 pi k d] for k = 1..n_freq per component: periodic in d."""
    k = torch.arange(1, n_freq + 1, device=frac_diff.device, dtype=frac_diff.dtype)
    angles = 2 * math.pi * frac_diff[..., None] * k  # [E, 3, n_freq]
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(-2)


@dataclass
class CSPNetOutput:
    coords: Tensor  # [N, 3] per-atom update of the fractional coordinates (angles for CrysBFN)
    types: Tensor  # [N, K] type logits
    lattice: Tensor  # [B, 3, 3] lattice output, rows rotate with the lattice


class _Layer(nn.Module):
    """One CSPNet message-passing layer with pre-norm and a residual."""

    def __init__(self, hidden: int, n_freq: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        edge_in = 2 * hidden + 9 + 6 * n_freq
        self.edge_mlp = nn.Sequential(
            nn.Linear(edge_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )

    def forward(self, h: Tensor, edge_feats: Tensor, edge_index: Tensor) -> Tensor:
        src, dst = edge_index
        x = self.norm(h)
        msg = self.edge_mlp(torch.cat([x[src], x[dst], edge_feats], -1))
        agg = scatter_mean(msg, src, len(h))
        return h + self.node_mlp(torch.cat([x, agg], -1))


class CSPNet(nn.Module):
    """CSPNet with per-atom conditioning (see module docstring).

    forward(types_in [N, K], frac [N, 3], lattice [B, 3, 3], cond [N, cond_dim], t [B],
    batch [N], edge_index [2, E]): types_in are type features (one-hot, or BFN's 2 theta - 1),
    frac fractional coordinates (any real values: only their differences mod 1 enter), lattice
    rows are the lattice vectors (any scale), cond per-atom conditions (CrysBFN: the coordinate
    entropies), t the time of each crystal, batch the crystal of each atom."""

    def __init__(
        self,
        num_types: int,
        hidden: int = 128,
        layers: int = 4,
        n_freq: int = 32,
        cond_dim: int = 3,
        time_dim: int = 64,
    ) -> None:
        super().__init__()
        self.n_freq, self.time_dim = n_freq, time_dim
        self.time_mlp = TimeMLP(time_dim, hidden)
        self.embed = nn.Linear(num_types + cond_dim + hidden, hidden)
        self.layers = nn.ModuleList(_Layer(hidden, n_freq) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.coord_out = nn.Linear(hidden, 3, bias=False)
        self.type_out = nn.Linear(hidden, num_types)
        self.lattice_out = nn.Linear(hidden, 9, bias=False)

    def forward(
        self,
        types_in: Tensor,
        frac: Tensor,
        lattice: Tensor,
        cond: Tensor,
        t: Tensor,
        batch: Tensor,
        edge_index: Tensor,
    ) -> CSPNetOutput:
        temb = self.time_mlp(sinusoidal_embedding(t.float(), self.time_dim, scale=1000.0))
        h = self.embed(torch.cat([types_in.float(), cond.float(), temb[batch]], -1))
        src, dst = edge_index
        ips = (lattice @ lattice.transpose(-1, -2)).flatten(-2).float()  # [B, 9] invariants
        diff = frac[dst] - frac[src]
        edge_feats = torch.cat([ips[batch[src]], fourier_features(diff.float(), self.n_freq)], -1)
        for layer in self.layers:
            h = layer(h, edge_feats, edge_index)
        h = self.norm(h)
        pooled = scatter_mean(h, batch, len(lattice))
        mix = self.lattice_out(pooled).reshape(-1, 3, 3)
        return CSPNetOutput(self.coord_out(h), self.type_out(h), mix @ lattice.float())
