"""附近站点: the 3 stations or plazas nearest to a location message (or, from the menu, to
the last position we know), with distance, opening times and services.

A location message outside any form comes here after the check-in handler passed on it
(its place is 10, ours 20). Auto-reported
LOCATION events only update the follower's position, in `handlers.welcome`.
"""

from __future__ import annotations

from handlers import registry
from handlers.common import page_link
from rules.places import format_distance, nearest
from store.models.places import Place

HOW_TO_SEND = "请点输入框旁的“+”，选择“位置”，把您的位置发给我，我来找离您最近的志愿服务站和广场。"
MAX_SERVICES = 6


def place_card(place: Place, distance_m: float | None = None, number: int | None = None) -> str:
    stars = f"{place.star_rating}星" if place.kind == "plaza" and place.star_rating else ""
    head = f"{number}. " if number is not None else ""
    head += f"{place.name}（{stars}{place.kind_label}）"
    if distance_m is not None:
        head += f" {format_distance(distance_m)}"
    pad = "   " if number is not None else ""
    lines = [head]
    if place.address:
        lines.append(f"{pad}地址：{place.address}")
    # "Ask by phone" only when there is a number to call.
    lines.append(f"{pad}开放时间：{place.opening_times or ('请电话咨询' if place.phone else '暂未公布')}")
    if place.phone:
        lines.append(f"{pad}电话：{place.phone}")
    if place.services:
        more = "等" if len(place.services) > MAX_SERVICES else ""
        lines.append(f"{pad}服务：{'、'.join(place.services[:MAX_SERVICES])}{more}")
    return "\n".join(lines)


FAR_M = 50_000  # farther than this from the nearest station: not in the district


def nearest_reply(ctx, lat: float, lng: float, intro: str) -> str:
    found = nearest(ctx.session, lat, lng, 3)
    if not found:
        return "暂时还没有登记的志愿服务站点。回复“菜单”查看其他服务。"
    if found[0].distance_m > FAR_M:
        # A location far from every station is most likely not in the district at all (a
        # phone's stale position, a relative's, a typo on the map): say so before the list.
        intro = (f"您发送的位置离本区最近的志愿服务站点也有{format_distance(found[0].distance_m)}，"
                 "好像不在本区。下面是区内离这个位置最近的站点：")
    lines = [intro]
    lines += [place_card(f.place, f.distance_m, i) for i, f in enumerate(found, 1)]
    lines.append("回复“菜单”返回；发送新的位置可重新查找。")
    return "\n".join(lines) + page_link(ctx, f"/nearby?lat={lat:.6f}&lng={lng:.6f}", "在地图上查看更多站点")


@registry.command("NEARBY", "附近站点", "最近的站点", "附近的站点", "志愿服务站")
def nearby_command(ctx, message):
    f = ctx.follower
    if f.last_lat is None or f.last_lng is None:
        return HOW_TO_SEND
    return nearest_reply(ctx, f.last_lat, f.last_lng, "按您最近一次的位置，离您最近的志愿服务站点：")


@registry.on_location(order=20)
def nearby_location(ctx, message):
    loc = message.location
    if loc is None:
        return None
    f = ctx.follower
    f.last_lat, f.last_lng, f.last_location_at = loc.lat, loc.lng, ctx.now
    return nearest_reply(ctx, loc.lat, loc.lng, "离您最近的志愿服务站点：")
