"""polydiff.medical (skeleton: filled by its domain issue; see docs/medical.md)."""
