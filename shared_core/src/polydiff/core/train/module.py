"""`DiffusionModule`: the Lightning module every polydiff domain trains with.

A method supplies its network and its loss `loss_fn(net, batch) -> Tensor | dict`; the module
adds the optimizer with linear warmup, gradient clipping, an EMA of the weights (used for
validation and export, saved in and restored from checkpoints) and the global RNG state in the
checkpoint, so a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

from polydiff.core.errors import InputError, check_number
from polydiff.core.train.checkpoint import get_rng_state, set_rng_state
from polydiff.core.train.ema import ema_decay_at, make_ema, update_ema

__all__ = ["DiffusionModule", "LossFn"]

LossFn = Callable[[nn.Module, Any], Tensor | Mapping[str, Tensor]]


def _split_loss(out: Tensor | Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """(scalar loss to optimize, extra metrics to log) from what a loss function returned."""
    if isinstance(out, Tensor):
        loss, extras = out, {}
    elif isinstance(out, Mapping):
        if "loss" not in out:
            raise ValueError(f"loss_fn returned a dict without a 'loss' key (keys: {sorted(out)})")
        loss = out["loss"]
        extras = {k: v for k, v in out.items() if k != "loss"}
    else:
        raise ValueError(f"loss_fn must return a Tensor or a dict, got {type(out).__name__}")
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise ValueError(
            f"loss_fn must return a scalar loss, got shape {getattr(loss, 'shape', None)}"
        )
    return loss, extras


def _linear_warmup(warmup_steps: int) -> Callable[[int], float]:
    """lr multiplier: linear from 1/warmup to 1 over the first `warmup_steps` optimizer steps."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor


class DiffusionModule(L.LightningModule):
    """Train any network with a method-supplied loss; EMA, warmup, clipping, resumable RNG.

    Args:
        net: the network being trained (any `nn.Module`).
        loss_fn: `loss_fn(net, batch)` -> scalar loss, or a dict with key "loss" (optimized) and
            other scalars (logged as train/<key> and val/<key>).
        val_loss_fn: loss for validation (default `loss_fn`); evaluated on the EMA weights.
        optimizer: "adamw" (decoupled weight decay, Loshchilov & Hutter 2019) or "adam".
        lr: peak learning rate, reached after `warmup_steps` optimizer steps of linear warmup.
        weight_decay: weight decay (decoupled for AdamW, L2 for Adam).
        betas: Adam betas.
        warmup_steps: linear learning-rate warmup length in optimizer steps (0: none).
        ema_decay: EMA decay per optimizer step (e.g. 0.999); None disables the EMA.
        ema_warmup: use min(ema_decay, (1 + n) / (10 + n)) at update n.
        grad_clip_norm: clip the global gradient 2-norm to this value; None disables clipping.
        val_seed: validation draws its noise from a generator forked and seeded with this, so
            the validation loss is comparable across evaluations and does not perturb training.
        lr_scales: learning-rate multipliers by parameter-name prefix (e.g. a GAN's
            ``{"discriminator.": 6.0}``); parameters matching no prefix keep ``lr``.
    """

    def __init__(
        self,
        net: nn.Module,
        loss_fn: LossFn,
        *,
        val_loss_fn: LossFn | None = None,
        optimizer: Literal["adamw", "adam"] = "adamw",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        ema_decay: float | None = 0.999,
        ema_warmup: bool = False,
        grad_clip_norm: float | None = 1.0,
        val_seed: int = 0,
        lr_scales: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in ("adamw", "adam"):
            raise InputError(f"optimizer must be 'adamw' or 'adam', got {optimizer!r}")
        check_number("lr", lr, positive=True)
        check_number("warmup_steps", warmup_steps, minimum=0)
        if ema_decay is not None and not 0.0 <= check_number("ema_decay", ema_decay) < 1.0:
            raise InputError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
        if grad_clip_norm is not None:
            check_number("grad_clip_norm", grad_clip_norm, positive=True)
        self.net = net
        self.ema_net = make_ema(net) if ema_decay is not None else None
        self.loss_fn = loss_fn
        self.val_loss_fn = val_loss_fn or loss_fn
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = betas
        self.warmup_steps = warmup_steps
        self.ema_decay = ema_decay
        self.ema_warmup = ema_warmup
        self.grad_clip_norm = grad_clip_norm
        self.val_seed = val_seed
        self.lr_scales = dict(lr_scales or {})
        for prefix, scale in self.lr_scales.items():
            check_number(f"lr_scales[{prefix!r}]", scale, positive=True)
        self._ema_updates = 0
        self._rng_to_restore: dict[str, Any] | None = None

    @property
    def eval_net(self) -> nn.Module:
        """The weights to evaluate and export: the EMA if enabled, else the trained ones."""
        return self.ema_net if self.ema_net is not None else self.net

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.eval_net(*args, **kwargs)

    # --- optimization --------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        opt_cls = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        groups: dict[float, list[nn.Parameter]] = {}
        for name, param in self.net.named_parameters():
            scale = next((v for k, v in self.lr_scales.items() if name.startswith(k)), 1.0)
            groups.setdefault(scale, []).append(param)
        opt = opt_cls(
            [{"params": params, "lr": self.lr * scale} for scale, params in groups.items()],
            lr=self.lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _linear_warmup(self.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, extras = _split_loss(self.loss_fn(self.net, batch))
        self.log("train/loss", loss, prog_bar=True)
        for name, value in extras.items():
            self.log(f"train/{name}", value)
        return loss

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # The module owns its clipping so a domain gets it without configuring the Trainer.
        clip = gradient_clip_val if gradient_clip_val is not None else self.grad_clip_norm
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema_net is not None:
            decay = ema_decay_at(self._ema_updates, self.ema_decay, self.ema_warmup)
            update_ema(self.ema_net, self.net, decay)
            self._ema_updates += 1

    # --- validation on the EMA weights, with its own fixed noise --------------------------------

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.val_seed + batch_idx)
            loss, extras = _split_loss(self.val_loss_fn(self.eval_net, batch))
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        for name, value in extras.items():
            self.log(f"val/{name}", value, sync_dist=True)
        return loss

    # --- checkpoint extras: EMA counter and per-rank RNG states ---------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = [get_rng_state()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank runs this hook (only rank 0 writes): collect every rank's stream.
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, get_rng_state())
        checkpoint["polydiff"] = {"ema_updates": self._ema_updates, "rng_states": states}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("polydiff", {})
        self._ema_updates = int(extra.get("ema_updates", 0))
        states = extra.get("rng_states", [])
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        # Restored in on_train_start, i.e. after Lightning's sanity validation, which would
        # otherwise advance the stream; with another world size the streams cannot match anyway.
        self._rng_to_restore = states[rank] if len(states) == world else None

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
