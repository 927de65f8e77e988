"""A 2D U-Net denoiser for single slices (the prior of the 3D solvers).

The architecture of Ho, Jain and Abbeel (2020), "Denoising Diffusion Probabilistic Models",
Appendix B, with the adaptive group normalisation (noise-level FiLM, ``GroupNorm(h) (1 + s) + b``)
of Dhariwal and Nichol (2021), "Diffusion Models Beat GANs on Image Synthesis", Sec. 3.
It maps ``(x, c_noise)`` to an output of the shape of ``x``; what the output means (eps, x0, v)
and how the noise level becomes ``c_noise`` (``1000 t``, EDM's ``ln(sigma) / 4``) is the
method's choice. The blocks (residual, attention, time embedding) are ``polydiff.core.nn``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core.nn import ResBlock, SelfAttention, TimeMLP, sinusoidal_embedding

PRESETS: dict[str, dict[str, Any]] = {
    # 0.67M parameters; one evaluation on 64 slices of 64 x 64 takes seconds on a CPU core.
    "cpu-small": {"channels": 16, "channel_mult": (1, 2, 4), "num_res_blocks": 1},
    # 75M parameters, for 256 x 256 slices on a GPU (DDPM-like widths, attention at 1/8).
    "gpu-base": {
        "channels": 128,
        "channel_mult": (1, 1, 2, 2, 4),
        "num_res_blocks": 2,
        "attention_levels": (3,),
        "dropout": 0.1,
    },
}


@dataclass(frozen=True)
class SliceUNetConfig:
    """Hyperparameters (JSON-serialisable with :meth:`to_dict`).

    channels: width of the first level; level ``i`` has ``channels * channel_mult[i]``.
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attention_levels: levels (0 = full resolution) with self-attention after each block.
    groups: GroupNorm groups (must divide every width).
    """

    in_channels: int = 1
    out_channels: int = 1
    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = ()
    dropout: float = 0.0
    groups: int = 8

    def __post_init__(self) -> None:
        widths = [self.channels * m for m in self.channel_mult]
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult must be non-empty positive ints: {self.channel_mult}")
        if any(w % self.groups for w in widths):
            raise ValueError(f"groups={self.groups} must divide every level width {widths}")
        if any(not 0 <= lvl < len(self.channel_mult) for lvl in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} outside the levels")
        if self.num_res_blocks < 1 or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("num_res_blocks, in_channels and out_channels must be >= 1")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SliceUNetConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown U-Net preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SliceUNetConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown U-Net config keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class SliceUNet(nn.Module):
    """2D U-Net ``net(x, c_noise)``: ``x`` (B, in_channels, H, W) with H, W divisible by
    ``2 ** (len(channel_mult) - 1)``; ``c_noise`` a scalar or (B,) tensor. Returns
    (B, out_channels, H, W)."""

    def __init__(self, config: SliceUNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SliceUNetConfig()
        ch, emb_dim = cfg.channels, 4 * cfg.channels
        self.emb = TimeMLP(ch, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, emb_dim, cfg.groups, cfg.dropout)

        def attn(level: int, c: int) -> nn.Module:
            return SelfAttention(c, cfg.groups) if level in cfg.attention_levels else nn.Identity()

        self.down = nn.ModuleList()
        skips, c = [ch], ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(nn.ModuleList([block(c, ch * mult), attn(level, ch * mult)]))
                c = ch * mult
                skips.append(c)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([block(c, c), SelfAttention(c, cfg.groups), block(c, c)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(
                    nn.ModuleList([block(c + skips.pop(), ch * mult), attn(level, ch * mult)])
                )
                c = ch * mult
            if level > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)
                    )
                )
        self.norm_out = nn.GroupNorm(cfg.groups, c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
        self._factor = 2 ** (len(cfg.channel_mult) - 1)

    def forward(self, x: Tensor, c_noise: Tensor | float) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"SliceUNet expects (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[-2] % self._factor or x.shape[-1] % self._factor:
            raise ValueError(
                f"SliceUNet: H and W must be divisible by {self._factor}, got {tuple(x.shape[-2:])}"
            )
        c_noise = torch.as_tensor(c_noise, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.emb(sinusoidal_embedding(c_noise, self.config.channels).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer[1](layer[0](h, emb)) if isinstance(layer, nn.ModuleList) else layer(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, skips.pop()], dim=1), emb))
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))
