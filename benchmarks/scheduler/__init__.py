"""Scheduler benchmark: release lag, bursts, 1M pending (RSS, batch time), sleep floor."""
