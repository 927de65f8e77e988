"""Medical imaging: 3-D CT and MRI reconstruction with 2-D diffusion priors."""

# Add verbs here: a function decorated with @verb("name") from polydiff.apps.registry,
# plus its config conf/medical/<name>.yaml (see docs/cli.md, "Adding a verb").
