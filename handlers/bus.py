"""志愿巴士: the next visits of the bus to the follower's communities, and subscribing to
them (several communities allowed). Following through a community's QR code ("cm:<code>")
subscribes the new follower to that community's visits.

Visits themselves are scheduled by coordinators (`volbot bus schedule|change|cancel`);
each announcement is pushed once to every subscriber by the push pipeline.
"""

from __future__ import annotations

from sqlalchemy import select

from dialogue import Choice, Flow, Invalid, Step
from dialogue import types as t
from handlers import registry
from handlers.common import page_link
from rules import bus, notices
from store.models import Community

MAX_LISTED = 5


def my_community_ids(ctx) -> list[int]:
    ids = [c.id for c in bus.subscribed_communities(ctx.session, ctx.follower)]
    if ctx.follower.community_id and ctx.follower.community_id not in ids:
        ids.append(ctx.follower.community_id)
    return ids


def visit_lines(visits) -> list[str]:
    lines = []
    for i, v in enumerate(visits, start=1):
        lines.append(f"{i}. {v.community.name} {bus.when_text(v)}")
        lines.append(f"   地点：{v.place}")
        lines.append(f"   服务：{bus.service_names(v.services)}")
    return lines


@registry.command("BUS", "巴士", "志愿巴士", "巴士时间", "巴士安排")
def bus_schedule(ctx, message):
    mine = my_community_ids(ctx)
    subscribed = bus.subscribed_communities(ctx.session, ctx.follower)
    visits = bus.upcoming(ctx.session, ctx.now, mine, MAX_LISTED) if mine else []
    lines = ["【志愿巴士】"]
    if visits:
        lines.append("您关注的社区近期安排：")
        lines += visit_lines(visits)
    else:
        others = bus.upcoming(ctx.session, ctx.now, None, MAX_LISTED)
        if mine:
            lines.append("您关注的社区近期还没有巴士安排。")
        if others:
            lines.append("全区近期安排：")
            lines += visit_lines(others)
        elif not mine:
            lines.append("近期还没有巴士安排。")
    if subscribed:
        lines.append("已订阅：" + "、".join(c.name for c in subscribed) + "（到访、变更时会通知您）")
        lines.append("回复“订阅巴士”增加社区，“退订巴士”取消。")
    else:
        lines.append("回复“订阅巴士”选择社区，巴士到访和变更时第一时间通知您。")
    return "\n".join(lines) + page_link(ctx, "/bus", "查看全部安排和地图")


# ---- subscribe / unsubscribe --------------------------------------------------------------------

def community_choices(ctx, answers) -> list[Choice]:
    """Every community, the follower's own first, then those with a visit coming."""
    communities = list(ctx.session.scalars(select(Community).order_by(Community.name)))
    taken = set(my_subscribed_ids(ctx))
    coming = {v.community_id for v in bus.upcoming(ctx.session, ctx.now, None, 50)}
    own = ctx.follower.community_id

    def rank(c):
        return (c.id != own, c.id not in coming, c.name)

    return [Choice(c.id, c.name, aliases=(c.code,), note="已订阅" if c.id in taken else "")
            for c in sorted(communities, key=rank)]


def my_subscribed_ids(ctx) -> list[int]:
    return [c.id for c in bus.subscribed_communities(ctx.session, ctx.follower)]


def start_subscribe(ctx, params):
    if not ctx.session.scalar(select(Community.id).limit(1)):
        return "暂时还没有开通巴士服务的社区。"
    return None


def subscribed(ctx, answers):
    community = ctx.session.get(Community, answers["community"])
    if not bus.subscribe(ctx.session, ctx.follower, community):
        return f"您已订阅“{community.name}”的志愿巴士通知。回复“巴士”查看安排。"
    visits = bus.upcoming(ctx.session, ctx.now, [community.id], 1)
    nxt = f"\n下一次：{bus.when_text(visits[0])}，{visits[0].place}" if visits else ""
    line = notices.offer(ctx.session, ctx.openid, BUS_NOTICES, "巴士到访和变更通知", ctx.settings)
    return f"已订阅“{community.name}”的志愿巴士通知，巴士到访和变更时会通知您。{nxt}" + (f"\n{line}" if line else "")


# The notices a bus subscriber hears (menus/templates.yaml): offered when they subscribe.
BUS_NOTICES = notices.TOPICS["bus"].kinds


registry.flow(Flow(
    name="bus_subscribe",
    title="订阅志愿巴士",
    confirm=False,
    start=start_subscribe,
    steps=[Step("community", "请选择要订阅的社区（回复序号或社区名称）：", label="社区",
                choices=community_choices, help="订阅后，巴士到访您选择的社区、时间地点变更或取消时都会通知您。可以订阅多个社区。")],
    done=subscribed,
))


def subscription_choices(ctx, answers) -> list[Choice]:
    return [Choice(c.id, c.name, aliases=(c.code,)) for c in bus.subscribed_communities(ctx.session, ctx.follower)]


def start_unsubscribe(ctx, params):
    if not my_subscribed_ids(ctx):
        return "您还没有订阅任何社区的志愿巴士。回复“订阅巴士”选择社区。"
    return None


def unsubscribed(ctx, answers):
    community = ctx.session.get(Community, answers["community"])
    bus.unsubscribe(ctx.session, ctx.follower, community.id)
    return f"已取消“{community.name}”的志愿巴士通知。"


def only_mine(ctx, value, answers):
    if value not in my_subscribed_ids(ctx):
        raise Invalid("请选择已订阅的社区。")
    return value


registry.flow(Flow(
    name="bus_unsubscribe",
    title="退订志愿巴士",
    confirm=False,
    start=start_unsubscribe,
    steps=[Step("community", "请选择要取消订阅的社区：", label="社区", choices=subscription_choices, parse=only_mine)],
    done=unsubscribed,
))


@registry.command("BUS_SUBSCRIBE", "订阅巴士", "巴士订阅", "订阅志愿巴士", "订阅社区")
def subscribe_command(ctx, message):
    return ctx.start("bus_subscribe")


@registry.command("BUS_UNSUBSCRIBE", "退订巴士", "取消巴士订阅", "退订志愿巴士", "退订社区")
def unsubscribe_command(ctx, message):
    return ctx.start("bus_unsubscribe")


# ---- following through a community's QR code -------------------------------------------------------

@registry.on_scene("cm:")
def community_scene(ctx, message):
    """A new follower from a community's QR code hears about that community's bus."""
    if message.event != t.SUBSCRIBE:
        return None  # a scan while following only binds the community (handlers/welcome.py)
    community = ctx.session.scalar(select(Community).where(Community.code == message.key[3:]))
    if community is None:
        return None
    bus.subscribe(ctx.session, ctx.follower, community, source="qr")
    line = notices.offer(ctx.session, ctx.openid, BUS_NOTICES, "巴士到访和变更通知", ctx.settings)
    return f"已为您订阅“{community.name}”的志愿巴士通知，回复“巴士”查看到访安排。" + (f"\n{line}" if line else "")


@registry.eraser
def erase_bus(ctx, follower):
    bus.erase_subscriptions(ctx.session, follower)
