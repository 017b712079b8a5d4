"""Apps and their credentials: create, list, rotate, delete, authenticate.

Every vendor API authenticates with the same four values:
- ``app_id``: public numeric id (Volcano/SAMI appid, Baidu AppID),
- ``api_key``: public key (Baidu client_id, Qiniu AccessKey, SAMI appkey),
- ``secret_key``: private (Baidu client_secret, Qiniu SecretKey),
- ``app_token``: bearer token (Volcano/SAMI token, native API).
Secrets are random 32-byte values, so a keyed SHA-256 (HMAC with a per-app salt) is a sound hash:
slow password hashing protects guessable secrets, which these are not. Qiniu's request signature
is an HMAC keyed by the secret itself, so the server must know it: it is kept encrypted with a
server key that lives in ``$TINGYIN_HOME/server.key`` (mode 0600), never in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, NotFound, ServiceUnavailable, Unauthorized
from tingyin.store.db import session_scope
from tingyin.store.models import AccessToken, App, utcnow

APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Credentials:
    """Shown once, at creation or rotation: only hashes (and the encrypted secret) are kept."""

    name: str
    app_id: str
    api_key: str
    secret_key: str
    app_token: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "app_id": self.app_id,
            "api_key": self.api_key,
            "secret_key": self.secret_key,
            "app_token": self.app_token,
        }


@dataclass(frozen=True)
class AppInfo:
    pk: int
    name: str
    app_id: str
    api_key: str
    qps_limit: int | None
    daily_limit: int | None
    created_at: datetime
    rotated_at: datetime | None

    @classmethod
    def of(cls, app: App) -> AppInfo:
        return cls(
            app.id,
            app.name,
            app.app_id,
            app.api_key,
            app.qps_limit,
            app.daily_limit,
            app.created_at,
            app.rotated_at,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "app_id": self.app_id,
            "api_key": self.api_key,
            "qps_limit": self.qps_limit,
            "daily_limit": self.daily_limit,
            "created_at": self.created_at.isoformat(),
            "rotated_at": self.rotated_at.isoformat() if self.rotated_at else None,
        }


def _server_key() -> bytes:
    path: Path = get_settings().home / "server.key"
    if not path.exists():
        # Written whole to a private file, then linked into place: a concurrent reader never sees a
        # half-written key, and when two processes race, the first link wins and both use that key.
        temporary = path.with_name(f".server.key.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, Fernet.generate_key())
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_bytes().strip()


def _hash(value: str) -> str:
    """Deterministic keyed hash, so a credential can be looked up by its hash."""
    return hmac.new(b"tingyin-credential-v1", value.encode(), hashlib.sha256).hexdigest()


def _encrypt(secret: str) -> str:
    return Fernet(_server_key()).encrypt(secret.encode()).decode()


def _decrypt(token: str) -> str:
    try:
        return Fernet(_server_key()).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ServiceUnavailable(
            "the server key cannot decrypt stored secrets (server.key replaced?)"
        ) from exc


def _new_credentials(name: str, app_id: str) -> Credentials:
    return Credentials(
        name=name,
        app_id=app_id,
        api_key=secrets.token_hex(12),
        secret_key=secrets.token_urlsafe(24),
        app_token=secrets.token_urlsafe(32),
    )


def _next_app_id(session: Session) -> str:
    # Vendors use numeric app ids; keep that shape (8 digits) so clients that parse it keep working.
    while True:
        candidate = str(secrets.randbelow(90_000_000) + 10_000_000)
        if session.scalar(select(App.id).where(App.app_id == candidate)) is None:
            return candidate


def create_app(name: str, *, qps_limit: int | None = None, daily_limit: int | None = None) -> Credentials:
    if not APP_NAME.match(name):
        raise InvalidRequest("app name: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    try:
        with session_scope() as session:
            if session.scalar(select(App.id).where(App.name == name)) is not None:
                raise InvalidRequest(f"an app named {name!r} exists already")
            credentials = _new_credentials(name, _next_app_id(session))
            session.add(
                App(
                    app_id=credentials.app_id,
                    name=name,
                    api_key=credentials.api_key,
                    secret_hash=_hash(credentials.secret_key),
                    secret_encrypted=_encrypt(credentials.secret_key),
                    token_hash=_hash(credentials.app_token),
                    qps_limit=qps_limit,
                    daily_limit=daily_limit,
                )
            )
    except IntegrityError as exc:
        raise InvalidRequest(f"an app named {name!r} exists already") from exc
    return credentials


def list_apps() -> list[AppInfo]:
    with session_scope() as session:
        return [AppInfo.of(app) for app in session.scalars(select(App).order_by(App.id))]


def _by_name(session: Session, name: str) -> App:
    app = session.scalar(select(App).where((App.name == name) | (App.app_id == name)))
    if app is None:
        raise NotFound(f"no app named {name!r}")
    return app


def get_app(name: str) -> AppInfo:
    with session_scope() as session:
        return AppInfo.of(_by_name(session, name))


def rotate_app(name: str) -> Credentials:
    """New api_key, secret_key and app_token; the app_id and everything the app owns stay. Every
    OAuth access and refresh token issued so far is revoked in the same transaction: nothing
    obtained with the old credentials works once this returns."""
    with session_scope() as session:
        app = _by_name(session, name)
        credentials = _new_credentials(app.name, app.app_id)
        app.api_key = credentials.api_key
        app.secret_hash = _hash(credentials.secret_key)
        app.secret_encrypted = _encrypt(credentials.secret_key)
        app.token_hash = _hash(credentials.app_token)
        app.rotated_at = utcnow()
        _revoke_tokens(session, app.id)
    return credentials


def _revoke_tokens(session: Session, app_pk: int) -> int:
    result: Any = session.execute(delete(AccessToken).where(AccessToken.app_pk == app_pk))
    return int(result.rowcount or 0)


def revoke_tokens(name: str) -> int:
    """Revoke every OAuth access and refresh token of an app (its credentials stay); the count."""
    with session_scope() as session:
        return _revoke_tokens(session, _by_name(session, name).id)


def set_limits(name: str, *, qps_limit: int | None, daily_limit: int | None) -> AppInfo:
    with session_scope() as session:
        app = _by_name(session, name)
        app.qps_limit = qps_limit
        app.daily_limit = daily_limit
        return AppInfo.of(app)


def delete_app(name: str) -> None:
    with session_scope() as session:
        app = _by_name(session, name)
        _revoke_tokens(session, app.id)  # also where the database does not cascade deletes
        session.delete(app)


def authenticate_key_secret(api_key: str, secret_key: str) -> AppInfo:
    """Baidu OAuth client credentials."""
    with session_scope() as session:
        app = session.scalar(select(App).where(App.api_key == api_key))
        if app is None or not hmac.compare_digest(app.secret_hash, _hash(secret_key)):
            raise Unauthorized("unknown client id or wrong client secret")
        return AppInfo.of(app)


def authenticate_token(app_token: str, *, app_id: str | None = None, api_key: str | None = None) -> AppInfo:
    """Bearer token (native API, Volcano, SAMI); the appid/appkey sent alongside must match it."""
    if not app_token:
        raise Unauthorized("missing token")
    with session_scope() as session:
        app = session.scalar(select(App).where(App.token_hash == _hash(app_token)))
        if app is None:
            raise Unauthorized("invalid token")
        if app_id is not None and app_id != app.app_id:
            raise Unauthorized("the token does not belong to this appid")
        if api_key is not None and api_key != app.api_key:
            raise Unauthorized("the token does not belong to this appkey")
        return AppInfo.of(app)


def secret_for_access_key(api_key: str) -> tuple[AppInfo, str]:
    """Qiniu: the app and its clear secret, to recompute the request signature."""
    with session_scope() as session:
        app = session.scalar(select(App).where(App.api_key == api_key))
        if app is None:
            raise Unauthorized("unknown AccessKey")
        return AppInfo.of(app), _decrypt(app.secret_encrypted)


def secret_key_of(app_pk: int) -> str:
    """The app's secret_key in clear, for its own signed-in owner (the console's copy button)."""
    with session_scope() as session:
        app = session.get(App, app_pk)
        if app is None:
            raise NotFound("no such app")
        return _decrypt(app.secret_encrypted)
