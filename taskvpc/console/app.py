"""The web console: sign-in, the session, and every page's call into the control plane as its user.

Mounted at ``/console/`` by the API's ASGI application. A page acts as the principal of the access key
the user signed in with: each call goes through ``ControlPlane.invoke``, the same validation, IAM
evaluation and use cases as a SigV4 request, so the console has no authority of its own.

Every state-changing request (POST) must carry the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``) and come from the console's own origin (``Origin``/``Sec-Fetch-Site``).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from taskvpc.api.app import ControlPlane
from taskvpc.console import session as sessions
from taskvpc.console.http import Receive, Request, Response, Scope, Send, read_request, write
from taskvpc.domain.errors import ClientError

log = logging.getLogger("taskvpc.console")

PREFIX = "/console"
_HERE = Path(__file__).parent
_STATIC = {
    path.relative_to(_HERE / "static").as_posix(): path
    for path in (_HERE / "static").rglob("*")
    if path.is_file() and path.suffix in (".js", ".css", ".txt")
}
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}


def wants_console(method: str, path: str, headers: dict[str, str], query_string: str) -> bool:
    """Whether a request to ``/`` is a person's browser (redirected to the console) rather than an AWS
    client: a GET or HEAD that accepts HTML and carries no SigV4 (header or presigned query)."""
    return (
        path == "/"
        and method in ("GET", "HEAD")
        and "authorization" not in headers
        and "x-amz-signature" not in query_string.lower()
        and "text/html" in headers.get("accept", "")
    )


@dataclass(frozen=True, slots=True)
class User:
    """The signed-in user of one request."""

    session: sessions.Session
    arn: str

    @property
    def access_key_id(self) -> str:
        return self.session.access_key_id


Page = Callable[["Console", Request, User, re.Match[str]], Awaitable[Response | None]]


class Console:
    def __init__(
        self, control_plane: ControlPlane, region: str = "us-east-1", session_key: bytes | None = None
    ) -> None:
        self.control_plane = control_plane
        self.region = region
        # In memory: a restarted server signs everyone out, and no key lies on disk to steal.
        self.session_key = session_key or secrets.token_bytes(32)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        from taskvpc.console.pages import ROUTES  # the pages import this module's Console

        self.routes: list[tuple[str, re.Pattern[str], Page]] = ROUTES

    # ---- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = await read_request(scope, receive)
        if request is None:
            await write(send, Response.text("Request body too large.", 413))
            return
        try:
            response = await self.handle(request, receive, send)
        except Exception:
            log.exception("console error on %s %s", request.method, request.path)
            response = Response.text("The console met an internal error; the server log has it.", 500)
        if response is not None:
            await write(send, response)

    async def handle(self, request: Request, receive: Receive, send: Send) -> Response | None:
        path = request.path
        if path == PREFIX:
            return Response.redirect(PREFIX + "/", 308)
        if path.startswith(PREFIX + "/static/"):
            return self._static(path[len(PREFIX + "/static/") :])
        if path == PREFIX + "/signin":
            return await self._signin(request)
        user = self._user(request)
        if request.method not in ("GET", "HEAD"):
            if not sessions.same_origin(request.headers, request.scheme):
                return Response.text("Cross-origin request refused.", 403)
            if user is None:
                return Response.text("Sign in first.", 401)
            presented = request.headers.get("x-csrf-token") or (request.form.get("csrf") or [""])[0]
            if not sessions.csrf_matches(user.session, presented):
                return Response.text("Missing or wrong CSRF token; reload the page.", 403)
        elif user is None:
            return Response.redirect(PREFIX + "/signin")
        if path == PREFIX + "/signout" and request.method == "POST":
            response = Response.redirect(PREFIX + "/signin")
            response.headers.append(("set-cookie", sessions.clear_cookie()))
            return response
        for method, pattern, page in self.routes:
            match = pattern.fullmatch(path[len(PREFIX) :])
            if match is not None and method == ("GET" if request.method == "HEAD" else request.method):
                request.receive, request.send = receive, send
                return await page(self, request, user, match)
        return self.page(
            request, user, "error.html", status=404, title="Not found", message=f"No console page at {path}."
        )

    def _static(self, name: str) -> Response:
        path = _STATIC.get(name)
        if path is None:
            return Response.text("Not found.", 404)
        content_type = _CONTENT_TYPES[path.suffix]
        headers = [("content-type", f"{content_type}; charset=utf-8"), ("cache-control", "max-age=3600")]
        return Response(200, path.read_bytes(), headers)

    # ---- sign-in and the session -------------------------------------------------------------------

    def _user(self, request: Request) -> User | None:
        value = sessions.cookie_value(request.headers.get("cookie", ""))
        if value is None:
            return None
        found = sessions.decode(value, self.session_key, self.control_plane.clock())
        if found is None:
            return None
        credential, _ = self.control_plane.lookup(found.access_key_id)
        if credential is None:  # the key was deleted or deactivated: the session ends with it
            return None
        return User(found, credential.principal.arn)

    async def _signin(self, request: Request) -> Response:
        if request.method != "POST":
            return self.render("signin.html", user=None, error="", access_key_id="")
        if not sessions.same_origin(request.headers, request.scheme):
            return Response.text("Cross-origin request refused.", 403)
        form = request.form
        key_id = (form.get("accessKeyId") or [""])[0].strip()
        secret = (form.get("secretAccessKey") or [""])[0]
        credential, _ = self.control_plane.lookup(key_id) if key_id else (None, None)
        # Compared even for an unknown key, so the answer takes as long either way.
        expected = credential.secret if credential is not None else secrets.token_urlsafe(30)
        matches = hmac.compare_digest(secret.encode(), expected.encode())
        if credential is None or not matches or credential.temporary:
            error = "The access key ID or secret access key is not right."
            if credential is not None and matches:
                error = "Temporary (STS) credentials cannot sign in; use a long-term access key."
            log.info("console sign-in refused for %r", key_id[:32])
            return self.render("signin.html", user=None, error=error, access_key_id=key_id)
        now = int(self.control_plane.clock())
        value = sessions.encode(sessions.Session(key_id, secrets.token_urlsafe(24), now), self.session_key)
        response = Response.redirect(PREFIX + "/")
        response.headers.append(("set-cookie", sessions.set_cookie(value, secure=request.scheme == "https")))
        return response

    # ---- what pages use ----------------------------------------------------------------------------

    async def call(self, user: User, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One API operation as the signed-in user (raises ClientError as the API would answer)."""
        return await self.control_plane.invoke(service, operation, params, user.access_key_id, self.region)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return Response.html(self.templates.get_template(template).render(prefix=PREFIX, **context), status)

    def fragment(self, template: str, **context: Any) -> str:
        return self.templates.get_template(template).render(prefix=PREFIX, **context)

    def page(
        self, request: Request, user: User | None, template: str, status: int = 200, **context: Any
    ) -> Response:
        return self.render(template, status, user=user, region=self.region, **context)

    def error_page(self, request: Request, user: User, error: ClientError) -> Response:
        return self.page(
            request, user, "error.html", status=error.http_status, title=error.code, message=error.message
        )

    def stream_ends(self, user: User) -> Callable[[], bool]:
        """When a page's live stream ends: the server is stopping or the session ran out (a deleted key
        ends it sooner: its next call is refused)."""
        ends_at = user.session.issued_at + sessions.MAX_AGE
        return lambda: self.control_plane.notifier.closing or self.control_plane.clock() >= ends_at
