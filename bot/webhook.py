"""`/wechat`: the endpoint a WeChat Official Account is pointed at.

GET answers URL verification; POST verifies, decrypts and parses a push (bot.protocol),
hands the plain message to the pipeline and renders its reply. Bad requests get a 4xx.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request

from bot.protocol import BadRequest

log = logging.getLogger("volbot.webhook")
webhook = Blueprint("webhook", __name__)


def _services():
    return current_app.extensions["volbot"]


@webhook.get("/wechat")
def verify_url():
    services = _services()
    try:
        services.protocol.verify(request.args, now=services.clock.timestamp())
    except BadRequest as e:
        return Response(e.reason, status=e.status, mimetype="text/plain")
    return Response(request.args.get("echostr", ""), mimetype="text/plain")


@webhook.post("/wechat")
def receive():
    services = _services()
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH turns a huge body into 413
    try:
        message, encrypted = services.protocol.read(request.args, body, now=services.clock.timestamp())
    except BadRequest as e:
        log.info("rejected push: %s", e.reason)
        return Response(e.reason, status=e.status, mimetype="text/plain")
    if message is None:
        return Response("success", mimetype="text/plain")
    reply = current_app.extensions["volbot.pipeline"].handle(message)
    to_app = message.extra.get("to_user") or services.config.wechat_appid
    xml = services.protocol.render(reply, message, to_app, encrypted,
                                   nonce=request.args.get("nonce", ""),
                                   timestamp=int(services.clock.timestamp()))
    return Response(xml, mimetype="application/xml" if xml != "success" else "text/plain")

