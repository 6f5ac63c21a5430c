"""Errors only the HTTP API raises (the backends raise `errors.ScalingError`s).

`app.ERRORS` maps every error class to its HTTP status and error code; the
classes here carry no HTTP knowledge. Messages are shown to the caller: they
never contain a token or an API key.
"""

from __future__ import annotations

from ..errors import DaskOperatorError


class ApiError(DaskOperatorError):
    """Base class of the API's own errors."""

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


class Unauthenticated(ApiError):
    """No credentials, more than one, or credentials the cluster does not accept."""


class Forbidden(ApiError):
    """Authenticated, but not allowed to touch this cluster."""


class BadRequest(ApiError):
    """A malformed request: body, query parameter or name."""


class InvalidTier(ApiError):
    """An unknown hardware tier, one not allowed for the kind, or conflicting tier fields."""


class TiersUnavailable(ApiError):
    """The tiers ConfigMap cannot be read or is malformed (a server-side fault)."""


class AuthUnavailable(ApiError):
    """A review could not be carried out (API server unreachable, RBAC missing)."""
