"""Dashboard sign-in: the org's API key buys a signed session cookie; a form token guards every POST.

The cookie is Flask's signed session (itsdangerous, HMAC-SHA1 over a timestamped payload) keyed with a random
secret kept beside the warehouse in CLOUDACT_HOME (ui-session.key, 0600), so a restart keeps people signed in
and nobody without the home can forge one. It holds the org, the key's id (never the key) and the form token.
"""
from __future__ import annotations

import datetime as dt
import hmac
import os
import secrets
from pathlib import Path

import flask
from flask.sessions import SecureCookieSessionInterface

from shared.config import Settings, private_dir

SECRET_FILE = "ui-session.key"
COOKIE = "cloudact_ui"
LIFETIME = dt.timedelta(hours=8)  # a working day; the signature's timestamp is checked against it


def secret(s: Settings) -> bytes:
    """The session signing key, made on first use. Written to a private temporary file and linked into place,
    so two processes starting at once agree on one key and nobody reads a half-written one."""
    path = s.home / SECRET_FILE
    if not path.exists():
        private_dir(path.parent)
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            Path(tmp).unlink()
    return path.read_bytes().strip()


class Sessions(SecureCookieSessionInterface):
    """Secure cookies whenever the request came over https."""

    def get_cookie_secure(self, app) -> bool:
        return flask.request.is_secure


def configure(app: flask.Flask, s: Settings) -> None:
    app.secret_key = secret(s)
    app.session_interface = Sessions()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/ui", PERMANENT_SESSION_LIFETIME=LIFETIME,
    )


def csrf_token() -> str:
    """This session's form token (made on first use, also before sign-in: the login form carries one too)."""
    token = flask.session.get("csrf")
    if not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    sent, held = flask.request.form.get("csrf", ""), flask.session.get("csrf", "")
    return bool(held) and hmac.compare_digest(sent.encode(), held.encode())


def sign_in(org: str, key_id: str) -> None:
    """A new session (never the pre-login one: its token could have been planted) for `org`."""
    flask.session.clear()
    flask.session.permanent = True
    flask.session.update(org=org, key_id=key_id, csrf=secrets.token_urlsafe(32))


def sign_out() -> None:
    flask.session.clear()  # an emptied session makes Flask expire the cookie


def current() -> tuple[str, str] | None:
    org, key_id = flask.session.get("org"), flask.session.get("key_id")
    return (org, key_id) if org and key_id else None
