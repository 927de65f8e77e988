"""Motion and robot actions: diffusion policies, planners and motion synthesis."""

# Add verbs here: a function decorated with @verb("name") from polydiff.apps.registry,
# plus its config conf/motion/<name>.yaml (see docs/cli.md, "Adding a verb").
