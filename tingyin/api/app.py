"""The FastAPI application: native API under /v1, vendor-compatible routers, health and readiness."""

from __future__ import annotations

import importlib

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tingyin import __version__
from tingyin.api.errors import ErrorInfo, info_from_exception, render_error
from tingyin.api.guard import AuthGuard
from tingyin.api.middleware import BodyTooLarge, RequestContextMiddleware, body_limit_for
from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, PayloadTooLarge, TingyinError
from tingyin.inference import InferenceExecutor

# Vendor adapters: each module exposes ``router`` (and registers its error dialect on import).
COMPAT_MODULES = [
    "tingyin.api.compat.baidu",
    "tingyin.api.compat.volcano",
    "tingyin.api.compat.qiniu",
    "tingyin.api.compat.sami",
    "tingyin.api.compat.easydl",
    "tingyin.api.compat.openai",
]


def _include_compat(app: FastAPI) -> None:
    for name in COMPAT_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # adapter not written yet
                continue
            raise
        app.include_router(module.router)


def _validation_message(error: dict[str, object]) -> str:
    if error.get("type") == "string_pattern_mismatch":
        return "holds characters that are not allowed here (control characters, or see the API docs)"
    if error.get("type") == "json_invalid":
        return "the body is not valid JSON"
    return str(error.get("msg"))


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="tingyin",
        version=__version__,
        description="Self-hosted audio AI: speech recognition, sound classification, music tagging. "
        "Native API under /v1; vendor-compatible APIs (Baidu, Volcano Engine, Qiniu, SAMI, EasyDL, "
        "OpenAI audio) at the vendors' paths. Web console at /console.",
        docs_url=None,  # served from local assets by tingyin.api.console (works offline)
        redoc_url=None,
    )
    from tingyin.api.native import router as native_router

    app.state.inference = InferenceExecutor(
        concurrency=settings.inference_concurrency,
        queue_size=settings.inference_queue,
        admission_timeout_s=settings.inference_admission_timeout_s,
    )
    from tingyin.api.metrics import router as metrics_router
    from tingyin.metrics import process_metrics

    guard = AuthGuard.from_settings(settings)
    app.state.auth_guard = guard
    app.include_router(native_router)
    app.include_router(metrics_router)
    _include_compat(app)
    from tingyin.api.console import install_console

    install_console(app)
    from tingyin.api.openapi import install_openapi

    install_openapi(app)

    @app.exception_handler(TingyinError)
    async def tingyin_error(request: Request, exc: TingyinError) -> Response:
        return render_error(request, info_from_exception(exc, request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-read failures in a 400
            limit = body_limit_for(request.url.path, settings.max_body_bytes)
            return render_error(request, info_from_exception(PayloadTooLarge.over(limit)))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        response = render_error(request, ErrorInfo(exc.status_code, code, message))
        if exc.status_code == 405:  # an HTTP-level answer in every dialect, with the methods the route takes
            response.status_code = 405
            response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {_validation_message(e)}" for e in exc.errors()
        )
        first = [str(p) for p in exc.errors()[0].get("loc", ())][-1:] if exc.errors() else []
        error = InvalidRequest(details or "invalid request", param=first[0] if first else None)
        return render_error(request, ErrorInfo(400, "invalid_request", error.message, error))

    # Unexpected exceptions become a 500 in RequestContextMiddleware (logged once, access-logged).
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        guard=guard,
        observe=process_metrics().observe_request,
    )
    return app


def create_asgi() -> FastAPI:
    """Entry point for uvicorn's factory mode (``uvicorn --factory tingyin.api.app:create_asgi``)."""
    from tingyin.api.middleware import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app()
