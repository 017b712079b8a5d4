"""OAuth 2.0 client-credentials tokens in Baidu's shape, shared by the Baidu ASR and EasyDL APIs."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select

from tingyin.config import get_settings
from tingyin.errors import Unauthorized
from tingyin.store.apps import AppInfo, authenticate_key_secret
from tingyin.store.db import session_scope
from tingyin.store.models import AccessToken, App, utcnow

SCOPE = "public audio_voice_assistant_get brain_enhanced_asr brain_all_scope easydl_mgr easydl_retail_mgr"
REFRESH_TTL_S = 10 * 365 * 24 * 3600


class TokenExpired(Unauthorized):
    """The access token has expired."""

    code = "token_expired"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str
    session_key: str
    session_secret: str

    def as_dict(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "session_key": self.session_key,
            "session_secret": self.session_secret,
        }


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token(prefix: str, ttl: int, app_id: str) -> str:
    # Baidu's layout: "24.<hex>.<ttl>.<expiry epoch>-<app id>", which clients sometimes parse.
    return f"{prefix}.{secrets.token_hex(16)}.{ttl}.{int(time.time()) + ttl}-{app_id}"


def issue_token(api_key: str, secret_key: str) -> IssuedToken:
    app = authenticate_key_secret(api_key, secret_key)
    return _issue(app)


def _issue(app: AppInfo) -> IssuedToken:
    ttl = get_settings().token_ttl_seconds
    issued = IssuedToken(
        access_token=_token("24", ttl, app.app_id),
        refresh_token=_token("25", REFRESH_TTL_S, app.app_id),
        expires_in=ttl,
        scope=SCOPE,
        session_key=secrets.token_urlsafe(24),
        session_secret=secrets.token_hex(16),
    )
    now = utcnow()
    with session_scope() as session:
        session.add(
            AccessToken(
                token_hash=_hash(issued.access_token),
                app_pk=app.pk,
                kind="access",
                scope=SCOPE,
                expires_at=now + timedelta(seconds=ttl),
            )
        )
        session.add(
            AccessToken(
                token_hash=_hash(issued.refresh_token),
                app_pk=app.pk,
                kind="refresh",
                scope=SCOPE,
                expires_at=now + timedelta(seconds=REFRESH_TTL_S),
            )
        )
        # Expired tokens are of no use to anyone; drop them while we are here.
        session.execute(delete(AccessToken).where(AccessToken.expires_at < now))
    return issued


def refresh_token(token: str) -> IssuedToken:
    return _issue(_lookup(token, "refresh"))


def authenticate_access_token(token: str) -> AppInfo:
    """The app an access token belongs to; ``TokenExpired`` or ``Unauthorized`` otherwise."""
    if not token:
        raise Unauthorized("missing access token")
    return _lookup(token, "access")


def _lookup(token: str, kind: str) -> AppInfo:
    with session_scope() as session:
        row = session.get(AccessToken, _hash(token))
        if row is None or row.kind != kind:
            raise Unauthorized(f"invalid {kind} token")
        if row.expires_at <= utcnow():
            raise TokenExpired(f"{kind} token expired")
        app = session.scalar(select(App).where(App.id == row.app_pk))
        if app is None:
            raise Unauthorized("the token's app was deleted")
        return AppInfo.of(app)
