"""The workspace (/w/…) for the people who record and check: its router, security headers and
the two ways a request is turned away (not signed in; a form without its CSRF token)."""

from __future__ import annotations

from litestar import Request, Response, Router
from litestar.response import Redirect, Template

from api.pages import SECURITY_HEADERS
from api.workspace.imports import ROUTES as IMPORT_ROUTES
from api.workspace.loop import ROUTES as LOOP_ROUTES
from api.workspace.routes import ROUTES
from api.workspace.session import CsrfRefused, SignInRequired


async def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _sign_in(request: Request, _: SignInRequired) -> Response:
    target = request.url.path if request.method == "GET" else "/w/"
    return Redirect(f"/w/login?next={target}", status_code=303)


def _csrf_refused(_: Request, __: CsrfRefused) -> Response:
    return Template(
        template_name="workspace/refused.html.j2",
        context={"message": "表单已失效或来自其他网站，未作任何更改。请回到工作台重新填写。"},
        status_code=403,
        headers=dict(SECURITY_HEADERS),
    )


def workspace_router() -> Router:
    return Router(
        path="/w",
        route_handlers=[*ROUTES, *IMPORT_ROUTES, *LOOP_ROUTES],
        after_request=_secure,
        include_in_schema=False,
        exception_handlers={SignInRequired: _sign_in, CsrfRefused: _csrf_refused},
    )
