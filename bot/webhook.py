"""`/wechat`: the endpoint a WeChat Official Account is pointed at.

GET answers URL verification; POST verifies, decrypts and parses a push (bot.protocol),
hands the plain message to the pipeline and renders its reply. Bad requests get a 4xx.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from bot import observability
from bot.protocol import BadRequest
from dialogue.types import BUSY

log = logging.getLogger("volbot.webhook")
webhook = Blueprint("webhook", __name__)


def _services():
    return current_app.extensions["volbot"]


@webhook.get("/wechat")
def verify_url():
    services = _services()
    try:
        echostr = services.protocol.echo(request.args, now=services.clock.timestamp())
    except BadRequest as e:
        return Response(e.reason, status=e.status, mimetype="text/plain")
    return Response(echostr, mimetype="text/plain")


@webhook.post("/wechat")
def receive():
    services = _services()
    try:
        message, encrypted = services.protocol.read(request.args, _read_body(services.config.max_body),
                                                    now=services.clock.timestamp())
    except BadRequest as e:
        log.info("rejected push: %s", e.reason)
        return Response(e.reason, status=e.status, mimetype="text/plain")
    if message is None:
        return Response("success", mimetype="text/plain")
    # The deadline counts from the request's arrival on the host (the web worker's stamp).
    reply = current_app.extensions["volbot.pipeline"].handle(message, arrived=request.environ.get("volbot.arrived"))
    if reply is BUSY:
        observability.note_outcome("busy")
    to_app = message.extra.get("to_user") or services.config.wechat_appid
    try:
        xml = services.protocol.render(reply, message, to_app, encrypted,
                                       nonce=request.args.get("nonce", ""),
                                       timestamp=int(services.clock.timestamp()))
    except Exception:  # WeChat shows an error page for a 500; say nothing instead
        log.exception("reply could not be rendered")
        xml = "success"
    return Response(xml, mimetype="application/xml" if xml != "success" else "text/plain")


def _read_body(limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes with 413.

    With a Content-Length, werkzeug refuses a body over MAX_CONTENT_LENGTH (413) before
    reading. A chunked body has no length, and for it werkzeug's `get_data()` silently
    cuts at MAX_CONTENT_LENGTH (checked: a 70 KiB chunked body came back as 64 KiB); so
    read the terminated input ourselves, one byte past the limit, and refuse if it is there.
    """
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        data = request.environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise RequestEntityTooLarge()
        return data
    return request.get_data(cache=False)
