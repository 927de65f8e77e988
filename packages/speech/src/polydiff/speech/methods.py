"""The speech methods, registered with the core (`polydiff.core.method`) as domain "speech".

    method = build_method("storm", net="micro", spec_changes={"sample_rate": 8000})
    method = load_model("runs/storm/model")                 # config.json + model.safetensors
    method.enhance(noisy, 8000, seed=0, N=10)               # the same options for every method

Importing this module registers SGMSE+ (`sgmse`) and StoRM (`storm`), so
`polydiff.core.method.load_method` rebuilds a saved one from its config.json.
"""

from __future__ import annotations

import os
from typing import Any

from polydiff.core.method import list_methods, load_method, method_class
from polydiff.speech.method import SpeechMethod
from polydiff.speech.sgmse import SGMSE
from polydiff.speech.storm import StoRM


def speech_methods() -> list[str]:
    """The names of the registered speech methods."""
    return list_methods("speech")


def build_method(name: str, **kwargs: Any) -> SpeechMethod:
    """A new (untrained) method by name from presets: ``kwargs`` go to its ``from_presets``
    (spec, net, spec_changes, net_changes and config fields). Unknown names, presets or fields
    and values out of range raise one ValueError."""
    cls = method_class("speech", name)
    try:
        return cls.from_presets(**kwargs)
    except TypeError as err:  # an unknown config field
        raise ValueError(f"{name}: {err}") from None


def load_model(folder: str | os.PathLike, map_location: str = "cpu") -> SpeechMethod:
    """A saved speech method (SGMSE+ or StoRM) in eval mode; never unpickles (JSON +
    safetensors)."""
    return load_method(folder, domain="speech", device=map_location)


__all__ = ["SGMSE", "StoRM", "build_method", "load_model", "speech_methods"]
