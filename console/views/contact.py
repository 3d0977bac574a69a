"""Revealing a phone number when a coordinator must call someone: a resident about their
order or their message, a volunteer (or their guardian) of the subtree.

Every page shows phones masked. The full number is shown only as the answer to an explicit
POST with a reason (CSRF-checked like every console form), once, on a page that is not
cached, and each reveal is written to the audit log (`rules.audit.PHONE_REVEAL`: who, what,
why, from where; never the number). A row outside the coordinator's subtree is not found,
as everywhere in the console (`rules.access.get`).
"""

from __future__ import annotations

from flask import g, make_response, request

from console.web import audit, back, console, flash, render
from rules import access, masks
from rules.audit import PHONE_REVEAL
from store.models import CoordinatorMessage, Order, Volunteer

REASON_MAX = 100


def _reveal(*, entity: str, row_id: int, phone: str | None, field: str, label: str, who: str,
            back_to: str, **back_values):
    reason = (request.form.get("reason") or "").strip()[:REASON_MAX]
    if not phone:
        flash("没有登记电话。", "error")
        return back(back_to, **back_values)
    if not reason:
        flash("请填写查看完整电话的原因（例如：电话确认上门时间）。", "error")
        return back(back_to, **back_values)
    audit(PHONE_REVEAL, entity=entity, entity_id=row_id, after={"field": field}, reason=reason)
    g.db.commit()
    response = make_response(render("phone_reveal.html", phone=phone, label=label, who=who, reason=reason,
                                    masked=masks.phone(phone), back_to=back_to, back_values=back_values))
    response.headers["Cache-Control"] = "no-store"
    return response


@console.post("/volunteers/<int:volunteer_id>/phone")
def volunteer_phone(volunteer_id: int):
    volunteer = access.get(g.db, g.scope, Volunteer, volunteer_id)
    guardian = request.form.get("field") == "guardian_phone"
    return _reveal(entity="volunteer", row_id=volunteer.id,
                   phone=volunteer.guardian_phone if guardian else volunteer.phone,
                   field="guardian_phone" if guardian else "phone",
                   label="监护人电话" if guardian else "手机",
                   who=f"{volunteer.name}（{volunteer.number}）" + (f" 的监护人 {volunteer.guardian_name}" if guardian else ""),
                   back_to="console.volunteer_detail", volunteer_id=volunteer.id)


@console.post("/orders/<int:order_id>/phone")
def order_phone(order_id: int):
    order = access.get(g.db, g.scope, Order, order_id)
    return _reveal(entity="order", row_id=order.id, phone=order.phone, field="phone", label="居民电话",
                   who=f"工单 {order.number} 的居民", back_to="console.order_detail", order_id=order.id)


@console.post("/messages/<int:message_id>/phone")
def message_phone(message_id: int):
    message = access.get(g.db, g.scope, CoordinatorMessage, message_id)
    follower = message.follower
    return _reveal(entity="message", row_id=message.id, phone=follower.phone if follower else None,
                   field="phone", label="居民电话", who=f"第{message.id}条留言的居民",
                   back_to="console.message_detail", message_id=message.id)
