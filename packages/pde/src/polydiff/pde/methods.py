"""The registered methods of polydiff.pde (imported by ``polydiff.core.load_method``)."""

from polydiff.pde.fno import FNO
from polydiff.pde.wdno import WDNO

__all__ = ["FNO", "WDNO"]
