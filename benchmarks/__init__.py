"""Benchmarks: `python -m benchmarks [--quick]` runs every benchmarks/<name>/bench.py."""
