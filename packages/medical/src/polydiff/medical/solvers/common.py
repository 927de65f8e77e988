"""Pieces shared by the diffusion reconstruction solvers: the slice prior (a 2D ``model_fn``
applied to every slice of a volume, with an evaluation counter), the result type and the
ADMM step with TV along z that DiffusionMBIR and DDS share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.core.grids import make_grid
from polydiff.core.param import convert
from polydiff.core.paths import as_time
from polydiff.core.sample import sample
from polydiff.core.utils import expand_like
from polydiff.medical.baselines import cg, soft_threshold
from polydiff.medical.operators.base import LinearOperator
from polydiff.medical.operators.difference import FiniteDifference

ModelFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Reconstruction:
    """A solver's output: the ``(D, H, W)`` volume and its cost in network evaluations.

    ``nfe`` counts evaluations of the prior over the whole volume (every slice once = 1), the
    unit of the DiffusionMBIR / DDS papers' "NFE per slice".
    """

    x: Tensor
    nfe: int


class SlicePrior:
    """A 2D diffusion prior applied slice by slice to ``(D, H, W)`` volumes.

    ``model_fn(x, t)`` takes slices ``(N, 1, H, W)`` and times ``t`` of shape ``(N,)`` and
    returns the ``prediction`` ("eps", "x0", "v", "score") of a network trained on ``path``.
    A trained :class:`~polydiff.medical.nets.SliceUNet` (see :mod:`polydiff.medical.prior`) and
    the exact Gaussian scores of :mod:`polydiff.core.testing` plug in the same way.
    ``chunk`` bounds the slices per network call (memory); ``nfe`` counts whole-volume calls.
    """

    def __init__(
        self, model_fn: ModelFn, path: Any, prediction: str = "eps", chunk: int | None = None
    ) -> None:
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 or None, got {chunk}")
        self.model_fn, self.path, self.prediction, self.chunk = model_fn, path, prediction, chunk
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """The native prediction for the slices ``x`` ``(D, H, W)`` at time ``t`` (``[]`` or
        ``[D]``); the signature the core driver expects of a ``model_fn``."""
        if x.dim() != 3:
            raise ValueError(f"SlicePrior expects a (D, H, W) volume, got {tuple(x.shape)}")
        self.nfe += 1
        t = as_time(t, x).expand(x.shape[0]).to(x.dtype)
        xs = x.unsqueeze(1)
        size = x.shape[0] if self.chunk is None else self.chunk
        out = [self.model_fn(xc, tc) for xc, tc in zip(xs.split(size), t.split(size), strict=True)]
        return torch.cat(out).reshape(x.shape)

    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        """The noise prediction eps_theta(x_t, t) of every slice."""
        if self.prediction == "eps":
            return self(x, t)
        return convert(self(x, t), self.prediction, "eps", x, as_time(t, x), self.path)

    def x0(self, x: Tensor, t: Tensor) -> Tensor:
        """The clean-slice prediction of every slice: the posterior mean E[x0 | x_t] by
        Tweedie's formula (Efron, 2011, "Tweedie's Formula and Selection Bias", Eq. 2.8), i.e.
        ``(x_t - sigma eps_theta) / alpha`` for an eps network (Ho et al., 2020, Eq. 15)."""
        if self.prediction == "x0":
            return self(x, t)
        return convert(self(x, t), self.prediction, "x0", x, as_time(t, x), self.path)

    def grid(self, steps: int, kind: str = "uniform", t_start: float | None = None) -> Tensor:
        """The sampling times t_0 > ... > t_steps on the prior's path (float64), from
        ``t_start`` (None: the path's start)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return make_grid(kind, steps, self.path, t_start=t_start)


def operator_norm2(op: LinearOperator, n_iter: int = 50) -> float:
    """``||A||^2``, the largest eigenvalue of ``A^T A`` on one slice, by power iteration
    (fixed-seed start, so the value is reproducible; cached on the operator).

    The solvers' penalty and step parameters are given relative to this scale, so that one
    setting works for CT matrices whose norm grows with the image size and the view count
    (``||A||^2`` ~ n_views * size) and for orthonormal MRI (``||A||^2 = 1``).
    """
    cached = getattr(op, "_polydiff_norm2", None)
    if cached is not None:
        return cached
    g = torch.Generator().manual_seed(0)
    v = torch.randn((1, *op.in_shape), generator=g, dtype=torch.float64)
    value = 0.0
    for _ in range(n_iter):
        v = v / v.norm()
        w = op.normal(v.to(torch.float32)).to(torch.float64)
        w = w.real if w.is_complex() else w
        value = float((v * w).sum())  # Rayleigh quotient (once per iteration, not a hot loop)
        v = w
    op._polydiff_norm2 = value  # type: ignore[attr-defined]
    return value


def resolve_norm2(op: LinearOperator, op_norm2: float | None) -> float:
    """``op_norm2`` if given (``1.0``: parameters in absolute units), else the estimate
    :func:`operator_norm2`."""
    if op_norm2 is not None and op_norm2 <= 0:
        raise ValueError(f"op_norm2 must be > 0 or None, got {op_norm2}")
    return operator_norm2(op) if op_norm2 is None else op_norm2


def volume_shape(op: LinearOperator, y: Tensor) -> tuple[int, ...]:
    """The ``(D, H, W)`` volume that the measurements ``y`` of ``op`` (one row of ``y`` per
    slice) come from, with clear errors for a ``y`` that does not fit ``op``."""
    shape = (y.shape[0], *op.in_shape)
    if len(shape) != 3:
        raise ValueError(f"volume shape must be (D, H, W), got {tuple(shape)}")
    want = (shape[0], *op.out_shape)
    if tuple(y.shape) != want:
        raise ValueError(
            f"measurements y have shape {tuple(y.shape)}, but {type(op).__name__} on a "
            f"{tuple(shape)} volume gives {want}"
        )
    return shape


class ADMMTVz:
    """ADMM for ``min_x 0.5 ||A x - y||^2 + (w/2) ||x - x_anchor||^2 + lam ||D_z x||_1`` with the
    scaled dual ``u`` and split ``z = D_z x`` kept between calls (DiffusionMBIR: Chung et al.
    2023, "Solving 3D Inverse Problems using Pre-trained 2D Diffusion Models", Algorithm 1 /
    Eq. 10-12; DDS: Chung et al. 2024, "Decomposed Diffusion Sampler for Accelerating
    Large-Scale Inverse Problems", Algorithm 3). One call is one ADMM iteration:

        x <- CG_{n_cg}(A^T A + w I + rho D_z^T D_z, A^T y + w x_anchor + rho D_z^T (z - u))
        z <- soft(D_z x + u, lam / rho),   u <- u + D_z x - z

    starting CG from the given x (the diffusion iterate). ``D_z`` is the circular forward
    difference along slices. ``w = 0`` is the noiseless hard data consistency; ``w = 1/gamma``
    is DDS's proximal step ``(I + gamma A^T A) x = x_anchor + gamma A^T y`` for noisy data,
    here combined with the TV-z split. ``lam = 0`` drops the TV term (plain CG consistency).

    ``persistent=False`` restarts the split at every call from the incoming iterate,
    ``z = soft(D_z x, lam / rho)``, ``u = 0`` (one ADMM iteration started at x). Use it when
    the iterates' noise level changes between calls (DiffusionMBIR's ``x_t / alpha``): in the
    null space of ``A`` the x-update has only the ``rho`` term, so CG pulls ``D_z x`` back to
    the stored ``z - u`` whatever ``rho`` is, and a persistent split freezes the noise of the
    first, noisiest steps there (docs/medical.md, "Diagnosis", session 4).
    """

    def __init__(
        self,
        op: LinearOperator,
        y: Tensor,
        shape: tuple[int, ...],
        lam: float = 0.04,
        rho: float = 10.0,
        n_cg: int = 5,
        weight: float = 0.0,
        persistent: bool = True,
    ) -> None:
        if lam < 0 or rho <= 0 or n_cg < 1 or weight < 0:
            raise ValueError(
                "ADMMTVz needs lam >= 0, rho > 0, n_cg >= 1, weight >= 0; "
                f"got {lam}, {rho}, {n_cg}, {weight}"
            )
        self.op, self.lam, self.rho, self.n_cg, self.weight = op, lam, rho, n_cg, weight
        self.use_tv, self.persistent = lam > 0, persistent
        self.shape = tuple(shape)
        self.dz = FiniteDifference(shape, axes=(0,), circular=True)
        self.aty = op.adjoint(y)
        if self.aty.is_complex():  # complex-image MRI is out of scope for the slice prior
            raise ValueError(
                "ADMMTVz needs a real-valued adjoint (use CartesianMRI(real_input=True))"
            )
        self.z = torch.zeros((1, *shape), dtype=self.aty.dtype, device=self.aty.device)
        self.u = torch.zeros_like(self.z)

    @classmethod
    def relative(
        cls,
        op: LinearOperator,
        y: Tensor,
        lam: float,
        rho: float,
        n_cg: int,
        gamma: float | None = None,
        persistent: bool = True,
        op_norm2: float | None = None,
    ) -> ADMMTVz:
        """The step for the measurements ``y`` of a volume, with ``lam`` and ``rho`` multiples
        of ``L = ||A||^2`` and ``gamma`` of ``1 / L`` (:func:`resolve_norm2`), the units of
        the DDS and DiffusionMBIR parameters; ``gamma=None``: hard consistency (``w = 0``)."""
        if gamma is not None and gamma <= 0:
            raise ValueError(f"gamma must be > 0 or None, got {gamma}")
        norm2 = resolve_norm2(op, op_norm2)
        weight = 0.0 if gamma is None else norm2 / gamma
        shape = volume_shape(op, y)
        return cls(op, y, shape, lam * norm2, rho * norm2, n_cg, weight, persistent)

    def finish(self, x: Tensor, n_cg: int, clip: tuple[float, float] | None) -> Tensor:
        """A sampler's last data step with this step's data and weight
        (:func:`final_consistency`)."""
        return final_consistency(self.op, self.aty, x, n_cg, self.weight, clip)

    def gram(self, v: Tensor) -> Tensor:
        out = self.op.normal(v) + self.weight * v
        if self.use_tv:
            out = out + self.rho * self.dz.adjoint(self.dz.forward(v))
        return out

    def __call__(self, x: Tensor, anchor: Tensor | None = None) -> Tensor:
        b = self.aty
        if self.weight > 0:
            b = b + self.weight * (x if anchor is None else anchor)
        if self.use_tv and not self.persistent:
            self.z = soft_threshold(self.dz.forward(x), self.lam / self.rho)
            self.u = torch.zeros_like(self.u)
        if self.use_tv:
            b = b + self.rho * self.dz.adjoint(self.z - self.u)
        x = cg(self.gram, b, x, self.n_cg)
        if self.use_tv:
            dx = self.dz.forward(x)
            self.z = soft_threshold(dx + self.u, self.lam / self.rho)
            self.u = self.u + dx - self.z
        return x


def check_ending(clip: tuple[float, float] | None, final_cg: int = 0) -> None:
    """Clear errors for a sampler's ending options (:func:`final_consistency`), checked
    before its loop runs."""
    if clip is not None and not clip[0] < clip[1]:
        raise ValueError(f"clip must be (lo, hi) with lo < hi, got {clip}")
    if final_cg < 0:
        raise ValueError(f"final_cg must be >= 0, got {final_cg}")


def final_consistency(
    op: LinearOperator,
    aty: Tensor,
    x: Tensor,
    n_cg: int,
    weight: float = 0.0,
    clip: tuple[float, float] | None = None,
) -> Tensor:
    """The last data step of a sampler: ``n_cg`` CG steps on ``(A^T A + w I) v = A^T y + w x``
    warm-started at its output ``x``, then the clamp to ``clip``.

    A few CG steps per diffusion step (DDS: 5; DiffusionMBIR: 1) leave the final iterate off
    the data: on 8-view CT its residual ``||A x - y|| / ||y||`` was 2% (DDS, 10 steps) and 13%
    (DiffusionMBIR, 100 steps), on 90-degree limited-angle CT 4%, and DDS then ended *below*
    plain CG there (22.5 vs 22.6 dB). CG from ``x`` changes ``x`` only in the row space of
    ``A`` (for ``w = 0``), so the prior's null-space content is kept: +2.6 dB on that
    limited-angle case, +0.1-0.4 dB elsewhere (docs/medical.md, "Diagnosis").
    ``w = 0``: hard consistency (noiseless); ``w > 0``: the proximal step anchored at ``x``.
    """
    if n_cg > 0:

        def gram(v: Tensor) -> Tensor:
            return op.normal(v) + weight * v

        x = cg(gram, aty + weight * x, x, n_cg)
    return x if clip is None else x.clamp(*clip)


class SliceNoise:
    """Standard normals shaped like a tensor, drawn from ``generator`` on its own device and
    moved to the tensor's (a CPU generator seeds GPU runs the same way); the driver's ``noise``.
    """

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def __call__(self, like: Tensor) -> Tensor:
        z = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
        return z.to(like.device)


def run_steps(
    prior: SlicePrior,
    like: Tensor,
    ts: Tensor,
    hooks: list[Any],
    generator: torch.Generator | None,
    start: Tensor | None = None,
) -> None:
    """The reverse-time loop of DDS and DPS on the core driver (:func:`polydiff.core.sample`):
    ``x_T ~ N(0, sigma_T^2 I)`` shaped like ``like`` (with ``start``, a volume: the forward
    process at ``T = ts[0]`` from it, ``alpha_T start + sigma_T xi``), then one deterministic
    DDIM step per grid interval, each replaced by the method's own step (its after-step hook,
    which also keeps the method's estimate); one prior evaluation per step.
    """
    noise = SliceNoise(generator)
    x = noise(like) * expand_like(prior.path.sigma(ts[0]), like)  # alpha_T ~ 0 at T = 1
    if start is not None:
        x = x + expand_like(prior.path.alpha(ts[0]), like) * start.to(like)
    sample(
        prior,
        x,
        path=prior.path,
        solver="ddim",
        grid=ts,
        prediction=prior.prediction,
        hooks=hooks,
        noise=noise,
    )


__all__ = [
    "ADMMTVz",
    "ModelFn",
    "Reconstruction",
    "SliceNoise",
    "SlicePrior",
    "check_ending",
    "final_consistency",
    "operator_norm2",
    "resolve_norm2",
    "run_steps",
    "volume_shape",
]
