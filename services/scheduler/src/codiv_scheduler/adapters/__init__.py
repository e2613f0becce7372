"""Adapters of the scheduler: its Postgres repository and the wake-up listener."""
