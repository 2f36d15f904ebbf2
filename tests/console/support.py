"""A browser's side of the console over the in-process transport: a cookie jar, Origin, the CSRF token."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from tests.integration.server import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.support.inprocess import AsgiTransport

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Page:
    status: int
    headers: list[tuple[str, str]]
    text: str

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def headers_named(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def csrf(self) -> str:
        match = _CSRF.search(self.text)
        assert match is not None, "no CSRF token on the page"
        return match.group(1)


@dataclass
class Browser:
    transport: AsgiTransport
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://{self.transport.host}"

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str | list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Page:
        sent = {"accept": "text/html", **(headers or {})}
        if self.cookies:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = b""
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            sent["content-type"] = "application/x-www-form-urlencoded"
            sent["content-length"] = str(len(body))
        status, out, payload = self.transport.request(method, path, sent, body)
        for name, value in out:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                if val:
                    self.cookies[key] = val
                else:
                    self.cookies.pop(key, None)
        return Page(status, out, payload.decode("utf-8", "replace"))

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def post(
        self,
        path: str,
        form: dict[str, str | list[str]],
        *,
        origin: str | None = "",
        csrf: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> Page:
        """A form POST as the console's page sends it: its Origin and the session's CSRF token, unless a
        test passes None (left out) or another value."""
        sent = dict(headers or {})
        if origin is not None:
            sent["origin"] = origin or self.origin
        form = dict(form)
        if csrf is not None:
            form["csrf"] = csrf or self.get("/console/task-definitions/new").csrf
        return self.request("POST", path, form, sent)

    def sign_in(self, key: str = ACCESS_KEY_ID, secret: str = SECRET_ACCESS_KEY) -> Page:
        return self.post("/console/signin", {"accessKeyId": key, "secretAccessKey": secret}, csrf=None)
