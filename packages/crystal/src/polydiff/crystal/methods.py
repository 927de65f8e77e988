"""Every crystal method, registered with the core under domain "crystal" by importing this module
(what :func:`polydiff.core.method.method_class` / ``load_method`` do for a saved crystal method).
"""

from polydiff.crystal.crysbfn import CrysBFN, CrysBFNConfig, config_for

__all__ = ["CrysBFN", "CrysBFNConfig", "config_for"]
