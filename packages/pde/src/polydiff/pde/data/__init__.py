"""Data for polydiff.pde: random initial states and forcings, dataset generators, HDF5 files."""

from polydiff.pde.data.generators import (
    BurgersConfig,
    PDEData,
    advection_initial,
    burgers_forcing,
    burgers_initial,
    generate_advection,
    generate_burgers,
)
from polydiff.pde.data.hdf5 import LAYOUT, read_dataset, read_pdebench, write_dataset

__all__ = [
    "LAYOUT",
    "BurgersConfig",
    "PDEData",
    "advection_initial",
    "burgers_forcing",
    "burgers_initial",
    "generate_advection",
    "generate_burgers",
    "read_dataset",
    "read_pdebench",
    "write_dataset",
]
