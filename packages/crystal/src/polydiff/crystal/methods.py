"""Every crystal method, registered with the core under domain "crystal" by importing this module
(what :func:`polydiff.core.method.method_class` / ``load_method`` do for a saved crystal method).
"""

from polydiff.crystal.crysbfn import CrysBFN, CrysBFNConfig, config_for
from polydiff.crystal.diffcsp import DiffCSP, DiffCSPConfig

__all__ = ["CrysBFN", "CrysBFNConfig", "DiffCSP", "DiffCSPConfig", "config_for"]
