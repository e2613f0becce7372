"""Codiv gateway service."""
