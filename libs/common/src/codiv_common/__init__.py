"""Shared library for Codiv services: settings, logging, metrics, db, broker, events, outbox."""
