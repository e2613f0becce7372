"""End-to-end publishing benchmark: bursts through every service, rate-limit use, memory."""
