"""Every web app of the project answers with the hardened headers (issue 20, part 3): the
console, the simulator, the webhook and the WeChat API emulator; static files may be cached,
nothing else; in production HSTS and Secure cookies. The templates carry no inline script
or style, so the policy needs no 'unsafe-inline'."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import requests

from bot.app import create_app
from bot.hardening import CSP, CSP_SAME_ORIGIN_FRAMES, policy
from emulator import create_emulator
from simulator.inbox import emulator_root
from tests.seeds import apply
from tests.seeds.console import PASSWORD
from tests.test_simulator import serve

ROOT = Path(__file__).resolve().parents[1]


def hardened(response, cached: bool = False, csp: str = CSP, frame_options: str = "DENY") -> None:
    h = response.headers
    assert h["Content-Security-Policy"] == csp, response.url
    assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
    assert h["X-Frame-Options"] == frame_options
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "same-origin"
    assert ("no-store" in h.get("Cache-Control", "")) is not cached, response.url
    assert "Strict-Transport-Security" not in h  # not outside production


def test_every_app_sends_the_security_headers(svc, base_url):
    for path in ("/console/login", "/console/", "/healthz", "/metrics", "/wechat?signature=x"):
        hardened(requests.get(base_url + path, allow_redirects=False))
    hardened(requests.get(base_url + "/console/static/console.css"), cached=True)
    # The pages inside WeChat: framed by this origin only (the simulator's phone), never by another.
    hardened(requests.get(base_url + "/m/verify/NOSUCHCODE0"), csp=CSP_SAME_ORIGIN_FRAMES, frame_options="SAMEORIGIN")
    server, url = serve(create_app(config=replace(svc.config, env="development"), services=svc))
    try:
        # The simulator's phone frames the emulator's sign-in pages (its in-app browser).
        framing = policy(frame_src="'self' " + emulator_root(svc.config.wechat_api_base))
        hardened(requests.get(url + "/simulator/"), csp=framing)
        hardened(requests.get(url + "/simulator/api/world"), csp=framing)
        hardened(requests.get(url + "/simulator/static/simulator/app.js"), cached=True, csp=framing)
    finally:
        server.shutdown()
    emulator, emu_url = serve(create_emulator({svc.config.wechat_appid: svc.config.wechat_secret}))
    try:
        hardened(requests.get(emu_url + "/_emulator/stats"))
    finally:
        emulator.shutdown()


def test_production_adds_hsts_and_secure_cookies(svc):
    apply(svc, ["console_logins"])
    app = create_app(config=replace(svc.config, env="production"), services=svc)
    client = app.test_client()
    https = "https://volbot.example.org"
    page = client.get("/console/login", base_url=https)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Secure" in page.headers["Set-Cookie"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    signed = client.post("/console/login", base_url=https,
                         data={"username": "df_lead", "password": PASSWORD, "csrf_token": token})
    cookie = [c for c in signed.headers.getlist("Set-Cookie") if c.startswith("volbot_console=")][0]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Flask's own session cookie (it carries the flashed messages)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/account", base_url=https).text).group(1)
    flashed = client.post("/console/account/sessions/end-others", base_url=https, data={"csrf_token": csrf})
    session_cookie = [c for c in flashed.headers.getlist("Set-Cookie") if c.startswith("session=")][0]
    assert "Secure" in session_cookie and "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


def test_no_template_or_script_relies_on_inline_code():
    """What the policy would block: inline <script> bodies, on* handlers, style attributes,
    javascript: URLs, assets from another host, and scripts that write a style attribute."""
    for template in sorted(ROOT.glob("*/templates/**/*.html")):
        text = template.read_text()
        # (WeChat's open tags carry their markup as <script type="text/wxtag-template">: never run)
        assert not re.search(r"<script(?![^>]*\b(?:src=|type=\"text/wxtag-template\"))[^>]*>", text), template
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert not re.search(r"\sstyle\s*=", text), template
        assert "javascript:" not in text, template
        assert not re.search(r'(src|href)="(https?:)?//', text), template  # every asset our own (no CDN)
    for script in sorted(ROOT.glob("*/static/**/*.js")):
        assert "setAttribute(\"style\"" not in script.read_text() and "cssText" not in script.read_text(), script
