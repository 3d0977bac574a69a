"""订阅通知: the notices a follower may ask to hear, each with WeChat's own consent button.

WeChat lets only its open tag (`wx-open-subscribe`) ask for consent to subscribe notices; a
tap is reported to the webhook as a subscribe event, which records the consent
(`rules.notices.record_events`). This page lists the subscribe kinds of `menus/templates.yaml`
in groups a resident understands, says which they already receive, and carries one open tag
per group (the tag takes several template ids). Outside WeChat (a plain browser) it says to
open it in WeChat. The chat links here (NOTICES_URL, by default this page).
"""

from __future__ import annotations

from flask import g

from pages.web import pages, render, services
from rules import notices

# Groups of subscribe kinds, as a resident thinks of them (kinds sharing a template appear once).
GROUPS = (
    ("志愿巴士", "巴士到访、变更和取消", ("bus_visit", "bus_change", "bus_cancel")),
    ("活动提醒", "报名的活动开始前提醒、变更和取消", ("shift_reminder", "shift_changed", "activity_cancelled")),
    ("通知公告", "区志愿服务大队发布的通知和社区问卷", ("announcement", "survey_invite")),
    ("志愿者", "派给我的服务工单、缺人时的召集", ("order_offer", "callout")),
)


def groups_for(session, openid: str, template_ids: dict) -> list[dict]:
    """Each group with its notice templates and whether this follower may be sent each."""
    catalog = notices.catalog_for(template_ids)
    out = []
    for title, what, kinds in GROUPS:
        templates: dict[str, str] = {}
        for name in kinds:
            if name in catalog.kinds and catalog.channel(name) == "subscribe":
                kind = catalog.kind(name)
                templates.setdefault(kind.template_id, kind.consent)
        granted = [tid for tid, consent in templates.items() if notices.may_send(session, openid, tid, consent)]
        out.append({"title": title, "what": what, "templates": ",".join(templates), "count": len(templates),
                    "granted": len(granted)})
    return out


@pages.get("/notices")
def notices_page():
    config = services().config
    return render("notices.html", groups=groups_for(g.db, g.visitor.openid, config.template_ids or {}))
