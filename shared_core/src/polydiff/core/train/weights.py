"""Export trained weights as safetensors + JSON config, and load them back without unpickling.

An export folder holds `model.safetensors` (the network's state dict, EMA weights by default)
and `config.json` (whatever the method needs to rebuild the network: sizes, path, parameterization).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.core.io import (
    atomic_save_safetensors,
    atomic_write_json,
    load_safetensors,
    read_json,
)

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "checkpoint_state_dict",
    "export",
    "export_checkpoint",
    "load_config",
    "load_weights",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _weights_path(path: str | Path) -> Path:
    path = Path(path)
    return path / WEIGHTS_FILE if path.suffix != ".safetensors" else path


def _config_path(path: str | Path) -> Path:
    path = Path(path)
    return (
        path.parent / CONFIG_FILE
        if path.suffix in (".safetensors", ".json")
        else path / CONFIG_FILE
    )


def _export_state(module_or_net: nn.Module, ema: bool) -> dict[str, torch.Tensor]:
    """The state dict to export: a bare network's, or a DiffusionModule's EMA / raw network's."""
    # A DiffusionModule exists only once its (Lightning-importing) module has been loaded.
    module = sys.modules.get("polydiff.core.train.module")
    if module is None or not isinstance(module_or_net, module.DiffusionModule):
        return module_or_net.state_dict()  # a bare network, even one with a .net attribute
    inner = module_or_net.net
    ema_net = getattr(module_or_net, "ema_net", None)
    if ema and ema_net is None:
        raise ValueError("export(ema=True) but the module has no EMA (ema_decay=None)")
    return (ema_net if ema else inner).state_dict()


def _write(
    folder: Path, state: Mapping[str, torch.Tensor], config: Mapping[str, Any], ema: bool
) -> Path:
    try:
        json.dumps(dict(config), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"config for {folder / CONFIG_FILE} is not JSON-serializable: {err}"
        ) from err
    atomic_save_safetensors(
        folder / WEIGHTS_FILE, state, metadata={"format": "pt", "ema": str(ema)}
    )
    atomic_write_json(folder / CONFIG_FILE, dict(config))
    return folder


def export(
    module_or_net: nn.Module, path: str | Path, config: Mapping[str, Any], *, ema: bool = True
) -> Path:
    """Write `path/model.safetensors` and `path/config.json` atomically; returns `path`.

    Args:
        module_or_net: a `DiffusionModule` (its EMA weights if `ema`, else the trained ones) or
            any `nn.Module` (its own weights).
        path: export folder (created).
        config: JSON-serializable description needed to rebuild the network.
        ema: export the EMA weights of a `DiffusionModule`.
    """
    return _write(Path(path), _export_state(module_or_net, ema), config, ema)


def checkpoint_state_dict(ckpt_path: str | Path, *, ema: bool = True) -> dict[str, torch.Tensor]:
    """The network's state dict stored in a Lightning checkpoint of a `DiffusionModule`.

    Loaded with `weights_only=True`. Keys are the network's own (prefix `ema_net.` or `net.`
    stripped), ready for `net.load_state_dict`.
    """
    from polydiff.core.train.checkpoint import load_checkpoint  # deferred: imports Lightning

    state = load_checkpoint(ckpt_path)["state_dict"]
    prefix = "ema_net." if ema else "net."
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"checkpoint {ckpt_path} has no '{prefix}*' weights (ema={ema})")
    return out


def export_checkpoint(
    ckpt_path: str | Path, path: str | Path, config: Mapping[str, Any], *, ema: bool = True
) -> Path:
    """Export the (EMA) network weights of a training checkpoint, without rebuilding the network."""
    return _write(Path(path), checkpoint_state_dict(ckpt_path, ema=ema), config, ema)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read `config.json` of an export (`path` is the folder, the JSON file or the weights file)."""
    file = _config_path(path) if Path(path).suffix != ".json" else Path(path)
    config = read_json(file)
    if not isinstance(config, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(config).__name__}")
    return config


def load_weights(path: str | Path, net: nn.Module, *, strict: bool = True) -> nn.Module:
    """Load exported safetensors weights into `net` (in place; returns `net`). Never unpickles.

    `path` is the export folder or the .safetensors file. Raises FileNotFoundError for a missing
    file and ValueError naming the file and the offending keys for missing/unexpected keys
    (when `strict`) or shape mismatches. Values are cast to the dtype of `net`'s tensors.
    """
    file = _weights_path(path)
    tensors = load_safetensors(file)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if strict and (missing or unexpected):
        raise ValueError(
            f"{file}: keys do not match the network: missing {missing}, unexpected {unexpected}"
        )
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"{file}: shape mismatch for " + "; ".join(wrong))
    net.load_state_dict({k: v for k, v in tensors.items() if k in expected}, strict=strict)
    return net
