"""Forward finite differences along chosen axes of a volume: the ``D`` of total variation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from polydiff.medical.operators.base import LinearOperator


class FiniteDifference(LinearOperator):
    """``D x`` = forward differences of a ``(..., D, H, W)`` volume along ``axes`` (0 = z/slices,
    1 = y, 2 = x of the trailing three dims), stacked to ``(..., len(axes), D, H, W)``.

    ``circular=False`` (Neumann): ``(D x)_i = x_{i+1} - x_i`` with 0 at the last index;
    ``circular=True``: periodic wrap-around, the ``Dz`` of DiffusionMBIR. ``adjoint`` is the
    exact transpose (a negative backward difference), so ``D^T D`` is a discrete Laplacian.
    """

    def __init__(
        self, volume_shape: Sequence[int], axes: Sequence[int] = (0, 1, 2), circular: bool = False
    ) -> None:
        if len(volume_shape) != 3:
            raise ValueError(f"volume_shape must be (D, H, W), got {tuple(volume_shape)}")
        axes = tuple(int(a) for a in axes)
        if not axes or len(set(axes)) != len(axes) or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes must be distinct values of 0, 1, 2, got {axes}")
        self.axes, self.circular = axes, circular
        self.in_shape = tuple(int(n) for n in volume_shape)
        self.out_shape = (len(axes), *self.in_shape)

    def _forward(self, x: Tensor) -> Tensor:
        out = x.new_zeros(x.shape[0], len(self.axes), *self.in_shape)
        for k, a in enumerate(self.axes):
            dim, n = a + 1, x.shape[a + 1]
            # (D x)_i = x_{i+1} - x_i for i < n - 1; the last entry is 0 or wraps around
            out[:, k].narrow(dim, 0, n - 1).copy_(x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1))
            if self.circular:
                out[:, k].narrow(dim, n - 1, 1).copy_(x.narrow(dim, 0, 1) - x.narrow(dim, n - 1, 1))
        return out

    def _adjoint(self, y: Tensor) -> Tensor:
        # (D^T g)_i = g_{i-1} - g_i: a negative backward difference (g_{-1} = g_{n-1} when
        # circular, else 0, and the structurally zero g_{n-1} is ignored).
        x = y.new_zeros(y.shape[0], *self.in_shape)
        for k, a in enumerate(self.axes):
            dim, n = a + 1, y.shape[a + 2]
            g = y[:, k]
            x.narrow(dim, 0, n - 1).sub_(g.narrow(dim, 0, n - 1))
            x.narrow(dim, 1, n - 1).add_(g.narrow(dim, 0, n - 1))
            if self.circular:
                x.narrow(dim, n - 1, 1).sub_(g.narrow(dim, n - 1, 1))
                x.narrow(dim, 0, 1).add_(g.narrow(dim, n - 1, 1))
        return x
