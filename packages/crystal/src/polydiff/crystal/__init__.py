"""polydiff.crystal (skeleton: filled by its domain issue; see docs/crystal.md)."""
