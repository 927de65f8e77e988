"""polydiff.core.train: the Lightning training scaffold every domain reuses.

`DiffusionModule(net, loss_fn, ...)` wraps a network and a method's loss with optimizer, warmup,
gradient clipping and EMA; `fit(module, loader, run_dir, max_steps=...)` trains with periodic
atomic checkpoints and automatic resume; `export` / `load_weights` / `load_config` move weights
as safetensors + JSON. See docs/training.md.
"""

from polydiff.core.train.checkpoint import (
    AtomicCheckpointIO,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from polydiff.core.train.data import EpochSampler, ResumableLoader
from polydiff.core.train.ema import ema_decay_at, make_ema, update_ema
from polydiff.core.train.export import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    checkpoint_state_dict,
    export,
    export_checkpoint,
    load_config,
    load_weights,
)
from polydiff.core.train.fit import LAST_CHECKPOINT, StepCheckpoint, auto_precision, fit
from polydiff.core.train.module import DiffusionModule, LossFn

__all__ = [
    "CONFIG_FILE",
    "LAST_CHECKPOINT",
    "WEIGHTS_FILE",
    "AtomicCheckpointIO",
    "DiffusionModule",
    "EpochSampler",
    "LossFn",
    "ResumableLoader",
    "StepCheckpoint",
    "auto_precision",
    "checkpoint_state_dict",
    "ema_decay_at",
    "export",
    "export_checkpoint",
    "fit",
    "get_rng_state",
    "load_checkpoint",
    "load_config",
    "load_weights",
    "make_ema",
    "set_rng_state",
    "update_ema",
]
