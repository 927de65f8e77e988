"""Single-coil Cartesian MRI: ``A x = M F x`` with the orthonormal centred 2D DFT ``F``."""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.medical.operators.base import LinearOperator


def fft2c(x: Tensor) -> Tensor:
    """Orthonormal 2D DFT over the last two dims with DC at the centre:
    ``fftshift(fft2(ifftshift(x)))``. Unitary, so its adjoint is :func:`ifft2c`."""
    dims = (-2, -1)
    return torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims
    )


def ifft2c(k: Tensor) -> Tensor:
    """Inverse (and adjoint) of :func:`fft2c`."""
    dims = (-2, -1)
    return torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(k, dim=dims), norm="ortho"), dim=dims
    )


class CartesianMRI(LinearOperator):
    """Undersampled Cartesian MRI, slice by slice: ``(..., H, W) -> (..., H, W)`` complex k-space
    with zeros at unsampled locations, ``y = M F x`` (``M`` a 0/1 mask, ``F`` = :func:`fft2c`).

    ``A^H y = F^H (M y)`` and ``A^H A = F^H M F`` (a projection). With ``real_input=True`` the
    unknown image is real: the operator maps R^n -> C^m and its adjoint for the real inner
    product ``Re <., .>`` is ``Re(F^H M y)``, so CG and TV solvers stay in real arithmetic.
    Complex inputs are accepted (and complex adjoints returned) when ``real_input=False``.

    Args:
        mask: boolean or 0/1 tensor of shape (H, W) (see :mod:`polydiff.medical.operators.masks`).
        real_input: treat images as real-valued (the phantoms; magnitude images).
    """

    complex_output = True

    def __init__(self, mask: Tensor, real_input: bool = True) -> None:
        mask = torch.as_tensor(mask)
        if mask.dim() != 2:
            raise ValueError(f"mask must have shape (H, W), got shape {tuple(mask.shape)}")
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must be boolean or contain only 0 and 1")
        self.mask = mask.to(torch.bool)
        self.real_input = real_input
        self.in_shape = self.out_shape = tuple(self.mask.shape)
        self._masks: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    @property
    def acceleration(self) -> float:
        return self.mask.numel() / max(int(self.mask.sum()), 1)

    def _mask_like(self, t: Tensor) -> Tensor:
        dtype = t.real.dtype if t.is_complex() else t.dtype
        key = (dtype, t.device)
        if key not in self._masks:
            self._masks[key] = self.mask.to(dtype=dtype, device=t.device)
        return self._masks[key]

    def _forward(self, x: Tensor) -> Tensor:
        if self.real_input and x.is_complex():
            raise TypeError(
                "CartesianMRI(real_input=True) takes real images; pass "
                "real_input=False for complex images"
            )
        return self._mask_like(x) * fft2c(x if x.is_complex() else x.to(_complex_of(x.dtype)))

    def _adjoint(self, y: Tensor) -> Tensor:
        if not y.is_complex():
            y = y.to(_complex_of(y.dtype))
        x = ifft2c(self._mask_like(y) * y)
        return x.real if self.real_input else x

    def noise_like(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Complex white noise on the sampled k-space locations only."""
        return self._mask_like(y) * super().noise_like(y, generator)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
