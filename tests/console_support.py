"""Helpers for console and page tests: a signed-in `requests` session against the live app, and
the one value a query selects (to check what a request left in SQL)."""

from __future__ import annotations

import re

import requests

from tests.seeds.console import PASSWORD

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A `requests.Session` that logs in through the form and keeps the CSRF token."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.http = requests.Session()
        self.csrf = ""

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str, **kw):
        response = self.http.get(self.url(path), allow_redirects=False, **kw)
        found = CSRF_RE.search(response.text) if "text/html" in response.headers.get("Content-Type", "") else None
        if found and path != "/console/login":
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data=None, *, csrf: bool = True, **kw):
        data = dict(data or {}) if not isinstance(data, list) else list(data)
        if csrf:
            if isinstance(data, list):
                data.append(("csrf_token", self.csrf))
            else:
                data.setdefault("csrf_token", self.csrf)
        return self.http.post(self.url(path), data=data, allow_redirects=False, **kw)

    def login(self, username: str, password: str = PASSWORD):
        page = self.http.get(self.url("/console/login"))
        token = CSRF_RE.search(page.text).group(1)
        response = self.http.post(self.url("/console/login"), allow_redirects=False,
                                  data={"username": username, "password": password, "csrf_token": token})
        if response.status_code == 302:
            self.get("/console/")  # picks up the session's CSRF token
        return response


def signed_in(base_url: str, username: str) -> Browser:
    b = Browser(base_url)
    response = b.login(username)
    assert response.status_code == 302, response.text[:500]
    return b


def one(svc, stmt):
    """The single value `stmt` selects, read in a session of its own."""
    with svc.db.session() as s:
        return s.scalar(stmt)
