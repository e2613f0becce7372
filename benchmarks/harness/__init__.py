"""Shared pieces of the system benchmarks: load generator, bare endpoint, system set-up, tables."""
