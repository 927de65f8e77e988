"""A differentiable discrete wavelet transform in torch, with subbands stacked as channels.

The transform of WDNO (Hu et al. 2025, "Wavelet Diffusion Neural Operator"): a trajectory
[B, C, t, x] (or [B, C, t, x, y]) becomes [B, C * 4, t / 2, x / 2] coefficients, one channel per
subband, so a U-Net denoises all subbands at once at half the resolution.

One level along one axis of length N (periodization, as PyWavelets' ``mode="periodization"``):
a[k] = sum_j h[j] x[(2k + L/2 - j) mod N] for the low-pass filter h of even length L and
likewise d[k] with the high-pass filter: a stride-2 circular convolution giving N/2 + N/2
coefficients. The inverse is the adjoint of the same analysis built from the dual (synthesis)
filters, exact for orthogonal and biorthogonal wavelets. Filter taps come from PyWavelets.

Channel order: the axes are transformed in order (the first transformed axis first), each
splitting every channel into (low, high); for ``ndim=2`` the channels of input channel c are
``4c + [aa, ad, da, dd]`` where the first letter is the first axis ("a" low, "d" high), the keys
of ``pywt.dwtn``. ``levels > 1`` transforms every channel again (a full wavelet packet), so all
subbands keep one size: [B, C * 2^(ndim * levels), N / 2^levels, ...].
"""

from __future__ import annotations

import functools

import pywt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core.errors import InputError


@functools.lru_cache(maxsize=32)
def wavelet_filters(wavelet: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(analysis [lo, hi], synthesis [lo, hi]) taps of a PyWavelets orthogonal/biorthogonal
    wavelet, as flat tuples of 2 L numbers."""
    try:
        w = pywt.Wavelet(wavelet)
    except (ValueError, TypeError):
        raise InputError(
            f"wavelet: {wavelet!r} is not a discrete wavelet PyWavelets knows "
            f"(e.g. haar, db2, sym4, bior2.4)"
        ) from None
    if not (w.orthogonal or w.biorthogonal):
        raise InputError(f"wavelet: {wavelet!r} is neither orthogonal nor biorthogonal")
    return (*w.dec_lo, *w.dec_hi), (*w.rec_lo, *w.rec_hi)


def _wrap_index(n: int, length: int, device) -> Tensor:
    """Indices of the periodically extended signal fed to the stride-2 convolution."""
    return (torch.arange(n + length - 2, device=device) - (length // 2 - 1)) % n


def _analysis_axis(x: Tensor, weight: Tensor, axis: int) -> Tensor:
    """[P, C, *S] -> [P, 2C, *S with S[axis] halved]; ``weight`` [2, 1, L] (flipped filters)."""
    n, length = x.shape[axis], weight.shape[-1]
    y = x.movedim(axis, -1)
    lead = y.shape[:-1]
    y = y.reshape(-1, 1, n)[..., _wrap_index(n, length, x.device)]
    y = F.conv1d(y, weight, stride=2).reshape(*lead, 2, n // 2)
    y = y.movedim(-1, axis).movedim(-1, 2)  # [P, C, 2, *S]
    return y.flatten(1, 2)


def _synthesis_axis(c: Tensor, weight: Tensor, axis: int) -> Tensor:
    """The adjoint of ``_analysis_axis`` with ``weight``: [P, 2C, *S] -> [P, C, *S doubled]."""
    m, length = c.shape[axis], weight.shape[-1]
    y = c.unflatten(1, (-1, 2)).movedim(2, -1).movedim(axis, -1)  # [P, C, *S_other, 2, M]
    lead = y.shape[:-2]
    z = F.conv_transpose1d(y.reshape(-1, 2, m), weight, stride=2)[:, 0]
    out = z.new_zeros(z.shape[0], 2 * m).index_add_(-1, _wrap_index(2 * m, length, c.device), z)
    return out.reshape(*lead, 2 * m).movedim(-1, axis)


class WaveletTransform(nn.Module):
    """Periodized DWT over the last ``ndim`` axes of [..., C, *S], ``levels`` times (module
    docstring); ``forward`` gives the stacked subbands, ``inverse`` the exact inverse.

    >>> dwt = WaveletTransform("bior2.4", ndim=2)
    >>> x = torch.randn(8, 2, 16, 32, dtype=torch.float64)
    >>> dwt(x).shape
    torch.Size([8, 8, 8, 16])
    >>> bool(torch.allclose(dwt.inverse(dwt(x)), x))
    True
    """

    def __init__(self, wavelet: str = "haar", ndim: int = 2, levels: int = 1):
        super().__init__()
        if ndim not in (1, 2, 3):
            raise InputError(f"ndim: expected 1, 2 or 3 transformed axes, got {ndim!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise InputError(f"levels: expected a positive integer, got {levels!r}")
        dec, rec = wavelet_filters(wavelet)
        self.wavelet, self.ndim, self.levels = wavelet, ndim, levels
        dec = torch.tensor(dec, dtype=torch.float64).reshape(2, 1, -1)
        rec = torch.tensor(rec, dtype=torch.float64).reshape(2, 1, -1)
        # conv1d correlates, so analysis uses the flipped filters; conv_transpose1d is the adjoint
        # of conv1d with the same weight, and the dual analysis filters are the reversed rec ones
        self.register_buffer("analysis_weight", dec.flip(-1), persistent=False)
        self.register_buffer("synthesis_weight", rec, persistent=False)

    @property
    def bands(self) -> int:
        """Channels per input channel: 2^(ndim * levels)."""
        return 2 ** (self.ndim * self.levels)

    def _check(self, x: Tensor, name: str) -> None:
        if x.ndim < self.ndim + 1:
            raise InputError(
                f"{name}: expected [..., C, {self.ndim} transformed axes], got {tuple(x.shape)}"
            )
        sizes = tuple(x.shape[-self.ndim :])
        if any(s % 2**self.levels for s in sizes):
            raise InputError(
                f"levels: the transformed sizes {sizes} must be divisible by 2**levels = "
                f"{2**self.levels}; pad or crop the input"
            )

    def _flat(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        lead = x.shape[: -self.ndim - 1]
        return x.reshape(-1, *x.shape[-self.ndim - 1 :]), lead

    def forward(self, x: Tensor) -> Tensor:
        """[..., C, *S] -> [..., C * bands, *S / 2^levels]."""
        self._check(x, "x")
        y, lead = self._flat(x)
        weight = self.analysis_weight.to(device=x.device, dtype=x.dtype)
        for _ in range(self.levels):
            for axis in range(2, 2 + self.ndim):
                y = _analysis_axis(y, weight, axis)
        return y.reshape(*lead, *y.shape[1:])

    def inverse(self, coeffs: Tensor) -> Tensor:
        """The exact inverse of ``forward``: [..., C * bands, *S'] -> [..., C, *S' * 2^levels]."""
        if coeffs.ndim < self.ndim + 1 or coeffs.shape[-self.ndim - 1] % self.bands:
            raise InputError(
                f"coeffs: expected [..., C * {self.bands}, {self.ndim} axes], "
                f"got {tuple(coeffs.shape)}"
            )
        y, lead = self._flat(coeffs)
        weight = self.synthesis_weight.to(device=coeffs.device, dtype=coeffs.dtype)
        for _ in range(self.levels):
            for axis in reversed(range(2, 2 + self.ndim)):
                y = _synthesis_axis(y, weight, axis)
        return y.reshape(*lead, *y.shape[1:])


def dwt(x: Tensor, wavelet: str = "haar", ndim: int = 2, levels: int = 1) -> Tensor:
    """``WaveletTransform(wavelet, ndim, levels)(x)``."""
    return WaveletTransform(wavelet, ndim, levels).to(x.device)(x)


def idwt(coeffs: Tensor, wavelet: str = "haar", ndim: int = 2, levels: int = 1) -> Tensor:
    """``WaveletTransform(wavelet, ndim, levels).inverse(coeffs)``."""
    return WaveletTransform(wavelet, ndim, levels).to(coeffs.device).inverse(coeffs)


__all__ = ["WaveletTransform", "dwt", "idwt", "wavelet_filters"]
