"""Request helpers shared by the native API and the vendor adapters."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Path, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tingyin.api.guard import authenticate
from tingyin.errors import Unauthorized
from tingyin.store.apps import AppInfo, authenticate_token

T = TypeVar("T")

# Row ids in paths and bodies: the columns are 32-bit on PostgreSQL, so anything larger is refused
# as a bad request before it reaches the database.
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
JobId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


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


async def _resolve_app(request: Request) -> AppInfo:
    """The calling app, from the request's headers alone (never its body): its bearer token, or else the
    web console's session cookie (with its CSRF token on state-changing calls; see
    ``tingyin.api.session``)."""
    from tingyin.api.session import has_session_cookie, session_app

    if not request.headers.get("authorization") and has_session_cookie(request):
        return await session_app(request)
    return await authenticate(request, authenticate_token, bearer_token(request))


async def native_app(
    request: Request,
    _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    _cookie: str | None = Security(session_scheme),
) -> AppInfo:
    """The app calling the native API (resolved once per request, before the body is read). The two
    security parameters only document the schemes: both read headers, never the body."""
    app: AppInfo | None = getattr(request.state, "app", None)
    if app is None:
        app = request.state.app = await _resolve_app(request)
    return app


def _needs_app(dependant: Dependant) -> bool:
    return any(d.call is native_app or _needs_app(d) for d in dependant.dependencies)


class AuthenticatedRoute(APIRoute):
    """A native route that depends on ``native_app`` authenticates before anything else happens:
    FastAPI would otherwise read and parse a JSON body before it resolves dependencies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _needs_app(self.dependant):
            return handler

        async def authenticated_first(request: Request) -> Response:
            await native_app(request)
            return await handler(request)

        return authenticated_first


async def in_thread(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run blocking work (decoding, models, database) off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)


__all__ = [
    "MAX_ID",
    "AuthenticatedRoute",
    "JobId",
    "RowId",
    "bearer_scheme",
    "bearer_token",
    "in_thread",
    "native_app",
    "session_scheme",
]
