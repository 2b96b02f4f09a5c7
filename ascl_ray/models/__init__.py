"""Local model checkpoints built from packages (no hub at run time)."""
