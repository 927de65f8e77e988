"""Streaming Diffusion Policy (Høeg et al. 2024, "Streaming Diffusion Policy: Fast Policy
Synthesis with Variable Noise Diffusion Models"): the action buffer is kept between control steps
with noise rising along the horizon, so each step needs only a few network calls.

Positions i of the H-step buffer form chunks c(i) = (i - (To - 1)) // Ta (c = -1: the past
actions before the current observation); the h complete chunks rest at noise levels
(c + 1) N / h - 1 of N levels (-1: clean), the incomplete tail at N - 1. A control step lowers
every chunk by d = N / h levels in d solver steps (one core ``sample`` call on a per-position time
grid: the tail and the clean past are paused), executes the now clean chunk 0, shifts the buffer
by Ta and appends Ta pure-noise positions. The first step denoises the all-noise buffer to the
resting levels (N steps). Training mixes chunk-wise noise (levels lowered by a random offset
j < d; probability ``chunk_noise_prob``) and one noise level for the whole buffer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from polydiff.core.errors import InputError
from polydiff.core.method import register_method
from polydiff.core.param import from_x0
from polydiff.core.sample import sample
from polydiff.motion.policy.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig

__all__ = ["StreamingPolicy", "StreamingPolicyConfig"]


@dataclasses.dataclass
class StreamingPolicyConfig(DiffusionPolicyConfig):
    horizon: int = 20
    levels: int = 10
    """N noise levels; each control step takes N / h solver steps (h complete chunks)."""
    chunk_noise_prob: float = 0.8


@register_method
class StreamingPolicy(DiffusionPolicy):
    name, config_class = "streaming_policy", StreamingPolicyConfig
    stateful = True

    def __init__(self, config: StreamingPolicyConfig, net=None):
        super().__init__(config, net)
        c = config
        chunks = (c.horizon - (c.n_obs_steps - 1)) // c.n_action_steps
        if chunks < 1 or c.levels % chunks:
            raise InputError(
                f"levels: {c.levels} must be a multiple of the {chunks} complete action chunks "
                f"in horizon {c.horizon}"
            )
        self.chunks, self.drop = chunks, c.levels // chunks
        self.buffer: Tensor | None = None
        self.current: np.ndarray | None = None

    def chunk_of(self) -> np.ndarray:
        """Chunk index per position (-1: past actions; >= h: the incomplete tail)."""
        c = self.config
        return (np.arange(c.horizon) - (c.n_obs_steps - 1)) // c.n_action_steps

    def levels_at(self, offset: int = 0) -> np.ndarray:
        """Noise level per position ``offset`` solver steps into a control step: chunk c starts
        at (c + 1) d - 1 and ends at c d - 1 (offset d); the past stays clean (-1), the tail
        pure noise (N - 1)."""
        chunk, n = self.chunk_of(), self.config.levels
        levels = np.where(chunk >= self.chunks, n - 1, (chunk + 1) * self.drop - 1 - offset)
        return np.maximum(levels, -1)

    def time_of(self, levels) -> Tensor:
        """Level k in [-1, N - 1] -> t from the path's t_end (k = -1) to its t_start."""
        p, n = self.path, self.config.levels
        frac = (torch.as_tensor(levels, dtype=torch.float64) + 1) / n
        return p.t_end + (p.t_start - p.t_end) * frac

    def loss_fn(self, net, batch) -> Tensor:
        action = batch["action"]
        b, n = action.shape[0], self.config.levels
        chunkwise = torch.rand(b) < self.config.chunk_noise_prob
        offsets = torch.randint(0, self.drop, (b,))
        staircase = torch.stack([torch.as_tensor(self.levels_at(int(j))) for j in offsets])
        constant = torch.randint(0, n, (b, 1)).expand_as(staircase)
        levels = torch.where(chunkwise[:, None], staircase, constant).to(action.device)
        t = self.time_of(levels).to(action.device)
        noise = torch.randn_like(action)
        x_t = self.path.marginal(action, t, noise)
        target = from_x0(action, self.prediction, x_t, t, self.path)
        err = (net(x_t, t.to(action.dtype), batch["obs"].flatten(1)) - target).square().mean(-1)
        weight = (levels >= 0).to(err.dtype)  # the clean past is context, not a target
        return (err * weight).sum() / weight.sum().clamp_min(1)

    def reset(self, batch: int) -> None:
        """Start ``batch`` fresh streams (all-noise buffers at level N - 1)."""
        c = self.config
        self.buffer = torch.randn(batch, c.horizon, c.act_dim, device=self.device)
        self.current = np.full(c.horizon, c.levels - 1)

    @torch.no_grad()
    def predict(self, obs: Tensor, rows=None, **options) -> Tensor:
        """One control step on the streams ``rows`` (default: all): denoise until chunk 0 is
        clean on a per-position time grid, return the buffer (normalized actions), then shift
        it by Ta. ``options``: ``solver`` (default the config's)."""
        c = self.config
        if self.buffer is None or (rows is None and len(obs) != len(self.buffer)):
            self.reset(len(obs))
        rows = torch.arange(len(self.buffer)) if rows is None else torch.as_tensor(rows)
        x = self.buffer[rows]
        start, target = self.current, self.levels_at(self.drop)
        steps = int((start - target).max())
        frac = torch.linspace(0, 1, steps + 1, dtype=torch.float64)[:, None]
        levels = torch.as_tensor(start)[None] + frac * torch.as_tensor(target - start)[None]
        grid = self.time_of(levels)[:, None].expand(-1, len(x), -1).to(x.device)
        out = sample(
            self._model,
            x,
            path=self.path,
            solver=options.get("solver") or c.solver,
            grid=grid,
            cond=obs.flatten(1),
            prediction=self.prediction,
            x0_hook=self.x0_hook(),
        )
        fresh = torch.randn(len(x), c.n_action_steps, c.act_dim, device=x.device)
        self.buffer[rows] = torch.cat([out[:, c.n_action_steps :], fresh], 1)
        self.current = np.concatenate(
            [target[c.n_action_steps :], np.full(c.n_action_steps, c.levels - 1)]
        )
        return out
