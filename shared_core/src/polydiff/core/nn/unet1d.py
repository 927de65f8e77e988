"""A 1-D temporal U-Net over sequences (trajectories, action chunks) with per-position times."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core.method import Config
from polydiff.core.nn.blocks import Norm, ResBlock, norm_layer
from polydiff.core.nn.embeddings import TimeMLP, sinusoidal_embedding


@dataclass(frozen=True)
class TemporalUNetConfig(Config):
    """Size and options of a :class:`TemporalUNet` (serialisable: ``to_dict`` / ``from_dict``)."""

    in_channels: int
    """Features per position (e.g. state + action dimensions)."""
    out_channels: int | None = None
    """Output features per position (default: ``in_channels``)."""
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 4)
    """Level i has ``channels * channel_mult[i]`` channels; each level after the first halves
    the length."""
    cond_dim: int = 0
    """Size of the conditioning vector (0: none)."""
    kernel_size: int = 5
    groups: int = 8
    norm: Norm = "group"
    """``"group"`` (GroupNorm with ``groups`` groups, as Janner et al.) or ``"layer"`` (per
    position, never mixes positions)."""
    dropout: float = 0.0
    time_scale: float = 1000.0
    """Multiplies t before the sinusoidal embedding (1000 for t in [0, 1])."""

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.channels < 1 or not self.channel_mult:
            raise ValueError(
                f"TemporalUNetConfig: need in_channels, channels, channel_mult: {self}"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"TemporalUNetConfig: kernel_size={self.kernel_size} must be odd")
        widths = [self.channels * m for m in self.channel_mult]
        if self.norm == "group" and any(w % self.groups for w in widths):
            raise ValueError(f"TemporalUNetConfig: groups={self.groups} must divide {widths}")

    @property
    def multiple(self) -> int:
        """The sequence length must be a multiple of this (one halving per level after the 1st)."""
        return 2 ** (len(self.channel_mult) - 1)


class TemporalUNet(nn.Module):
    """``net(x, t, cond)``: the temporal U-Net of Diffuser (Janner et al., 2022, "Planning with
    Diffusion for Flexible Behavior Synthesis", Sec. 3.1 and App. C) and Diffusion Policy (Chi et
    al., 2023, "Diffusion Policy: Visuomotor Policy Learning via Action Diffusion", Sec. 3.2),
    with the time per sample or per position.

    ``x`` is ``[B, L, in_channels]`` with L a multiple of ``config.multiple``. ``t`` is a scalar,
    ``[B]`` or ``[B, L]``: per-position times (Chen et al., 2024, "Diffusion Forcing:
    Next-token Prediction Meets Full-Sequence Diffusion", Sec. 3; streaming denoisers with a
    noise ramp) give each position its own embedding, averaged over the
    positions a coarser level merges. ``cond`` ``[B, cond_dim]`` (e.g. observations) is
    concatenated with the time embedding and reaches every residual block through FiLM (as in
    Diffusion Policy). Levels go down with a stride-2 convolution of kernel 2 and up with its
    transpose, so that with ``kernel_size=1`` and ``norm="layer"`` a position only interacts
    with the ``config.multiple`` positions of its own block. Returns ``[B, L, out_channels]``.
    """

    def __init__(self, config: TemporalUNetConfig) -> None:
        super().__init__()
        self.config = cfg = config
        ch = cfg.channels
        self.time_mlp = TimeMLP(ch, 4 * ch)
        emb_dim = 4 * ch + cfg.cond_dim
        widths = [ch * m for m in cfg.channel_mult]

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(
                c_in, c_out, emb_dim, cfg.groups, cfg.dropout,
                dims=1, kernel_size=cfg.kernel_size, norm=cfg.norm,
            )  # fmt: skip

        self.conv_in = nn.Conv1d(cfg.in_channels, ch, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = ch
        for level, width in enumerate(widths):
            self.down.append(nn.ModuleList([block(c, width), block(width, width)]))
            c = width
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv1d(c, c, 2, stride=2))
        self.mid = nn.ModuleList([block(c, c), block(c, c)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            self.up.append(nn.ModuleList([block(c + width, width), block(width, width)]))
            c = width
            if level > 0:
                self.upsample.append(nn.ConvTranspose1d(c, widths[level - 1], 2, stride=2))
                c = widths[level - 1]
        self.norm_out = norm_layer(cfg.norm, cfg.groups, c)
        self.conv_out = nn.Conv1d(c, cfg.out_channels or cfg.in_channels, 1)

    def _embedding(self, t: Tensor | float, cond: Tensor | None, x: Tensor) -> Tensor:
        """``[B, E]`` for a time per sample, ``[B, L, E]`` for one per position."""
        B, L, _ = x.shape
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(B)
        if t.shape not in ((B,), (B, L)):
            raise ValueError(
                f"TemporalUNet: t has shape {tuple(t.shape)}; expected [{B}] or [{B}, {L}]"
            )
        emb = self.time_mlp(
            sinusoidal_embedding(t, self.config.channels, scale=self.config.time_scale).to(x.dtype)
        )
        if self.config.cond_dim:
            if cond is None or cond.shape != (B, self.config.cond_dim):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"TemporalUNet: cond must be [{B}, {self.config.cond_dim}], got {got}"
                )
            cond = cond.to(x.dtype)
            emb = torch.cat((emb, cond[:, None].expand(B, L, -1) if emb.dim() == 3 else cond), -1)
        return emb

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        cfg = self.config
        if x.dim() != 3 or x.shape[-1] != cfg.in_channels or x.shape[1] % cfg.multiple:
            raise ValueError(
                f"TemporalUNet: x must be [B, L, {cfg.in_channels}] with L a multiple of "
                f"{cfg.multiple}, got {tuple(x.shape)}"
            )
        emb = self._embedding(t, cond, x)
        embs = [emb]  # one per level; per-position embeddings are averaged pairwise going down
        for _ in self.downsample:
            prev = embs[-1]
            embs.append(
                prev if prev.dim() == 2 else F.avg_pool1d(prev.transpose(1, 2), 2).transpose(1, 2)
            )
        h = self.conv_in(x.transpose(1, 2))
        skips = []
        for level, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, embs[level])
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        for blk in self.mid:
            h = blk(h, embs[-1])
        for j, blocks in enumerate(self.up):
            level = len(self.up) - 1 - j
            h = blocks[0](torch.cat((h, skips.pop()), dim=1), embs[level])
            h = blocks[1](h, embs[level])
            if level > 0:
                h = self.upsample[j](h)
        return self.conv_out(F.silu(self.norm_out(h))).transpose(1, 2)


__all__ = ["TemporalUNet", "TemporalUNetConfig"]
