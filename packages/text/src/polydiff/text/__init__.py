"""polydiff.text (skeleton: filled by its domain issue; see docs/text.md)."""
