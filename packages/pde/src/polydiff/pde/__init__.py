"""polydiff.pde (skeleton: filled by its domain issue; see docs/pde.md)."""
