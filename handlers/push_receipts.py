"""Delivery receipts of template messages (TEMPLATESENDJOBFINISH): recorded on the push
and acknowledged at once with an empty reply; they arrive in bursts after a fan-out."""

from __future__ import annotations

from dialogue import types as t
from handlers import registry
from rules.receipts import record_receipt


@registry.on_event(t.TEMPLATE_FINISH)
def template_finished(ctx, message):
    record_receipt(ctx.session, message.key, message.text, ctx.now)
    return None
