"""Who is asking: WeChat's web OAuth (网页授权, `snsapi_base`, no prompt).

/m/auth/start picks a random `state`, keeps it (with where to go next) in a short-lived
signed cookie and sends the browser to WeChat's authorize URL; WeChat comes back to
/m/auth/callback with `code` and `state`. The state must match the cookie (else another
page started the sign-in, or a link was replayed); the code is exchanged once for the
openid (WeChat answers 40029 for an unknown or expired code, 40163 for a used one). Every
failure is a page in plain words with a button to start again, never a 500.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import current_app, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pages.web import pages, render, safe_next, secure, set_session, wechat

log = logging.getLogger("volbot.pages")

STATE_COOKIE = "volbot_m_oauth"
STATE_MAX_AGE = 600  # WeChat's code lives ~5 minutes; the round trip must not take longer


def _states() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="volbot-pages-oauth")


def _again(message: str, next_url: str, status: int = 400):
    return render("again.html", message=message, again=url_for("pages.auth_start", next=next_url)), status


@pages.get("/auth/start")
def auth_start():
    next_url = safe_next(request.args.get("next"))
    state = secrets.token_urlsafe(16)
    callback = url_for("pages.auth_callback", _external=True)
    resp = redirect(wechat().oauth_authorize_url(callback, state))
    resp.set_cookie(STATE_COOKIE, _states().dumps({"s": state, "n": next_url}), max_age=STATE_MAX_AGE,
                    httponly=True, samesite="Lax", secure=secure(), path="/m/auth")
    return resp


@pages.get("/auth/callback")
def auth_callback():
    raw = request.cookies.get(STATE_COOKIE, "")
    try:
        saved = _states().loads(raw, max_age=STATE_MAX_AGE) if raw else None
    except BadSignature:
        saved = None
    next_url = safe_next(saved.get("n") if isinstance(saved, dict) else None)
    state, code = request.args.get("state", ""), request.args.get("code", "")
    if not isinstance(saved, dict) or not hmac.compare_digest(str(saved.get("s", "")).encode(), state.encode()):
        return _again("登录请求已失效或不是从本页发起的。", next_url)
    if not code:
        return _again("微信没有完成授权。", next_url)
    try:
        openid = wechat().openid_for_code(code)
    except Exception as e:  # noqa: BLE001 - the shell's client raises its WeChatError (errcode in .code); any failure means "start again"
        errcode = getattr(e, "code", None)
        log.info("oauth code refused: %s %s", type(e).__name__, errcode)
        if errcode == 40163:
            return _again("这个登录链接已经用过了。", next_url)
        if errcode == 40029:
            return _again("登录链接已过期或无效。", next_url)
        return _again("暂时无法连接微信，请稍后再试。", next_url, 503)
    resp = redirect(next_url)
    resp.delete_cookie(STATE_COOKIE, path="/m/auth")
    return set_session(resp, openid)


@pages.get("/signed-out")
def signed_out():
    return render("again.html", message="您已退出。", again=url_for("pages.auth_start")), 200
