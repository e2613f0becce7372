"""A stateful, fault-injecting Pinterest API v5 emulator for tests, benchmarks and demos."""

from codiv_pinterest.emulator.app import ROUTES, STATE, Route, create_app
from codiv_pinterest.emulator.config import (
    EmulatorConfig,
    MediaProcessing,
    RateLimitConfig,
    Seed,
    SeedApp,
    SeedBoard,
    SeedToken,
    SeedUser,
    TokenLifetimes,
    load_seed,
)
from codiv_pinterest.emulator.faults import FaultRule
from codiv_pinterest.emulator.state import EmulatorState

__all__ = [
    "ROUTES",
    "STATE",
    "EmulatorConfig",
    "EmulatorState",
    "FaultRule",
    "MediaProcessing",
    "RateLimitConfig",
    "Route",
    "Seed",
    "SeedApp",
    "SeedBoard",
    "SeedToken",
    "SeedUser",
    "TokenLifetimes",
    "create_app",
    "load_seed",
]
