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

BUS = notices.TOPICS["bus"]
GROUPS = tuple(notices.TOPICS.values())


def group_state(session, openid: str, catalog, topic: notices.Topic) -> dict:
    """One topic: its notice templates (comma-separated, as the open tag takes them) and how
    many of them this follower may already be sent."""
    templates: dict[str, str] = {}
    for name in topic.kinds:
        if name in catalog.kinds and catalog.channel(name) == "subscribe":
            kind = catalog.kind(name)
            templates.setdefault(kind.template_id, kind.consent)
    granted = sum(notices.may_send(session, openid, tid, consent) for tid, consent in templates.items())
    return {"title": topic.title, "what": topic.what, "templates": ",".join(templates), "count": len(templates),
            "granted": granted}


def groups_for(session, openid: str, template_ids: dict, groups=GROUPS) -> list[dict]:
    """Each of `groups` with its notice templates and what this follower already receives."""
    catalog = notices.catalog_for(template_ids)
    return [group_state(session, openid, catalog, topic) for topic in groups]


@pages.get("/notices")
def notices_page():
    config = services().config
    return render("notices.html", groups=groups_for(g.db, g.visitor.openid, config.template_ids or {}))
