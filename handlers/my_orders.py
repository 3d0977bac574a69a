"""我的订单: a resident's latest orders, one order's details and history, cancelling one
that has not started, rating one that is done.

The form `my_orders`: pick an order (by number in the list, or its order number) → what to
do with it (only what its status allows) → a reason (cancel) or stars and a comment (rate).
Phones and addresses are masked wherever an order is shown.
"""

from __future__ import annotations

import re

from dialogue.flows import Choice, Flow, Invalid, Step
from dialogue.types import Message
from handlers import registry
from handlers.common import mask_address, mask_phone, page_link
from handlers.parsing import When
from rules import dispatch
from rules import orders as store
from rules.inputs import as_written, normalize
from store.models import Order

ORDER_NUMBER = re.compile(r"^D\d{8}-?\d{4}$", re.IGNORECASE)
CANCEL_REASONS = ("问题已经解决了", "时间不合适", "找到别的帮助了", "暂时不需要了")
STARS = {1: "很不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "非常满意"}
ACTORS = {"resident": "本人", "volunteer": "志愿者", "coordinator": "工作人员", "system": "系统"}


def canonical(number: str) -> str:
    n = normalize(number).upper().replace("-", "")
    return f"{n[:9]}-{n[9:]}"


def _order(ctx, number: str) -> Order | None:
    return store.order_of(ctx.session, ctx.follower.id, number)


def preferred_text(order: Order) -> str:
    at = order.preferred_at.astimezone(store.CHINA) if order.preferred_at else None
    when = When(order.preferred_date, order.preferred_slot, at.hour if at else None, at.minute if at else 0)
    return when.label()


def line(order: Order) -> str:
    """One row of the list: number, service and status; no personal data at all."""
    return f"{order.number} {order.sub_name}【{store.STATES[order.status]}】"


def detail(order: Order) -> str:
    rows = [
        f"订单号：{order.number}",
        f"服务项目：{order.sub_name}（{order.category_name}）",
        f"状态：{store.STATES[order.status]}",
        f"预约时间：{preferred_text(order)}",
    ]
    if order.address:
        rows.append(f"地址：{mask_address(order.address)}")
    if order.phone:
        rows.append(f"电话：{mask_phone(order.phone)}")
    if order.rating:
        rows.append(f"评价：{'★' * order.rating}{'☆' * (5 - order.rating)}")
    rows.append("进度：")
    for e in order.events[-5:]:
        at = e.at.astimezone(store.CHINA)
        who = ACTORS.get(e.actor_kind, "")
        why = f"（{e.reason}）" if e.reason else ""
        rows.append(f"· {at:%m-%d %H:%M} {store.STATES[e.to_status]} {who}{why}")
    return "\n".join(rows)


def actions(order: Order | None) -> list[Choice]:
    if order is None:
        return []
    out = []
    if order.status in store.CANCELLABLE:
        out.append(Choice("cancel", "取消预约"))
    if order.status in store.RATABLE:
        out.append(Choice("rate", "评价服务"))
    if order.status == "completed":  # confirming without rating; rating confirms too
        out.append(Choice("confirm", "确认服务完成（暂不评价）"))
    return out


# ---- steps --------------------------------------------------------------------------------

def pick_prompt(ctx, answers):
    """The list's question; with the pages configured, a link to every order on the web."""
    return "您最近的订单，回复序号查看详情：" + page_link(ctx, "/orders", "全部订单和进度（网页）")


def pick_choices(ctx, answers):
    return [Choice(o.number, line(o)) for o in store.orders_of(ctx.session, ctx.follower.id)]


def read_pick(ctx, arg, answers):
    if not isinstance(arg, Message):
        return arg
    text = normalize(arg.text)
    if ORDER_NUMBER.match(text) and _order(ctx, canonical(text)) is not None:
        return canonical(text)
    raise Invalid("请回复列表里的序号，或完整的订单号（如 D20261128-0001）。")


def ask_action(ctx, answers):
    order = _order(ctx, answers["pick"])
    return (detail(order) if order else "") + "\n\n请回复序号："


def read_reason(ctx, arg, answers):
    if not isinstance(arg, Message):
        return arg
    text = as_written(arg.text)
    if not 2 <= len(text) <= 100:
        raise Invalid("请回复序号，或用几个字写下原因（100字以内）。")
    return text


def read_comment(ctx, arg, answers):
    text = as_written(arg.text)
    if len(text) > 200:
        raise Invalid("评价请控制在200字以内。")
    return text


def start_my_orders(ctx, params):
    if not store.orders_of(ctx.session, ctx.follower.id, limit=1):
        return "您还没有预约过服务。回复“预约”开始预约志愿服务。"
    if params.get("number"):
        answers = {"pick": params["number"]}
        if params.get("action"):  # e.g. rating right after 确认完成
            answers["action"] = params["action"]
        return answers
    return {}


def finish(ctx, answers):
    order = _order(ctx, answers["pick"])
    if order is None:
        return "没有找到这个订单。"
    action = answers.get("action")
    actor = store.Actor("resident", ctx.follower.id)
    try:
        if action == "cancel":
            dispatch.cancel(ctx.session, order, actor=actor, reason=answers["reason"], now=ctx.now)
            return f"已取消订单 {order.number}（{order.sub_name}）。\n如需再次预约，回复“预约”。"
        if action == "confirm":
            dispatch.confirm(ctx.session, order, actor=actor, now=ctx.now)
            return f"已确认订单 {order.number} 服务完成，谢谢！回复“我的订单”可以为这次服务评价。"
        if action == "rate":
            if order.status == "completed":  # rating a completed service confirms it too
                dispatch.confirm(ctx.session, order, actor=actor, now=ctx.now)
            store.rate_order(ctx.session, order, actor=actor, stars=answers["stars"],
                             comment=answers.get("comment"), now=ctx.now)
            return f"感谢您的评价（{'★' * answers['stars']}）！您的意见会转给服务的志愿者和工作人员。"
    except store.OrderError as e:  # dispatch's refusals are OrderErrors too
        return e.message
    return detail(order) + "\n\n回复“我的订单”查看其他订单。"


MY_ORDERS_FLOW = registry.flow(Flow(
    name="my_orders",
    title="我的订单",
    confirm=False,
    browse=True,
    start=start_my_orders,
    done=finish,
    help="回复序号查看订单详情；未开始服务的可以取消，服务完成后可以评价。",
    steps=[
        Step("pick", pick_prompt, choices=pick_choices, parse=read_pick),
        Step("action", ask_action, choices=lambda ctx, a: actions(_order(ctx, a["pick"])),
             when=lambda ctx, a: bool(actions(_order(ctx, a["pick"]))), depends_on=("pick",)),
        Step("reason", "请告诉我们取消的原因（回复序号，或直接写下原因）：",
             choices=[Choice(r, r) for r in CANCEL_REASONS], parse=read_reason,
             when=lambda ctx, a: a.get("action") == "cancel", depends_on=("action",)),
        Step("stars", "请为这次服务打分（回复1-5，5分最满意）：",
             choices=[Choice(n, f"{n}分 {label}") for n, label in STARS.items()],
             when=lambda ctx, a: a.get("action") == "rate", depends_on=("action",)),
        Step("comment", "还有想说的话吗？写几句评价，没有请回复“跳过”：", parse=read_comment,
             optional=True, when=lambda ctx, a: a.get("action") == "rate", depends_on=("action",)),
    ],
))


@registry.command("MY_ORDERS")
def my_orders(ctx, message):
    return ctx.start("my_orders")


@registry.fallback(order=30)  # an order number typed alone, last
def order_number_typed(ctx, message):
    """An order number typed outside any form opens that order."""
    text = normalize(message.text)
    if not ORDER_NUMBER.match(text):
        return None
    number = canonical(text)
    if _order(ctx, number) is None:
        return f"没有找到订单 {number}。回复“我的订单”查看您的订单。"
    return ctx.start("my_orders", number=number)
