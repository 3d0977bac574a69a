"""附近: stations and plazas nearest to where the user is (from `wx.getLocation` inside
WeChat, the browser's location elsewhere, or a community picked from the list), with
distance, opening hours and services, on an SVG map (`pages.mapdraw`)."""

from __future__ import annotations

from flask import g, request
from sqlalchemy import select

from pages.mapdraw import Map
from pages.web import pages, render, services
from rules import places as place_rules
from store.models import Community

SHOWN = 8
KIND_LABELS = {"station": "志愿服务站", "plaza": "志愿服务广场"}


def _where() -> tuple[float, float, str] | None:
    """(lat, lng, what it is) from the request, else what the follower sent last."""
    try:
        lat, lng = float(request.args["lat"]), float(request.args["lng"])
        if -90 <= lat <= 90 and -180 <= lng <= 180:
            return lat, lng, "您的位置"
    except (KeyError, ValueError):
        pass
    try:
        community = g.db.get(Community, int(request.args.get("community", "")))
    except ValueError:
        community = None
    if community is not None and community.lat is not None:
        return community.lat, community.lng, community.name
    follower = g.visitor.follower
    if follower is not None and follower.last_lat is not None:
        return follower.last_lat, follower.last_lng, "您上次发送的位置"
    if follower is not None and follower.community is not None and follower.community.lat is not None:
        return follower.community.lat, follower.community.lng, follower.community.name
    return None


@pages.get("/nearby")
def nearby():
    where = _where()
    found, markers, tiles = [], [], []
    if where is not None:
        lat, lng, _ = where
        found = place_rules.nearest(g.db, lat, lng, n=SHOWN)
        view = Map([(lat, lng)] + [(f.place.lat, f.place.lng) for f in found])
        markers = [view.marker(f.place.lat, f.place.lng, str(i), f.place.kind) for i, f in enumerate(found, 1)]
        markers.append(view.marker(lat, lng, "我", "me"))
        tiles = view.tiles(services().config.pages_map_tiles)
    communities = g.db.scalars(select(Community).where(Community.lat.is_not(None))
                               .order_by(Community.street, Community.name)).all()
    return render("nearby.html", where=where, found=found, markers=markers, tiles=tiles, communities=communities,
                  kinds=KIND_LABELS, distance=place_rules.format_distance)
