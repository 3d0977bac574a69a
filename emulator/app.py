"""The emulated WeChat API over HTTP (`/cgi-bin/...`, same paths and JSON as WeChat) plus
an admin API (`/_emulator/...`) to read what was called and to inject faults.

Errors come back as WeChat gives them: HTTP 200 with `{"errcode": N, "errmsg": ...}`.
After each accepted template message a TEMPLATESENDJOBFINISH event is POSTed, signed as
WeChat signs it, to the configured callback URL (our webhook). Subscribe notices, the
field rules and mass sends are `emulator.notices`.
"""

from __future__ import annotations

import io
import queue
import secrets
import threading
import time
from dataclasses import asdict, fields
from html import escape
from urllib.parse import urlencode, urlparse

import requests
from flask import Flask, Response, abort, jsonify, redirect, request, send_file
from werkzeug.serving import WSGIRequestHandler, make_server

from emulator.notices import data_error
from emulator.notices import register as register_notices
from emulator.state import ERRMSG, OPENID_RE, EmulatorState, Fault, Settings


def error(code: int, **extra):
    return jsonify({"errcode": code, "errmsg": ERRMSG.get(code, "error"), **extra})


class CallbackSender:
    """Posts TEMPLATESENDJOBFINISH events from a few background threads, after a delay
    (WeChat sends them later, in bursts), signed with the account's token."""

    def __init__(self, state: EmulatorState, token: str, appid: str, aes_key: str | None, threads: int = 4):
        from bot.sender import WeChatSender

        self.state = state
        self.sender = WeChatSender(token, appid, aes_key)
        self.jobs: queue.Queue = queue.Queue()
        self.idle = threading.Condition()
        self.pending = 0
        for i in range(threads):
            threading.Thread(target=self._run, name=f"emulator-callback-{i}", daemon=True).start()

    def submit(self, openid: str, msgid: int, status: str) -> None:
        url = self.state.settings.callback_url
        if not url:
            return
        with self.idle:
            self.pending += 1
        self.jobs.put((time.monotonic() + self.state.settings.callback_delay_ms / 1000, url, openid, msgid, status))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every submitted callback was posted (for tests and the bench)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.pending == 0, timeout)

    def _run(self) -> None:
        http = requests.Session()
        while True:
            at, url, openid, msgid, status = self.jobs.get()
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            fields = self.sender.event(openid, "TEMPLATESENDJOBFINISH", None, MsgID=msgid, Status=status)
            try:
                sent = self.sender.post(http, url, fields)
                outcome = {"http_status": sent.status, "body": sent.body[:64]}
            except requests.RequestException as e:
                outcome = {"http_status": None, "error": type(e).__name__}
            self.state.record("callback", openid=openid, msgid=msgid, status=status, **outcome)
            with self.idle:
                self.pending -= 1
                self.idle.notify_all()


def create_emulator(apps: dict[str, str], *, token: str = "volbot-dev-token", aes_key: str | None = None,
                    callback_url: str | None = None, settings: Settings | None = None) -> Flask:
    """A fresh emulator for the accounts `apps` (appid -> secret). Our webhook's `token`
    (and `aes_key` for safe mode) sign the callbacks, as WeChat would."""
    app = Flask("wechat-emulator")
    from bot import hardening  # the same headers as every app of ours (it never runs in production)

    hardening.install(app)
    for endpoint in ("oauth_authorize", "admin_webview"):  # WeChat's sign-in, shown in the simulator's phone
        hardening.allow(app, endpoint, frame_ancestors="*")
    state = EmulatorState(apps=dict(apps), settings=settings or Settings())
    state.settings.callback_url = callback_url or state.settings.callback_url
    callbacks = CallbackSender(state, token, next(iter(apps)), aes_key)
    app.extensions["emulator"] = state
    app.extensions["emulator_callbacks"] = callbacks

    def body() -> dict:
        data = request.get_json(force=True, silent=True)
        return data if isinstance(data, dict) else {}

    def guarded(endpoint: str, openid: str | None = None, auth: bool = True):
        """Faults, rate limits and the access_token check every API call goes through.
        Returns an error response, or None to go on."""
        fault = state.take_fault(endpoint, openid)
        if fault and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault and fault.errcode is not None:
            return fault.errcode, fault.errmsg
        if state.over_rate(endpoint):
            return 45011, None
        if auth:
            code = state.check_token(request.args.get("access_token"))
            if code:
                return code, None
        return None

    def reply(endpoint: str, code: int, errmsg: str | None = None, **extra):
        state.record(endpoint, errcode=code, **{k: v for k, v in extra.items() if k != "response"})
        payload = {"errcode": code, "errmsg": errmsg or ERRMSG.get(code, "error")}
        payload.update(extra.get("response", {}))
        return jsonify(payload)

    def to_user(endpoint: str):
        """(body, openid, error response or None) for a call addressed to one user."""
        data = body()
        openid = data.get("touser")
        failed = guarded(endpoint, openid)
        return data, openid, (reply(endpoint, *failed, openid=openid, request=data) if failed else None)

    # ---- access tokens --------------------------------------------------------------------

    def credentials(endpoint: str, appid: str | None, secret: str | None):
        failed = guarded(endpoint, auth=False)
        if failed:
            return reply(endpoint, *failed, appid=appid)
        if appid not in state.apps:
            return reply(endpoint, 40013, appid=appid)
        if state.apps[appid] != secret:
            return reply(endpoint, 40125, appid=appid)
        return None

    @app.get("/cgi-bin/token")
    def token():
        appid, secret = request.args.get("appid"), request.args.get("secret")
        refused = credentials("token", appid, secret)
        if refused:
            return refused
        issued = state.issue(appid, stable=False)
        state.record("token", appid=appid, errcode=0)
        return jsonify({"access_token": issued.value, "expires_in": state.settings.token_ttl})

    @app.post("/cgi-bin/stable_token")
    def stable_token():
        data = body()
        appid, secret = data.get("appid"), data.get("secret")
        refused = credentials("stable_token", appid, secret)
        if refused:
            return refused
        force = bool(data.get("force_refresh"))
        issued = state.stable_token(appid, force)
        state.record("stable_token", appid=appid, force_refresh=force, errcode=0)
        return jsonify({"access_token": issued.value, "expires_in": max(1, int(issued.expires - state.now()))})

    # ---- messages -------------------------------------------------------------------------

    @app.post("/cgi-bin/message/template/send")
    def template_send():
        data, openid, refused = to_user("template")
        if refused:
            return refused
        code = state.recipient_error(openid)
        if code:
            return reply("template", code, openid=openid, request=data)
        if not data.get("template_id"):
            return reply("template", 40037, openid=openid, request=data)
        if not isinstance(data.get("data"), dict):
            return reply("template", 47001, openid=openid, request=data)
        problem = data_error(data["data"])
        if problem:
            return reply("template", 47003, problem, openid=openid, request=data)
        earlier = state.deduplicated(openid, data.get("client_msg_id"))
        if earlier is not None:
            return reply("template", 0, openid=openid, msgid=earlier, dedup=True,
                         client_msg_id=data.get("client_msg_id"), response={"msgid": earlier})
        if not state.use_quota("template", state.settings.template_daily_quota):
            return reply("template", 45009, openid=openid, request=data)
        sent = state.accept_template(data)
        status = "failed:user block" if state.user(openid).refuses else "success"
        callbacks.submit(openid, sent["msgid"], status)
        return reply("template", 0, openid=openid, msgid=sent["msgid"],
                     client_msg_id=data.get("client_msg_id"), response={"msgid": sent["msgid"]})

    @app.post("/cgi-bin/message/custom/send")
    def custom_send():
        data, openid, refused = to_user("custom")
        if refused:
            return refused
        code = state.recipient_error(openid)
        if code == 43004:
            code = 45015  # an unfollowed user's window is closed
        code = code or state.use_custom_window(openid)
        if code:
            return reply("custom", code, openid=openid, request=data)
        with state.lock:
            state.custom_messages.append({"at": state.now(), **data})
        return reply("custom", 0, openid=openid, request=data)

    register_notices(app, state, reply=reply, to_user=to_user, guarded=guarded, body=body,
                     sender_for_callbacks=lambda: callbacks.sender)

    # ---- menu and QR codes ----------------------------------------------------------------

    @app.post("/cgi-bin/menu/create")
    def menu_create():
        data = body()
        failed = guarded("menu_create")
        if failed:
            return reply("menu_create", *failed, request=data)
        code = menu_error(data)
        if code:
            return reply("menu_create", code, request=data)
        with state.lock:
            state.menu = data
        return reply("menu_create", 0, request=data)

    @app.get("/cgi-bin/menu/get")
    def menu_get():
        failed = guarded("menu_get")
        if failed:
            return reply("menu_get", *failed)
        if state.menu is None:
            return reply("menu_get", 46003, "menu no exist")
        state.record("menu_get", errcode=0)
        return jsonify({"menu": state.menu})

    @app.post("/cgi-bin/qrcode/create")
    def qrcode_create():
        data = body()
        failed = guarded("qrcode_create")
        if failed:
            return reply("qrcode_create", *failed, request=data)
        action = data.get("action_name")
        scene = (data.get("action_info") or {}).get("scene") or {}
        value = scene.get("scene_str") if action in ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE") else scene.get("scene_id")
        if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE") or value in (None, ""):
            return reply("qrcode_create", 47001, request=data)
        if isinstance(value, str) and len(value) > 64:
            return reply("qrcode_create", 47001, request=data)
        ticket = secrets.token_urlsafe(24)
        temporary = action in ("QR_SCENE", "QR_STR_SCENE")
        expire = int(data.get("expire_seconds") or 60) if temporary else None
        url = f"http://weixin.qq.com/q/{ticket[:22]}"
        with state.lock:
            state.tickets[ticket] = {"scene": value, "url": url, "expire_seconds": expire}
        response = {"ticket": ticket, "url": url}
        if expire:
            response["expire_seconds"] = min(expire, 2_592_000)
        return reply("qrcode_create", 0, scene=value, ticket=ticket, response=response)

    @app.get("/cgi-bin/showqrcode")
    def showqrcode():
        import segno

        ticket = state.tickets.get(request.args.get("ticket", ""))
        state.record("showqrcode", found=ticket is not None)
        if ticket is None:
            abort(404)
        out = io.BytesIO()
        segno.make(ticket["url"], error="m").save(out, kind="png", scale=8, border=2)
        out.seek(0)
        return send_file(out, mimetype="image/png")

    # ---- web pages: OAuth (网页授权) and the JS-SDK ticket ------------------------------------
    # WeChat's in-app browser knows who is signed in; here the simulator (or a test) says so
    # once through /_emulator/webview, which leaves the openid in a cookie on this host.

    @app.get("/connect/oauth2/authorize")
    def oauth_authorize():
        appid, target = request.args.get("appid", ""), request.args.get("redirect_uri", "")
        scope, state_ = request.args.get("scope", ""), request.args.get("state", "")
        problem = None
        if appid not in state.apps:
            problem = "appid 参数错误"
        elif request.args.get("response_type") != "code" or scope not in ("snsapi_base", "snsapi_userinfo"):
            problem = "scope 参数错误或没有 scope 权限"
        elif urlparse(target).scheme not in ("http", "https") or not urlparse(target).netloc:
            problem = "redirect_uri 参数错误"
        if problem:
            state.record("oauth_authorize", appid=appid, error=problem)
            return _page("出错了", f"<p>{escape(problem)}</p>"), 400
        openid = request.cookies.get(WEBVIEW_COOKIE, "")
        if not OPENID_RE.match(openid):
            # No WeChat user in this browser: ask who to be (the emulator's stand-in for the app).
            here = request.full_path
            return _page("模拟微信", f"""<form method="get" action="/_emulator/webview">
<p>以哪个微信用户（openid）打开这个网页？</p>
<input type="hidden" name="url" value="{escape(here)}">
<input name="openid" aria-label="openid" value="o_demo_vol_002" size="24"> <button>打开</button></form>""")
        code = state.oauth_code(appid, openid)
        state.record("oauth_authorize", appid=appid, openid=openid, scope=scope)
        sep = "&" if "?" in target else "?"
        return redirect(target + sep + urlencode({"code": code, "state": state_}))

    @app.get("/sns/oauth2/access_token")
    def oauth_access_token():
        appid, secret = request.args.get("appid"), request.args.get("secret")
        refused = credentials("oauth_access_token", appid, secret)
        if refused:
            return refused
        if request.args.get("grant_type") != "authorization_code":
            return reply("oauth_access_token", 40002, "invalid grant_type", appid=appid)
        code, openid = state.redeem_code(appid, request.args.get("code", ""))
        if code:
            return reply("oauth_access_token", code, appid=appid)
        return reply("oauth_access_token", 0, appid=appid, openid=openid, response={
            "access_token": secrets.token_urlsafe(32), "expires_in": 7200, "refresh_token": secrets.token_urlsafe(32),
            "openid": openid, "scope": "snsapi_base"})

    @app.get("/cgi-bin/ticket/getticket")
    def getticket():
        failed = guarded("getticket")
        if failed:
            return reply("getticket", *failed)
        if request.args.get("type") not in ("jsapi", "wx_card"):
            return reply("getticket", 40097, "invalid args")
        ticket, ttl = state.jsapi_ticket(state.token_appid(request.args.get("access_token", "")))
        return reply("getticket", 0, response={"ticket": ticket, "expires_in": ttl})

    @app.get("/_emulator/jsapi-ticket")
    def admin_jsapi_ticket():
        """The current ticket of the first account, for checking a page's wx.config signature."""
        appid = request.args.get("appid") or next(iter(state.apps))
        with state.lock:
            ticket, expires = state.jsapi_tickets.get(appid, ("", 0.0))
        return jsonify({"appid": appid, "ticket": ticket if expires > state.now() else ""})

    @app.get("/_emulator/webview")
    def admin_webview():
        """Open `url` in the "in-app browser" of `openid`: remember who is signed in, go on."""
        openid, target = request.args.get("openid", ""), request.args.get("url", "")
        parsed = urlparse(target)
        if not OPENID_RE.match(openid) or not (target.startswith("/") or parsed.scheme in ("http", "https")):
            return _page("出错了", "<p>openid 或网址不正确。</p>"), 400
        resp = redirect(target)
        resp.set_cookie(WEBVIEW_COOKIE, openid, httponly=True, samesite="Lax")
        return resp

    # ---- media ------------------------------------------------------------------------------

    @app.get("/cgi-bin/media/get")
    def media_get():
        media_id = request.args.get("media_id", "")
        failed = guarded("media_get")
        if failed:
            return reply("media_get", *failed, media_id=media_id)
        found = state.media.get(media_id)
        if found is None:
            return reply("media_get", 40007, media_id=media_id)  # invalid media_id
        state.record("media_get", errcode=0, media_id=media_id)
        return Response(found[0], mimetype=found[1])

    @app.put("/_emulator/media/<media_id>")
    def admin_media(media_id):
        """Store the bytes of a media file (a voice message's audio) for media/get."""
        with state.lock:
            state.media[media_id] = (request.get_data(), request.content_type or "audio/amr")
        return jsonify({"media_id": media_id, "bytes": len(state.media[media_id][0])})

    # ---- admin: what happened, and faults -------------------------------------------------

    @app.get("/_emulator/calls")
    def admin_calls():
        endpoint, openid = request.args.get("endpoint"), request.args.get("openid")
        since = int(request.args.get("since", 0))
        limit = int(request.args.get("limit", 1000))
        with state.lock:
            rows = [c for c in state.calls[since:] if (not endpoint or c["endpoint"] == endpoint)
                    and (not openid or c.get("openid") == openid)]
        return jsonify(rows[-limit:])

    @app.get("/_emulator/messages")
    def admin_messages():
        openid = request.args.get("openid")
        with state.lock:
            rows = [m for m in state.messages if not openid or m["openid"] == openid]
        return jsonify(rows[-int(request.args.get("limit", 1000)):])

    @app.get("/_emulator/stats")
    def admin_stats():
        return jsonify(state.stats())

    @app.get("/_emulator/menu")
    def admin_menu():
        return jsonify({"menu": state.menu})

    @app.post("/_emulator/faults")
    def admin_faults():
        data = body()
        if "rate_per_second" in data:
            with state.lock:
                state.rate_limits[data.get("endpoint", "*")] = int(data["rate_per_second"])
            return jsonify({"ok": True})
        known = {f.name for f in fields(Fault)}
        fault = Fault(**{k: v for k, v in data.items() if k in known})
        with state.lock:
            state.faults.append(fault)
        return jsonify({"ok": True, "fault": asdict(fault)})

    @app.delete("/_emulator/faults")
    def admin_clear_faults():
        with state.lock:
            state.faults.clear()
            state.rate_limits.clear()
        return jsonify({"ok": True})

    @app.post("/_emulator/revoke-tokens")
    def admin_revoke():
        return jsonify({"revoked": state.revoke_tokens()})

    @app.post("/_emulator/users")
    def admin_users():
        data = body()
        openid = data.get("openid", "")
        with state.lock:
            user = state.user(openid)
            if "following" in data:
                user.following = bool(data["following"])
            if "refuses" in data:
                user.refuses = bool(data["refuses"])
            if data.get("unknown"):
                state.unknown_openids.add(openid)
        return jsonify({"ok": True})

    @app.post("/_emulator/interactions")
    def admin_interactions():
        data = body()
        state.interact(data.get("openid", ""), data.get("kind", "message"), data.get("at"))
        return jsonify({"ok": True})

    @app.post("/_emulator/clock")
    def admin_clock():
        with state.lock:
            state.offset += float(body().get("advance", 0))
        return jsonify({"now": state.now()})

    @app.post("/_emulator/settings")
    def admin_settings():
        data = body()
        with state.lock:
            for f in fields(Settings):
                if f.name in data:
                    setattr(state.settings, f.name, data[f.name])
        return jsonify(asdict(state.settings))

    @app.post("/_emulator/reset")
    def admin_reset():
        callbacks.wait_idle(5)
        kept = state.settings
        state.reset()
        state.settings = kept
        return jsonify({"ok": True})

    @app.post("/_emulator/wait-callbacks")
    def admin_wait_callbacks():
        return jsonify({"idle": callbacks.wait_idle(float(body().get("timeout", 10)))})

    return app


WEBVIEW_COOKIE = "emulator_wx_openid"


def _page(title: str, body: str) -> Response:
    return Response(f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title></head>
<body><h1>{escape(title)}</h1>{body}</body></html>""",
                    mimetype="text/html")


def menu_error(data: dict) -> int:
    """The error WeChat gives a malformed custom menu (research/wechat.md §2.5), or 0."""
    buttons = data.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016
    for button in buttons:
        subs = button.get("sub_button")
        if not button.get("name") or len(button["name"].encode("utf-8")) > 16:
            return 40018
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                return 40023
            for sub in subs:
                if not sub.get("name") or len(sub["name"].encode("utf-8")) > 60:
                    return 40018
                code = _leaf_error(sub)
                if code:
                    return code
        else:
            code = _leaf_error(button)
            if code:
                return code
    return 0


LEAF_TYPES = {"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
              "pic_weixin", "location_select", "miniprogram", "article_id", "article_view_limited",
              "media_id", "view_limited"}


def _leaf_error(button: dict) -> int:
    kind = button.get("type")
    if kind not in LEAF_TYPES:
        return 40017
    if kind in ("click", "scancode_push", "scancode_waitmsg", "location_select") and not (
        0 < len(str(button.get("key", "")).encode("utf-8")) <= 128
    ):
        return 40019
    if kind == "view" and not (0 < len(str(button.get("url", ""))) <= 1024):
        return 40017
    return 0


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1, so an API client keeps its connection (WeChat's servers do too)."""

    protocol_version = "HTTP/1.1"


def make_emulator_server(app: Flask, host: str = "127.0.0.1", port: int = 0):
    """A threaded werkzeug server for `app` (port 0: a free one; see `.server_port`)."""
    return make_server(host, port, app, threaded=True, request_handler=KeepAliveHandler)
