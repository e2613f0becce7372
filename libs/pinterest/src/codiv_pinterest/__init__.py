"""Pinterest API v5 async client and emulator.

Names are imported on first use, so running the emulator does not pay for the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codiv_pinterest.client import (
        ANALYTICS_MAX_DAYS,
        PRODUCTION_API_URL,
        PRODUCTION_OAUTH_URL,
        SANDBOX_API_URL,
        PinterestClient,
        build_authorize_url,
        clamp_analytics_range,
    )
    from codiv_pinterest.errors import (
        BoardNotFound,
        Conflict,
        Forbidden,
        InvalidRequest,
        InvalidResponse,
        MediaNotFound,
        MediaRejected,
        MediaUploadFailed,
        NotFound,
        PinNotFound,
        PinterestError,
        PinterestTransportError,
        RateLimited,
        SectionNotFound,
        ServerError,
        TokenRefused,
        TrialAccessRestricted,
        Unauthorized,
    )
    from codiv_pinterest.models import (
        AccountAnalytics,
        Board,
        BoardSection,
        CarouselItem,
        DailyMetrics,
        ImageUrlSource,
        MediaSource,
        MediaStatus,
        MediaUpload,
        MultipleImageUrlsSource,
        Pin,
        PinAnalytics,
        PinCreate,
        TokenResponse,
        UserAccount,
        VideoSource,
    )

_LAZY: dict[str, str] = {
    "ANALYTICS_MAX_DAYS": "codiv_pinterest.client",
    "AccountAnalytics": "codiv_pinterest.models",
    "Board": "codiv_pinterest.models",
    "BoardNotFound": "codiv_pinterest.errors",
    "BoardSection": "codiv_pinterest.models",
    "CarouselItem": "codiv_pinterest.models",
    "Conflict": "codiv_pinterest.errors",
    "DailyMetrics": "codiv_pinterest.models",
    "Forbidden": "codiv_pinterest.errors",
    "ImageUrlSource": "codiv_pinterest.models",
    "InvalidRequest": "codiv_pinterest.errors",
    "InvalidResponse": "codiv_pinterest.errors",
    "MediaNotFound": "codiv_pinterest.errors",
    "MediaRejected": "codiv_pinterest.errors",
    "MediaSource": "codiv_pinterest.models",
    "MediaStatus": "codiv_pinterest.models",
    "MediaUpload": "codiv_pinterest.models",
    "MediaUploadFailed": "codiv_pinterest.errors",
    "MultipleImageUrlsSource": "codiv_pinterest.models",
    "NotFound": "codiv_pinterest.errors",
    "PRODUCTION_API_URL": "codiv_pinterest.client",
    "PRODUCTION_OAUTH_URL": "codiv_pinterest.client",
    "Pin": "codiv_pinterest.models",
    "PinAnalytics": "codiv_pinterest.models",
    "PinCreate": "codiv_pinterest.models",
    "PinNotFound": "codiv_pinterest.errors",
    "PinterestClient": "codiv_pinterest.client",
    "PinterestError": "codiv_pinterest.errors",
    "PinterestTransportError": "codiv_pinterest.errors",
    "RateLimited": "codiv_pinterest.errors",
    "SANDBOX_API_URL": "codiv_pinterest.client",
    "SectionNotFound": "codiv_pinterest.errors",
    "ServerError": "codiv_pinterest.errors",
    "TokenRefused": "codiv_pinterest.errors",
    "TokenResponse": "codiv_pinterest.models",
    "TrialAccessRestricted": "codiv_pinterest.errors",
    "Unauthorized": "codiv_pinterest.errors",
    "UserAccount": "codiv_pinterest.models",
    "VideoSource": "codiv_pinterest.models",
    "build_authorize_url": "codiv_pinterest.client",
    "clamp_analytics_range": "codiv_pinterest.client",
}

__all__ = [
    "ANALYTICS_MAX_DAYS",
    "PRODUCTION_API_URL",
    "PRODUCTION_OAUTH_URL",
    "SANDBOX_API_URL",
    "AccountAnalytics",
    "Board",
    "BoardNotFound",
    "BoardSection",
    "CarouselItem",
    "Conflict",
    "DailyMetrics",
    "Forbidden",
    "ImageUrlSource",
    "InvalidRequest",
    "InvalidResponse",
    "MediaNotFound",
    "MediaRejected",
    "MediaSource",
    "MediaStatus",
    "MediaUpload",
    "MediaUploadFailed",
    "MultipleImageUrlsSource",
    "NotFound",
    "Pin",
    "PinAnalytics",
    "PinCreate",
    "PinNotFound",
    "PinterestClient",
    "PinterestError",
    "PinterestTransportError",
    "RateLimited",
    "SectionNotFound",
    "ServerError",
    "TokenRefused",
    "TokenResponse",
    "TrialAccessRestricted",
    "Unauthorized",
    "UserAccount",
    "VideoSource",
    "build_authorize_url",
    "clamp_analytics_range",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'codiv_pinterest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
