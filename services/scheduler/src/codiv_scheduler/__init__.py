"""Codiv scheduler service."""
