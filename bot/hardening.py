"""The browser-facing hardening every Flask app of the project gets, in one place: security
headers on every response, Flask's own session cookie flags, and the real client address
behind trusted proxies.

`install(app, ...)` is called by `bot.app.create_app` (webhook, console, simulator) and by
the WeChat API emulator (`emulator.app`), so no page of ours goes out without it:

- `Content-Security-Policy`: scripts, styles, images, fonts and XHR only from this origin,
  no inline script or style (the templates carry none: behaviour lives in static/*.js, looks
  in static/*.css), no plugins, no `<base>` rewriting, forms post only here, and
  `frame-ancestors 'none'` (with `X-Frame-Options: DENY` for old browsers) so no other site
  can frame the console. A blueprint (or, in an app without blueprints, an endpoint) may
  loosen one directive with `allow`: the pages at /m may be framed by this origin (the
  simulator shows them inside its phone as WeChat's in-app browser would), and the
  simulator may frame the emulator's OAuth pages that lead there.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (the console's "back"
  redirects read the referrer from its own pages; no URL leaves for another site).
- `Cache-Control: no-store` on every response that is not a static file, unless the view
  chose its own: pages, JSON and exports carry personal data, and a shared office computer's
  browser cache must not keep them.
- In production: `Strict-Transport-Security` (VOLBOT_HSTS_SECONDS) and Flask's session cookie
  `Secure`; it is `SameSite=Lax` and HttpOnly everywhere.
"""

from __future__ import annotations

_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "frame-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
ALLOWED = "volbot.csp"  # app.extensions: blueprint or endpoint -> {directive: sources or a callable}
_FRAME_OPTIONS = {"'none'": "DENY", "'self'": "SAMEORIGIN"}  # other ancestors: no X-Frame-Options


def policy(**loosened: str) -> str:
    """The Content-Security-Policy, with some directives replaced (frame_ancestors="'self'")."""
    return "; ".join(f"{name} {loosened.get(name.replace('-', '_'), value)}" for name, value in _POLICY.items())


CSP = policy()
CSP_SAME_ORIGIN_FRAMES = policy(frame_ancestors="'self'")


def allow(app, name: str, **directives) -> None:
    """Loosen directives for blueprint (or endpoint) `name`: sources as text, or a callable
    returning them (read per request, e.g. from configuration)."""
    app.extensions.setdefault(ALLOWED, {}).setdefault(name, {}).update(directives)


def install(app, *, production: bool = False, hsts_seconds: int = 0) -> None:
    """Security headers and cookie flags on `app`; HSTS and Secure cookies in `production`."""
    from flask import current_app, request

    app.config.update(SESSION_COOKIE_SECURE=production, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_HTTPONLY=True)
    hsts = f"max-age={hsts_seconds}; includeSubDomains" if production and hsts_seconds else None

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        loosened = current_app.extensions.get(ALLOWED, {}).get(request.blueprint or request.endpoint, {})
        loosened = {k: v() if callable(v) else v for k, v in loosened.items()}
        headers["Content-Security-Policy"] = policy(**loosened) if loosened else CSP
        frame_options = _FRAME_OPTIONS.get(loosened.get("frame_ancestors", "'none'"))
        if frame_options:
            headers["X-Frame-Options"] = frame_options
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
