"""What every text method shares: a config dataclass, a network, a tokenizer, and checkpoints.

A method (``mdlm.py``, ``udlm.py``, ``blockgen.py``, ``ar.py``) is one file holding its config,
network, training loss ``loss_fn(net, batch)`` (what :class:`polydiff.core.train.DiffusionModule`
trains) and its sampling recipe. This module gives them the common parts:

- :class:`TextMethod`: holds ``config``, ``tokenizer`` and ``net``; ``save(folder)`` exports
  ``model.safetensors`` + ``config.json`` (method name, config, tokenizer kind / vocabulary /
  fingerprint) and the tokenizer files in ``folder/tokenizer``;
- :func:`load_method`: rebuilds any saved method; a checkpoint made with another tokenizer than the
  one given is a clear error (the token ids would mean different strings).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polydiff.text.data.tokenizer import Tokenizer, load_tokenizer
from polydiff.text.nets import TransformerConfig

__all__ = [
    "METHODS",
    "TextMethod",
    "load_method",
    "register_method",
    "shipped_checkpoint",
    "shipped_reference",
]

FORMAT = "polydiff-text-method"
TOKENIZER_DIR = "tokenizer"
METHODS: dict[str, type[TextMethod]] = {}


def register_method(cls: type[TextMethod]) -> type[TextMethod]:
    """Class decorator: make a method loadable by its ``name``."""
    METHODS[cls.name] = cls
    return cls


def _config_to_dict(config: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = value.to_dict() if isinstance(value, TransformerConfig) else value
    return out


def _config_from_dict(cls: type, data: dict[str, Any], source: Path) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {unknown}")
    kwargs = dict(data)
    if isinstance(kwargs.get("transformer"), dict):
        kwargs["transformer"] = TransformerConfig.from_dict(kwargs["transformer"])
    for key, value in kwargs.items():  # JSON turns dict keys into strings and tuples into lists
        if key == "block_sizes" and isinstance(value, dict):
            kwargs[key] = {int(k): float(v) for k, v in value.items()}
    return cls(**kwargs)


def tokenizer_info(tokenizer: Tokenizer) -> dict[str, Any]:
    """What a checkpoint records of its tokenizer (compared at load time)."""
    return {
        "kind": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "fingerprint": tokenizer.fingerprint(),
        "special_ids": list(tokenizer.special_ids),
    }


class TextMethod:
    """Base of the text methods: ``config`` (a dataclass with a ``transformer`` field), the
    ``tokenizer`` and the network ``net`` (built from the config unless given)."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any, tokenizer: Tokenizer, net: nn.Module | None = None) -> None:
        if config.transformer.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"{self.name}: transformer vocab_size={config.transformer.vocab_size} differs "
                f"from the tokenizer's vocabulary ({tokenizer.vocab_size})"
            )
        self.config, self.tokenizer = config, tokenizer
        self.net = net if net is not None else self.build_net()

    def build_net(self) -> nn.Module:
        raise NotImplementedError

    def loss_fn(self, net: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The training loss for :class:`polydiff.core.train.DiffusionModule`."""
        raise NotImplementedError

    def _tokens(self, batch: Any) -> Tensor:
        """The token tensor of a batch (a tensor, or the first entry of a tuple / list)."""
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x0, Tensor) or x0.dim() != 2:
            raise ValueError(f"{self.name}: a batch must be token ids [B, L], got {type(x0)}")
        return x0.long()

    def loss_mask(self, x0: Tensor) -> Tensor:
        """Tokens counted in the loss: everything but padding."""
        return x0 != self.tokenizer.pad_id

    # --- checkpoints ------------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "method": self.name,
            "config": _config_to_dict(self.config),
            "tokenizer": tokenizer_info(self.tokenizer),
        }

    def save(self, folder: str | Path, module: nn.Module | None = None, ema: bool = True) -> Path:
        """Export weights (``module``: a trained DiffusionModule, its EMA by default; else
        ``self.net``), the config and the tokenizer into ``folder`` (each file atomic)."""
        from polydiff.core.train import export  # lazy: importing Lightning takes seconds

        folder = Path(folder)
        export(
            module if module is not None else self.net, folder, self.checkpoint_config(), ema=ema
        )
        self.tokenizer.save(folder / TOKENIZER_DIR)
        return folder


SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "shakespeare-mdlm"
"""The small MDLM shipped with polydiff-text (how it was made: its README.md)."""


SHIPPED_REFERENCE = Path(__file__).parent / "checkpoints" / "shakespeare-ar-reference"
"""The causal LM shipped as the gen-PPL reference of the shipped MDLM: same size and tokenizer,
trained on the disjoint ``reference`` split (how it was made: its README.md)."""


def _shipped(folder: Path, what: str) -> Path:
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the shipped {what} is missing from {folder} (incomplete install?)"
        )
    return folder


def shipped_checkpoint() -> Path:
    """Folder of the shipped Shakespeare MDLM, loadable with :func:`load_method`."""
    return _shipped(SHIPPED_CHECKPOINT, "checkpoint")


def shipped_reference() -> Path:
    """Folder of the shipped AR reference model for generative perplexity (:func:`load_method`)."""
    return _shipped(SHIPPED_REFERENCE, "reference model")


def load_method(
    folder: str | Path, tokenizer: Tokenizer | None = None, device: str | torch.device = "cpu"
) -> TextMethod:
    """Rebuild a method saved by :meth:`TextMethod.save` (weights loaded, net in eval mode).

    Without ``tokenizer`` the one saved next to the weights is used. A tokenizer that is not the
    one the model was trained with (other fingerprint or vocabulary) raises a ValueError naming
    the checkpoint: its token ids would mean other strings.
    """
    import polydiff.text.methods  # noqa: F401  (registers every method)
    from polydiff.core.train import CONFIG_FILE, load_config, load_weights

    folder = Path(folder)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: missing; {folder} is not a text checkpoint")
    data = load_config(folder)
    if data.get("format") != FORMAT or data.get("method") not in METHODS:
        raise ValueError(
            f"{config_file}: not a polydiff-text checkpoint (format {data.get('format')!r}, "
            f"method {data.get('method')!r}; known methods {sorted(METHODS)})"
        )
    saved = data["tokenizer"]
    if tokenizer is None:
        tokenizer = load_tokenizer(folder / TOKENIZER_DIR)
    given = tokenizer_info(tokenizer)
    if given["fingerprint"] != saved["fingerprint"] or given["vocab_size"] != saved["vocab_size"]:
        raise ValueError(
            f"{folder}: checkpoint was trained with a {saved['kind']} tokenizer (vocabulary "
            f"{saved['vocab_size']}, fingerprint {saved['fingerprint']}), but the tokenizer given "
            f"is {given['kind']} (vocabulary {given['vocab_size']}, fingerprint "
            f"{given['fingerprint']}): use the checkpoint's own tokenizer "
            f"({folder / TOKENIZER_DIR})"
        )
    cls = METHODS[data["method"]]
    config = _config_from_dict(cls.config_class, data["config"], config_file)
    method = cls(config, tokenizer)
    load_weights(folder, method.net)
    method.net.to(device).eval()
    return method
