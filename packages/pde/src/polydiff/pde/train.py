"""Training any polydiff.pde method (WDNO, FNO) on a dataset with the core's Lightning scaffold:
``DiffusionModule`` (Adam-W, warmup, gradient clipping, EMA) and ``fit`` (periodic atomic
checkpoints, automatic resume), then export of the EMA weights as a saved method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from polydiff.core import Method
from polydiff.core.errors import InputError
from polydiff.core.method import Config
from polydiff.pde.data import PDEData


@dataclass(frozen=True)
class TrainConfig(Config):
    max_steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 0
    ema_decay: float | None = 0.995  # WDNO's
    ema_warmup: bool = False
    """Decay min(ema_decay, (1 + n) / (10 + n)) at update n, so that a short run's EMA does not
    keep a share of the initial weights (0.995^600 = 5% after 600 steps without it)."""
    grad_clip_norm: float | None = 1.0  # WDNO's
    checkpoint_every: int = 500
    seed: int = 0
    lr_schedule: str = "constant"
    """"constant", or "cosine": after the warmup, the learning rate falls as a half cosine from
    ``lr`` to 0 at ``max_steps`` (Loshchilov & Hutter 2017, without restarts)."""

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(
                f"lr_schedule: expected one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warmup, then constant
    or a half cosine to 0 at ``config.max_steps``."""
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _as_batch(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    u, f = zip(*items, strict=True)
    return {"u": torch.stack(u), "f": torch.stack(f)}


def train_method(
    method: Method, data: PDEData, run_dir: str | Path, config=TrainConfig(), **fit_kwargs: Any
) -> Any:  # the DiffusionModule
    """Train (or resume) ``method`` on ``data`` (u, and f or zeros) in ``run_dir`` and save it
    (the EMA weights when there is an EMA) to ``run_dir/model``. A method with ``fit_scale``
    (WDNO) measures its coefficient scales on the data first. ``fit_kwargs`` go to
    ``polydiff.core.train.fit``."""
    # Lightning is imported here, so that importing polydiff.pde stays light
    from polydiff.core.train import DiffusionModule, ResumableLoader, fit

    u = torch.as_tensor(data.u, dtype=torch.float32)
    f = torch.zeros_like(u) if data.f is None else torch.as_tensor(data.f, dtype=torch.float32)
    if hasattr(method, "fit_scale"):
        method.fit_scale(u, f)

    class Module(DiffusionModule):  # the core's module with this config's schedule
        def configure_optimizers(self) -> dict[str, Any]:
            out = super().configure_optimizers()
            schedule = torch.optim.lr_scheduler.LambdaLR(
                out["optimizer"], lambda step: lr_factor(step, config)
            )
            return {**out, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    module = Module(
        method.net, method.loss_fn, lr=config.lr, warmup_steps=config.warmup_steps,
        ema_decay=config.ema_decay, ema_warmup=config.ema_warmup,
        grad_clip_norm=config.grad_clip_norm,
    )  # fmt: skip
    loader = ResumableLoader(
        TensorDataset(u, f), batch_size=min(config.batch_size, len(u)), seed=config.seed,
        collate_fn=_as_batch,
    )  # fmt: skip
    fit_kwargs.setdefault("checkpoint_every", config.checkpoint_every)
    fit_kwargs.setdefault("seed", config.seed)
    fit(module, loader, run_dir, max_steps=config.max_steps, **fit_kwargs)
    method.save(Path(run_dir) / "model", module, ema=config.ema_decay is not None)
    return module


__all__ = ["LR_SCHEDULES", "TrainConfig", "lr_factor", "train_method"]
