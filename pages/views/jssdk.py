"""The JS-SDK's `wx.config` for a page: signed with the account's `jsapi_ticket` (kept in
Redis and fetched by one process at a time, by the shell's WeChat client), for the page's
own URL only, with the APIs the pages use and the consent open tag."""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from flask import jsonify, request

from pages.web import pages, wechat

log = logging.getLogger("volbot.pages")

JS_API_LIST = ["getLocation", "scanQRCode"]
OPEN_TAGS = ["wx-open-subscribe"]


@pages.get("/jssdk.json")
def jssdk_config():
    url = request.args.get("url", "")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or parsed.netloc != request.host or not parsed.path.startswith("/m/"):
        return jsonify(error="url"), 400
    try:
        signed = wechat().jsapi_signature(url)
    except Exception as e:  # noqa: BLE001 - the shell's client raises its WeChatError; the page works without the SDK
        log.info("jsapi ticket unavailable: %s %s", type(e).__name__, getattr(e, "code", None))
        return jsonify(error="unavailable"), 503
    return jsonify(jsApiList=JS_API_LIST, openTagList=OPEN_TAGS, **signed)
