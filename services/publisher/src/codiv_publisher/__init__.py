"""Codiv publisher service."""
