"""Web-console sessions: sign in with the app's credentials, get a cookie id and a CSRF token.

Only a hash of the cookie's random id is stored, like every other credential. The CSRF token is a
second random value that the page reads from the sign-in answer (never from the cookie) and sends
back in a header with each state-changing call, so another site cannot forge one with the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete

from tingyin.config import get_settings
from tingyin.errors import Forbidden, Unauthorized
from tingyin.store.apps import AppInfo, authenticate_key_secret, authenticate_token
from tingyin.store.db import session_scope
from tingyin.store.models import App, ConsoleSession, utcnow


@dataclass(frozen=True)
class SignIn:
    session_id: str  # goes into the HttpOnly cookie, never shown to scripts
    csrf_token: str
    app: AppInfo
    max_age_s: int


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def sign_in(
    *, api_key: str | None = None, secret_key: str | None = None, app_token: str | None = None
) -> SignIn:
    """Check the credentials (api_key + secret_key, or app_token) and open a session."""
    if app_token:
        app = authenticate_token(app_token)
    elif api_key and secret_key:
        app = authenticate_key_secret(api_key, secret_key)
    else:
        raise Unauthorized("sign in with api_key and secret_key, or with app_token")
    ttl = get_settings().console_session_ttl_s
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with session_scope() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        session.add(
            ConsoleSession(
                id_hash=_hash(session_id),
                app_pk=app.pk,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl),
            )
        )
    return SignIn(session_id, csrf, app, ttl)


def resolve(session_id: str, *, csrf_token: str | None = None, require_csrf: bool = False) -> SignIn:
    """The signed-in app of a cookie; ``Forbidden`` when ``require_csrf`` and the token does not match."""
    if not session_id:
        raise Unauthorized("not signed in")
    with session_scope() as session:
        row = session.get(ConsoleSession, _hash(session_id))
        if row is None or row.expires_at < utcnow():
            raise Unauthorized("the console session has ended; sign in again")
        app = session.get(App, row.app_pk)
        if app is None:
            raise Unauthorized("the app of this session no longer exists")
        if require_csrf and not (csrf_token and hmac.compare_digest(csrf_token, row.csrf_token)):
            raise Forbidden("missing or wrong X-CSRF-Token header (reload the console)")
        left = int((row.expires_at - utcnow()).total_seconds())
        return SignIn(session_id, row.csrf_token, AppInfo.of(app), left)


def sign_out(session_id: str) -> None:
    with session_scope() as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session_id)))
