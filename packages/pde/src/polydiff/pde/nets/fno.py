"""A 1D Fourier neural operator (Li et al. 2021, "Fourier Neural Operator for Parametric Partial
Differential Equations", Sec. 4 and Fig. 2): lift, Fourier layers, project."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core.errors import InputError


class SpectralConv1d(nn.Module):
    """(K v)(x) = IFFT(R . FFT(v))(x) keeping the lowest ``modes`` wavenumbers, R a learned
    complex [in, out, modes] multiplier (stored as real and imaginary parts for safetensors)."""

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.modes = modes
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, 2))

    def forward(self, v: Tensor) -> Tensor:
        n = v.shape[-1]
        if n // 2 + 1 < self.modes:
            raise InputError(
                f"modes: {self.modes} modes need nx >= {2 * (self.modes - 1)}, got {n}"
            )
        spectrum = torch.fft.rfft(v, dim=-1)[..., : self.modes]
        mixed = torch.einsum("bik,iok->bok", spectrum, torch.view_as_complex(self.weight))
        return torch.fft.irfft(mixed, n=n, dim=-1)


class FNO1d(nn.Module):
    """``net(v)``: [B, in_channels, nx] -> [B, out_channels, nx]; v_{l+1} = GELU(K_l v_l + W_l v_l)
    (no GELU after the last layer), with a pointwise lift before and a two-layer projection
    after."""

    def __init__(
        self, in_channels: int, out_channels: int, *, modes: int, width: int, layers: int
    ) -> None:
        super().__init__()
        self.lift = nn.Conv1d(in_channels, width, 1)
        self.spectral = nn.ModuleList(SpectralConv1d(width, width, modes) for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in range(layers))
        self.project = nn.Sequential(
            nn.Conv1d(width, 4 * width, 1), nn.GELU(), nn.Conv1d(4 * width, out_channels, 1)
        )

    def forward(self, v: Tensor) -> Tensor:
        h = self.lift(v)
        for i, (k, w) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            h = k(h) + w(h)
            if i < len(self.spectral) - 1:
                h = F.gelu(h)
        return self.project(h)
