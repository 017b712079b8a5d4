"""The web console's cookie session as a request dependency, beside the native API's bearer token.

A request with a console cookie (``tingyin_session``, HttpOnly, SameSite=Strict) is the signed-in app;
state-changing methods must also carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from tingyin.errors import Forbidden
from tingyin.store.apps import AppInfo
from tingyin.store.console_sessions import SignIn, resolve

COOKIE = "tingyin_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def has_session_cookie(request: Request) -> bool:
    return bool(request.cookies.get(COOKIE))


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing cookie request that a browser says comes from another site (defence in
    depth beside SameSite and the CSRF token; also keeps other sites from signing a visitor in)."""
    origin = request.headers.get("origin")
    if request.method in SAFE_METHODS or not origin:
        return
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    if urlsplit(origin).netloc not in hosts:
        raise Forbidden("cross-site request refused")


async def console_session(request: Request) -> SignIn:
    """The console session of this request (401 without one, 403 on an unsafe method without CSRF)."""
    check_same_origin(request)
    return await run_in_threadpool(
        resolve,
        request.cookies.get(COOKIE, ""),
        csrf_token=request.headers.get(CSRF_HEADER),
        require_csrf=request.method not in SAFE_METHODS,
    )


async def session_app(request: Request) -> AppInfo:
    return (await console_session(request)).app


def set_session_cookie(request: Request, response: Response, signed_in: SignIn) -> None:
    response.set_cookie(
        COOKIE,
        signed_in.session_id,
        max_age=signed_in.max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
