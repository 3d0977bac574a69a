"""留言: the messages residents left for staff when stuck in a form, scoped to the teams they
were routed to (rules.access.messages). A message's page shows the form and step it was left
from, whether WeChat still lets us answer in chat (48 hours after the resident's last
message), the answer form, and marking it handled with a note. The rules are rules.inbox's."""

from __future__ import annotations

from flask import g, request

from console.views.common import args_builder, page_number, paged
from console.web import audit, back, console, flash, render
from handlers import registry
from rules import access, inbox, masks
from store.models import Coordinator, CoordinatorMessage

STATES = {"open": "待处理", "answered": "已回复", "handled": "已处理", "all": "全部"}
PUSH_STATES = {"pending": "等待发送", "queued": "等待发送", "sending": "发送中", "sent": "已送达",
               "delivered": "已送达", "failed": "发送失败", "cancelled": "已撤回"}


def where_left(message: CoordinatorMessage) -> str:
    """The form and step in words ("预约服务 · 联系电话"), from the journeys' registry."""
    flow = registry.flows.get(message.flow)
    if flow is None:
        return " · ".join(p for p in (message.flow, message.step) if p) or "—"
    step = next((s for s in flow.steps if s.name == message.step), None)
    label = (step.label or step.name) if step is not None else message.step
    return f"{flow.title} · {label}" if label else flow.title


@console.get("/messages")
def messages():
    stmt = access.messages(g.scope)
    state = request.args.get("state", "open")
    if state == "open":
        stmt = stmt.where(CoordinatorMessage.handled.is_(False), CoordinatorMessage.answered_at.is_(None))
    elif state == "answered":
        stmt = stmt.where(CoordinatorMessage.answered_at.is_not(None))
    elif state == "handled":
        stmt = stmt.where(CoordinatorMessage.handled.is_(True))
    page = page_number()
    rows, has_next = paged(g.db, stmt.order_by(CoordinatorMessage.id.desc()), page)
    return render("messages.html", rows=rows, states=STATES, state=state, where_left=where_left,
                  page=page, has_next=has_next, args=args_builder())


@console.get("/messages/<int:message_id>")
def message_detail(message_id: int):
    message = access.get(g.db, g.scope, CoordinatorMessage, message_id)
    follower = message.follower
    people = {c.id: c.name for c in (g.db.get(Coordinator, i) for i in (message.handled_by, message.answered_by) if i)
              if c is not None}
    push = inbox.answer_push(g.db, message)
    return render("message.html", m=message, where=where_left(message), people=people,
                  until=inbox.window_until(message, follower), open=inbox.window_open(message, follower, g.now),
                  masked_phone=masks.phone(follower.phone) if follower and follower.phone else None,
                  community=follower.community.name if follower and follower.community else None,
                  push=push, push_states=PUSH_STATES)


@console.post("/messages/<int:message_id>/answer")
def message_answer(message_id: int):
    return _act(message_id, "message.answer", lambda m: inbox.answer(g.db, m, g.coordinator, request.form.get("answer", ""), g.now),
                lambda m: {"answer": m.answer}, "回复已发出，居民会在公众号聊天中收到。")


@console.post("/messages/<int:message_id>/handle")
def message_handle(message_id: int):
    return _act(message_id, "message.handle", lambda m: inbox.mark_handled(g.db, m, g.coordinator, request.form.get("note", ""), g.now),
                lambda m: {"note": m.note}, "已标记为已处理。")


def _act(message_id: int, action: str, apply, after, done: str):
    """Apply one rule to a message of the subtree, audit it and commit; a refusal is shown."""
    message = access.get(g.db, g.scope, CoordinatorMessage, message_id, for_update=True)
    try:
        apply(message)
    except inbox.InboxError as e:
        g.db.rollback()
        flash(str(e), "error")
        return back("console.message_detail", message_id=message_id)
    audit(action, entity="message", entity_id=message.id, after=after(message))
    g.db.commit()
    flash(done)
    return back("console.message_detail", message_id=message_id)
