"""polydiff.pde: PDE trajectories and control (toward WDNO); see docs/pde.md.

Modules: ``solvers`` (1D advection and forced viscous Burgers), ``data`` (generators, HDF5
files), ``wavelets`` (a differentiable periodized DWT with subbands as channels), ``nets``
(the coefficient U-Net and the FNO), ``wdno`` (WDNO: simulation and guided control), ``fno``
(the FNO baseline), ``control`` (the control objective and the gradient baseline), ``metrics``,
``train`` (training any of them with the core's Lightning scaffold), ``plots`` (heat maps).
"""
