"""The OpenAPI document as the server really answers: the error shape of each path's dialect on every
status it can answer, 400 (not FastAPI's 422) for invalid parameters, and nothing a generated client could
not trust. Response models, request bodies and security schemes come from the routes themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from tingyin.api.errors import Dialect, dialect_for

OPENAI_ERROR = "#/components/schemas/OpenAIError"
NATIVE_ERROR = "#/components/schemas/NativeError"
VENDOR_ERROR = "#/components/schemas/VendorError"
DESCRIPTIONS = {
    "400": "invalid parameter, body or audio",
    "401": "missing or invalid credentials",
    "403": "the credentials do not allow this (a console call without its CSRF token)",
    "404": "no such object",
    "409": "the object's state does not allow this now",
    "413": "the request body is larger than allowed",
    "429": "the app's QPS or daily quota is used up",
    "500": "internal error (see the server log for the request id)",
    "503": "a backing service is unavailable, or every inference slot is busy",
}
BODY_METHODS = ("post", "put", "patch")
BINARY = {"schema": {"type": "string", "format": "binary"}}


def raw_body(media: dict[str, Any], description: str, *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads its body itself (streamed uploads): what it accepts."""
    return {"requestBody": {"required": required, "description": description, "content": media}}


def audio_body(*, required: bool = True, description: str = "") -> dict[str, Any]:
    """A raw-upload body of audio: its bytes in any container, or the multipart field ``file``."""
    return raw_body(
        {
            "application/octet-stream": BINARY,
            "audio/*": BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
        description or "the audio: its bytes as the body, or the multipart field 'file'",
        required=required,
    )


class NativeErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable name, e.g. invalid_request, not_found")
    message: str
    request_id: str = Field(description="also in the X-Request-Id header and the access log")


class NativeError(BaseModel):
    """Every error of the native API."""

    error: NativeErrorDetail


def path_dialect(path: str) -> Dialect | None:
    """The error dialect of an OpenAPI path (Qiniu's API is "/" with its cmd= query)."""
    return dialect_for(path) or dialect_for(path, "cmd=")


def _error_statuses(path: str, method: str, operation: dict[str, Any], vendor: bool) -> list[str]:
    statuses = ["400", "500", "503"]
    if vendor or operation.get("security"):
        statuses += ["401", "403"]
    if "{" in path or vendor:
        statuses.append("404")
    if method in BODY_METHODS or "requestBody" in operation:
        statuses.append("413")
    if vendor:
        statuses.append("429")
    elif method in (*BODY_METHODS, "delete"):
        statuses.append("409")
    return sorted(statuses)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (NativeErrorDetail, NativeError):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components["VendorError"] = {
        "type": "object",
        "description": "the error body of the vendor whose API this is (docs/api.md lists its codes)",
    }
    for path, item in schema.get("paths", {}).items():
        dialect = path_dialect(path)
        vendor = dialect is not None
        ref = NATIVE_ERROR if dialect is None else OPENAI_ERROR if dialect.name == "openai" else VENDOR_ERROR
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # invalid parameters are answered 400 in every dialect
            for status in _error_statuses(path, method, operation, vendor):
                responses.setdefault(
                    status,
                    {
                        "description": DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": {"$ref": ref}}},
                    },
                )
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve ``build_openapi`` at /openapi.json (built once, on first request)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "schema" not in cache:
            cache["schema"] = build_openapi(app)
        return cache["schema"]

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "BINARY",
    "NativeError",
    "audio_body",
    "build_openapi",
    "install_openapi",
    "path_dialect",
    "raw_body",
]
