"""All text methods by name: ``METHODS["mdlm" | "udlm" | "blockgen" | "ar"]``."""

from polydiff.text.ar import AR, ARConfig
from polydiff.text.blockgen import BlockGen, BlockGenConfig
from polydiff.text.mdlm import MDLM, MDLMConfig
from polydiff.text.method import METHODS, TextMethod, load_method
from polydiff.text.udlm import UDLM, UDLMConfig

__all__ = [
    "AR",
    "MDLM",
    "METHODS",
    "UDLM",
    "ARConfig",
    "BlockGen",
    "BlockGenConfig",
    "MDLMConfig",
    "TextMethod",
    "UDLMConfig",
    "load_method",
]
