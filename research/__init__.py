"""Probes behind design decisions, each adopted into the engine or recorded as a negative
result (research/README.md). Run from the repository root: `python -m research.sphere`."""
