"""polydiff.motion: human motion synthesis (skeleton, features, files, corpus, metrics) and,
in `polydiff.motion.policy`, diffusion policies and planners. See docs/motion.md."""
