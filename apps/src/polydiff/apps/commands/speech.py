"""Speech: enhancement and dereverberation with score-based models (SGMSE+, StoRM)."""

# Add verbs here: a function decorated with @verb("name") from polydiff.apps.registry,
# plus its config conf/speech/<name>.yaml (see docs/cli.md, "Adding a verb").
