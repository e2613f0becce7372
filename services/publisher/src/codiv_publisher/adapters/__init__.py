"""Adapters of the publisher: Postgres, the auth service, media downloads."""
