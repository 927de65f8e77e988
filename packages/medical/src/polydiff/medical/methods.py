"""The medical methods, registered with the core (``polydiff.core.method``) by importing this
module: ``medical/slice_prior`` (:class:`~polydiff.medical.prior.SlicePriorMethod`). The
reconstructions that use a prior are named in :mod:`polydiff.medical.reconstruction`."""

from polydiff.medical.prior import SlicePriorMethod

__all__ = ["SlicePriorMethod"]
