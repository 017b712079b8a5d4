"""Web-console sign-in: ``POST /v1/session`` sets the session cookie, ``DELETE`` signs out.

Scripts keep using the bearer token; the console uses these so that no credential is kept in the
browser's script-readable storage.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, Security
from pydantic import BaseModel, Field

from tingyin.api.deps import in_thread, session_scheme
from tingyin.api.native.system import AppOut
from tingyin.api.openapi import NativeError
from tingyin.api.session import (
    check_same_origin,
    clear_session_cookie,
    console_session,
    set_session_cookie,
)
from tingyin.store.console_sessions import SignIn, sign_in, sign_out

router = APIRouter(prefix="/v1", tags=["console session"])


class SignInIn(BaseModel):
    api_key: str | None = Field(default=None, description="with secret_key")
    secret_key: str | None = None
    app_token: str | None = Field(default=None, description="instead of api_key + secret_key")


class SessionOut(BaseModel):
    app: AppOut
    csrf_token: str = Field(description="send it back as X-CSRF-Token on every state-changing call")
    expires_in_s: int


def _session_out(signed_in: SignIn) -> SessionOut:
    return SessionOut(
        app=AppOut.model_validate(signed_in.app.as_dict()),
        csrf_token=signed_in.csrf_token,
        expires_in_s=signed_in.max_age_s,
    )


@router.post(
    "/session",
    response_model=SessionOut,
    responses={
        401: {"model": NativeError, "description": "unknown credentials"},
        403: {"model": NativeError, "description": "a cross-site sign-in"},
    },
)
async def create_session(body: SignInIn, request: Request, response: Response) -> SessionOut:
    """Sign in with api_key + secret_key (or app_token); sets an HttpOnly, SameSite=Strict cookie."""
    check_same_origin(request)
    signed_in = await in_thread(
        sign_in, api_key=body.api_key, secret_key=body.secret_key, app_token=body.app_token
    )
    set_session_cookie(request, response, signed_in)
    return _session_out(signed_in)


@router.get("/session", response_model=SessionOut, dependencies=[Security(session_scheme)])
async def read_session(signed_in: SignIn = Depends(console_session)) -> SessionOut:
    """The signed-in app and the CSRF token (after a page reload)."""
    return _session_out(signed_in)


class SignedOut(BaseModel):
    signed_out: bool


@router.delete("/session", response_model=SignedOut, dependencies=[Security(session_scheme)])
async def delete_session(response: Response, signed_in: SignIn = Depends(console_session)) -> SignedOut:
    """Sign out (needs the CSRF token like any state-changing call)."""
    await in_thread(sign_out, signed_in.session_id)
    clear_session_cookie(response)
    return SignedOut(signed_out=True)
