"""Training loops, checkpoints, history and run-time switches."""
