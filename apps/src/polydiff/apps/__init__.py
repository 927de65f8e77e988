"""polydiff.apps: the `polydiff` command and its Hydra configs."""
