"""Request helpers shared by the native API and the vendor adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
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


async def native_app(request: Request) -> AppInfo:
    """The app calling the native API: from its bearer token, or else from the web console's session
    cookie (with its CSRF token on state-changing calls; see ``tingyin.api.session``)."""
    from tingyin.api.session import has_session_cookie, session_app

    if not request.headers.get("authorization") and has_session_cookie(request):
        return await session_app(request)
    return await run_in_threadpool(authenticate_token, bearer_token(request))


async def in_thread(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run blocking work (decoding, models, database) off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)


__all__ = ["bearer_token", "in_thread", "native_app"]
