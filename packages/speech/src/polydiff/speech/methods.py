"""The speech methods, registered with the core (`polydiff.core.method`) as domain "speech".

    method = build_method("storm", net="micro", spec_changes={"sample_rate": 8000})
    method = load_model("runs/storm/model")                 # config.json + model.safetensors
    method.enhance(noisy, 8000, seed=0, N=10)               # the same options for every method

Importing this module registers SGMSE+ (`sgmse`) and StoRM (`storm`), so
`polydiff.core.method.load_method` rebuilds a saved one from its config.json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polydiff.core.method import list_methods, load_method, method_class
from polydiff.core.utils import resolve_device
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
    safetensors). A folder exported before the polydiff-method format (a flat config.json
    naming its "method") loads too."""
    from polydiff.core.train.weights import CONFIG_FILE, load_config, load_weights

    file = Path(folder) / CONFIG_FILE
    legacy = load_config(folder) if file.is_file() else {}
    if "format" in legacy or legacy.get("method") not in speech_methods():
        return load_method(folder, domain="speech", device=map_location)
    cls = method_class("speech", legacy.pop("method"))
    method = cls(cls.config_class.from_dict(legacy, source=str(file)))
    load_weights(folder, method.net)
    method.net.to(resolve_device(map_location)).eval()
    return method


__all__ = ["SGMSE", "StoRM", "build_method", "load_model", "speech_methods"]
