"""Signing in (password, then the second factor where the account has one) and out.

Every refused attempt is written to the audit log (the username as typed, the address, the
time, why) and counted in /metrics (`volbot_console_login_failures_total`); attempts are
throttled per (username, client address) with growing delays (`console.throttle`).
"""

from __future__ import annotations

import hmac
import secrets

from flask import g, make_response, redirect, request, url_for

from console import accounts, twofactor
from console.throttle import describe_wait
from console.web import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    PENDING_COOKIE,
    client_ip,
    console,
    fingerprint,
    render,
    safe_next,
    secure_cookies,
    services,
    sessions,
    set_session_cookie,
    start_session,
    throttle,
)
from rules import access
from rules.audit import record, record_login_failure
from store.models import Coordinator
from telemetry.metrics import LOGIN_FAILURES


def _login_form_ok() -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = request.form.get("csrf_token", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def _refused(username: str, tried: Coordinator | None, reason: str, metric: str, action: str = "login.failed"):
    """Audit and count a refused attempt (committed at once: the attempt is the record)."""
    record_login_failure(g.db, username=username, coordinator=tried, reason=reason, action=action,
                         ip=client_ip(), now=g.now)
    g.db.commit()
    LOGIN_FAILURES.labels(metric).inc()


def _throttled(username: str) -> str | None:
    """The refusal text when this (username, address) must still wait, else None."""
    verdict = throttle().check(username, client_ip())
    if verdict.allowed:
        return None
    tried = g.db.scalar(accounts.by_username(username))
    _refused(username, tried, f"尝试过多，需等待 {verdict.wait} 秒", "throttled", "login.throttled")
    return f"尝试次数过多，请 {describe_wait(verdict.wait)}后再试。"


def _page(template: str, error: str | None, status: int, **context):
    login_csrf = secrets.token_urlsafe(24)
    response = make_response(render(template, error=error, login_csrf=login_csrf,
                                     next=request.values.get("next", ""), **context), status)
    response.set_cookie(LOGIN_CSRF_COOKIE, login_csrf, max_age=3600, httponly=True, samesite="Strict",
                        secure=secure_cookies(), path="/console")
    return response


def _signed_in(coordinator: Coordinator, factor: str):
    """The session, the audit entry and the way on after a complete sign-in."""
    throttle().succeeded(coordinator.username or "", client_ip())
    record(g.db, access.scope_for(g.db, coordinator), "login", entity="coordinator", entity_id=coordinator.id,
           after={"factor": factor}, ip=client_ip(), now=g.now)
    g.db.commit()
    token = start_session(coordinator)
    response = redirect(safe_next(request.form.get("next")))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    response.delete_cookie(PENDING_COOKIE, path="/console")
    return set_session_cookie(response, token)


@console.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return _page("login.html", None, 200)
    if not _login_form_ok():
        return _page("login.html", "表单已过期，请重新登录。", 400)
    username = request.form.get("username", "")[:64]
    password = request.form.get("password", "")[:256]
    refused = _throttled(username)
    if refused:
        return _page("login.html", refused, 429)
    result = accounts.check_login(g.db, username, password)
    if result.coordinator is None:
        throttle().failed(username, client_ip())
        _refused(username, result.tried, result.reason, "password")
        return _page("login.html", "用户名或密码错误。", 401)
    coordinator = result.coordinator
    if result.rehash:
        coordinator.password_hash = result.rehash
        g.db.commit()
    if not twofactor.enabled(coordinator):
        return _signed_in(coordinator, "password")
    pending = sessions().start_pending(coordinator.id, fingerprint(coordinator))
    response = redirect(url_for("console.login_second_factor", next=request.form.get("next") or None))
    response.set_cookie(PENDING_COOKIE, pending, max_age=5 * 60, httponly=True, samesite="Strict",
                        secure=secure_cookies(), path="/console")
    return response


@console.route("/login/2fa", methods=["GET", "POST"])
def login_second_factor():
    """The second step: a code from the authenticator app, or a recovery code."""
    token = request.cookies.get(PENDING_COOKIE)
    pending = sessions().pending(token)
    coordinator = g.db.get(Coordinator, pending[0]) if pending else None
    if coordinator is None or not coordinator.active or not hmac.compare_digest(pending[1], fingerprint(coordinator)):
        return redirect(url_for("console.login", next=request.values.get("next") or None))
    if request.method == "GET":
        return _page("login_2fa.html", None, 200)
    if not _login_form_ok():
        return _page("login_2fa.html", "表单已过期，请重新输入。", 400)
    username = coordinator.username or ""
    refused = _throttled(username)
    if refused:
        return _page("login_2fa.html", refused, 429)
    code = request.form.get("code", "")[:32]
    svc = services()
    if twofactor.verify(g.db, coordinator, code, svc.clock.timestamp()):
        factor = "totp"
    elif twofactor.use_recovery_code(g.db, coordinator, code, g.now):
        factor = "recovery_code"
    else:
        g.db.rollback()
        throttle().failed(username, client_ip())
        sessions().pending_failed(token)
        _refused(username, coordinator, "验证码错误", "second_factor")
        return _page("login_2fa.html", "验证码不正确或已用过，请输入验证器中的最新 6 位数字。", 401)
    sessions().end_pending(token)
    return _signed_in(coordinator, factor)


@console.post("/logout")
def logout():
    record(g.db, g.scope, "logout", entity="coordinator", entity_id=g.coordinator.id, ip=client_ip(), now=g.now)
    g.db.commit()
    sessions().end(g.coordinator.id, g.session.sid)
    response = redirect(url_for("console.login"))
    response.delete_cookie(COOKIE, path="/console")
    return response
