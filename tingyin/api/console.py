"""Serves the web console at /console (``/`` redirects there) and the API docs (/docs, /redoc) from
local copies of Swagger UI and ReDoc, so everything works without Internet access.

The console is static files that call the native /v1 API like any script; nothing here is an API.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tingyin.console import STATIC_DIR

VENDOR = "/console/vendor"
# The console loads nothing from elsewhere; media and downloads may be blob: URLs it makes itself.
CONSOLE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


class ConsoleFiles(StaticFiles):
    """Static files with the console's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if not path.startswith("vendor/"):
            response.headers["Content-Security-Policy"] = CONSOLE_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        # Small files that change with each release: always revalidate (ETag), never serve stale JS.
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def install_console(app: FastAPI) -> None:
    """Mount the console and the offline docs on ``app`` (created with docs_url=redoc_url=None)."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(
        "/",
        tags=["console"],
        status_code=307,
        response_class=RedirectResponse,
        responses={307: {"description": "to the web console at /console/"}},
    )
    async def root() -> RedirectResponse:
        """The web console."""
        return RedirectResponse("/console/")

    @app.get("/console", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url="/console/favicon.svg",
            with_google_fonts=False,
        )

    app.mount("/console", ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
