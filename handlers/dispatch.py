"""Dispatch in chat.

Volunteers: 接单 / 不接 answer the offer they were pushed (the oldest; a number from 我的任务
or an order number after the word picks another — a bare digit is the main menu's); 我的任务 lists offers and accepted orders; 开始服务 and
完成服务 (a short form asking the minutes spent) run the service. Residents: 确认完成
confirms a completed order and goes on to rating (the 我的订单 form). Coordinators:
派单 <order no> shows the ranked candidates with their reasons; 派单 <order no> <volunteer
no> assigns (or reassigns). The rules are in `rules.dispatch`; this only reads and answers.
"""

from __future__ import annotations

import re
from functools import partial

from sqlalchemy import select

from dialogue.flows import Flow, Invalid, Step
from dialogue.types import Reply
from handlers import registry
from handlers.common import mask_address
from handlers.my_orders import ORDER_NUMBER, canonical, preferred_text
from rules import dispatch, volunteering
from rules import timebank_family as family
from rules.inputs import chinese_number, normalize, parse_int
from rules.orders import STATES, Actor
from rules.teams import subtree_ids
from rules.volunteering import hours_text
from store.bounded import bounded_decimal
from store.models import Offer, Order, Volunteer

NOT_VOLUNTEER = "您还不是在册志愿者。回复“注册”成为志愿者后，就可以接单服务了。"
NOT_COORDINATOR = "抱歉，派单只对队伍的协调员开放。"
ANSWER = re.compile(r"^(接单|不接单|不接|婉拒|拒绝|开始服务|完成服务|确认完成|派单|接)\s*(D\d{8}-?\d{4}.*|\d{1,2})$",
                    re.IGNORECASE)  # only with an order number or a list number after it
ACCEPT_WORDS = ("接单", "接")
DECLINE_WORDS = ("不接", "不接单", "婉拒", "拒绝")
CANDIDATES_SHOWN = 5


def _volunteer(ctx) -> Volunteer | None:
    vol = volunteering.volunteer_of(ctx.session, ctx.follower)
    return vol if vol is not None and vol.state == "active" else None


def _number(text: str) -> str | None:
    token = normalize(text).split(" ")[0] if text.strip() else ""
    return canonical(token) if ORDER_NUMBER.match(token) else None


def _order(ctx, number: str) -> Order | None:
    return dispatch.order_by_number(ctx.session, number)


def offer_text(offer: Offer) -> str:
    """An offer as the volunteer sees it before accepting: the community, never the address."""
    o = offer.order
    area = o.community.name if o.community else "社区待确认"
    return f"{o.number} {o.sub_name}，{preferred_text(o)}，{area}"


def service_text(order: Order) -> str:
    """The order as the accepted volunteer sees it: where to go and whom to call."""
    rows = [f"订单号：{order.number}", f"服务项目：{order.sub_name}", f"预约时间：{preferred_text(order)}"]
    if order.address:
        rows.append(f"地址：{order.address}")
    if order.phone:
        rows.append(f"居民电话：{order.phone}（请先打电话确认）")
    if order.description:
        rows.append(f"需求：{order.description}")
    return "\n".join(rows)


# ---- volunteers: answering offers --------------------------------------------------------

def _offer_to_answer(ctx, vol: Volunteer, rest: str) -> Order | str:
    """The order an answer is about: by order number, by its number in 我的任务, or the
    oldest offer waiting (else the latest timed-out one nobody has taken yet)."""
    index = parse_int(rest) if rest.strip() else None
    if index is not None and not _number(rest):
        rows = dispatch.tasks(ctx.session, vol)
        if not 1 <= index <= len(rows):
            return f"序号 {index} 不在“我的任务”列表里，请回复“我的任务”查看。"
        return rows[index - 1].order
    number = _number(rest)
    if number:
        order = _order(ctx, number)
        return order if order is not None else f"没有找到工单 {number}。"
    offers = dispatch.open_offers(ctx.session, vol)
    if offers:
        return offers[0].order
    # A late answer to an offer that timed out may still take the order (see rules.dispatch).
    late = ctx.session.scalar(select(Offer).where(Offer.volunteer_id == vol.id, Offer.state == "expired")
                              .order_by(Offer.id.desc()).limit(1))
    if late is not None and late.order.status in dispatch.ACCEPTING:
        return late.order
    return "您现在没有待答复的派单。回复“我的任务”查看您的工单。"


def _answer(ctx, rest: str, act, done) -> str:
    """Answer an offer with `act(session, volunteer, order, now)`; `done(order)` says so."""
    vol = _volunteer(ctx)
    if vol is None:
        return NOT_VOLUNTEER
    order = _offer_to_answer(ctx, vol, rest)
    if isinstance(order, str):
        return order
    try:
        act(ctx.session, vol, order, ctx.now)
    except dispatch.DispatchError as e:
        return e.message
    return done(order)


def accept(ctx, rest: str = ""):
    return _answer(ctx, rest, dispatch.accept, lambda order: (
        f"接单成功，谢谢您！\n{service_text(order)}\n到达后回复“开始服务”，服务结束后回复“完成服务”登记时长。"))


def decline(ctx, rest: str = ""):
    return _answer(ctx, rest, partial(dispatch.decline, settings=ctx.settings.dispatch), lambda order: (
        f"好的，已婉拒工单 {order.number}，我们会安排其他志愿者。感谢您的回复！"))


@registry.command("DISPATCH_ACCEPT", *ACCEPT_WORDS)
def accept_word(ctx, message):
    return accept(ctx)


@registry.command("DISPATCH_DECLINE", *DECLINE_WORDS)
def decline_word(ctx, message):
    return decline(ctx)


# ---- volunteers: 我的任务 ------------------------------------------------------------------

@registry.command("MY_TASKS", "我的任务", "我的工单", "任务")
def my_tasks(ctx, message):
    vol = volunteering.volunteer_of(ctx.session, ctx.follower)
    if vol is None:
        return NOT_VOLUNTEER
    rows = dispatch.tasks(ctx.session, vol)
    if not rows:
        return "您现在没有工单。有居民需要帮助时，我们会推送给您。"
    lines = ["【我的任务】"]
    for i, offer in enumerate(rows, 1):
        if offer.state == "offered":
            lines.append(f"{i}. 待答复：{offer_text(offer)}")
        else:
            o = offer.order
            lines.append(f"{i}. {o.number} {o.sub_name}【{STATES[o.status]}】{preferred_text(o)}")
    if any(o.state == "offered" for o in rows):
        lines.append("回复“接单”接下最早的派单，“不接”婉拒；多个时在后面加序号，如“接单 2”。")
    if any(o.state == "accepted" and o.order.status == "accepted" for o in rows):
        lines.append("到达后回复“开始服务”。")
    if any(o.state == "accepted" and o.order.status == "in_service" for o in rows):
        lines.append("服务结束后回复“完成服务”。")
    return "\n".join(lines)


# ---- volunteers: the service ---------------------------------------------------------------

def _mine(ctx, vol: Volunteer, status: str) -> list[Order]:
    return [o.order for o in dispatch.tasks(ctx.session, vol, limit=20)
            if o.state == "accepted" and o.order.status == status]


def start_service(ctx, rest: str = ""):
    vol = _volunteer(ctx)
    if vol is None:
        return NOT_VOLUNTEER
    number = _number(rest)
    mine = _mine(ctx, vol, "accepted")
    if number:
        mine = [o for o in mine if o.number == number] or [_order(ctx, number)]
    if not mine or mine[0] is None:
        return "您没有待开始的工单。回复“我的任务”查看。"
    if len(mine) > 1:
        return "您有多个待开始的工单，请回复“开始服务 订单号”：\n" + "\n".join(f"· {o.number} {o.sub_name}" for o in mine)
    try:
        dispatch.start_service(ctx.session, vol, mine[0], ctx.now)
    except dispatch.DispatchError as e:
        return e.message
    return f"已开始服务：{mine[0].number} {mine[0].sub_name}。服务结束后回复“完成服务”。"


_HOURS = re.compile(r"([\d.]+|[一二两三四五六七八九十]+)?\s*个?\s*(半)?\s*(?:小时|钟头|h)")
_MINUTES = re.compile(r"([\d]+|[一二两三四五六七八九十百]+)\s*(?:分钟|分|min)")


def _amount(word: str | None, most: float) -> float | None:
    """A count of hours or minutes in digits ("1.5") or Chinese numerals ("两"); 0 when
    none was written, None when it cannot be read or is more than `most`."""
    if not word:
        return 0
    value = chinese_number(word)
    if value is None:
        value = bounded_decimal(word, 0, most)
    return value if value is not None and value <= most else None


def read_minutes(ctx, message, answers) -> int:
    """90, 90分钟, 1.5小时, 一个半小时, 两小时十分, 半小时 → minutes."""
    text = normalize(message.text)
    hours, mins = _HOURS.search(text), _MINUTES.search(text)
    total = None
    if hours or mins:
        h = _amount(hours.group(1), 24) if hours else 0
        m = _amount(mins.group(1), 24 * 60) if mins else 0
        if h is not None and m is not None:
            total = round((h + (0.5 if hours and hours.group(2) else 0)) * 60) + m
    else:
        total = parse_int(text)
    if not total or not 1 <= total <= 24 * 60:
        raise Invalid("请回复服务用了多少分钟，例如“90”或“1.5小时”（路上的时间不算）。")
    return total


def ask_minutes(ctx, answers) -> str:
    order = _order(ctx, answers["order"])
    cap = dispatch.minutes_cap(order, ctx.settings.dispatch or dispatch.Settings())
    return (f"工单 {order.number} {order.sub_name}：这次服务用了多少分钟？（不含路上时间）\n"
            f"这项服务一般约{order.minutes}分钟，超过{cap}分钟的部分需协调员核准。")


def start_finish(ctx, params):
    vol = _volunteer(ctx)
    if vol is None:
        return NOT_VOLUNTEER
    mine = _mine(ctx, vol, "in_service") + _mine(ctx, vol, "accepted")
    number = params.get("number")
    if number:
        mine = [o for o in mine if o.number == number]
    if not mine:
        return "您没有进行中的工单。回复“我的任务”查看。"
    if len(mine) > 1:
        return "您有多个工单，请回复“完成服务 订单号”：\n" + "\n".join(f"· {o.number} {o.sub_name}" for o in mine)
    return {"order": mine[0].number}


def finish_done(ctx, answers):
    vol = _volunteer(ctx)
    order = _order(ctx, answers["order"])
    if vol is None or order is None:
        return "没有找到这个工单。"
    try:
        offer = dispatch.complete_service(ctx.session, vol, order, answers["minutes"], ctx.now,
                                          settings=ctx.settings.dispatch)
    except dispatch.DispatchError as e:
        return e.message
    lines = [f"已登记：{order.number} 服务{hours_text(offer.claimed_minutes)}。"]
    if offer.claimed_minutes > offer.minutes:
        lines.append(f"超过这项服务的上限，先按{hours_text(offer.minutes)}记录；超出部分需协调员核准（记录已标注）。")
    lines.append("居民确认后，时长会提交审核，通过后记入“我的时长”。谢谢您的服务！")
    return "\n".join(lines)


registry.flow(Flow(
    name="finish_service",
    title="完成服务",
    confirm=False,
    start=start_finish,
    done=finish_done,
    help="回复服务用了多少分钟，例如“90”或“1.5小时”。",
    steps=[Step("minutes", ask_minutes, label="服务时长", parse=read_minutes)],
))


# ---- residents: confirming ----------------------------------------------------------------

def confirm_done(ctx, rest: str = ""):
    """The resident confirms their order; a volunteer who linked them as family and chose
    their notices may confirm it for them (rules.timebank_family.watched_members)."""
    number = _number(rest)
    whose = [ctx.follower.id, *family.watched_members(ctx.session, ctx.follower)]
    stmt = select(Order).where(Order.follower_id.in_(whose), Order.status == "completed")
    if number:
        stmt = stmt.where(Order.number == number)
    # Their own order first, then the family's, the newest of each.
    order = ctx.session.scalar(stmt.order_by((Order.follower_id != ctx.follower.id), Order.id.desc()).limit(1))
    if order is None:
        return "您没有等待确认的订单。回复“我的订单”查看进度。"
    own = order.follower_id == ctx.follower.id
    try:
        dispatch.confirm(ctx.session, order, actor=Actor("resident", ctx.follower.id), now=ctx.now,
                         reason="居民确认完成" if own else "家人代为确认完成")
    except dispatch.DispatchError as e:
        return e.message
    if not own:
        return f"已代家人确认订单 {order.number}（{order.sub_name}）服务完成，谢谢！"
    rating = ctx.start("my_orders", number=order.number, action="rate")
    return Reply(f"已确认订单 {order.number} 服务完成，谢谢！\n{rating.text}")


# ---- coordinators: 派单 ---------------------------------------------------------------------

def candidates_text(ctx, coord, order: Order) -> str:
    pool = list(ctx.session.scalars(select(Volunteer).where(
        Volunteer.state == "active", Volunteer.team_id.in_(subtree_ids(ctx.session, coord.team)))))
    ranked = dispatch.rank(ctx.session, order, ctx.now, pool)[:CANDIDATES_SHOWN]
    area = order.community.name if order.community else mask_address(order.address)
    lines = [f"工单 {order.number} {order.sub_name}（{area}）【{STATES[order.status]}】"]
    if not ranked:
        lines.append("您的队伍里没有具备该技能的在册志愿者。")
        return "\n".join(lines)
    lines.append("推荐志愿者（按得分）：")
    for c in ranked:
        v = c.volunteer
        note = f"［{c.note}］" if c.note else ""
        lines.append(f"· {v.name} {v.number} {c.score}分{note}：{'；'.join(c.reasons[1:])}")
    lines.append(f"回复“派单 {order.number} 志愿者编号”派单。")
    return "\n".join(lines)


def assign(ctx, rest: str):
    coord = volunteering.coordinator_for(ctx.session, ctx.follower)
    if coord is None:
        return NOT_COORDINATOR
    parts = normalize(rest).split(" ")
    number = _number(parts[0]) if parts and parts[0] else None
    if number is None:
        return "请回复“派单 订单号”查看推荐志愿者，或“派单 订单号 志愿者编号”直接派单。"
    order = _order(ctx, number)
    if order is None:
        return f"没有找到工单 {number}。"
    if len(parts) < 2:
        return candidates_text(ctx, coord, order)
    vol = ctx.session.scalar(select(Volunteer).where(Volunteer.number == parts[1].upper()))
    if vol is None:
        return f"没有找到志愿者 {parts[1]}。"
    try:
        dispatch.assign(ctx.session, order, vol, ctx.now, coordinator=coord, reason=" ".join(parts[2:]),
                        settings=ctx.settings.dispatch)
    except dispatch.DispatchError as e:
        return e.message
    return f"已将工单 {order.number} 派给 {vol.name}（{vol.number}），等待其回复接单。"


# ---- words with an order number after them ------------------------------------------------

ACTIONS = {
    **{w: accept for w in ACCEPT_WORDS}, **{w: decline for w in DECLINE_WORDS},
    "开始服务": start_service, "确认完成": confirm_done, "派单": assign,
    "完成服务": lambda ctx, rest: ctx.start("finish_service", number=_number(rest)),
}


@registry.command("DISPATCH_START", "开始服务")
def start_word(ctx, message):
    return start_service(ctx)


@registry.command("DISPATCH_FINISH", "完成服务")
def finish_word(ctx, message):
    return ctx.start("finish_service")


@registry.command("DISPATCH_CONFIRM", "确认完成", "确认服务完成")
def confirm_word(ctx, message):
    return confirm_done(ctx)


@registry.command("DISPATCH_ASSIGN", "派单")
def assign_word(ctx, message):
    return assign(ctx, "")


@registry.fallback(order=10)  # before the need search: "接单 D2026…" is a volunteer's reply
def word_with_number(ctx, message):
    """接单 D20261128-0001, 派单 D20261128-0001 KW2026000001, …"""
    m = ANSWER.match(normalize(message.text))
    if not m or not m.group(2):
        return None
    return ACTIONS[m.group(1)](ctx, m.group(2))
