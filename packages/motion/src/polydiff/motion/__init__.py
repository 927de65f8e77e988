"""polydiff.motion (skeleton: filled by its domain issue; see docs/motion.md)."""
