"""Every text method, registered with the core under domain "text" by importing this module
(what :func:`polydiff.core.method.method_class` / ``load_method`` do for a saved "text" method).
"""

from polydiff.text.ar import AR, ARConfig
from polydiff.text.blockgen import BlockGen, BlockGenConfig
from polydiff.text.mdlm import MDLM, MDLMConfig
from polydiff.text.method import TextMethod, load_method, new_method
from polydiff.text.udlm import UDLM, UDLMConfig

__all__ = [
    "AR",
    "MDLM",
    "UDLM",
    "ARConfig",
    "BlockGen",
    "BlockGenConfig",
    "MDLMConfig",
    "TextMethod",
    "UDLMConfig",
    "load_method",
    "new_method",
]
