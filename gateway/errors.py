"""What can go wrong in the gateway, as one branch of the project's error tree (:mod:`serving.errors`).

Hierarchy::

    EmofuseError                      (serving.errors)
      + InputError / UpstreamError    an analysis failed: 422 / 503 when it reaches the API
      + GatewayError                  the gateway could not serve a request
          + ConfigError               a setting is missing or invalid: the operator must fix the environment
          + StorageError              the data directory cannot be used
          + SignUpRefused             the sign-up form's values cannot make an account
          + ApiError                  answered to a client with an HTTP status and a code
              - AuthenticationRequired   401 no bearer token was sent
              - InvalidToken             401 the token is unknown or revoked
              - NotFound                 404 no such record, or not yours
              - UploadTooLarge           413 an upload past the limit, as sent or unpacked
              - TooManyAttempts          429 too many sign-in or sign-up attempts

Every :class:`ApiError` carries ``status`` and ``code``; ``/api/v1/`` answers it as
``{"error": {"code": ..., "message": ...}}`` and the pages show its message.
"""

from __future__ import annotations

from serving.errors import EmofuseError

__all__ = [
    "ApiError",
    "AuthenticationRequired",
    "ConfigError",
    "GatewayError",
    "InvalidToken",
    "NotFound",
    "SignUpRefused",
    "StorageError",
    "TooManyAttempts",
    "UploadTooLarge",
]


class GatewayError(EmofuseError):
    """Base of every error raised by the web gateway itself."""


class ConfigError(GatewayError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


class StorageError(GatewayError):
    """The data directory cannot be read or written, or a stored name is not one it made."""


class SignUpRefused(GatewayError):
    """The sign-up form's values cannot make an account; ``field`` names the one to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class ApiError(GatewayError):
    """An error answered to a client, with its HTTP status and a machine-readable code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class AuthenticationRequired(ApiError):
    """The request carries no bearer token."""

    status = 401
    code = "authentication_required"


class InvalidToken(ApiError):
    """The bearer token is malformed, unknown, or revoked."""

    status = 401
    code = "invalid_token"


class NotFound(ApiError):
    """No such record, or it belongs to someone else (the two are never told apart)."""

    status = 404
    code = "not_found"


class UploadTooLarge(ApiError):
    """The upload is larger than ``EMOFUSE_MAX_UPLOAD_MB`` (a .zip: also once unpacked)."""

    status = 413
    code = "too_large"


class TooManyAttempts(ApiError):
    """Too many sign-in or sign-up attempts in the limiter's window."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s
