"""A small 2D U-Net over (t, x) images of wavelet coefficients, built from the core's blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core.errors import InputError
from polydiff.core.method import Config
from polydiff.core.nn import ResBlock, SelfAttention, TimeMLP, sinusoidal_embedding


@dataclass(frozen=True)
class CoefficientUNetConfig(Config):
    in_channels: int
    out_channels: int
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    """Level i has ``channels * channel_mult[i]`` channels; each level after the first halves
    both axes."""
    groups: int = 8
    mid_attention: bool = True
    """Full self-attention at the coarsest level (WDNO's middle block)."""

    @property
    def multiple(self) -> int:
        """Both image sizes must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)


class CoefficientUNet(nn.Module):
    """``net(x, t)``: x [B, in_channels, H, W], t [B] in [0, 1] -> [B, out_channels, H, W].

    The 2D U-Net of DDPM (Ho et al. 2020, App. B) at WDNO's layout (Hu et al. 2025: a U-Net over
    the stacked subbands, attention in the middle), one core ``ResBlock`` per level on the way
    down and two on the way up, stride-2 convolutions down and transposed ones up."""

    def __init__(self, config: CoefficientUNetConfig) -> None:
        super().__init__()
        self.config = cfg = config
        widths = [cfg.channels * m for m in cfg.channel_mult]
        emb = 4 * cfg.channels
        self.time_mlp = TimeMLP(cfg.channels, emb)
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, width in enumerate(widths):
            self.down.append(ResBlock(widths[max(level - 1, 0)], width, emb, cfg.groups))
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        c = widths[-1]
        self.mid1 = ResBlock(c, c, emb, cfg.groups)
        self.mid_attn = SelfAttention(c, cfg.groups) if cfg.mid_attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb, cfg.groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            self.up.append(ResBlock(c + widths[level], widths[level], emb, cfg.groups))
            c = widths[level]
            if level > 0:
                self.upsample.append(nn.ConvTranspose2d(c, widths[level - 1], 2, stride=2))
                c = widths[level - 1]
        self.norm_out = nn.GroupNorm(cfg.groups, c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        cfg = self.config
        if (
            x.ndim != 4
            or x.shape[1] != cfg.in_channels
            or any(s % cfg.multiple for s in x.shape[2:])
        ):
            raise InputError(
                f"x: expected [B, {cfg.in_channels}, H, W] with H, W multiples of {cfg.multiple}, "
                f"got {tuple(x.shape)}"
            )
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.time_mlp(sinusoidal_embedding(t, cfg.channels, scale=1000.0).to(x.dtype))
        h = self.conv_in(x)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        return self.conv_out(F.silu(self.norm_out(h)))
