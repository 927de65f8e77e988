"""The speech methods, registered with the core (`polydiff.core.method`) as domain "speech".

    method = build_method("storm", net="micro", spec_changes={"sample_rate": 8000})
    method = load_model("runs/storm/model")                 # config.json + model.safetensors
    method.enhance(noisy, 8000, seed=0, N=10)               # the same options for every method

Importing this module registers SGMSE+ (`sgmse`) and StoRM (`storm`), so
`polydiff.core.method.load_method` rebuilds a saved one from its config.json.
"""

from __future__ import annotations

import dataclasses
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


SAMPLER_DEFAULTS = ("N", "snr", "corrector_steps", "t_start")


def warm_start(method: SpeechMethod, folder: str | os.PathLike) -> SpeechMethod:
    """Load the weights of the saved model in ``folder`` into ``method`` (in place) to fine-tune
    it rather than train from random weights, with its sampler defaults (N, snr,
    corrector_steps, t_start: chosen on validation clips for that model). The networks are
    fully convolutional over (frequency, frame), so weights made at another STFT size carry
    over: an 8 kHz model with n_fft 254 / hop 64 has the bin spacing (31.5 Hz) and frame rate
    (125 Hz) of n_fft 510 / hop 128 at 16 kHz, and starts a 16 kHz run with its lower
    half-band skills. A saved model of another method or network size is one ValueError naming
    the file."""
    from polydiff.core.train.weights import CONFIG_FILE, load_config, load_weights

    file = Path(folder) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file}: not found (a saved speech model folder)")
    saved = load_config(folder)
    if saved.get("method") != method.name:
        raise ValueError(f"{file}: a saved {saved.get('method')!r} model cannot start a "
                         f"{method.name!r} run")  # fmt: skip
    try:
        load_weights(folder, method.net)
    except ValueError as err:  # missing / unexpected keys or shape mismatches: say it briefly
        kind = "shapes" if "shape mismatch" in str(err) else "layers"
        raise ValueError(
            f"{folder}: its networks have other {kind} than this {method.name} run's "
            "(give the same net.* options as the saved model)"
        ) from err
    fields = saved.get("config", saved)
    sampler = {k: fields[k] for k in SAMPLER_DEFAULTS if k in fields}
    method.config = dataclasses.replace(method.config, **sampler)
    return method


__all__ = ["SGMSE", "StoRM", "build_method", "load_model", "speech_methods", "warm_start"]
