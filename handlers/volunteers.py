"""Volunteer sign-up (志愿者注册): name → mobile → ID number (→ guardian for minors) →
team → skills → availability → privacy consent → summary → a number from the brigade.

The ID number never sits in Redis or a reply in clear: the answer kept between turns is
its AES-GCM ciphertext plus the four first and last characters for the masked summary (not
the birth date: with it those eight would give the number back); whether the person is a
minor is read from the ciphertext.
"""

from __future__ import annotations

import re

from dialogue import Choice, Flow, Invalid, Step
from handlers import registry
from handlers.common import mask_phone, parse_phone
from menus import catalog
from rules import pii, teams, volunteering
from rules.inputs import normalize, parse_int, yes_no
from store.models import Team

# ---- readers ------------------------------------------------------------------------------

def _text(message) -> str:
    return message.text if hasattr(message, "text") else str(message)


def read_name(ctx, message, answers) -> str:
    name = normalize(_text(message))
    if re.fullmatch(r"[\u3400-\u9fff ]+", name):
        name = name.replace(" ", "")  # "张 三" is 张三; spaces only separate Latin names
    if not (2 <= len(name) <= 20) or not re.fullmatch(r"[\u3400-\u9fffA-Za-z·・. ]+", name):
        raise Invalid("请填写真实姓名，2-20个字，不含数字和符号。")
    return name


def read_mobile(ctx, message, answers) -> str:
    return parse_phone(_text(message), mobile_only=True)


ID_HINTS = {
    "format": "身份证号应为18位（最后一位可以是X），请核对后重新输入。",
    "region": "身份证号的前两位不是有效的地区代码，请核对。",
    "birth_date": "身份证号中的出生日期不正确，请核对。",
    "future": "身份证号中的出生日期晚于今天，请核对。",
    "check_digit": "身份证号校验位不对，可能有一位输错了，请核对后重新输入。",
}


def read_id_number(ctx, message, answers) -> dict:
    try:
        parsed = pii.parse_id_number(_text(message), ctx.local_now.date())
    except pii.IdNumberError as e:
        raise Invalid(ID_HINTS[e.code]) from None
    existing = volunteering.find_by_id_number(ctx.session, ctx.settings.pii_key, parsed.number)
    # A record unlinked when its owner unfollowed may be taken back (name checked at the end).
    if existing is not None and (existing.follower_id is not None or existing.name != answers.get("name")):
        raise Invalid("该身份证号已经注册过志愿者。如需找回编号，请联系所在队伍的协调员。")
    n = parsed.number
    return {"enc": pii.encrypt(ctx.settings.pii_key, n), "tail": n[:4] + n[-4:], "relink": existing is not None}


def new_volunteer(ctx, answers) -> bool:
    """False when the ID number takes back an existing record: nothing more to ask."""
    return not (answers.get("id_number") or {}).get("relink")


def is_minor(ctx, answers) -> bool:
    idn = answers.get("id_number")
    if not idn or idn.get("relink"):
        return False
    parsed = pii.parse_id_number(pii.decrypt(ctx.settings.pii_key, idn["enc"]), ctx.local_now.date())
    return parsed.age_on(ctx.local_now.date()) < volunteering.ADULT_AGE


def read_team(ctx, message, answers) -> list:
    """A team by code, community, street or team name. Several matches are listed and the
    next answer may pick one by its number."""
    text = normalize(_text(message))
    hits = answers.get("_team_hits") or []
    n = parse_int(text)
    if hits and n is not None and 1 <= n <= len(hits):
        answers.pop("_team_hits", None)
        return hits[n - 1]
    found = teams.search(ctx.session, text)
    if not found:
        answers.pop("_team_hits", None)
        raise Invalid(f"没有找到“{text[:20]}”对应的队伍。请输入您所在的社区或街道名称，或队伍编号。")
    if len(found) == 1:
        answers.pop("_team_hits", None)
        return team_answer(found[0])
    answers["_team_hits"] = [team_answer(t) for t in found]
    listing = "\n".join(f"{i}. {t[1]}" for i, t in enumerate(answers["_team_hits"], 1))
    raise Invalid(f"找到以下队伍，请回复序号选择：\n{listing}\n也可以输入更准确的名称。")


def team_answer(team: Team) -> list:
    where = team.community.name if team.community else team.street
    label = team.name + (f"（{where}）" if where and where not in team.name else "")
    return [team.id, label, team.code]


def skill_choices(ctx, answers) -> list[Choice]:
    return [Choice(c.code, c.name) for c in catalog.load().categories]


def show_skills(codes: list) -> str:
    names = {c.code: c.name for c in catalog.load().categories}
    return "、".join(names.get(c, c) for c in codes) or "（未选）"


def availability_choices(ctx, answers) -> list[Choice]:
    return [Choice(a.code, a.label) for a in volunteering.rules().availability]


def read_availability(ctx, value, answers) -> list:
    if isinstance(value, list):
        return value
    if normalize(_text(value)) in ("全部", "都可以", "随时", "都行", "任何时间"):
        return [a.code for a in volunteering.rules().availability]
    raise Invalid("请回复序号，可多选，例如“1 4”；任何时间都可以请回复“全部”。")


def show_availability(codes: list) -> str:
    labels = {a.code: a.label for a in volunteering.rules().availability}
    return "、".join(labels.get(c, c) for c in codes)


def ask_consent(ctx, answers) -> str:
    return volunteering.rules().privacy_notice + "\n同意以上说明请回复“同意”。"


def read_consent(ctx, message, answers) -> bool:
    if yes_no(_text(message)) is True:
        return True
    raise Invalid("需要同意隐私说明才能注册；如不同意，回复“0”退出。")


# ---- the flow -----------------------------------------------------------------------------

def start(ctx, params):
    existing = volunteering.volunteer_of(ctx.session, ctx.follower)
    if existing is not None:
        state = {"pending": "正在等待队伍审核", "active": "已生效", "rejected": "未通过审核",
                 "suspended": "已暂停"}[existing.state]
        return (f"您已经注册过志愿者：编号 {existing.number}（{existing.team.name}，{state}）。\n"
                "回复“我的时长”查看服务时长。")
    return None


def done(ctx, answers):
    idn = answers["id_number"]
    number = pii.decrypt(ctx.settings.pii_key, idn["enc"])
    parsed = pii.parse_id_number(number, ctx.local_now.date())
    minor = is_minor(ctx, answers)
    if idn.get("relink"):
        try:
            vol = volunteering.relink(ctx.session, pii_key=ctx.settings.pii_key, follower=ctx.follower,
                                      id_number=parsed, name=answers["name"])
        except volunteering.VolunteerError as e:
            raise Invalid(str(e)) from None
        return (f"欢迎回来！已恢复您的志愿者身份，编号 {vol.number}（{vol.team.name}），"
                "以前的服务时长和星级都还在。回复“我的时长”查看。")
    team = ctx.session.get(Team, answers["team"][0])
    try:
        vol = volunteering.register(
            ctx.session, pii_key=ctx.settings.pii_key, follower=ctx.follower, name=answers["name"],
            phone=answers["phone"], id_number=parsed, team=team, now=ctx.now,
            skills=answers.get("skills") or [], availability=answers.get("availability") or [],
            guardian_name=answers.get("guardian_name") if minor else None,
            guardian_phone=answers.get("guardian_phone") if minor else None,
            consent=bool(answers.get("consent")))
    except volunteering.VolunteerError as e:
        raise Invalid(str(e)) from None
    if vol.state == "active":
        return (f"注册成功！您的志愿者编号是 {vol.number}，已加入{team.name}。\n"
                "回复“我的时长”查看服务时长和星级，回复“活动”报名志愿活动。")
    return (f"注册申请已提交，您的志愿者编号是 {vol.number}。\n"
            f"{team.name}的负责人审核后会通知您，审核通过后即可参加活动。")


SIGNUP = registry.flow(Flow(
    name="volunteer_signup",
    title="志愿者注册",
    start=start,
    done=done,
    help="注册后会得到一个志愿者编号，服务时长都记在这个编号下。",
    steps=[
        Step("name", "请输入您的真实姓名：", label="姓名", parse=read_name,
             help="请填写身份证上的姓名，用于出具志愿服务证明。"),
        Step("phone", "请输入您的手机号：", label="手机号", parse=read_mobile, show=mask_phone,
             default=lambda ctx, a: volunteering.stored_phone(ctx.follower),
             default_label=mask_phone, help="用于活动联系，不会公开。"),
        Step("id_number", "请输入您的18位身份证号：", label="身份证号", parse=read_id_number,
             show=lambda v: pii.mask_id_tail(v["tail"]),
             help="身份证号加密保存，只用于确认身份和出具证明，任何地方都只显示打码后的号码。"),
        Step("guardian_name", "您未满18周岁，需要监护人同意。请输入监护人姓名：", label="监护人",
             parse=read_name, when=is_minor),
        Step("guardian_phone", "请输入监护人的手机号：", label="监护人电话", parse=read_mobile,
             show=mask_phone, when=is_minor),
        Step("team", "请输入您所在的社区或街道名称，或队伍编号，我来帮您找队伍：", label="所在队伍",
             parse=read_team, show=lambda v: v[1], when=new_volunteer,
             help="例如“东风社区”或“北苑街道”。找到多个时回复序号选择。"),
        Step("skills", "您擅长哪些服务？请回复序号，可多选（例如“1 3”），没有可回复“跳过”：",
             label="服务技能", choices=skill_choices, multi=True, show=show_skills, optional=True,
             when=new_volunteer),
        Step("availability", "您一般什么时间可以参加服务？请回复序号，可多选：", label="可服务时间",
             choices=availability_choices, multi=True, parse=read_availability, show=show_availability,
             when=new_volunteer),
        Step("consent", ask_consent, label="隐私说明", parse=read_consent, show=lambda v: "已同意"),
    ],
))


@registry.command("VOL_SIGNUP", "注册", "志愿者注册", "我要当志愿者", "报名志愿者")
def signup(ctx, message):
    return ctx.start("volunteer_signup")
