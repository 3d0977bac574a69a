"""Subscribe-notice events: the user's consent as WeChat reports it (a tap on a subscribe
button, a change in the notice settings) and the outcome of a notice we sent. Recorded
by `rules.notices`; answered with nothing (the user is not in a conversation)."""

from __future__ import annotations

from dialogue import types as t
from handlers import registry
from rules import notices


@registry.on_event(t.NOTICE_POPUP)
def popup(ctx, message):
    notices.record_events(ctx.session, message.openid, "popup", message.extra.get("notices") or [], ctx.now)
    return None


@registry.on_event(t.NOTICE_CHANGE)
def change(ctx, message):
    notices.record_events(ctx.session, message.openid, "change", message.extra.get("notices") or [], ctx.now)
    return None


@registry.on_event(t.NOTICE_SENT)
def sent(ctx, message):
    # A notice WeChat could not deliver because the user refuses it: revoke that consent.
    for item in message.extra.get("notices") or []:
        status = (item.get("error_status") or "").lower()
        if item.get("error_code") and ("refuse" in status or "block" in status) and item.get("template_id"):
            notices.refused(ctx.session, message.openid, item["template_id"], ctx.now)
    return None


@registry.eraser
def erase_consent(ctx, follower):
    # On unsubscribe WeChat asks us to delete the user's data; their consent goes with it.
    notices.erase(ctx.session, follower.openid)
