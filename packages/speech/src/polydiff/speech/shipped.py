"""The small models shipped with polydiff-speech (package data in `polydiff/speech/checkpoints/`).

`polydiff speech enhance input=in.wav` uses `shipped_checkpoint()` when no `model=` is given:
StoRM (predictive network + diffusion) with micro NCSN++ networks at 8 kHz, trained on the
built-in espeak-ng corpus (see the README.md beside the weights for the exact commands, the
wall time and the measured metrics). The SGMSE+ model of the same size is there for comparisons.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
SHIPPED = {"storm": "storm_micro_8k", "sgmse": "sgmse_micro_8k"}


def shipped_checkpoint(method: str = "storm") -> Path:
    """Folder (config.json + model.safetensors) of the shipped model of ``method``."""
    if method not in SHIPPED:
        raise ValueError(f"no shipped speech model for {method!r}; choose from {list(SHIPPED)}")
    folder = CHECKPOINTS / SHIPPED[method]
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the shipped {method} checkpoint is missing from {folder} (incomplete install?)"
        )
    return folder


def load_shipped(method: str = "storm", map_location: str = "cpu"):
    """The shipped model of ``method`` (an SGMSE or StoRM method) in eval mode; never unpickles."""
    from polydiff.speech.methods import load_model

    return load_model(shipped_checkpoint(method), map_location)


__all__ = ["CHECKPOINTS", "SHIPPED", "load_shipped", "shipped_checkpoint"]
