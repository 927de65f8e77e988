"""Score / predictive networks for complex spectrograms."""

from polydiff.speech.nets.ncsnpp import (
    PRESETS,
    NCSNpp,
    NCSNppConfig,
    channels_to_spec,
    count_parameters,
    spec_to_channels,
)

__all__ = [
    "PRESETS",
    "NCSNpp",
    "NCSNppConfig",
    "channels_to_spec",
    "count_parameters",
    "spec_to_channels",
]
