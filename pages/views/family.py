"""时间银行家人 on the web: the same family links as the chat's 邀请家人 / 接受邀请 / 我的家人
(`rules.timebank_family`), for those who would rather tap than type.

A volunteer draws a 6-digit invite code for a relation; the family member, signed in as
themselves (OAuth), enters it; either side ends a link; the volunteer turns the member's
order notices on or off. Every action is a POST with the page's CSRF token, and only a side
of a link may touch it (others get 404, nothing changes).
"""

from __future__ import annotations

import re

from flask import abort, g, redirect, request, url_for

from pages.web import pages, render
from rules import masks
from rules import timebank_family as family
from rules.timebank import TimeBankError
from store.models import TimeBankFamily, Volunteer

NOTES = {"accepted": "绑定成功！预约服务时可以选择用家人的时间银行支付。", "ended": "已解除家人关系，对方会收到通知。",
         "notices_on": "已开启：家人的订单被接单、完成时会通知您，您也可以代为确认完成。",
         "notices_off": "已关闭家人订单的通知。"}


def _page(error: str | None = None, code=None, status: int = 200):
    follower = g.visitor.follower
    mine, theirs = family.links_of(g.db, follower) if follower is not None else ([], [])
    members = [{"id": link.id, "relation": link.relation or "家人", "notices": link.notices} for link in mine]
    volunteers = [{"id": link.id, "who": masks.name(g.db.get(Volunteer, link.volunteer_id).name)} for link in theirs]
    return render("family.html", members=members, volunteers=volunteers, relations=family.RELATIONS,
                  code=code, error=error, note=NOTES.get(request.args.get("done"))), status


@pages.get("/family")
def family_page():
    return _page()


@pages.post("/family/invite")
def family_invite():
    volunteer = g.visitor.volunteer
    relation = request.form.get("relation", "")
    if volunteer is None or relation not in family.RELATIONS:
        return _page("只有志愿者可以邀请家人；请选择家人和您的关系。", status=400)
    try:
        invite = family.invite(g.db, volunteer, relation, g.now)
    except TimeBankError as e:
        g.db.rollback()
        return _page(str(e), status=409)
    g.db.commit()
    return _page(code=invite)


@pages.post("/family/accept")
def family_accept():
    code = re.sub(r"\D", "", request.form.get("code", ""))[:6]
    if g.visitor.follower is None or len(code) != 6:
        return _page("请输入家人发给您的 6 位数字邀请码。", status=400)
    try:
        family.accept_invite(g.db, code, g.visitor.follower, g.now)
    except TimeBankError as e:
        g.db.rollback()
        return _page(str(e), status=409)
    g.db.commit()
    return redirect(url_for("pages.family_page", done="accepted"))


def _my_link(link_id: int) -> tuple[TimeBankFamily, str]:
    """A live link this follower is a side of, and which side; else 404."""
    follower = g.visitor.follower
    link = g.db.get(TimeBankFamily, link_id)
    if follower is None or link is None or link.ended_at is not None:
        abort(404)
    if link.follower_id == follower.id:
        return link, "member"
    if g.db.get(Volunteer, link.volunteer_id).follower_id == follower.id:
        return link, "volunteer"
    abort(404)


@pages.post("/family/<int:link_id>/end")
def family_end(link_id: int):
    link, _side = _my_link(link_id)
    try:
        family.end_link(g.db, link, by=g.visitor.follower, now=g.now)
    except TimeBankError as e:
        g.db.rollback()
        return _page(str(e), status=409)
    g.db.commit()
    return redirect(url_for("pages.family_page", done="ended"))


@pages.post("/family/<int:link_id>/notices")
def family_notices(link_id: int):
    link, side = _my_link(link_id)
    if side != "volunteer":
        abort(404)  # only the volunteer chooses to hear of the member's orders
    on = request.form.get("on") == "1"
    family.set_notices(g.db, link, on, g.now)
    g.db.commit()
    return redirect(url_for("pages.family_page", done="notices_on" if on else "notices_off"))
