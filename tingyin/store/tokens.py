"""OAuth 2.0 client-credentials tokens in Baidu's shape, shared by the Baidu ASR and EasyDL APIs.

An access token lasts ``TINGYIN_TOKEN_TTL_SECONDS``; a refresh token ``TINGYIN_REFRESH_TOKEN_TTL_SECONDS``
and one use: the refresh grant needs the app's client credentials as well (as OAuth 2.0 requires of a
confidential client), consumes the refresh token and issues a new pair. Rotating or deleting an app
revokes all its tokens (``store.apps``); ``revoke`` drops one.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, Unauthorized
from tingyin.store.apps import AppInfo, authenticate_key_secret
from tingyin.store.db import session_scope
from tingyin.store.models import AccessToken, App, utcnow

SCOPE = "public audio_voice_assistant_get brain_enhanced_asr brain_all_scope easydl_mgr easydl_retail_mgr"


class TokenExpired(Unauthorized):
    """The access token has expired."""

    code = "token_expired"


class InvalidGrant(InvalidRequest):
    """The refresh token is unknown, used already, expired, revoked or another client's."""

    code = "invalid_grant"


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
    settings = get_settings()
    ttl, refresh_ttl = settings.token_ttl_seconds, settings.refresh_token_ttl_seconds
    issued = IssuedToken(
        access_token=_token("24", ttl, app.app_id),
        refresh_token=_token("25", refresh_ttl, app.app_id),
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
                expires_at=now + timedelta(seconds=refresh_ttl),
            )
        )
        # Expired tokens are of no use to anyone; drop them while we are here.
        session.execute(delete(AccessToken).where(AccessToken.expires_at < now))
    return issued


def refresh_token(token: str, api_key: str, secret_key: str) -> IssuedToken:
    """A new token pair for the client that owns ``token``; the refresh token is used up.

    ``Unauthorized`` for wrong client credentials, ``InvalidGrant`` for a refresh token that is not
    a live one of this client."""
    app = authenticate_key_secret(api_key, secret_key)
    with session_scope() as session:
        # Deleting the row is the use: of two concurrent refreshes with one token, one wins.
        used: Any = session.execute(
            delete(AccessToken).where(
                AccessToken.token_hash == _hash(token),
                AccessToken.kind == "refresh",
                AccessToken.app_pk == app.pk,
                AccessToken.expires_at > utcnow(),
            )
        )
        if int(used.rowcount or 0) != 1:
            raise InvalidGrant("the refresh token is invalid, expired, revoked or used already")
    return _issue(app)


def revoke(token: str, api_key: str, secret_key: str) -> None:
    """Revoke one access or refresh token of this client (an unknown token is no error: RFC 7009)."""
    app = authenticate_key_secret(api_key, secret_key)
    with session_scope() as session:
        session.execute(
            delete(AccessToken).where(AccessToken.token_hash == _hash(token), AccessToken.app_pk == app.pk)
        )


def authenticate_access_token(token: str) -> AppInfo:
    """The app an access token belongs to; ``TokenExpired`` or ``Unauthorized`` otherwise."""
    if not token:
        raise Unauthorized("missing access token")
    with session_scope() as session:
        row = session.get(AccessToken, _hash(token))
        if row is None or row.kind != "access":
            raise Unauthorized("invalid access token")
        if row.expires_at <= utcnow():
            raise TokenExpired("access token expired")
        app = session.scalar(select(App).where(App.id == row.app_pk))
        if app is None:
            raise Unauthorized("the token's app was deleted")
        return AppInfo.of(app)
