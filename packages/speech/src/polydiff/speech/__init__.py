"""polydiff.speech (skeleton: filled by its domain issue; see docs/speech.md)."""
