"""Request helpers shared by the native API and the vendor adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from tingyin.errors import Unauthorized
from tingyin.store.apps import AppInfo, authenticate_token

T = TypeVar("T")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("send 'Authorization: Bearer <app_token>'")
    return value.strip()


# The schemes as OpenAPI documents them ("Authorize" in /docs); checking stays in the functions below, so
# every failure is answered in the API's own dialect.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="appToken", description="Authorization: Bearer <app_token>"
)
session_scheme = APIKeyCookie(
    name="tingyin_session",
    auto_error=False,
    scheme_name="consoleSession",
    description="the web console's sign-in cookie (POST /v1/session); state-changing calls add X-CSRF-Token",
)


async def native_app(
    request: Request,
    _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    _cookie: str | None = Security(session_scheme),
) -> AppInfo:
    """The app calling the native API: from its bearer token, or else from the web console's session
    cookie (with its CSRF token on state-changing calls; see ``tingyin.api.session``)."""
    from tingyin.api.session import has_session_cookie, session_app

    if not request.headers.get("authorization") and has_session_cookie(request):
        return await session_app(request)
    return await run_in_threadpool(authenticate_token, bearer_token(request))


async def in_thread(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run blocking work (decoding, models, database) off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)


__all__ = ["bearer_scheme", "bearer_token", "in_thread", "native_app", "session_scheme"]
