"""The time bank in chat: family links, gifts, donations and the passbook (rules.timebank).

- 邀请家人: a volunteer names the relation and gets a 6-digit code (valid 3 days) to pass on;
- 接受邀请 123456 (or 接受邀请, then the code): the family member, from their own WeChat,
  sees who invites them and confirms; they may then pay their own orders with the
  volunteer's balance;
- 我的家人: the links either way, numbered; 解除家人 N ends one (either side);
  家人通知 N 开/关: the volunteer chooses to get the notices of that member's orders
  (accepted, served) and may then reply 确认完成 for them;
- 赠与家人: minutes to a linked member; 捐赠时长: minutes to the district pool;
- 存折 (时间银行明细): the latest entries, 存入 / 支出 / 赠与 / 捐赠 / 资助, with the balance after.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import update

from dialogue import Flow, Invalid, Step
from dialogue.flows import Choice
from handlers import registry
from rules import masks, timebank, volunteering
from rules import timebank_family as family
from rules.inputs import normalize
from rules.timebank import CHINA, TimeBankError, hours_text
from store.models import TimeAccount, TimeBankFamily, Volunteer

NOT_VOLUNTEER = "时间银行的时长来自志愿服务。回复“注册”成为志愿者后，就可以邀请家人、赠与和捐赠时长了。"
RELATIONS = family.RELATIONS
WORDS = re.compile(r"^(接受邀请|绑定家人|解除家人|家人通知)\s*(\d{1,6})?\s*(开|关|开启|关闭)?$")
PASSBOOK_LINES = 8


def _volunteer(ctx) -> Volunteer | None:
    vol = volunteering.volunteer_of(ctx.session, ctx.follower)
    return vol if vol is not None and vol.state == "active" else None


def _policy(ctx) -> timebank.Policy:
    return ctx.settings.timebank or timebank.Policy()


def read_hours(text: str, most: int) -> int:
    """"2", "1.5小时", "30分钟", "2h" → minutes (1 … `most`), or Invalid with the hint."""
    t = normalize(text).replace(" ", "").lower()
    m = re.fullmatch(r"(\d{1,4}(?:\.\d)?)(小时|个小时|h)?", t)
    minutes = None
    if m:
        minutes = round(float(m.group(1)) * 60)
    else:
        m = re.fullmatch(r"(\d{1,6})(分钟|分|min)", t)
        if m:
            minutes = int(m.group(1))
    if minutes is None:
        raise Invalid("请回复时长，例如“2”（小时）、“1.5小时”或“30分钟”。")
    if not 1 <= minutes <= most:
        raise Invalid(f"您的时间银行余额是{hours_text(most)}，请回复不超过余额的时长。" if most > 0
                      else "您的时间银行余额为0，暂时不能转出。")
    return minutes


# ---- inviting and accepting ---------------------------------------------------------------

def start_invite(ctx, params):
    return None if _volunteer(ctx) is not None else NOT_VOLUNTEER


def invite_done(ctx, answers):
    vol = _volunteer(ctx)
    if vol is None:
        return NOT_VOLUNTEER
    try:
        inv = family.invite(ctx.session, vol, answers["relation"], ctx.now)
    except TimeBankError as e:
        return str(e)
    until = inv.expires_at.astimezone(CHINA)
    return (f"邀请码：{inv.code}（{until:%m月%d日 %H:%M}前有效，只能用一次）\n"
            f"请{answers['relation']}关注本公众号后，在自己的微信里回复“接受邀请 {inv.code}”。\n"
            "绑定后，家人可以用您的时间银行时长支付自己的服务订单；回复“我的家人”查看或解除。")


registry.flow(Flow(
    name="timebank_invite",
    title="邀请家人",
    confirm=False,
    start=start_invite,
    done=invite_done,
    help="邀请家人绑定您的时间银行：家人可以用您存下的时长预约服务。",
    steps=[Step("relation", "您要邀请的家人是您的：", label="关系",
                choices=[Choice(r, r) for r in RELATIONS])],
))


def read_code(ctx, message, answers):
    found = re.search(r"(?<!\d)\d{6}(?!\d)", normalize(message.text or ""))  # "接受邀请 123456" too
    if found is None:
        raise Invalid("请回复家人发给您的 6 位数字邀请码。")
    code = found.group(0)
    try:
        inv = family.open_invite(ctx.session, code, ctx.now)
    except TimeBankError as e:
        raise Invalid(str(e)) from None
    vol = ctx.session.get(Volunteer, inv.volunteer_id)
    if vol.follower_id == ctx.follower.id:
        raise Invalid("这是您自己的邀请码，请发给家人，由家人在自己的微信里回复。")
    return {"code": code, "who": masks.name(vol.name), "relation": inv.relation}


def start_accept(ctx, params):
    code = params.get("code")
    if not code:
        return None
    try:
        inv = family.open_invite(ctx.session, code, ctx.now)
    except TimeBankError as e:
        return str(e)
    vol = ctx.session.get(Volunteer, inv.volunteer_id)
    if vol.follower_id == ctx.follower.id:
        return "这是您自己的邀请码，请发给家人，由家人在自己的微信里回复。"
    return {"invite": {"code": code, "who": masks.name(vol.name), "relation": inv.relation}}


def accept_done(ctx, answers):
    inv = answers["invite"]
    try:
        family.accept_invite(ctx.session, inv["code"], ctx.follower, ctx.now)
    except TimeBankError as e:
        return str(e)
    return (f"绑定成功！您已成为志愿者{inv['who']}的时间银行家人。\n"
            "预约服务时可以选择用家人的时间银行支付。家人可以选择接收您订单的进度通知、代您确认服务完成。\n"
            "回复“我的家人”查看，回复“解除家人 1”可随时解除。")


registry.flow(Flow(
    name="timebank_accept",
    title="接受家人邀请",
    start=start_accept,
    done=accept_done,
    help="家人在“邀请家人”里得到 6 位邀请码，您回复这个邀请码即可绑定。",
    steps=[Step("invite", "请回复家人发给您的 6 位邀请码（3 天内有效）：", label="邀请人",
                parse=read_code, show=lambda v: f"志愿者{v['who']}（您是其{v['relation'] or '家人'}）")],
    summary_title="请核对家人邀请（绑定后可用对方的时长支付订单，对方可选择接收您订单的进度通知）",
))


# ---- the links ----------------------------------------------------------------------------

def _numbered(ctx) -> list[tuple[TimeBankFamily, str]]:
    """This follower's live links, numbered as 我的家人 shows them: (link, side)."""
    mine, theirs = family.links_of(ctx.session, ctx.follower)
    return [(link, "volunteer") for link in mine] + [(link, "member") for link in theirs]


def family_text(ctx) -> str:
    rows = _numbered(ctx)
    if not rows:
        return ("您还没有绑定时间银行家人。志愿者回复“邀请家人”得到邀请码；"
                "收到邀请码的家人回复“接受邀请 邀请码”。")
    lines = ["【我的家人】"]
    for i, (link, side) in enumerate(rows, 1):
        if side == "volunteer":
            notices = "开" if link.notices else "关"
            lines.append(f"{i}. 您的{link.relation or '家人'}（可用您的时长支付订单；订单通知：{notices}）")
        else:
            vol = ctx.session.get(Volunteer, link.volunteer_id)
            lines.append(f"{i}. 志愿者{masks.name(vol.name)}（您可用其时长支付订单）")
    lines.append("回复“解除家人 序号”解除；志愿者回复“家人通知 序号 开”接收家人订单的接单、完成通知，"
                 "并可代为“确认完成”。")
    return "\n".join(lines)


@registry.command("TB_FAMILY", "我的家人", "家人", "时间银行家人")
def family_command(ctx, message):
    return family_text(ctx)


@registry.command("TB_INVITE", "邀请家人", "邀请家人绑定")
def invite_command(ctx, message):
    return ctx.start("timebank_invite")


@registry.command("TB_ACCEPT", "接受邀请", "接受家人邀请")
def accept_command(ctx, message):
    return ctx.start("timebank_accept")


def _pick(ctx, number: str | None) -> tuple[TimeBankFamily, str] | str:
    rows = _numbered(ctx)
    if not rows:
        return family_text(ctx)
    if not number or not 1 <= int(number) <= len(rows):
        return f"请回复序号 1-{len(rows)}。\n" + family_text(ctx)
    return rows[int(number) - 1]


def end_word(ctx, number):
    picked = _pick(ctx, number)
    if isinstance(picked, str):
        return picked
    link, _side = picked
    try:
        family.end_link(ctx.session, link, by=ctx.follower, now=ctx.now)
    except TimeBankError as e:
        return str(e)
    return "已解除这个家人关系，对方会收到通知。今后对方不能再用这份时长支付订单。"


def notices_word(ctx, number, switch):
    picked = _pick(ctx, number)
    if isinstance(picked, str):
        return picked
    link, side = picked
    if side != "volunteer":
        return "订单通知由绑定您的志愿者选择开启或关闭。"
    if switch is None:
        return "请回复“家人通知 序号 开”或“家人通知 序号 关”。"
    on = switch in ("开", "开启")
    family.set_notices(ctx.session, link, on, ctx.now)
    if on:
        return "已开启：家人的订单被接单、服务完成时您会收到通知，并可回复“确认完成”代为确认。"
    return "已关闭家人订单通知。"


@registry.fallback(order=5)  # "接受邀请 123456", "解除家人 1", "家人通知 1 开": before the need search
def words_with_number(ctx, message):
    m = WORDS.match(normalize(message.text or ""))
    if not m or not m.group(2):
        return None
    word, number, switch = m.groups()
    if word in ("接受邀请", "绑定家人"):
        if len(number) != 6:
            return "邀请码是 6 位数字，请核对后回复“接受邀请 邀请码”。"
        return ctx.start("timebank_accept", code=number)
    if word == "解除家人":
        return end_word(ctx, number)
    return notices_word(ctx, number, switch)


@registry.eraser
def end_family_links(ctx, follower):
    """A follower who leaves may no longer pay with a volunteer's time: their links as a
    member end (kept as the record of past gifts, which the audit checks)."""
    ctx.session.execute(update(TimeBankFamily).where(TimeBankFamily.follower_id == follower.id,
                                                     TimeBankFamily.ended_at.is_(None))
                        .values(ended_at=ctx.now, ended_by="unsubscribe"))


# ---- gifts and donations ------------------------------------------------------------------

def _balance(ctx) -> int:
    vol = _volunteer(ctx)
    return timebank.balance(ctx.session, vol) if vol is not None else 0


def start_gift(ctx, params):
    vol = _volunteer(ctx)
    if vol is None:
        return NOT_VOLUNTEER
    if not timebank.live_links_of_volunteer(ctx.session, vol.id):
        return "您还没有绑定家人。回复“邀请家人”得到邀请码，家人接受后就可以赠与时长。"
    if _balance(ctx) <= 0:
        return "您的时间银行余额为0，暂时不能赠与。"
    return {"token": uuid.uuid4().hex}


def member_choices(ctx, answers):
    vol = _volunteer(ctx)
    links = timebank.live_links_of_volunteer(ctx.session, vol.id) if vol is not None else []
    return [Choice({"id": link.id, "label": f"您的{link.relation or '家人'}"}, f"您的{link.relation or '家人'}")
            for link in links]


def ask_amount(what: str):
    def ask(ctx, answers):
        return f"您的时间银行余额{hours_text(_balance(ctx))}。请回复{what}的时长，例如“2”（小时）或“30分钟”："
    return ask


def read_amount(ctx, message, answers):
    return read_hours(message.text or "", _balance(ctx))


def gift_done(ctx, answers):
    vol = _volunteer(ctx)
    link = ctx.session.get(TimeBankFamily, answers["member"]["id"])
    if vol is None or link is None:
        return NOT_VOLUNTEER
    try:
        tx = timebank.gift(ctx.session, vol, link, answers["minutes"], key=answers["token"], now=ctx.now,
                           rules=volunteering.rules().bank)
    except TimeBankError as e:
        return str(e)
    if tx is None:
        return "这次赠与已经完成了。"
    return (f"已赠与您的{link.relation or '家人'} {hours_text(answers['minutes'])}，"
            f"您的余额{hours_text(_balance(ctx))}。家人会收到通知。")


registry.flow(Flow(
    name="timebank_gift",
    title="赠与家人时长",
    start=start_gift,
    done=gift_done,
    help="把您时间银行里的时长赠与绑定的家人，家人可以用来预约服务。",
    steps=[
        Step("member", "赠与哪位家人？", label="赠与", choices=member_choices, show=lambda v: v["label"]),
        Step("minutes", ask_amount("赠与"), label="时长", parse=read_amount, show=hours_text),
    ],
))


def start_donate(ctx, params):
    if _volunteer(ctx) is None:
        return NOT_VOLUNTEER
    if _balance(ctx) <= 0:
        return "您的时间银行余额为0，暂时不能捐赠。"
    return {"token": uuid.uuid4().hex}


def donate_done(ctx, answers):
    vol = _volunteer(ctx)
    if vol is None:
        return NOT_VOLUNTEER
    try:
        tx = timebank.donate(ctx.session, vol, answers["minutes"], key=answers["token"], now=ctx.now,
                             actor=f"follower:{ctx.follower.id}")
    except TimeBankError as e:
        return str(e)
    if tx is None:
        return "这次捐赠已经完成了。"
    return (f"感谢您！已捐赠 {hours_text(answers['minutes'])} 给公益池，"
            f"用于资助有需要的老人。您的余额{hours_text(_balance(ctx))}。")


registry.flow(Flow(
    name="timebank_donate",
    title="捐赠时长",
    start=start_donate,
    done=donate_done,
    help="把时长捐给区里的公益池，由协调员审批后资助有需要的老人。",
    steps=[Step("minutes", ask_amount("捐赠"), label="捐赠时长", parse=read_amount, show=hours_text)],
))


@registry.command("TB_GIFT", "赠与家人", "赠送时长", "赠与时长")
def gift_command(ctx, message):
    return ctx.start("timebank_gift")


@registry.command("TB_DONATE", "捐赠时长", "捐赠", "捐时长")
def donate_command(ctx, message):
    return ctx.start("timebank_donate")


# ---- the passbook -------------------------------------------------------------------------

def _own_account(ctx) -> TimeAccount | None:
    vol = volunteering.volunteer_of(ctx.session, ctx.follower)
    if vol is not None:
        return ctx.session.query(TimeAccount).filter_by(volunteer_id=vol.id).one_or_none()
    return ctx.session.query(TimeAccount).filter_by(follower_id=ctx.follower.id).one_or_none()


def passbook_text(ctx) -> str:
    acc = _own_account(ctx)
    if acc is None:
        return "您的时间银行还没有记录。志愿服务的时长审核通过后会存入这里。"
    lines = [f"【时间银行存折】余额 {hours_text(acc.balance)}", "日期 摘要 时长 余额"]
    for line in timebank.passbook(ctx.session, acc, limit=PASSBOOK_LINES):
        sign = "+" if line.minutes > 0 else "-"
        lines.append(f"{line.at.astimezone(CHINA):%m-%d} {line.label} {sign}{hours_text(abs(line.minutes))} "
                     f"余{hours_text(line.balance_after)}")
    lines.append("回复“赠与家人”“捐赠时长”“我的家人”。")
    return "\n".join(lines)


@registry.command("TB_PASSBOOK", "存折", "时间银行明细", "我的存折", "时间银行存折")
def passbook_command(ctx, message):
    return passbook_text(ctx)
