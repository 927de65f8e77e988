"""Errors of predicted trajectories [B, nt, nx] against the truth, as the PDE literature reports
them (definitions as in PDEBench, Takamoto et al. 2022, Sec. 4 and App. D; reimplemented).

``from_time`` skips the first output times (WDNO reports simulation errors for t >= 1, since
u0 is given).
"""

from __future__ import annotations

import torch
from torch import Tensor

from polydiff.core.errors import InputError

# PDEBench's Fourier bands of the spatial wavenumber k: low k <= 4, mid 5 <= k <= 12, high k >= 13
BANDS = {"low": (0, 4), "mid": (5, 12), "high": (13, None)}


def _pair(pred: Tensor, true: Tensor, from_time: int) -> tuple[Tensor, Tensor]:
    pred, true = torch.as_tensor(pred), torch.as_tensor(true)
    if pred.shape != true.shape or pred.ndim != 3:
        raise InputError(
            f"pred: expected the shape of the truth [B, nt, nx], got {tuple(pred.shape)} and "
            f"{tuple(true.shape)}"
        )
    return pred[:, from_time:].double(), true[:, from_time:].double()


def mse(pred: Tensor, true: Tensor, from_time: int = 0) -> float:
    """Mean squared error over samples, times and positions."""
    pred, true = _pair(pred, true, from_time)
    return float((pred - true).square().mean())


def relative_l2_per_sample(pred: Tensor, true: Tensor, from_time: int = 0) -> Tensor:
    """||pred - true||_2 / ||true||_2 of each sample over its (t, x) values: [B] (float64)."""
    pred, true = _pair(pred, true, from_time)
    return (pred - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1).clamp_min(1e-12)


def relative_l2(pred: Tensor, true: Tensor, from_time: int = 0) -> float:
    """``relative_l2_per_sample`` averaged over samples."""
    return float(relative_l2_per_sample(pred, true, from_time).mean())


def nrmse(pred: Tensor, true: Tensor, from_time: int = 0) -> float:
    """PDEBench's nRMSE: ||pred - true||_2 / ||true||_2 over x, averaged over samples and times."""
    pred, true = _pair(pred, true, from_time)
    return float(((pred - true).norm(dim=-1) / true.norm(dim=-1).clamp_min(1e-12)).mean())


def spectral_errors(pred: Tensor, true: Tensor, from_time: int = 0) -> dict[str, float]:
    """PDEBench's fRMSE by band: sqrt(mean over samples and times of sum_{k in band}
    |F(pred - true)(k)|^2) / nx, with F the real FFT over x. By Parseval the bands together
    hold the whole error: for an even nx, sum of squares = mean over x of the squared error,
    counting each k > 0 twice."""
    pred, true = _pair(pred, true, from_time)
    nx = pred.shape[-1]
    power = torch.fft.rfft(pred - true, dim=-1).abs().square() / nx**2
    k = torch.arange(power.shape[-1])
    out = {}
    for name, (lo, hi) in BANDS.items():
        band = (k >= lo) & (k <= (hi if hi is not None else k.max()))
        out[name] = float(power[..., band].sum(-1).mean().sqrt())
    return out


def max_gradient(u: Tensor, dx: float, from_time: int = 1) -> Tensor:
    """The steepest slope of each trajectory [B, nt, nx], max over t >= ``from_time`` and x of
    |u(x + dx) - u(x)| / dx: [B]; large values mark shocks (steep fronts)."""
    u = torch.as_tensor(u)[:, from_time:].double()
    return (u.diff(dim=-1).abs() / dx).amax((1, 2))


def trajectory_metrics(pred: Tensor, true: Tensor, from_time: int = 1) -> dict[str, float]:
    """Every metric above over t >= ``from_time`` and at the final time (``*_final``)."""
    out = {
        "mse": mse(pred, true, from_time),
        "relative_l2": relative_l2(pred, true, from_time),
        "nrmse": nrmse(pred, true, from_time),
        **{f"frmse_{k}": v for k, v in spectral_errors(pred, true, from_time).items()},
    }
    last = torch.as_tensor(pred).shape[1] - 1
    out["mse_final"] = mse(pred, true, last)
    out["relative_l2_final"] = relative_l2(pred, true, last)
    return out


__all__ = [
    "BANDS",
    "max_gradient",
    "mse",
    "nrmse",
    "relative_l2",
    "relative_l2_per_sample",
    "spectral_errors",
    "trajectory_metrics",
]
