"""The browser-facing hardening every Flask app of the project gets, in one place: security
headers on every response, Flask's own session cookie flags, and the real client address
behind trusted proxies.

`install(app, ...)` is called by `bot.app.create_app` (webhook, console, simulator) and by
the WeChat API emulator (`emulator.app`), so no page of ours goes out without it:

- `Content-Security-Policy`: scripts, styles, images, fonts and XHR only from this origin,
  no inline script or style (the templates carry none: behaviour lives in static/*.js, looks
  in static/*.css), no plugins, no `<base>` rewriting, forms post only here, and
  `frame-ancestors 'none'` (with `X-Frame-Options: DENY` for old browsers) so no other site
  can frame the console.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (the console's "back"
  redirects read the referrer from its own pages; no URL leaves for another site).
- `Cache-Control: no-store` on every response that is not a static file, unless the view
  chose its own: pages, JSON and exports carry personal data, and a shared office computer's
  browser cache must not keep them.
- In production: `Strict-Transport-Security` (VOLBOT_HSTS_SECONDS) and Flask's session cookie
  `Secure`; it is `SameSite=Lax` and HttpOnly everywhere.
"""

from __future__ import annotations

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


def install(app, *, production: bool = False, hsts_seconds: int = 0) -> None:
    """Security headers and cookie flags on `app`; HSTS and Secure cookies in `production`."""
    from flask import request

    app.config.update(SESSION_COOKIE_SECURE=production, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_HTTPONLY=True)
    hsts = f"max-age={hsts_seconds}; includeSubDomains" if production and hsts_seconds else None

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "same-origin"
        if hsts:
            headers["Strict-Transport-Security"] = hsts
        static = request.endpoint is not None and request.endpoint.rsplit(".", 1)[-1] == "static"
        if not static and "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"
        return response


def trust_proxies(app, count: int) -> None:
    """Take the client's address and scheme from the last `count` X-Forwarded-For /
    X-Forwarded-Proto entries (werkzeug's ProxyFix); 0 trusts no header. The Host header is
    never taken from a proxy."""
    if count > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=0, x_port=0, x_prefix=0)
