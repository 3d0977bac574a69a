"""The console's blueprint and what every request goes through: the SQL session, the
signed-in coordinator and their scope, CSRF checks, and rendering helpers.

Sessions are server-side in Redis (`console.sessions`: idle timeout, a list per account);
the browser holds only a random token in an HttpOnly, SameSite=Lax cookie limited to
/console (Secure in production). Losing Redis logs everyone out, nothing more. A
coordinator whose role must use a second factor (VOLBOT_2FA_REQUIRED_ROLES) and has none
reaches only the enrolment page until they set one up. Every POST must carry the session's
CSRF token (form field `csrf_token` or header `X-CSRF-Token`); the login forms use a
double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import wraps
from urllib.parse import urlparse

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for

from console import twofactor
from console.sessions import MAX_AGE, SessionStore
from console.throttle import LoginThrottle
from rules import access, notices
from rules.audit import record
from store.models import Coordinator

console = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                    static_folder="static", static_url_path="/static")

COOKIE = "volbot_console"
LOGIN_CSRF_COOKIE = "volbot_console_login"
PENDING_COOKIE = "volbot_console_2fa"
PUBLIC = {"console.login", "console.login_second_factor", "console.static"}
# What a coordinator who must enrol a second factor may reach before they have.
ENROLMENT = {"console.security_2fa", "console.security_2fa_qr", "console.security_2fa_enable", "console.logout"}


def services():
    return current_app.extensions["volbot"]


def sessions() -> SessionStore:
    svc = services()
    return SessionStore(svc.redis, svc.clock, svc.config.console_idle_minutes * 60)


def throttle() -> LoginThrottle:
    svc = services()
    return LoginThrottle(svc.redis, svc.clock)


def fingerprint(coordinator: Coordinator) -> str:
    """Who the session belongs to, beyond a row id: a restore of an earlier backup hands a
    coordinator's id to someone else, and a session kept in Redis must not follow the id.
    The password hash is salted, so it is this account's alone (a new password ends the
    account's sessions even where the explicit end missed one)."""
    return hashlib.sha256((coordinator.password_hash or "").encode()).hexdigest()[:32]


def user_agent() -> str:
    return request.headers.get("User-Agent", "")[:256]


def start_session(coordinator: Coordinator) -> str:
    """Sign the coordinator in: the new session's token for the cookie."""
    token, _session = sessions().start(coordinator.id, fingerprint(coordinator), client_ip(), user_agent())
    return token


def set_session_cookie(response, token: str):
    response.set_cookie(COOKIE, token, max_age=MAX_AGE, httponly=True, samesite="Lax",
                        secure=secure_cookies(), path="/console")
    return response


def secure_cookies() -> bool:
    """Secure cookies in production: the app's configuration decides, as for Flask's own
    session cookie (bot.hardening)."""
    return current_app.config["VOLBOT"].env == "production"


def client_ip() -> str:
    """The client's address: the peer's, or (VOLBOT_TRUSTED_PROXIES) what the trusted
    proxies say it was — ProxyFix has put it in remote_addr already."""
    return (request.remote_addr or "?")[:64]


def needs_second_factor(coordinator: Coordinator) -> bool:
    """Must enrol before doing anything else: required of the role, not set up yet."""
    return (twofactor.required(services().config.console_2fa_required_roles, coordinator)
            and not twofactor.enabled(coordinator))


@console.before_request
def load_request():
    svc = services()
    g.db = svc.db.Session()
    g.now = svc.clock.now()
    g.scope = None
    g.csrf = ""
    if request.endpoint in PUBLIC:
        return None
    store = sessions()
    session = store.load(request.cookies.get(COOKIE))
    coordinator = g.db.get(Coordinator, session.cid) if session else None
    if coordinator is not None and not hmac.compare_digest(session.who, fingerprint(coordinator)):
        coordinator = None  # the id now names another account (a restore), or the password changed
    if coordinator is None or not coordinator.active or not coordinator.password_hash:
        if request.accept_mimetypes.best == "application/json" or request.path.endswith(".json"):
            return jsonify(error="login required"), 401
        return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))
    store.touch(session, client_ip(), user_agent())
    g.session = session
    g.csrf = session.csrf
    g.coordinator = coordinator
    g.scope = access.scope_for(g.db, coordinator)
    if request.method == "POST":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(sent.encode(), g.csrf.encode()):
            abort(400, description="表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试。")
    if request.endpoint not in ENROLMENT and needs_second_factor(coordinator):
        return redirect(url_for("console.security_2fa"))
    return None


@console.teardown_request
def close_session(_exc):
    db = g.pop("db", None)
    if db is not None:
        db.close()


@console.errorhandler(access.OutOfScope)
def out_of_scope(_e):
    return _error(404, "找不到该记录，或它不在您管理的范围内。")


@console.errorhandler(access.Forbidden)
def forbidden(_e):
    return _error(403, "您的角色无权执行此操作。")


@console.errorhandler(400)
def bad_request(e):
    return _error(400, getattr(e, "description", "") or "请求有误。")


def _error(status: int, message: str):
    if "db" in g:
        g.db.rollback()
    if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
        return jsonify(error=message), status
    return render_template("console/error.html", status=status, message=message), status


def render(template: str, **context):
    return render_template(f"console/{template}", **context)


def audit(action: str, **kw):
    """Record a coordinator action in the request's transaction (committed with it)."""
    return record(g.db, g.scope, action, ip=client_ip(), now=g.now, **kw)


def safe_next(target: str | None) -> str:
    """Only redirect within the console (no open redirect through ?next=)."""
    if target:
        parsed = urlparse(target)
        if not parsed.scheme and not parsed.netloc and parsed.path.startswith("/console"):
            return target
    return url_for("console.dashboard")


def back(default_endpoint: str, **values):
    """Redirect to the page the form came from when it is a console page."""
    ref = request.form.get("next") or request.referrer or ""
    parsed = urlparse(ref)
    if parsed.path.startswith("/console") and (not parsed.netloc or parsed.netloc == request.host):
        return redirect(parsed.path + (f"?{parsed.query}" if parsed.query else ""))
    return redirect(url_for(default_endpoint, **values))


def needs(capability: str):
    def wrap(view):
        @wraps(view)
        def inner(*a, **kw):
            access.require(g.scope, capability)
            return view(*a, **kw)
        return inner
    return wrap


def flash(message: str, kind: str = "ok") -> None:
    from flask import flash as _flash

    _flash(message, kind)


@console.app_template_filter("local")
def local_time(value, fmt: str = "%Y-%m-%d %H:%M"):
    from zoneinfo import ZoneInfo

    if value is None:
        return ""
    if hasattr(value, "astimezone"):
        return value.astimezone(ZoneInfo("Asia/Shanghai")).strftime(fmt)
    return value.strftime(fmt)


@console.app_template_filter("hours")
def hours_filter(minutes) -> str:
    minutes = int(minutes or 0)
    h, m = divmod(minutes, 60)
    return f"{h}" if not m else f"{minutes / 60:.1f}"


@console.app_context_processor
def inject():
    if request.blueprint != "console":
        return {}
    # A kind WeChat banned the template of (43116) stays paused until the district replaces the
    # template: every signed-in page says so, so staff see it the same day.
    paused = notices.paused(g.db) if g.get("scope") is not None else {}
    return {"scope": g.get("scope"), "csrf_token": g.get("csrf", ""),
            "role_labels": access.ROLE_LABELS, "paused_kinds": paused}
