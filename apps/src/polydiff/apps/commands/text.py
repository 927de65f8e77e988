"""Text: masked, uniform and block discrete diffusion language models."""

# Add verbs here: a function decorated with @verb("name") from polydiff.apps.registry,
# plus its config conf/text/<name>.yaml (see docs/cli.md, "Adding a verb").
