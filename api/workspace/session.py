"""The workspace's session: the access token pasted once, kept in an HttpOnly, SameSite=Strict
cookie (Secure when the site is served over https), and a CSRF token on every form.

The CSRF token is an HMAC of the session's secret: a page on another site can neither read the
cookie nor compute the token, and SameSite=Strict keeps the cookie off its requests anyway. A POST
whose ``Origin`` names another site is refused before anything else is looked at.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie

from api.auth import Caller
from api.http import WORKSPACE_COOKIE
from ledger.tokens import Token, authenticate

COOKIE = WORKSPACE_COOKIE
SESSION_MAX_AGE_S = 12 * 3600  # a working day; the token itself stays valid until revoked
TOKEN_TYPED_MAX = 200
ROLE_LABELS = {"admin": "管理员", "treasurer": "报账员", "auditor": "审核人"}


class SignInRequired(Exception):
    """No (valid) session: the browser is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A form post without this session's CSRF token, or from another site."""


@dataclass(frozen=True)
class Session:
    caller: Caller
    secret: str

    @property
    def token(self) -> Token:
        assert self.caller.token is not None
        return self.caller.token

    @property
    def csrf(self) -> str:
        return csrf_for(self.secret)

    def context(self) -> dict[str, Any]:
        """What every workspace template shows of the signed-in person."""
        t = self.token
        return {
            "user": {"name": t.name, "role": t.role, "role_label": ROLE_LABELS[t.role], "community": t.community_code},
            "csrf": self.csrf,
        }


def csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"ledger-workspace-csrf", hashlib.sha256).hexdigest()


async def current_session(request: Request) -> Session:
    """The signed-in session. Errors: SignInRequired."""
    secret = request.cookies.get(COOKIE)
    if not secret or len(secret) > TOKEN_TYPED_MAX:
        raise SignInRequired
    async with request.app.state.engine.connect() as conn:
        token = await authenticate(conn, secret)
    if token is None:
        raise SignInRequired
    return Session(Caller(token), secret)


def check_origin(request: Request) -> None:
    """A form post must come from this site: a present ``Origin`` (or, without it, ``Referer``)
    must name this host."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own and not origin.startswith(own + "/"):
        raise CsrfRefused


async def posted_form(request: Request, session: Session) -> dict[str, Any]:
    """The posted form, once its origin and CSRF token are checked. Errors: CsrfRefused."""
    check_origin(request)
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise CsrfRefused
    return dict(form.items())


def session_cookie(request: Request, secret: str, *, max_age: int = SESSION_MAX_AGE_S) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=secret,
        path="/w",
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def set_session(response: Response, request: Request, secret: str) -> Response:
    response.set_cookie(session_cookie(request, secret))
    return response


def clear_session(response: Response, request: Request) -> Response:
    response.set_cookie(session_cookie(request, "", max_age=0))
    return response
