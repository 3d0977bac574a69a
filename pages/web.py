"""The pages' blueprint and what every request goes through: the SQL session, who is asking
(the signed cookie left by OAuth), CSRF on every POST, the error pages and rendering.

The cookie (`volbot_m`, path /m, HttpOnly, SameSite=Lax, Secure in production) holds only
the openid, signed with SECRET_KEY by itsdangerous and dated: past `SESSION_MAX_AGE` or with
a bad signature it is refused with a page offering to start again (never a 500). A page
opened without the cookie goes through OAuth first (`pages.views.auth`). The CSRF token is
an HMAC of the openid, so it needs no server state.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from rules import volunteering
from store.models import Follower, Volunteer

CHINA = ZoneInfo("Asia/Shanghai")
pages = Blueprint("pages", __name__, url_prefix="/m", template_folder="templates",
                  static_folder="static", static_url_path="/static")

COOKIE = "volbot_m"
SESSION_MAX_AGE = 7 * 24 * 3600  # a week: an elderly user is not sent through OAuth daily
SALT = "volbot-pages-session"
# Open without signing in: the sign-in itself, and the certificate check anyone may do.
PUBLIC = {"pages.static", "pages.auth_start", "pages.auth_callback", "pages.verify", "pages.verify_form",
          "pages.verify_qr", "pages.signed_out", "pages.text_size"}


class SignInAgain(Exception):
    """The cookie is missing on a POST, tampered with or expired: offer to start again."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@dataclass
class Visitor:
    openid: str
    follower: Follower | None
    volunteer: Volunteer | None


def services():
    return current_app.extensions["volbot"]


def wechat():
    """The WeChat API client the shell gave us (pushes.client.ApiClient)."""
    return current_app.extensions["volbot.wechat"]()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def session_cookie_value(openid: str) -> str:
    return _serializer().dumps({"o": openid})


def read_session(raw: str) -> str:
    """The openid in a cookie value, or SignInAgain."""
    try:
        data = _serializer().loads(raw, max_age=SESSION_MAX_AGE)
    except SignatureExpired:
        raise SignInAgain("expired")
    except BadSignature:
        raise SignInAgain("tampered")
    openid = data.get("o") if isinstance(data, dict) else None
    if not isinstance(openid, str) or not openid:
        raise SignInAgain("tampered")
    return openid


def set_session(response, openid: str):
    response.set_cookie(COOKIE, session_cookie_value(openid), max_age=SESSION_MAX_AGE, httponly=True,
                        samesite="Lax", secure=secure(), path="/m")
    return response


def secure() -> bool:
    return services().config.env == "production"


def csrf_token(openid: str) -> str:
    key = hashlib.sha256(current_app.config["SECRET_KEY"].encode() + b"|pages-csrf").digest()
    return hmac.new(key, openid.encode(), hashlib.sha256).hexdigest()[:32]


def safe_next(target: str | None) -> str:
    """Only ever go back to a page under /m (no open redirect)."""
    if target:
        parsed = urlparse(target)
        if not parsed.scheme and not parsed.netloc and parsed.path.startswith("/m/") and "\\" not in target:
            return target
    return url_for("pages.home")


@pages.before_request
def load_request():
    svc = services()
    g.db = svc.db.Session()
    g.now = svc.clock.now()
    g.visitor = None
    if request.endpoint in PUBLIC or request.endpoint is None:
        return None
    raw = request.cookies.get(COOKIE)
    if not raw:
        if request.method != "GET":
            raise SignInAgain("missing")
        return redirect(url_for("pages.auth_start", next=request.full_path.rstrip("?")))
    openid = read_session(raw)
    follower = g.db.scalar(select(Follower).where(Follower.openid == openid))
    volunteer = volunteering.volunteer_of(g.db, follower) if follower is not None else None
    g.visitor = Visitor(openid, follower, volunteer)
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), csrf_token(openid).encode()):
            abort(400, description="页面已过期，请返回后重新操作。")
    return None


@pages.teardown_request
def close_session(_exc):
    db = g.pop("db", None)
    if db is not None:
        db.close()


@pages.errorhandler(SignInAgain)
def sign_in_again(e: SignInAgain):
    if "db" in g:
        g.db.rollback()
    reasons = {"missing": "没有找到您的登录信息。", "expired": "登录已过期。", "tampered": "登录信息无效。"}
    resp = current_app.make_response((render_template(
        "pages/again.html", message=reasons.get(e.why, "登录信息无效。"),
        again=url_for("pages.auth_start", next=safe_next(request.referrer and urlparse(request.referrer).path))), 403))
    resp.delete_cookie(COOKIE, path="/m")
    return resp


@pages.errorhandler(400)
def bad_request(e):
    return error(400, getattr(e, "description", "") or "请求有误。")


@pages.errorhandler(403)
def forbidden(e):
    return error(403, "您无权查看这一页。")


# Routing errors (an unknown /m/ address, a GET on a form's target) happen before a
# blueprint is chosen, so these are the app's handlers, answering in Chinese under /m only.
@pages.app_errorhandler(404)
def not_found(e):
    if not request.path.startswith("/m/"):
        return e
    return error(404, "找不到这条记录。")


@pages.app_errorhandler(405)
def bad_method(e):
    if not request.path.startswith("/m/"):
        return e
    return error(405, "请从页面上的按钮操作。")


def error(status: int, message: str):
    if "db" in g:
        g.db.rollback()
    return render_template("pages/error.html", status=status, message=message), status


def render(template: str, **context):
    return render_template(f"pages/{template}", **context)


def needs_volunteer(view):
    """Pages about a volunteer's own service: others get a page saying how to sign up."""
    @wraps(view)
    def inner(*a, **kw):
        if g.visitor.volunteer is None:
            return render("not_volunteer.html"), 200
        return view(*a, **kw)
    return inner


def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(CHINA).strftime(fmt)


@pages.app_template_filter("m_local")
def _local_filter(value, fmt: str = "%Y-%m-%d %H:%M"):
    return local(value, fmt)


@pages.app_template_filter("m_hours")
def _hours_filter(minutes) -> str:
    return volunteering.hours_text(int(minutes or 0)) if minutes else "0小时"


@pages.app_context_processor
def inject():
    if request.blueprint != "pages":
        return {}
    visitor = g.get("visitor")
    return {"visitor": visitor, "csrf_token": csrf_token(visitor.openid) if visitor else "",
            "large": request.cookies.get("volbot_m_size", "large") != "normal"}
