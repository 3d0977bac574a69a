"""志愿巴士: the next visits (a list and a map of the communities visited), and subscribing
to or unsubscribing from a community's visits (`rules.bus.subscribe` / `unsubscribe`, the
same rows the chat and the station QR codes write)."""

from __future__ import annotations

from flask import abort, g, redirect, request, url_for
from sqlalchemy import select

from pages.mapdraw import Map
from pages.views.notices import BUS, groups_for
from pages.web import pages, render, services
from rules import bus, followers
from store.models import Community

VISITS = 20
NOTES = {"subscribed": "已订阅，巴士每次到访前会通知您。", "unsubscribed": "已取消订阅。",
         "already": "您已经订阅了这个社区。"}


@pages.get("/bus")
def bus_page():
    follower = g.visitor.follower
    mine = bus.subscribed_communities(g.db, follower) if follower is not None else []
    visits = bus.upcoming(g.db, g.now, limit=VISITS)
    mine_ids = {c.id for c in mine}
    located = [v for v in visits if v.community.lat is not None and v.community.lng is not None]
    view = Map([(v.community.lat, v.community.lng) for v in located])
    markers, seen = [], set()
    for v in located:
        if v.community_id not in seen:
            seen.add(v.community_id)
            markers.append(view.marker(v.community.lat, v.community.lng, v.community.name, "community"))
    communities = g.db.scalars(select(Community).order_by(Community.street, Community.name)).all()
    return render("bus.html", visits=visits, mine=mine, mine_ids=mine_ids, communities=communities,
                  when=bus.when_text, names=bus.service_names, markers=markers,
                  tiles=view.tiles(services().config.pages_map_tiles), note=NOTES.get(request.args.get("done")),
                  consent_template=_bus_consent())


def _bus_consent() -> str:
    """The bus notices' template ids for WeChat's consent button, unless all are granted."""
    (group,) = groups_for(g.db, g.visitor.openid, services().config.template_ids or {}, groups=(BUS,))
    return "" if group["granted"] == group["count"] else group["templates"]


def _community() -> Community:
    try:
        community = g.db.get(Community, int(request.form.get("community", "")))
    except ValueError:
        community = None
    if community is None:
        abort(404)
    return community


@pages.post("/bus/subscribe")
def bus_subscribe():
    community = _community()
    follower = followers.follower(g.db, g.visitor.openid, g.now)
    added = bus.subscribe(g.db, follower, community, source="page")
    g.db.commit()
    return redirect(url_for("pages.bus_page", done="subscribed" if added else "already"))


@pages.post("/bus/unsubscribe")
def bus_unsubscribe():
    community = _community()
    follower = g.visitor.follower
    if follower is None or not bus.unsubscribe(g.db, follower, community.id):
        abort(404)
    g.db.commit()
    return redirect(url_for("pages.bus_page", done="unsubscribed"))
