"""Trajectories → tool-use SFT / preference data → TRL training (see docs/design.md §6)."""
