"""polydiff.core: generative paths, parameterizations, grids, solvers and the sampling driver."""
