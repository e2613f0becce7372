"""Configuration and seed-file models of the Pinterest emulator."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_RATE_LIMITS",
    "EmulatorConfig",
    "MediaProcessing",
    "RateLimitConfig",
    "Seed",
    "SeedApp",
    "SeedBoard",
    "SeedToken",
    "SeedUser",
    "TokenLifetimes",
    "default_seed",
    "load_seed",
]

ALL_SCOPES: tuple[str, ...] = (
    "boards:read",
    "boards:read_secret",
    "boards:write",
    "boards:write_secret",
    "pins:read",
    "pins:read_secret",
    "pins:write",
    "pins:write_secret",
    "user_accounts:read",
)

# Standard-access limits per user per app per minute (Pinterest's rate-limit page).
DEFAULT_RATE_LIMITS: dict[str, int] = {"org_read": 1000, "org_write": 100, "org_analytics": 60}

Privacy = Literal["PUBLIC", "PROTECTED", "SECRET"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedBoard(_Model):
    id: str | None = Field(default=None, pattern=r"^\d+$")
    name: str = Field(min_length=1)
    description: str | None = None
    privacy: Privacy = "PUBLIC"
    sections: list[str] = Field(default_factory=list)


class SeedUser(_Model):
    id: str | None = Field(default=None, pattern=r"^\d+$")
    username: str = Field(min_length=1)
    account_type: Literal["PINNER", "BUSINESS"] = "BUSINESS"
    about: str = ""
    website_url: str = ""
    business_name: str | None = None
    follower_count: int = 0
    following_count: int = 0
    monthly_views: int = 0
    boards: list[SeedBoard] = Field(default_factory=list)
    generated_boards: int = Field(default=0, ge=0, description="extra boards 'Board 1'..'Board N'")


class SeedApp(_Model):
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    redirect_uris: list[str] = Field(
        default_factory=list, description="when set, redirect_uri must be one of these"
    )
    trial_access: bool = Field(default=False, description="POST /v5/pins answers 403 code 29")


class SeedToken(_Model):
    """A ready-made token, so a demo or test can skip the OAuth dance."""

    access_token: str = Field(min_length=8)
    refresh_token: str | None = None
    username: str
    client_id: str = "emulator"
    scopes: list[str] = Field(default_factory=lambda: list(ALL_SCOPES))


class Seed(_Model):
    users: list[SeedUser] = Field(default_factory=list)
    apps: list[SeedApp] = Field(
        default_factory=list,
        description="empty: any client id/secret is accepted; else only these",
    )
    tokens: list[SeedToken] = Field(default_factory=list)
    logged_in: str | None = Field(default=None, description="username approving /oauth/")


class RateLimitConfig(_Model):
    per_user: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    per_app: dict[str, int] = Field(
        default_factory=dict, description="limits per client id and category, all users"
    )
    window_seconds: float = Field(default=60.0, gt=0)
    send_headers: bool = Field(
        default=False,
        description="add Retry-After / X-RateLimit-* (Pinterest documents none)",
    )


class TokenLifetimes(_Model):
    access_token_seconds: int = Field(default=2_592_000, gt=0)
    refresh_token_seconds: int = Field(default=5_184_000, gt=0)
    auth_code_seconds: int = Field(default=600, gt=0)


class MediaProcessing(_Model):
    seconds: float = Field(default=1.0, ge=0)
    failure_share: float = Field(default=0.0, ge=0, le=1)


class EmulatorConfig(_Model):
    """Everything the emulator starts from; the admin API changes a running copy."""

    seed: Seed | None = Field(default=None, description="None: the default demo seed")
    tokens: TokenLifetimes = Field(default_factory=TokenLifetimes)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    media: MediaProcessing = Field(default_factory=MediaProcessing)
    random_seed: int = 0
    start_time: dt.datetime | None = Field(
        default=None, description="the emulator clock's start; None: the real time"
    )
    public_url: str | None = Field(
        default=None, description="base URL for upload_url; None: taken from each request"
    )


def default_seed() -> Seed:
    """One business user with three boards (one with sections); any client is accepted."""
    return Seed(
        users=[
            SeedUser(
                username="codiv_demo",
                business_name="Codiv Demo",
                boards=[
                    SeedBoard(name="Recipes", sections=["Salads", "Desserts"]),
                    SeedBoard(name="Travel", description="Places to go"),
                    SeedBoard(name="Home decor"),
                ],
            )
        ]
    )


def load_seed(path: str | Path) -> Seed:
    """Read a seed JSON file (see the package README for its format)."""
    return Seed.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
