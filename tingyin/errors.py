"""Typed errors of the core. API adapters map each to their vendor's own code; nothing leaks as a 500."""

from __future__ import annotations


class TingyinError(Exception):
    """Base of every error the core raises on purpose. ``code`` is a stable machine-readable name."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def summary(self) -> str:
        """What the error is, in general terms (its class's docstring): what a caller may read of a
        failure of the server, whose message may hold internal detail."""
        doc = (type(self).__doc__ or "").strip() if type(self) is not TingyinError else ""
        return doc.splitlines()[0] if doc else "Internal error."


class InvalidRequest(TingyinError):
    """The request is malformed or a parameter is invalid."""

    code = "invalid_request"
    http_status = 400

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the request field at fault, when one is (APIs that name it, e.g. OpenAI's)


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than allowed."""

    code = "payload_too_large"
    http_status = 413

    @classmethod
    def over(cls, limit: int) -> PayloadTooLarge:
        return cls(f"request body larger than {limit} bytes")


class NotFound(TingyinError):
    """The requested object does not exist."""

    code = "not_found"
    http_status = 404


class Unauthorized(TingyinError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    http_status = 401


class Forbidden(TingyinError):
    """The credentials are valid but do not allow this request (e.g. a missing CSRF token)."""

    code = "forbidden"
    http_status = 403


class QuotaExceeded(TingyinError):
    """Too many requests for this app."""

    code = "quota_exceeded"
    http_status = 429

    def __init__(self, message: str | None = None, *, kind: str = "qps") -> None:
        super().__init__(message)
        self.kind = kind  # "qps" or "daily"


class ServiceUnavailable(TingyinError):
    """A backing service (database, broker, model) is not available right now."""

    code = "service_unavailable"
    http_status = 503


class EngineError(TingyinError):
    """The recognition engine failed on this input."""

    code = "engine_error"
    http_status = 500
