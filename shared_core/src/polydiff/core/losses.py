"""Denoising / flow-matching losses for affine and mean-reverting paths.

The network's ``prediction`` (eps, x0, v, score, velocity) is regressed onto its exact target
for x_t = alpha x0 + (1 - alpha) mu + sigma eps. Weightings are defined on the x0 error and
converted to the prediction's units, so "edm" or "min_snr" mean the same for every prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from polydiff.core.param import from_x0
from polydiff.core.paths import AffinePath, as_time
from polydiff.core.utils import expand_like

WEIGHTINGS = ("none", "sigma2", "edm", "min_snr")


def _x0_scale2(path: AffinePath, t: Tensor, prediction: str) -> Tensor:
    """|d prediction / d x0|^2 at fixed x_t: the factor between a prediction's squared error and
    the x0 squared error."""
    a, s = path.alpha(t), path.sigma(t)
    return {
        "x0": torch.ones_like(t),
        "eps": (a / s) ** 2,
        "score": (a / s**2) ** 2,
        "v": ((a**2 + s**2) / s) ** 2,
        "velocity": ((path.d_alpha(t) * s - a * path.d_sigma(t)) / s) ** 2,
    }[prediction]


def loss_weight(
    path: AffinePath,
    t: Tensor,
    prediction: str,
    weighting: str = "none",
    *,
    sigma_data: float = 0.5,
    gamma: float = 5.0,
) -> Tensor:
    """Weight of the squared error of ``prediction`` at times t (float64, t's shape).

    none: 1. sigma2: sigma^2 (denoising score matching, Song et al. 2021, Eq. 7, as SGMSE trains).
    edm: (sigma~^2 + sd^2) / (sigma~ sd)^2 on the x0 error with sigma~ = sigma/alpha (Karras et al.
    2022, Table 1). min_snr: min(snr, gamma) on the x0 error (Hang et al. 2023, "Efficient
    Diffusion Training via Min-SNR Weighting Strategy"), snr = alpha^2/sigma^2.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
    t = as_time(t)
    if weighting == "none":
        return torch.ones_like(t)
    if weighting == "sigma2":
        return path.sigma(t) ** 2
    if weighting == "edm":
        st = path.sigma(t) / path.alpha(t)
        w_x0 = (st**2 + sigma_data**2) / (st * sigma_data) ** 2
    else:
        w_x0 = torch.clamp((path.alpha(t) / path.sigma(t)) ** 2, max=gamma)
    return w_x0 / _x0_scale2(path, t, prediction)


def diffusion_loss(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    path: AffinePath,
    *,
    prediction: str = "eps",
    weighting: str = "none",
    t: Tensor | None = None,
    noise: Tensor | None = None,
    mu: Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma_data: float = 0.5,
    gamma: float = 5.0,
) -> Tensor:
    """Per-sample loss [B]: weight(t) * mean over non-batch dims of (model(x_t, t) - target)^2.

    ``t`` defaults to ``path.sample_t`` ([B]); give [B, L] for per-position times. With
    ``prediction="velocity"`` on :class:`~polydiff.core.paths.Flow` this is conditional flow
    matching (Lipman et al. 2023, "Flow Matching for Generative Modeling"); with ``"score"`` and
    ``"sigma2"`` it is SGMSE's denoising score matching.
    """
    B = x0.shape[0]
    if t is None:
        t = path.sample_t(B, generator=generator, device=x0.device)
    t = as_time(t, x0)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    if noise.shape != x0.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from x0 {tuple(x0.shape)}")
    x_t = path.marginal(x0, t, noise, mu=mu)
    y, y0 = (x_t, x0) if mu is None else (x_t - mu, x0 - mu)
    target = from_x0(y0, prediction, y, t, path) if prediction != "eps" else noise
    if prediction == "x0":
        target = x0
    pred = model_fn(x_t, t.to(x0.real.dtype))
    err = (pred - target).abs().square()  # also right for complex data (e.g. spectrograms)
    w = expand_like(
        loss_weight(path, t, prediction, weighting, sigma_data=sigma_data, gamma=gamma), err
    )
    per_elem = w * err
    return per_elem.reshape(B, -1).mean(1)


__all__ = ["WEIGHTINGS", "diffusion_loss", "loss_weight"]
