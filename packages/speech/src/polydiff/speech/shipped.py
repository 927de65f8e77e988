"""The small models shipped with polydiff-speech (package data in `polydiff/speech/checkpoints/`).

`polydiff speech enhance input=in.wav` uses `shipped_checkpoint()` when no `model=` is given:
StoRM (predictive network + diffusion) with micro NCSN++ networks at 16 kHz: the 8 kHz model's
weights unchanged (fully convolutional, and both STFTs have the same bin spacing and frame
rate), since both 16 kHz fine-tunings tried scored lower on validation clips (see the README.md
beside the weights for the commands and the measured metrics). The earlier 8 kHz StoRM and
the SGMSE+ model (8 kHz) stay available by folder name: `shipped_checkpoint("storm_micro_8k")`.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = {"storm": "storm_micro_16k", "sgmse": "sgmse_micro_8k"}  # the default per method


def shipped_names() -> list[str]:
    """The folder names of every shipped model (the defaults of `SHIPPED` and earlier ones)."""
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())


def shipped_checkpoint(method: str = "storm") -> Path:
    """Folder (config.json + model.safetensors) of the shipped default model of ``method``
    ("storm", "sgmse") or of the shipped model named ``method`` (e.g. "storm_micro_8k")."""
    names = shipped_names()
    if method not in SHIPPED and method not in names:
        raise ValueError(
            f"no shipped speech model {method!r}; choose a method of {list(SHIPPED)} or a "
            f"shipped model of {names}"
        )
    folder = CHECKPOINTS / SHIPPED.get(method, method)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the shipped {method} checkpoint is missing from {folder} (incomplete install?)"
        )
    return folder


def load_shipped(method: str = "storm", map_location: str = "cpu"):
    """The shipped model of ``method`` or named ``method`` (`shipped_checkpoint`) in eval mode;
    never unpickles."""
    from polydiff.speech.methods import load_model

    return load_model(shipped_checkpoint(method), map_location)


__all__ = ["CHECKPOINTS", "SHIPPED", "load_shipped", "shipped_checkpoint", "shipped_names"]
