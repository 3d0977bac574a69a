"""Residents order a service from the needs menu (需求菜单).

One form, `order`: category → sub-category (its details are shown with the next question)
→ what is needed → address (typed, or a location plus the door number) → community →
preferred time (numbered slots or a typed phrase) → contact phone (remembered) → summary →
确认 → an order number. Browsing is the first two steps (numbered, paged, 返回 works);
typing a need instead ("家里水管坏了") searches the menu, in the form or outside any form
(the fallback below), and offers the best sub-categories.
"""

from __future__ import annotations

import re
import uuid

from dialogue import types as t
from dialogue.flows import Choice, Flow, Invalid, Step, counted
from dialogue.types import Message, Reply
from handlers import registry
from handlers.common import mask_phone, parse_phone
from handlers.parsing import TIME_HINT, When, parse_when, slot_choices
from menus import main_menu
from rules import dispatch, needs, timebank, unmet
from rules import orders as store
from rules.inputs import as_written, normalize
from rules.volunteering import hours_text
from store.models import Community, TimeAccount, Volunteer

# Words that make a message a request for help even when no service matches its words.
ASKING_FOR_HELP = ("需要帮", "帮帮", "帮忙", "帮我", "求助", "找人", "有人能", "谁能", "上门", "志愿者来")
# A need typed as "其他" (none of the categories): what follows is searched, else recorded.
OTHER_WORDS = ("其他", "其它", "别的", "都不是", "没有合适的")
SEARCH = "?"  # the category "value" when the sub-categories offered come from a search
MIN_NEED, MAX_NEED = 4, 500
ADDRESS_MAX = 100  # characters of an address, typed or from a sent location's label


def catalog(ctx):
    return store.current_catalog(ctx.session)


def _value(arg):
    """A step parser gets either a chosen value or the message itself."""
    return None if isinstance(arg, Message) else arg


def _text(arg) -> str:
    """The message's text, normalised for matching."""
    return normalize(arg.text) if isinstance(arg, Message) else ""


def _written(arg) -> str:
    """The message's text as the resident wrote it, for what is kept and shown."""
    return as_written(arg.text) if isinstance(arg, Message) else ""


# ---- category and sub-category ------------------------------------------------------------

def category_choices(ctx, answers):
    return [Choice({"code": c.code, "name": c.name}, c.name) for c in catalog(ctx).categories]


def read_category(ctx, arg, answers):
    answers.pop("hits", None)
    value = _value(arg)
    if value is not None:
        return value
    text = _text(arg)
    other = next((w for w in OTHER_WORDS if text.startswith(w)), None)
    if other is not None:
        text = text[len(other):].lstrip(":：，,。 ")
        if not needs.clean(text):
            raise Invalid("请直接说说您需要什么帮助，例如“帮忙修自行车”：")
    cat = needs.find_category(catalog(ctx), text)
    if cat is not None:
        return {"code": cat.code, "name": cat.name}
    hits = needs.search(catalog(ctx), text)
    if hits:
        answers["hits"] = [h.sub.code for h in hits]
        answers["query"] = text
        return {"code": SEARCH, "name": "搜索结果"}
    if _has_words(text) and _note_unmet(ctx, answers, "other" if other else "search", text):
        raise Invalid("没有找到相关的服务（您说的需求已记下，我们会据此调整服务菜单），请从下面的类别中选择：")
    raise Invalid("没有找到相关的服务，请从下面的类别中选择：")


def _note_unmet(ctx, answers, kind: str, text: str) -> bool:
    """Record a need the menu does not offer (rules.unmet), once per wording per form."""
    said = answers.setdefault("unmet", [])
    if text in said:
        return True
    if unmet.record(ctx.session, kind=kind, text=text, now=ctx.now, community_id=ctx.follower.community_id) is None:
        return False
    said.append(text)
    return True


def ask_sub(ctx, answers):
    cat = answers.get("category") or {}
    if cat.get("code") == SEARCH:
        return f"根据您说的“{answers.get('query', '')}”，可能需要以下服务，回复序号选择（“返回”查看全部类别）："
    return f"【{cat.get('name', '')}】请选择服务项目（回复序号）："


def sub_choices(ctx, answers):
    menu = catalog(ctx)
    cat = answers.get("category") or {}
    if cat.get("code") == SEARCH:
        subs = [s for s in (menu.sub(code) for code in answers.get("hits", [])) if s]
    else:
        c = menu.category(cat.get("code", ""))
        subs = list(c.subs) if c else []
    return [Choice({"code": s.code, "name": s.name}, s.name, note=s.description) for s in subs]


def read_sub(ctx, arg, answers):
    value = _value(arg)
    if value is not None:
        return value
    hits = needs.search(catalog(ctx), _text(arg), limit=3)
    if hits and (len(hits) == 1 or hits[0].score > hits[1].score):
        return {"code": hits[0].sub.code, "name": hits[0].sub.name}
    raise Invalid("请回复序号选择服务项目。")


# ---- the need, the address and the community ----------------------------------------------

def ask_need(ctx, answers):
    sub = catalog(ctx).sub((answers.get("sub") or {}).get("code", ""))
    detail = sub.detail() + "\n" if sub else ""
    return detail + f"请简单说说需要什么帮助（{MIN_NEED}-{MAX_NEED}字）："


def read_need(ctx, arg, answers):
    text = _written(arg)
    if text and not _has_words(text):
        raise Invalid("请用文字说说需要什么帮助，例如“厨房水龙头一直滴水”。电话号码稍后再填。")
    if len(text) < MIN_NEED:
        raise Invalid(f"请多写几个字（至少{MIN_NEED}个字），例如“厨房水龙头一直滴水”。")
    if len(text) > MAX_NEED:
        raise Invalid(f"内容太长了（{len(text)}字），请控制在{MAX_NEED}字以内。")
    return text


def need_default(ctx, answers):
    """The words the resident searched with, offered as the description when they say more
    than the service's name: "老人没人照顾" does, "便民微修" (a misspelt category) does not."""
    query = answers.get("query") or ""
    sub = catalog(ctx).sub((answers.get("sub") or {}).get("code", ""))
    if sub is None:
        return None
    names = sub.name + catalog(ctx).category_of(sub).name
    named = {names[i:i + 2] for i in range(len(names) - 1)}
    said = {i for i in range(len(query) - 1) if query[i:i + 2] in named}
    rest = [ch for i, ch in enumerate(query) if i not in said and i - 1 not in said]
    return query if len(rest) >= MIN_NEED else None


def _has_words(text: str) -> bool:
    """Some letter or character: an address or a description is not digits alone (a phone
    number typed one step early)."""
    return re.search(r"[^\W\d_]", normalize(text)) is not None


def read_address(ctx, arg, answers):
    if isinstance(arg, Message) and arg.kind == t.LOCATION and arg.location:
        loc = arg.location
        # The label is WeChat's, not typed: cut to the typed limit rather than refused.
        return {"text": as_written(loc.label)[:ADDRESS_MAX] or "（已发送位置）", "lat": loc.lat, "lng": loc.lng}
    text = _written(arg)
    if text and not _has_words(text):
        raise Invalid("这一步请填写服务地址（电话号码稍后再填），例如“樱园小区3号楼2单元501”。")
    if len(text) < 5:
        raise Invalid("地址太短了，请写上小区、楼号和门牌号，例如“樱园小区3号楼2单元501”。")
    if len(text) > ADDRESS_MAX:
        raise Invalid(f"地址请控制在{ADDRESS_MAX}字以内。")
    return {"text": text}


def read_room(ctx, arg, answers):
    text = _written(arg)
    if not 1 <= len(text) <= 50:
        raise Invalid("请写楼号、单元和门牌号（50字以内），没有请回复“跳过”。")
    return text


def _per_turn(ctx, key: tuple, compute):
    """`compute()` once per turn (the turn's session): the engine calls a step's question,
    choices and `when` several times in one turn, each of which would repeat the queries."""
    if key not in ctx.session.info:
        ctx.session.info[key] = compute()
    return ctx.session.info[key]


def community_choices(ctx, answers):
    address = answers.get("address") or {}
    return _per_turn(ctx, ("community_choices", ctx.openid, repr(sorted(address.items()))),
                     lambda: _community_choices(ctx, address))


def _community_choices(ctx, address):
    found: list[Community] = []
    if address.get("lat") is not None:
        found = [c for c, _ in store.communities_near(ctx.session, address["lat"], address["lng"])]
    else:
        found = store.communities_named(ctx.session, address.get("text", ""))
    mine = ctx.follower.community
    if mine is not None and mine not in found:
        # With a sent location the nearest come first (the resident is there); from typed
        # words, the community they follow from is the likeliest.
        found.insert(len(found) if address.get("lat") is not None else 0, mine)
    choices = [Choice({"id": c.id, "name": c.name}, c.name) for c in found[:6]]
    if choices:
        choices.append(Choice({"id": None, "name": "不清楚"}, "不清楚/都不是"))
    return choices


def ask_community(ctx, answers):
    if community_choices(ctx, answers):
        return "您住在哪个社区？回复序号，或输入社区名称："
    return "您住在哪个社区？请输入社区名称（如“樱园社区”）："


def read_community(ctx, arg, answers):
    value = _value(arg)
    if value is not None:
        return value
    text = _text(arg)
    if text in ("不清楚", "不知道"):
        return None
    found = store.communities_named(ctx.session, text)
    if len(found) == 1:
        return {"id": found[0].id, "name": found[0].name}
    if len(found) > 1:
        names = "、".join(c.name for c in found[:5])
        raise Invalid(f"找到多个社区：{names}。请输入完整的社区名称。")
    raise Invalid("没有找到这个社区，请检查名称，不清楚请回复“跳过”。")


# ---- time and phone ----------------------------------------------------------------------

def time_choices(ctx, answers):
    today = ctx.local_now.date()
    return [Choice(w.to_dict(), w.label(today)) for w in slot_choices(ctx.local_now)]


def read_time(ctx, arg, answers):
    value = _value(arg)
    if value is not None:
        return value
    text = _text(arg)
    if not text:
        raise Invalid(TIME_HINT)
    if text.isdigit():
        shown = counted(main_menu().form["choose_range"], len(time_choices(ctx, answers)))
        raise Invalid(shown.rstrip("。") + "，或直接说时间。")
    return parse_when(text, ctx.local_now).to_dict()


def show_time(value) -> str:
    return When.from_dict(value).label()


def ask_phone(ctx, answers):
    when = When.from_dict(answers["time"]).label(ctx.local_now.date()) if answers.get("time") else ""
    head = f"预约时间：{when}\n" if when else ""
    return head + "请留下联系电话（手机号或带区号的座机），志愿者会先打电话和您确认："


def phone_default(ctx, answers):
    return ctx.follower.phone


def read_phone(ctx, arg, answers):
    return parse_phone(_text(arg))


# ---- paying with time (only for followers who may spend a time-bank balance) ------------

def _payable(ctx):
    """The follower's payable time-bank accounts (asked by the pay step's `when`)."""
    return _per_turn(ctx, ("payable_accounts", ctx.openid),
                     lambda: dispatch.payable_accounts(ctx.session, ctx.follower))


def pay_choices(ctx, answers):
    out = []
    for acc, whose, minutes in _payable(ctx):
        out.append(Choice({"acc": acc.id, "label": f"{whose}时间银行"},
                          f"用{whose}时间银行支付（余额{hours_text(minutes)}）"))
    return out + [Choice({"acc": None, "label": "不使用"}, "不使用（志愿服务免费）")]


def _pay_account(ctx, value: dict | None) -> TimeAccount | None:
    """The account a pay answer names (`vol`: a form kept from before residents had accounts)."""
    value = value or {}
    if value.get("acc"):
        return ctx.session.get(TimeAccount, value["acc"])
    if value.get("vol"):
        vol = ctx.session.get(Volunteer, value["vol"])
        return timebank.account_for(ctx.session, vol, lock=False) if vol is not None else None
    return None


def _sub_minutes(ctx, answers) -> int:
    sub = catalog(ctx).sub((answers.get("sub") or {}).get("code", ""))
    return sub.minutes if sub else 0


def _check_balance(ctx, acc: TimeAccount | None, need: int) -> None:
    have = acc.balance if acc is not None else 0
    if acc is None or not timebank.may_spend(ctx.session, acc, ctx.follower) or have < need:
        raise Invalid(f"时间银行余额不足：这项服务需要{hours_text(need)}，余额{hours_text(have)}。"
                      "请选择“不使用”。")


def read_pay(ctx, value, answers):
    if value.get("acc") or value.get("vol"):
        _check_balance(ctx, _pay_account(ctx, value), _sub_minutes(ctx, answers))
    return value


def ask_pay(ctx, answers):
    return (f"您可以用时间银行的时长支付这次服务（约{hours_text(_sub_minutes(ctx, answers))}，"
            "居民确认服务完成后扣除）。请选择：")


# ---- finishing ---------------------------------------------------------------------------

def start_order(ctx, params):
    answers: dict = {"token": uuid.uuid4().hex}
    menu = catalog(ctx)
    if params.get("sub"):
        sub = menu.sub(params["sub"])
        if sub is not None:
            cat = menu.category_of(sub)
            answers["category"] = {"code": cat.code, "name": cat.name}
            answers["sub"] = {"code": sub.code, "name": sub.name}
    elif params.get("hits"):
        answers["category"] = {"code": SEARCH, "name": "搜索结果"}
        answers["hits"] = list(params["hits"])
        answers["query"] = params.get("query", "")
    return answers


def submit(ctx, answers):
    menu = catalog(ctx)
    sub = menu.sub(answers["sub"]["code"])
    if sub is None:
        # Retired from the menu while the form was open: what was wanted is an unmet need.
        _note_unmet(ctx, answers, "retired", answers["sub"].get("name", ""))
        raise Invalid("这项服务已经调整，请回复 1 重新选择服务项目。")
    when = When.from_dict(answers["time"])
    tz = ctx.local_now.tzinfo
    if when.ends(tz) <= ctx.local_now:
        raise Invalid("您选的时间已经过去了，请修改预约时间。")
    pay = _pay_account(ctx, answers.get("pay"))
    if pay is not None or (answers.get("pay") or {}).get("vol"):
        # the balance may have moved since the question: refused up front, not later
        _check_balance(ctx, pay, sub.minutes)
    address = answers["address"]
    text = address["text"] + (f" {answers['room']}" if answers.get("room") else "")
    community = answers.get("community") or {}
    follower = ctx.follower
    order, created = store.create_order(
        ctx.session, follower=follower, sub=sub, category_name=menu.category_of(sub).name,
        description=answers["need"], address=text, phone=answers["phone"],
        preferred=store.Preferred(when.day, when.slot, when.exact(tz)), now=ctx.now,
        lat=address.get("lat"), lng=address.get("lng"), community_id=community.get("id"),
        form_token=answers.get("token"),
    )
    follower.phone = answers["phone"]  # offered as the default next time
    if created:
        if pay:
            dispatch.pay_with_time(ctx.session, order, pay, follower, ctx.now)
        # The first volunteer is asked by the scheduler's next pass (rules.dispatch.run_due:
        # "orders still waiting with nobody asked", about a second later), not here: ranking
        # every volunteer inside the resident's turn made 确认 the slowest turn by far.
    return Reply("\n".join([
        "预约已提交！" if created else "这份预约已经提交过了。",
        f"订单号：{order.number}",
        f"服务项目：{order.sub_name}",
        f"预约时间：{when.label(ctx.local_now.date())}",
        *(["支付：时间银行（确认服务完成后扣除）"] if pay else []),
        "接下来：工作人员会尽快为您安排志愿者，志愿者接单后会通知您，并先打电话与您确认。",
        "回复“我的订单”查看进度或取消预约。",
    ]))


ORDER_FLOW = registry.flow(Flow(
    name="order",
    title="预约志愿服务",
    summary_title="请核对您的预约：",
    help="按提示一步一步回答即可；也可以直接说需要什么，比如“家里水管坏了”。",
    start=start_order,
    done=submit,
    steps=[
        Step("category", "请选择服务类别（回复序号），也可以直接说需要什么，例如“水管坏了”：",
             choices=category_choices, parse=read_category, show=lambda v: v["name"],
             help="先选大类，再选具体项目。回复“下一页”看更多类别。"),
        Step("sub", ask_sub, label="服务项目", choices=sub_choices, parse=read_sub, depends_on=("category",),
             show=lambda v: v["name"], help="回复序号选择；“返回”回到类别列表。"),
        Step("need", ask_need, label="需求描述", parse=read_need, default=need_default,
             help="写清楚需要做什么，例如“卫生间水管漏水，需要换个阀门”。"),
        Step("address", "请输入服务地址（小区、楼号、单元、门牌号），也可以点“+”发送位置：",
             label="服务地址", parse=read_address, accepts_location=True, show=lambda v: v["text"],
             help="可以打字，也可以点输入框旁边的“+”，选“位置”发送。"),
        Step("room", lambda ctx, a: f"已收到位置：{a['address']['text']}\n请补充楼号、单元和门牌号（如“3号楼2单元501”），没有请回复“跳过”：",
             label="门牌号", parse=read_room, optional=True, depends_on=("address",),
             when=lambda ctx, a: (a.get("address") or {}).get("lat") is not None),
        Step("community", ask_community, label="所在社区", choices=community_choices,
             parse=read_community, optional=True, depends_on=("address",), show=lambda v: v["name"] if v else "不清楚",
             when=lambda ctx, a: store.has_communities(ctx.session)),
        Step("time", "希望什么时间服务？回复序号，或直接说时间（如“明天下午”“周六上午10点”）：",
             label="预约时间", choices=time_choices, parse=read_time, show=show_time,
             help="可以回复序号选时段，也可以说“明天下午”“后天上午9点”。"),
        Step("phone", ask_phone, label="联系电话", parse=read_phone, default=phone_default,
             default_label=mask_phone, show=mask_phone, help="手机号11位；座机请加区号，如 0536-8888000。"),
        Step("pay", ask_pay, label="时间银行", choices=pay_choices, parse=read_pay, show=lambda v: v["label"],
             when=lambda ctx, a: bool(_payable(ctx)),
             help="时间银行是您（或家人）做志愿服务存下的时长，可以用来支付这次服务。"),
    ],
))


@registry.command("ORDER")
def order(ctx, message):
    return ctx.start("order")


@registry.fallback(order=20)  # a need in words, after dispatch's words with numbers
def need_in_words(ctx, message):
    """A need typed outside any form ("老人没人照顾"): offer the matching services."""
    text = normalize(message.text)
    if len(text) < 2 or len(text) > 100:
        return None
    hits = needs.search(catalog(ctx), text)
    if hits:
        return ctx.start("order", hits=[h.sub.code for h in hits], query=text)
    if any(word in text for word in ASKING_FOR_HELP):
        # Clearly a request, but for nothing on the menu by name: keep it, offer the categories.
        unmet.record(ctx.session, kind="search", text=text, now=ctx.now, community_id=ctx.follower.community_id)
        first = ctx.start("order")
        return Reply(f"没有找到和“{text}”直接相关的服务，请从类别中选择：\n{first.text}")
    return None


@registry.eraser
def erase_orders(ctx, follower):
    store.erase_for_follower(ctx.session, follower.id, ctx.now)
