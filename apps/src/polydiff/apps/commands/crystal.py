"""Crystals: crystal structure generation with periodic Bayesian flows (CrysBFN)."""

# Add verbs here: a function decorated with @verb("name") from polydiff.apps.registry,
# plus its config conf/crystal/<name>.yaml (see docs/cli.md, "Adding a verb").
