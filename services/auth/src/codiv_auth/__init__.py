"""Codiv auth service."""
