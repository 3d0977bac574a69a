"""签到/签退: scanning an activity's (`act:<id>`) or a station's (`st:<id>`) QR code, or
sending a location within the place's radius, checks a volunteer in, and the next time out.

The rules (shift window, grace, forgotten check-outs, overlaps) are in
`rules.activities.check`; this module picks the target and words the answer. A station
code scanned by someone with no shift there shows the station (and binds a resident to
its community). A location message is a check-in only for a volunteer with a shift to
check into or out of now; otherwise this handler passes (None) and "near me" answers.
"""

from __future__ import annotations

from dataclasses import replace

from handlers import registry
from handlers.activities import active_volunteer, duration_text, shift_title
from rules import activities as acts
from rules.places import format_distance, haversine_m
from store.bounded import prefixed_id
from store.models.activities import Activity
from store.models.places import Place

ACTIVITY_SCENE, STATION_SCENE = "act:", "st:"  # QR scenes: "act:<activity id>", "st:<place id>"


def _clock(dt) -> str:
    return f"{dt.astimezone(acts.CHINA):%H:%M}"


def describe(result: acts.CheckResult) -> str:
    """The answer to a check-in or check-out attempt."""
    shift = result.shift
    name = f"“{shift_title(shift)}”" if shift is not None else ""
    outcome = result.outcome
    if outcome == "checked_in":
        lines = [f"签到成功！{name}", f"时段：{acts.when_label(shift.starts_at, shift.ends_at)}",
                 f"签到时间：{_clock(result.attendance.checked_in_at)}"]
        if result.attendance.checked_in_at < shift.starts_at:
            lines.append(f"时长从活动开始（{_clock(shift.starts_at)}）时计算。")
        lines.append("结束时请再扫码（或发送位置）签退。")
        return "\n".join(lines)
    if outcome == "checked_out":
        if result.refused == "overlap":
            return (f"已签退{name}。这段时间与您已有的服务记录重叠，不重复计算时长。"
                    "如有疑问请联系活动负责人。")
        if result.refused == "outside_window":
            return f"已签退{name}。签到和签退都不在活动时段内，没有计入时长。"
        return (f"签退成功！{name}\n本次服务时长：{duration_text(result.minutes)}"
                "（只计活动时段内的时间），已提交队伍审核，回复“我的时长”可查看。")
    if outcome == "repeat":
        return f"您已于{_clock(result.attendance.checked_in_at)}签到{name}，无需重复扫码。活动结束时再扫码签退。"
    if outcome == "not_started":
        return f"您已签到{name}。活动{_clock(shift.starts_at)}开始，结束时再扫码签退。"
    if outcome == "done":
        att = result.attendance
        if "no_checkout" in (att.flags or []):
            return (f"您在{name}签到后没有签退，系统已按时段结束时间签退，"
                    f"时长{duration_text(att.minutes or 0)}待负责人审核。")
        return f"您已完成{name}的签到和签退（时长{duration_text(att.minutes or 0)}），不重复计算。"
    if outcome == "open_elsewhere":
        return f"您在{name}的签到还没有签退，请先在那里扫码签退，再签到新的活动。"
    if outcome == "too_early":
        return (f"您报名的{name}{_clock(shift.starts_at)}开始，"
                f"请在开始前{int(acts.EARLY_CHECKIN.total_seconds() // 60)}分钟内签到。")
    return "您没有报名这里正在进行的活动时段，无法签到。回复“活动”查看可报名的活动。"


@registry.on_scene(ACTIVITY_SCENE)
def activity_scene(ctx, message):
    activity_id = prefixed_id(message.key, ACTIVITY_SCENE)
    activity = ctx.session.get(Activity, activity_id) if activity_id else None
    if activity is None:
        return "这个二维码对应的活动不存在或已下线。"
    vol, refusal = active_volunteer(ctx)
    if vol is None:
        return f"这是志愿活动“{activity.title}”的签到码。{refusal}"
    return describe(acts.check(ctx.session, vol, ctx.now, activity_id=activity.id, method="qr"))


@registry.on_scene(STATION_SCENE)
def station_scene(ctx, message):
    from handlers.nearby import place_card  # here, so nearby's location handler registers after ours

    place_id = prefixed_id(message.key, STATION_SCENE)
    place = ctx.session.get(Place, place_id) if place_id else None
    if place is None or not place.active:
        return "这个二维码对应的站点不存在或已停用。"
    vol, _ = active_volunteer(ctx)
    if vol is not None:
        result = acts.check(ctx.session, vol, ctx.now, place_id=place.id, method="qr")
        if result.outcome != "not_signed":
            return describe(result)
    lines = []
    if place.community_id is not None and ctx.follower.community_id != place.community_id:
        ctx.follower.community_id = place.community_id
        lines.append(f"已为您关联到{place.community.name}。")
    lines.append(place_card(place))
    return "\n".join(lines)


@registry.on_location(order=10)  # a check-in at a shift's place comes before the nearby list
def location_checkin(ctx, message):
    """Check in or out by location; None when the sender has nothing to check into now."""
    loc = message.location
    if loc is None:
        return None
    vol, _ = active_volunteer(ctx)
    if vol is None:
        return None
    activity, leaving = acts.location_target(ctx.session, vol, ctx.now)
    if activity is None:
        return None
    if activity.lat is None or activity.lng is None:
        return f"“{activity.title}”没有设置签到位置，请扫描现场的二维码{'签退' if leaving else '签到'}。"
    distance = haversine_m(loc.lat, loc.lng, activity.lat, activity.lng)
    if distance > activity.radius_m:
        return (f"您距离“{activity.title}”的地点{format_distance(distance)}，超出{activity.radius_m}米的"
                f"{'签退' if leaving else '签到'}范围，未能{'签退' if leaving else '签到'}。"
                "请到达现场后再发送位置，或扫描现场二维码。")
    return describe(acts.check(ctx.session, vol, ctx.now, activity_id=activity.id, method="location",
                               distance_m=round(distance)))


@registry.command("SCAN_CHECKIN", "扫码签到", "签到", "签退")
def scan_checkin(ctx, message):
    """The menu's scan button (scancode_waitmsg): its result is a scene printed as plain
    text by `volbot qr --local`; WeChat's own parametric codes arrive as SCAN events."""
    scene = (message.text or "").strip() if message.is_event else ""
    handler = registry.scene_handler(scene) if scene.startswith((ACTIVITY_SCENE, STATION_SCENE)) else None
    if handler is None:
        return "请扫描活动现场或志愿服务站张贴的签到二维码（用微信“扫一扫”即可）；也可以在现场发送您的位置签到。"
    return handler(ctx, replace(message, key=scene))
