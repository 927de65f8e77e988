"""The linear-operator interface shared by every forward model (CT, MRI) and the TV differences."""

from __future__ import annotations

import torch
from torch import Tensor


class LinearOperator:
    """A linear map ``A`` with its exact adjoint, applied to the last dimensions of a tensor.

    ``in_shape`` / ``out_shape`` are the trailing shapes of one slice (e.g. ``(H, W)`` ->
    ``(n_views, n_det)``); any leading dimensions (slices of a volume, a batch) are carried
    through, so a volume ``(D, H, W)`` is projected slice by slice in one call.
    Subclasses implement ``_forward`` / ``_adjoint`` on ``(B, *in_shape)`` / ``(B, *out_shape)``.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    #: True when measurements are complex (MRI k-space); inner products then use Re<a, b>.
    complex_output: bool = False

    def forward(self, x: Tensor) -> Tensor:
        """``y = A x`` for ``x`` of shape ``(..., *in_shape)``."""
        lead = _check_trailing(x, self.in_shape, "x", type(self).__name__, "forward")
        y = self._forward(x.reshape(-1, *self.in_shape))
        return y.reshape(*lead, *self.out_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        """``A^T y`` (``A^H y`` for complex data) for ``y`` of shape ``(..., *out_shape)``."""
        lead = _check_trailing(y, self.out_shape, "y", type(self).__name__, "adjoint")
        x = self._adjoint(y.reshape(-1, *self.out_shape))
        return x.reshape(*lead, *self.in_shape)

    def normal(self, x: Tensor) -> Tensor:
        """The normal operator ``A^T A x`` (the Gram matrix used by CG and ADMM)."""
        return self.adjoint(self.forward(x))

    __call__ = forward

    def measure(
        self, x: Tensor, noise_std: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Simulated measurements ``y = A x + noise_std * n`` with white Gaussian ``n``.

        For complex measurements ``n`` is circular complex Gaussian with ``E|n|^2 = 1``
        (variance 1/2 in each of the real and imaginary parts).
        """
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        y = self.forward(x)
        if noise_std == 0:
            return y
        return y + noise_std * self.noise_like(y, generator)

    def noise_like(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Unit white Gaussian noise shaped like the measurements ``y``."""
        if y.is_complex():
            real = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device=y.device)
            imag = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device=y.device)
            return torch.complex(real, imag) / 2**0.5
        return torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)

    def _forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError


def _check_trailing(
    t: Tensor, shape: tuple[int, ...], name: str, op: str, method: str
) -> tuple[int, ...]:
    """Leading dims of ``t`` after checking that its trailing dims equal ``shape``."""
    k = len(shape)
    if t.dim() < k or tuple(t.shape[t.dim() - k :]) != tuple(shape):
        raise ValueError(
            f"{op}.{method}: {name} has shape {tuple(t.shape)}, expected trailing dims {shape}"
        )
    return tuple(t.shape[: t.dim() - k])


def inner(a: Tensor, b: Tensor) -> Tensor:
    """Real inner product ``Re <a, b> = Re sum(conj(a) b)`` over all elements (adjoint tests)."""
    if a.is_complex() or b.is_complex():
        return torch.sum(torch.conj(a) * b).real
    return torch.sum(a * b)
