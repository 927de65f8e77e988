"""polydiff.pde: PDE trajectories and control (toward WDNO); see docs/pde.md.

Modules: ``solvers`` (1D advection and forced viscous Burgers), ``data`` (generators, HDF5
files), ``wavelets`` (a differentiable periodized DWT with subbands as channels), ``nets``
(the coefficient U-Net), ``wdno`` (the WDNO method, simulation task).
"""
