"""polydiff.core.train: the Lightning training scaffold every domain reuses.

`DiffusionModule(net, loss_fn, ...)` wraps a network and a method's loss with optimizer, warmup,
gradient clipping and EMA; `fit(module, loader, run_dir, max_steps=...)` trains with periodic
atomic checkpoints and automatic resume; `export` / `load_weights` / `load_config` move weights
as safetensors + JSON. See docs/training.md.

Lightning is imported only when a name that needs it is first used, so loading exported
weights (`load_weights`, `load_config`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule that defines it (PEP 562 lazy attributes)
_SOURCES = {
    "AtomicCheckpointIO": "checkpoint",
    "get_rng_state": "checkpoint",
    "load_checkpoint": "checkpoint",
    "set_rng_state": "checkpoint",
    "EpochSampler": "data",
    "ResumableLoader": "data",
    "ema_decay_at": "ema",
    "make_ema": "ema",
    "update_ema": "ema",
    "CONFIG_FILE": "weights",
    "WEIGHTS_FILE": "weights",
    "checkpoint_state_dict": "weights",
    "export": "weights",
    "export_checkpoint": "weights",
    "load_config": "weights",
    "load_weights": "weights",
    "LAST_CHECKPOINT": "fitting",
    "StepCheckpoint": "fitting",
    "auto_precision": "fitting",
    "fit": "fitting",
    "logged_losses": "fitting",
    "DiffusionModule": "module",
    "LossFn": "module",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
