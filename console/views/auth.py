"""Signing in and out."""

from __future__ import annotations

import hmac
import secrets

from flask import g, make_response, redirect, request, url_for

from console import accounts
from console.web import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    client_ip,
    console,
    end_session,
    render,
    safe_next,
    services,
    set_session_cookie,
    start_session,
)
from rules import access
from rules.audit import record


@console.route("/login", methods=["GET", "POST"])
def login():
    error = None
    status = 200
    if request.method == "POST":
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        sent = request.form.get("csrf_token", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            error, status = "表单已过期，请重新登录。", 400
        else:
            username = request.form.get("username", "")[:64]
            password = request.form.get("password", "")[:256]
            result = accounts.check_login(g.db, services().redis, username, password, client_ip())
            if result.throttled:
                error, status = "登录失败次数过多，请 15 分钟后再试。", 429
            elif result.coordinator is None:
                error, status = "用户名或密码错误。", 401
            else:
                coordinator = result.coordinator
                if result.rehash:
                    coordinator.password_hash = result.rehash
                scope = access.scope_for(g.db, coordinator)
                record(g.db, scope, "login", entity="coordinator", entity_id=coordinator.id,
                       ip=client_ip(), now=g.now)
                g.db.commit()
                token, _csrf = start_session(coordinator)
                response = redirect(safe_next(request.form.get("next")))
                response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
                return set_session_cookie(response, token)
    login_csrf = secrets.token_urlsafe(24)
    response = make_response(render("login.html", error=error, login_csrf=login_csrf,
                                    next=request.values.get("next", "")), status)
    response.set_cookie(LOGIN_CSRF_COOKIE, login_csrf, max_age=3600, httponly=True,
                        samesite="Strict", path="/console")
    return response


@console.post("/logout")
def logout():
    end_session(request.cookies.get(COOKIE))
    response = redirect(url_for("console.login"))
    response.delete_cookie(COOKIE, path="/console")
    return response
