"""The browser simulator at /simulator: a phone-sized WeChat-like chat for trying the
account without WeChat.

The page (templates/ and static/, no internet assets) asks this blueprint's JSON API to
send what the person did; the server signs (and in safe mode encrypts) a real push with
`bot.sender.WeChatSender` and POSTs it over HTTP to the webhook, exactly as WeChat would.
Template pushes are read back from the WeChat API emulator's record of sends. Only on in
the development and demo settings: everywhere else every URL here answers 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, render_template, request

from bot import hardening
from bot.sender import WeChatSender
from simulator import client, inbox, world

ENVIRONMENTS = ("development", "demo")

blueprint = Blueprint("simulator", __name__, url_prefix="/simulator",
                      template_folder="templates", static_folder="static")


def _config():
    return current_app.config["VOLBOT"]


@blueprint.record_once
def _may_frame_the_emulator(state):
    """The in-app browser (an iframe) signs in through the emulator's OAuth pages."""
    hardening.allow(state.app, "simulator",
                    frame_src=lambda: "'self' " + inbox.emulator_root(_config().wechat_api_base))


def _services():
    return current_app.extensions["volbot"]


@blueprint.before_request
def only_in_demo_settings():
    if _config().env not in ENVIRONMENTS:
        abort(404)


def webhook_url() -> str:
    """Where pushes go: SIMULATOR_WEBHOOK_URL if set, else this server's own /wechat at its
    first bind address — from configuration only: the request's Host header is whatever
    the browser (or anyone) sent, and signed pushes must not follow it elsewhere."""
    return _config().simulator_target


@blueprint.get("/")
def page():
    config = _config()
    return render_template("simulator/index.html", safe_mode=config.safe_mode,
                           account=config.wechat_appid)


@blueprint.get("/api/world")
def world_api():
    """What the page needs once: custom menu, district map, places, activities, personas."""
    with _services().db.session() as session:
        # The page buttons open this server's pages when PUBLIC_URL is not set (development).
        pages_url = _config().pages_url or request.host_url.rstrip("/") + "/m"
        data = world.snapshot(session, now=_services().clock.now(), pages_url=pages_url)
    data["emulator"] = inbox.emulator_root(_config().wechat_api_base)  # the in-app browser signs in there
    return jsonify(data)


@blueprint.post("/api/jssdk-check")
def jssdk_check_api():
    """What WeChat does with a page's wx.config: check its signature against the ticket."""
    body = request.get_json(silent=True) or {}
    return jsonify(inbox.check_jssdk(_config(), str(body.get("url", "")), body.get("config") or {}))


@blueprint.post("/api/subscribe-tap")
def subscribe_tap_api():
    """The fake wx-open-subscribe button's 允许 (wx-fake.js)."""
    body = request.get_json(silent=True) or {}
    return jsonify(inbox.tap_subscribe(_config(), body.get("openid"), body.get("template_ids")))


@blueprint.post("/api/send")
def send_api():
    config = _config()
    try:
        action = client.Action.from_json(request.get_json(silent=True))
    except client.BadAction as e:
        return jsonify(ok=False, error=str(e)), 400
    encrypt = bool(request.get_json(silent=True).get("encrypt", config.safe_mode)) and config.safe_mode
    sender = WeChatSender(config.wechat_token, config.wechat_appid, config.wechat_aes_key,
                          clock=_services().clock)
    return jsonify(client.send(sender, webhook_url(), action, encrypt=encrypt))


@blueprint.get("/api/pushes")
def pushes_api():
    """Template pushes the emulator recorded for one openid, after cursor `since`."""
    openid = request.args.get("openid", "")
    if not client.OPENID.match(openid):
        return jsonify(ok=False, error="openid"), 400
    since = request.args.get("since", "")
    return jsonify(inbox.pushes_for(_config(), openid, since))
