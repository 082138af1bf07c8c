"""Benchmarks: scripts that print figures, run on purpose (`python -m benchmarks.NAME`)."""
