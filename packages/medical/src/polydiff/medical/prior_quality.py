"""How good is a slice prior? Its Tweedie denoising PSNR on held-out slices, next to an oracle TV
denoiser.

A diffusion prior's x0 estimate at time t is the minimum-mean-square-error denoiser of
``x_t = alpha x0 + sigma eps`` (Tweedie's formula), so its PSNR on noisy held-out slices, at the
noise levels ``s = sigma / alpha`` the solvers pass through, says how much the prior knows about
the slices before any inverse problem is involved. The yardstick is 2D total-variation denoising
(Chambolle's algorithm) with the best of a few weights picked on the same slices: an oracle, so
it favours TV. Use it to judge a prior you trained (``polydiff medical prior-quality``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from polydiff.medical.metrics import psnr
from polydiff.medical.solvers.common import SlicePrior

#: noise std on the [0, 1] scale, s = sigma / alpha, from nearly clean to very noisy
NOISE_LEVELS = (0.02, 0.05, 0.1, 0.2, 0.4)
#: the TV weights the oracle chooses from (skimage's ``denoise_tv_chambolle`` ``weight``)
TV_WEIGHTS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


@dataclass
class DenoisingLevel:
    """One noise level: PSNR (dB) of the noisy slices, the prior's and the oracle TV's
    estimates, the time ``t`` where ``sigma/alpha = s`` and the TV weight the oracle chose."""

    s: float
    t: float
    noisy_psnr: float
    prior_psnr: float
    tv_psnr: float
    tv_weight: float


@dataclass
class PriorQuality:
    """:func:`prior_denoising_psnr`'s result: one :class:`DenoisingLevel` per noise level."""

    levels: list[DenoisingLevel]
    n_slices: int
    seed: int
    clip: tuple[float, float] | None
    seconds: float = 0.0  # wall time of the whole evaluation

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self, prior: str, source: str) -> str:
        """A sentence saying what :meth:`markdown`'s table measured."""
        return (
            f"Tweedie denoising PSNR (dB) of the {prior} prior on {self.n_slices} non-empty "
            f"slices of {source} (noise seed {self.seed}), against 2-D TV denoising with an "
            "oracle weight."
        )

    def markdown(self) -> str:
        """The table ``| s | noisy | prior | TV (oracle) | TV weight | prior - TV |``."""
        rows = [
            f"| {lv.s:g} | {lv.noisy_psnr:.2f} | {lv.prior_psnr:.2f} | {lv.tv_psnr:.2f} | "
            f"{lv.tv_weight:g} | {lv.prior_psnr - lv.tv_psnr:+.2f} |"
            for lv in self.levels
        ]
        head = "| s | noisy | prior | TV (oracle) | TV weight | prior - TV |"
        return "\n".join([head, "|---|---|---|---|---|---|", *rows])


def nonempty_slices(
    volume: Tensor, threshold: float = 0.05, max_slices: int | None = None
) -> Tensor:
    """The slices ``volume[k]`` (axis 0) whose maximum exceeds ``threshold`` (empty slices
    outside the head would only inflate every denoiser's PSNR); with ``max_slices``, at most
    that many of them, evenly spaced (the first and the last included)."""
    if volume.dim() != 3:
        raise ValueError(f"expected a (D, H, W) volume, got shape {tuple(volume.shape)}")
    if max_slices is not None and max_slices < 1:
        raise ValueError(f"max_slices must be >= 1 or null, got {max_slices}")
    keep = volume.flatten(1).amax(1) > threshold
    if not bool(keep.any()):
        raise ValueError(f"no slice has a value above threshold {threshold}")
    kept = volume[keep]
    n = kept.shape[0]
    if max_slices is None or max_slices >= n:
        return kept
    if max_slices == 1:
        return kept[[n // 2]]
    return kept[[round(i * (n - 1) / (max_slices - 1)) for i in range(max_slices)]]


def time_at_noise_level(path: object, s: float) -> Tensor:
    """The time ``t`` (float64) at which the path's ``sigma(t) / alpha(t) = s``, from the
    inverse of its half log-SNR ``lambda = log(alpha / sigma) = -log s``."""
    if s <= 0:
        raise ValueError(f"noise level s must be > 0, got {s}")
    return path.t_of_log_snr(torch.tensor(-math.log(s), dtype=torch.float64))  # type: ignore[attr-defined]


def tv_denoise_oracle(
    noisy: Tensor, clean: Tensor, weights: Sequence[float] = TV_WEIGHTS
) -> tuple[float, float, list[float]]:
    """2D TV denoising of every slice (Chambolle, 2004, "An Algorithm for Total Variation
    Minimization and Applications", via ``skimage.restoration.denoise_tv_chambolle``) with each
    weight; returns (best PSNR, its weight, the PSNR of every weight). The weight is chosen on
    ``clean`` itself: an oracle, an upper bound on what TV denoising reaches."""
    import numpy as np
    from skimage.restoration import denoise_tv_chambolle

    if not weights or min(weights) <= 0:
        raise ValueError(f"tv weights must be a non-empty list of values > 0, got {weights}")
    slices = noisy.detach().cpu().double().numpy()
    scores = []
    for w in weights:
        estimate = torch.from_numpy(np.stack([denoise_tv_chambolle(s, weight=w) for s in slices]))
        scores.append(float(psnr(estimate, clean.detach().cpu())))
    best = max(range(len(weights)), key=scores.__getitem__)
    return scores[best], float(weights[best]), scores


def prior_denoising_psnr(
    prior: SlicePrior,
    slices: Tensor,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    tv_weights: Sequence[float] = TV_WEIGHTS,
    seed: int = 0,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> PriorQuality:
    """Denoising PSNR of ``prior`` on clean held-out ``slices`` ``(N, H, W)`` at each noise
    level ``s``, against the oracle TV denoiser (:func:`tv_denoise_oracle`).

    One noise draw ``eps = torch.randn(slices.shape, generator=Generator().manual_seed(seed))``
    serves every level: ``x_t = alpha x0 + sigma eps`` at the ``t`` where ``sigma/alpha = s``
    (:func:`time_at_noise_level`), so the noisy slices are ``x0 + s eps`` and the prior's
    estimate is its Tweedie x0 (:meth:`~polydiff.medical.solvers.common.SlicePrior.x0`),
    clamped to ``clip`` (the data range; ``None``: no
    clamp) as the solvers do. PSNR uses the clean slices' range (:func:`~polydiff.medical.
    metrics.psnr`). Costs one network evaluation over the slices per level.
    """
    if slices.dim() != 3:
        raise ValueError(f"slices must be (N, H, W), got shape {tuple(slices.shape)}")
    for name, values in (("noise_levels", noise_levels), ("tv_weights", tv_weights)):
        if not values or min(values) <= 0:
            raise ValueError(f"{name} must be values > 0, got {list(values)}")
    if clip is not None and (len(clip) != 2 or clip[0] >= clip[1]):
        raise ValueError(f"clip must be [low, high] with low < high or null, got {list(clip)}")
    start = time.perf_counter()
    x0 = slices.to(torch.float32)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device)
    levels = []
    for s in noise_levels:
        t = time_at_noise_level(prior.path, float(s))
        alpha = prior.path.alpha(t).to(x0.dtype)
        sigma = prior.path.sigma(t).to(x0.dtype)
        x_t = alpha * x0 + sigma * eps
        with torch.no_grad():
            estimate = prior.x0(x_t, t)
        if clip is not None:
            estimate = estimate.clamp(*clip)
        noisy = x_t / alpha
        tv_psnr, tv_weight, _ = tv_denoise_oracle(noisy, x0, tv_weights)
        levels.append(
            DenoisingLevel(
                s=float(s),
                t=float(t),
                noisy_psnr=float(psnr(noisy, x0)),
                prior_psnr=float(psnr(estimate, x0)),
                tv_psnr=tv_psnr,
                tv_weight=tv_weight,
            )
        )
    clip = None if clip is None else tuple(clip)
    return PriorQuality(levels, int(x0.shape[0]), seed, clip, time.perf_counter() - start)


__all__ = [
    "NOISE_LEVELS",
    "TV_WEIGHTS",
    "DenoisingLevel",
    "PriorQuality",
    "nonempty_slices",
    "prior_denoising_psnr",
    "time_at_noise_level",
    "tv_denoise_oracle",
]
