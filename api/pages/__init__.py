"""The public site for residents: pages, their stylesheet and the in-browser check's scripts."""

from __future__ import annotations

from litestar import Request, Response, Router
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import CacheControlHeader
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from api.pages.routes import ROUTES
from api.pages.views import STATIC, make_environment

# Scripts only from the service (no inline script, no CDN); no framing (clickjacking of the
# objection form); connect only back to the service's own API.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
HTML_PREFIXES = ("/c/", "/p/", "/d/", "/w/")


async def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def template_config() -> TemplateConfig:
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(make_environment()))


def pages_router() -> Router:
    return Router(path="/", route_handlers=ROUTES, after_request=_secure, include_in_schema=False)


def static_router() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[STATIC],
        after_request=_secure,
        # Asset names carry no hash: a short cache keeps a fixed check script reaching phones soon.
        cache_control=CacheControlHeader(public=True, max_age=3600),
        include_in_schema=False,
    )


def wants_page(request: Request) -> bool:
    """Whether an error is answered with a page rather than problem+json: always under the page
    map's prefixes, elsewhere (an unknown path) only for a browser, which asks for HTML."""
    path = request.url.path
    if path == "/" or path.startswith(HTML_PREFIXES):
        return True
    if path.startswith(("/api/", "/schema", "/healthz", "/readyz")):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(status_code: int, message: str) -> Template:
    headers = dict(SECURITY_HEADERS)
    return Template(
        template_name="pages/error.html.j2",
        context={"status_code": status_code, "message": message},
        status_code=status_code,
        headers=headers,
    )
