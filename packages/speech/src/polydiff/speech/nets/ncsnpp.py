"""NCSN++, the U-Net score network of SGMSE+ and StoRM, for complex spectrograms.

Architecture of Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole (2021), "Score-Based Generative
Modeling through Stochastic Differential Equations", ICLR, App. H (NCSN++: BigGAN-type residual
blocks with FIR up/downsampling (Zhang, 2019; Karras et al., 2020), skip rescaling by 1/sqrt(2),
an input pyramid ("input_skip") and an output pyramid ("output_skip") combined by summation, and a
Gaussian Fourier embedding of the noise level), as adapted to speech by Richter et al. (2023),
Sec. IV-B: the input is cat(x_t, y) as 4 real channels (real and imaginary parts), the output two
channels (one complex spectrogram), the time embedding is applied to log t, and attention is used
at the bottleneck (plus the resolutions in `attn_resolutions`, counted in frequency bins).

Sizes (`PRESETS`): "ncsnpp_m" is StoRM's NCSN++M (nf 128, ch_mult (1,2,2,2), 1 res block,
27.8M parameters); "ncsnpp" is SGMSE+'s full model (65.6M); "micro" and "small" are CPU sizes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from polydiff.core.nn import GaussianFourierProjection, TimeMLP, attend_positions

_FIR = (1.0, 3.0, 3.0, 1.0)


@dataclass(frozen=True)
class NCSNppConfig:
    """NCSN++ hyper-parameters (names as in Song et al.'s configs).

    nf: base width; ch_mult: width multiplier per resolution (len = number of levels);
    num_res_blocks: residual blocks per level on the way down (one more on the way up);
    attn_resolutions: frequency sizes (e.g. 16) whose levels get self-attention;
    in_channels / out_channels: real channels in and out (4 = cat(x_t, y), 2 = one complex);
    conditional: use the time embedding (False for StoRM's predictive network);
    fourier_scale: std of the Gaussian Fourier frequencies; dropout: in the residual blocks.
    """

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    in_channels: int = 4
    out_channels: int = 2
    conditional: bool = True
    fourier_scale: float = 16.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.nf < 4 or not self.ch_mult or self.num_res_blocks < 1:
            raise ValueError(
                f"NCSNppConfig: need nf >= 4, a ch_mult and num_res_blocks >= 1: {self}"
            )

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (2 ^ (levels - 1))."""
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, NCSNppConfig] = {
    "micro": NCSNppConfig(nf=16, ch_mult=(1, 2, 2, 2)),
    "small": NCSNppConfig(nf=32, ch_mult=(1, 2, 2, 2)),
    "ncsnpp_m": NCSNppConfig(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=1),
    "ncsnpp": NCSNppConfig(
        nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,)
    ),
}


def _init_(weight: torch.Tensor, bias: torch.Tensor | None, scale: float = 1.0) -> None:
    """DDPM's variance-scaling init (fan_avg, uniform); scale 0 is replaced by 1e-10 so a block
    starts as (almost) the identity, as in Song et al.'s `default_init(init_scale)`."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0, 0].numel() if weight.ndim > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    bound = math.sqrt(3 * scale / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bias.zero_()


def conv(cin: int, cout: int, k: int = 3, init_scale: float = 1.0) -> nn.Conv2d:
    layer = nn.Conv2d(cin, cout, k, padding=k // 2)
    _init_(layer.weight, layer.bias, init_scale)
    return layer


def linear(cin: int, cout: int, init_scale: float = 1.0) -> nn.Linear:
    layer = nn.Linear(cin, cout)
    _init_(layer.weight, layer.bias, init_scale)
    return layer


def group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(ch // 4, 32), ch, eps=1e-6)


def _fir_kernel(x: torch.Tensor, gain: float) -> torch.Tensor:
    k = torch.tensor(_FIR, dtype=x.dtype, device=x.device)
    k2 = torch.outer(k, k)
    k2 = k2 * (gain / k2.sum())
    return k2.expand(x.shape[1], 1, 4, 4)


def fir_downsample(x: torch.Tensor) -> torch.Tensor:
    """Anti-aliased 2x downsampling with the [1,3,3,1] FIR filter (upfirdn2d, down=2, pad 1/1)."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), _fir_kernel(x, 1.0), stride=2, groups=x.shape[1])


def fir_upsample(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion then the [1,3,3,1] FIR filter with gain 4 (pad 2/1)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return F.conv2d(F.pad(up, (2, 1, 2, 1)), _fir_kernel(x, 4.0), groups=c)


class ResBlock(nn.Module):
    """BigGAN-type residual block with optional FIR up/down sampling and time conditioning:
    out = (skip(x) + Conv1(act(GN(Conv0(act(GN(x))) + Dense(act(temb)))))) / sqrt(2)."""

    def __init__(
        self,
        cin: int,
        cout: int | None = None,
        temb_dim: int | None = None,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cout = cout or cin
        self.up, self.down = up, down
        self.norm0, self.conv0 = group_norm(cin), conv(cin, cout)
        self.dense = linear(temb_dim, cout) if temb_dim else None
        self.norm1, self.drop = group_norm(cout), nn.Dropout(dropout)
        self.conv1 = conv(cout, cout, init_scale=0.0)
        self.skip = conv(cin, cout, k=1) if (cin != cout or up or down) else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        if self.up:
            h, x = fir_upsample(h), fir_upsample(x)
        elif self.down:
            h, x = fir_downsample(h), fir_downsample(x)
        h = self.conv0(h)
        if self.dense is not None and temb is not None:
            h = h + self.dense(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.drop(F.silu(self.norm1(h))))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Single-head self-attention over all (frequency, time) positions, skip-rescaled."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = group_norm(ch)
        self.qkv = conv(ch, 3 * ch, k=1)
        self.out = conv(ch, ch, k=1, init_scale=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.out(attend_positions(self.qkv(self.norm(x)), 1))) / math.sqrt(2.0)


class NCSNpp(nn.Module):
    """NCSN++ (Song et al., 2021) on spectrogram channels: (B, in_channels, F, T) -> (B, out, F, T).

    F and T must be multiples of `cfg.multiple` (pad frames with `audio.pad_frames`). `t` (B,) are
    the diffusion times, embedded as Fourier features of log t; pass None when
    `cfg.conditional` is False. The raw output is returned: the score parameterisation (e.g.
    -output / sigma(t) in SGMSE+) belongs to the method.
    """

    def __init__(self, cfg: NCSNppConfig = PRESETS["ncsnpp_m"]) -> None:
        super().__init__()
        self.cfg = cfg
        nf, levels = cfg.nf, len(cfg.ch_mult)
        temb_dim = 4 * nf if cfg.conditional else None
        if cfg.conditional:
            self.fourier = GaussianFourierProjection(nf, cfg.fourier_scale)
            self.temb = TimeMLP(2 * nf, 4 * nf, linear=linear)

        def block(cin, cout=None, **kw):
            return ResBlock(cin, cout, temb_dim, dropout=cfg.dropout, **kw)

        self.conv_in = conv(cfg.in_channels, nf)
        self.down = nn.ModuleList()
        skips, ch = [nf], nf
        for level in range(levels):
            stage = nn.ModuleDict()
            stage["blocks"] = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage["blocks"].append(block(ch, nf * cfg.ch_mult[level]))
                ch = nf * cfg.ch_mult[level]
                skips.append(ch)
            if level != levels - 1:
                stage["downsample"] = block(ch, down=True)
                stage["combine"] = conv(cfg.in_channels, ch, k=1)  # input pyramid, summed
                skips.append(ch)
            self.down.append(stage)
        self.mid = nn.ModuleList([block(ch), AttnBlock(ch), block(ch)])
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            stage = nn.ModuleDict()
            stage["blocks"] = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage["blocks"].append(block(ch + skips.pop(), nf * cfg.ch_mult[level]))
                ch = nf * cfg.ch_mult[level]
            stage["out_norm"] = group_norm(ch)  # output pyramid branch
            stage["out_conv"] = conv(ch, cfg.in_channels, init_scale=0.0)
            if level != 0:
                stage["upsample"] = block(ch, up=True)
            self.up.append(stage)
        # Attention after each down block and once per up level, at the listed resolutions
        # (frequency size with 256 bins at level 0, halved per level, as in the configs).
        self._attn_levels = {lv for lv in range(levels) if 256 >> lv in cfg.attn_resolutions}

        def attn(lv: int) -> nn.Module:
            return AttnBlock(nf * cfg.ch_mult[lv]) if lv in self._attn_levels else nn.Identity()

        self.attn_down = nn.ModuleList(
            nn.ModuleList(attn(lv) for _ in range(cfg.num_res_blocks)) for lv in range(levels)
        )
        self.attn_up = nn.ModuleList(attn(lv) for lv in reversed(range(levels)))
        self.conv_out = nn.Conv2d(cfg.in_channels, cfg.out_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"NCSNpp: expected (B, {cfg.in_channels}, F, T), got {tuple(x.shape)}")
        if x.shape[-2] % cfg.multiple or x.shape[-1] % cfg.multiple:
            raise ValueError(
                f"NCSNpp: F and T must be multiples of {cfg.multiple}, got {tuple(x.shape[-2:])}"
            )
        temb = None
        if cfg.conditional:
            if t is None:
                raise ValueError("NCSNpp: this network is time-conditional; pass t")
            temb = self.temb(self.fourier(torch.log(t.expand(x.shape[0]))))
        levels = len(cfg.ch_mult)
        pyramid_in = x
        hs = [self.conv_in(x)]
        for level, stage in enumerate(self.down):
            for blk, attn in zip(stage["blocks"], self.attn_down[level]):
                hs.append(attn(blk(hs[-1], temb)))
            if level != levels - 1:
                h = stage["downsample"](hs[-1], temb)
                pyramid_in = fir_downsample(pyramid_in)
                hs.append(h + stage["combine"](pyramid_in))
        h = self.mid[0](hs[-1], temb)
        h = self.mid[2](self.mid[1](h), temb)
        pyramid = None
        for j, stage in enumerate(self.up):
            for blk in stage["blocks"]:
                h = blk(torch.cat([h, hs.pop()], dim=1), temb)
            h = self.attn_up[j](h)
            out = stage["out_conv"](F.silu(stage["out_norm"](h)))
            pyramid = out if pyramid is None else fir_upsample(pyramid) + out
            if "upsample" in stage:
                h = stage["upsample"](h, temb)
        return self.conv_out(pyramid)


def spec_to_channels(*specs: torch.Tensor) -> torch.Tensor:
    """Complex spectrograms (B, F, T) each -> real channels (B, 2 * len(specs), F, T)."""
    return torch.cat([torch.stack([s.real, s.imag], dim=1) for s in specs], dim=1)


def channels_to_spec(h: torch.Tensor) -> torch.Tensor:
    """Two real channels (B, 2, F, T) -> one complex spectrogram (B, F, T)."""
    return torch.complex(h[:, 0], h[:, 1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
