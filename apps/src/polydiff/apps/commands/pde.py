"""PDE trajectories: wavelet diffusion neural operators for simulation and control (WDNO)."""

# Add verbs here: a function decorated with @verb("name") from polydiff.apps.registry,
# plus its config conf/pde/<name>.yaml (see docs/cli.md, "Adding a verb").
