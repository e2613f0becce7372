"""Typed errors of the Pinterest client, built from Pinterest's ``{code, message}`` bodies."""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BoardNotFound",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "InvalidResponse",
    "MediaNotFound",
    "MediaRejected",
    "MediaUploadFailed",
    "NotFound",
    "PinNotFound",
    "PinterestError",
    "PinterestTransportError",
    "RateLimited",
    "SectionNotFound",
    "ServerError",
    "TokenRefused",
    "TrialAccessRestricted",
    "Unauthorized",
]


class PinterestError(Exception):
    """Base class: every failure of a Pinterest call raises a subclass of this.

    ``status`` is the HTTP status (``None`` when no answer arrived), ``code`` Pinterest's
    numeric error code from the body, ``message`` its text and ``request_id`` the
    ``x-pinterest-rid`` response header (quote it in support tickets).
    """

    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        status: int | None,
        code: int | None,
        message: str,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"Pinterest error status={status} code={code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later (429, 5xx, network, 409 conflicts)."""
        return self.default_retryable


class RateLimited(PinterestError):
    """429 / code 8. ``retry_after`` (seconds) is set only when Pinterest sent a header."""

    default_retryable = True

    def __init__(
        self,
        status: int | None,
        code: int | None,
        message: str,
        request_id: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.retry_after = retry_after


class Unauthorized(PinterestError):
    """401: token missing, expired or revoked (code 2), or lacking a scope (code 3)."""

    @property
    def missing_scope(self) -> bool:
        """True when the token works but lacks a scope the operation needs."""
        return self.code == 3


class TokenRefused(Unauthorized):
    """``/oauth/token`` refused the grant or the client: the account needs re-consent.

    ``oauth_error`` carries an OAuth error string (``invalid_grant``, ``invalid_client``)
    when the body had one. ``client_authentication_failed`` tells a wrong client id or
    secret (an operator problem) apart from a dead code or refresh token (a user problem).
    """

    def __init__(
        self,
        status: int | None,
        code: int | None,
        message: str,
        request_id: str | None = None,
        *,
        oauth_error: str | None = None,
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.oauth_error = oauth_error

    @property
    def client_authentication_failed(self) -> bool:
        return self.oauth_error == "invalid_client" or (self.status == 401 and self.code == 2)


class Forbidden(PinterestError):
    """403: the user or app may not do this."""


class TrialAccessRestricted(Forbidden):
    """Code 29: the app has Trial access (e.g. may not create Pins in production)."""


class MediaRejected(Forbidden):
    """403 codes 233 / 235: the image is too small or broken. Permanent for that media."""


class NotFound(PinterestError):
    """404 for any resource."""


class BoardNotFound(NotFound):
    """Code 40: the board does not exist or belongs to another user."""


class SectionNotFound(NotFound):
    """Code 2031: the board section does not exist on that board."""


class PinNotFound(NotFound):
    """Code 50 (or a 404 from a Pin endpoint)."""


class MediaNotFound(NotFound):
    """404 from a media endpoint."""


class InvalidRequest(PinterestError):
    """400: Pinterest rejected the data. Permanent for this request."""


class Conflict(PinterestError):
    """409: e.g. no exclusive access to a board while creating a section. Retry later."""

    default_retryable = True


class ServerError(PinterestError):
    """5xx (or another unexpected status). Retry with backoff."""

    default_retryable = True


class InvalidResponse(PinterestError):
    """A 2xx answer whose body could not be read as the documented JSON."""


class MediaUploadFailed(PinterestError):
    """The media store (``upload_url``) refused the upload. Register again and retry."""

    default_retryable = True


class PinterestTransportError(PinterestError):
    """No answer: connection failed, dropped or timed out.

    ``outcome_unknown`` is True when a write may have been applied before the answer was
    lost (the request was sent on a write, then the connection dropped or timed out):
    reconcile before retrying, or a duplicate may appear.
    """

    default_retryable = True

    def __init__(self, message: str, *, outcome_unknown: bool) -> None:
        super().__init__(None, None, message, None)
        self.outcome_unknown = outcome_unknown
