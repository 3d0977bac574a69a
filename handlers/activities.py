"""志愿活动报名: browse upcoming shifts (my team's, near me, matching my skills), sign up (a
full shift offers its waitlist), and see or cancel my sign-ups (the can't-come: leave before
the cut-off, late notice after it; the first on the waitlist takes the place and is told).

Only active volunteers sign up; anyone else is told how to become one. The rules
(capacity under concurrency, waitlist, promotion, reminders) live in `rules.activities`.
"""

from __future__ import annotations

from dialogue import Choice, Flow, Invalid, Step
from dialogue import types as t
from dialogue.flows import YES_NO
from handlers import registry
from handlers.common import page_link
from rules import activities as acts
from rules import attendance, notices
from rules.places import format_distance
from rules.volunteering import volunteer_of
from store.models.activities import SignUp

NOT_VOLUNTEER = "报名志愿活动需要先注册成为志愿者。回复“注册”（或点菜单“志愿者注册”）即可开始，只需几分钟。"
STATE_REFUSALS = {
    "pending": "您的志愿者注册正在等待队伍审核，审核通过后即可报名活动和签到。",
    "rejected": "您的志愿者注册未通过审核，暂时不能报名活动。如有疑问请联系所在队伍。",
    "suspended": "您的志愿者身份已暂停，暂时不能报名活动。如有疑问请联系所在队伍。",
}
NO_LOCATION = ("还不知道您的位置。请点输入框旁的“+”，选择“位置”发送给我，"
               "我就能找到您附近的活动。")

VIEWS = [
    Choice("team", "本队近期活动", aliases=("本队", "队伍")),
    Choice("near", "我附近的活动", aliases=("附近",)),
    Choice("skill", "适合我技能的活动", aliases=("技能",)),
    Choice("mine", "我的报名（查看或请假）", aliases=("我的报名", "我的排班", "取消报名", "请假")),
]
EMPTY = {
    "team": "本队近期暂时没有可报名的活动，可以看看“我附近的活动”。",
    "near": "您附近5公里内暂时没有可报名的活动，可以看看“本队近期活动”。",
    "skill": "暂时没有需要您技能的活动（或您注册时没有填写技能），可以看看“本队近期活动”。",
    "mine": "您目前没有待参加的报名。回复1查看本队近期活动。",
}


def active_volunteer(ctx):
    """(volunteer, None) for an active volunteer, else (None, what to tell them)."""
    vol = volunteer_of(ctx.session, ctx.follower)
    if vol is None:
        return None, NOT_VOLUNTEER
    if vol.state != "active":
        return None, STATE_REFUSALS.get(vol.state, STATE_REFUSALS["suspended"])
    return vol, None


def _volunteer(ctx):
    vol, refusal = active_volunteer(ctx)
    if vol is None:
        raise Invalid(refusal)
    return vol


def duration_text(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    return (f"{h}小时" if h else "") + (f"{m}分钟" if m or not h else "")


def short_when(shift) -> str:
    s, e = shift.starts_at.astimezone(acts.CHINA), shift.ends_at.astimezone(acts.CHINA)
    return f"{s.month}/{s.day}周{acts.WEEKDAYS[s.weekday()]} {s:%H:%M}-{e:%H:%M}"


def shift_title(shift) -> str:
    return shift.activity.title + (f"·{shift.name}" if shift.name else "")


# ---- the view: what to list -------------------------------------------------------------------

def _near(ctx):
    f = ctx.follower
    return (f.last_lat, f.last_lng) if f.last_lat is not None and f.last_lng is not None else None


def _listing(ctx, view: str):
    vol = _volunteer(ctx)
    if view == "mine":
        return acts.my_signups(ctx.session, vol, ctx.now)
    if view == "near":
        near = _near(ctx)
        if near is None:
            raise Invalid(NO_LOCATION)
        return acts.upcoming(ctx.session, ctx.now, near=near)
    if view == "skill":
        return acts.upcoming(ctx.session, ctx.now, skills=list(vol.skills or []))
    return acts.upcoming(ctx.session, ctx.now, team=vol.team)


def _picked(value, count_hint: str):
    """A choice step's value; free text that matched no choice arrives as the Message."""
    if isinstance(value, t.Message):
        raise Invalid(count_hint)
    return value


def read_view(ctx, value, answers):
    if isinstance(value, t.Message) and value.location is not None:  # activities near it
        loc = value.location
        f = ctx.follower
        f.last_lat, f.last_lng, f.last_location_at = loc.lat, loc.lng, ctx.now
        value = "near"
    value = _picked(value, f"请回复 1-{len(VIEWS)} 之间的序号，或发送位置。")
    if not _listing(ctx, value):
        raise Invalid(EMPTY[value])
    return value


# ---- picking a shift to sign up for ----------------------------------------------------------

def _listing_or_none(ctx, view: str) -> list:
    """For listing choices: a volunteer suspended meanwhile sees none (and is told on answering)."""
    try:
        return _listing(ctx, view)
    except Invalid:
        return []


def shift_choices(ctx, answers) -> list[Choice]:
    choices = []
    for v in _listing_or_none(ctx, answers.get("view", "team")):
        room = f"余{v.free}个名额" if not v.full else "已满，可候补"
        where = acts.place_label(v.shift.activity)
        if v.distance_m is not None:
            where = f"{format_distance(v.distance_m)}，{where}"
        # The engine clips a note to 30 characters: what matters most goes first.
        choices.append(Choice(v.shift.id, f"{short_when(v.shift)} {shift_title(v.shift)}", note=f"{room}；{where}"))
    return choices


def read_shift(ctx, shift_id, answers) -> dict:
    view = acts.shift_view(ctx.session, _picked(shift_id, "请回复时段前面的序号。"))
    if view is None:
        raise Invalid("这个时段已不存在，请重新选择。")
    shift = view.shift
    return {"id": shift.id, "label": f"{acts.when_label(shift.starts_at, shift.ends_at)} {shift_title(shift)}",
            "full": view.full}


def is_full(ctx, answers) -> bool:
    return answers.get("view") != "mine" and bool((answers.get("shift") or {}).get("full"))


def ask_waitlist(ctx, answers) -> str:
    view = acts.shift_view(ctx.session, answers["shift"]["id"])
    waiting = view.waiting if view is not None else 0
    return (f"这个时段的名额已满（已有{waiting}人候补）。是否加入候补名单？"
            "有人取消时按顺序自动递补，并通知您。")


def read_waitlist(ctx, value, answers) -> bool:
    if _picked(value, "加入候补请回复“是”，不加入请回复“否”。") is not True:
        raise Invalid("好的，不加入候补。回复“返回”重新选择时段，或回复“0”退出。")
    return True


# ---- my sign-ups -----------------------------------------------------------------------------

def mine_choices(ctx, answers) -> list[Choice]:
    choices = []
    for signup in _listing_or_none(ctx, "mine"):
        status = {"signed": "已报名", "pending": "待负责人审核"}.get(signup.state) or \
            f"候补第{acts.waitlist_rank(ctx.session, signup)}位"
        choices.append(Choice(signup.id, f"{short_when(signup.shift)} {shift_title(signup.shift)}",
                              note=f"{status}；{acts.place_label(signup.shift.activity)}"))
    return choices


def read_mine(ctx, signup_id, answers) -> dict:
    signup = ctx.session.get(SignUp, _picked(signup_id, "要取消哪一个报名？请回复序号；只是查看的话回复“0”退出。"))
    if signup is None:
        raise Invalid("这个报名已不存在，请重新选择。")
    shift = signup.shift
    label = f"{acts.when_label(shift.starts_at, shift.ends_at)} {shift_title(shift)}"
    return {"id": signup.id, "label": label + {"waitlisted": "（候补）", "pending": "（待审核）"}.get(signup.state, "")}


# ---- finishing -------------------------------------------------------------------------------

def start(ctx, params):
    vol, refusal = active_volunteer(ctx)
    if vol is None:
        return refusal
    if params.get("view"):
        view = params["view"]
        if not _listing(ctx, view):
            return EMPTY[view].replace("回复1查看", "回复“活动”查看")
        return {"view": view}
    return None


def done(ctx, answers):
    vol = _volunteer(ctx)
    if answers.get("view") == "mine":
        return _cancel(ctx, vol, answers["mine"])
    return _sign_up(ctx, vol, answers["shift"])


def settings(ctx) -> attendance.Settings:
    return ctx.settings.attendance or attendance.Settings()


# The notices of a sign-up (one-time ones, offered with each sign-up).
SHIFT_NOTICES = notices.TOPICS["shifts"].kinds


def _sign_up(ctx, vol, chosen: dict) -> str:
    r = acts.sign_up(ctx.session, vol, chosen["id"], ctx.now, waitlist=bool(chosen.get("full")),
                     approval_above=settings(ctx).approval_above)
    details = "\n".join(f"{k}：{v}" for k, v in acts.shift_fields(r.shift).items()) if r.shift else ""
    if r.outcome == "signed":
        soon = "活动前一天会提醒您。" if acts.reminded(r.shift, ctx.now) else "活动很快就开始了，请准时到场。"
        line = notices.offer(ctx.session, ctx.openid, SHIFT_NOTICES, "活动提醒和取消通知", ctx.settings)
        return (f"报名成功！\n{details}\n{soon}到场后扫描现场二维码（或发送位置）签到，"
                "结束时再扫码签退，时长提交队伍审核。" + (f"\n{line}" if line else ""))
    if r.outcome == "waitlisted":
        return (f"该时段名额已满，已为您加入候补名单，目前排第{r.position}位。\n{details}\n"
                "有人取消时会自动为您递补并通知您。")
    if r.outcome in ("pending", "already_pending"):
        return f"已提交报名，需活动负责人审核后生效，审核结果会通知您。\n{details}\n{PENDING_WHY}"
    if r.outcome == "full":
        raise Invalid("很抱歉，这个时段的名额刚刚报满了。回复1重新选择时段（已满的时段可以候补）。")
    if r.outcome == "already_signed":
        return f"您已经报名了这个时段，无需重复报名。\n{details}"
    if r.outcome == "already_waitlisted":
        return f"您已在这个时段的候补名单中，目前排第{r.position}位。"
    if r.outcome == "overlap":
        c = r.conflict
        return (f"不能报名：这个时段与您已报名的“{shift_title(c)}”（{acts.when_label(c.starts_at, c.ends_at)}）"
                "时间重叠。回复“活动”选择其他时段。")
    return "这个时段已经开始或已停止报名。回复“活动”看看其他活动。"


PENDING_WHY = "（近90天缺席或临时请假的次数较多，新的报名需负责人确认。）"


def _cancel(ctx, vol, chosen: dict) -> str:
    cutoff = settings(ctx).cutoff_hours
    r = acts.cancel(ctx.session, vol, chosen["id"], ctx.now, cutoff=settings(ctx).cutoff)
    if r.outcome == "cancelled" and r.late:
        return (f"已为您请假：{chosen['label']}。\n距开始已不足{cutoff}小时，记为一次临时请假；"
                "名额已让给其他志愿者。下次如不能参加，请尽早请假。")
    if r.outcome == "cancelled" and r.signup.attendance == "excused":
        return (f"已为您请假：{chosen['label']}。\n名额已让给候补的志愿者。"
                "欢迎下次参加，回复“活动”查看其他活动。")
    if r.outcome == "cancelled":
        return f"已取消：{chosen['label']}。\n欢迎下次参加，回复“活动”查看其他活动。"
    if r.outcome == "already_cancelled":
        return "这个报名已经取消过了。"
    if r.outcome == "started":
        return "活动已经开始，不能在线取消。如不能到场，请联系活动负责人。"
    return "没有找到这个报名。"


ACTIVITIES = registry.flow(Flow(
    name="activities",
    title="志愿活动报名",
    start=start,
    done=done,
    summary_title="请确认：",
    help="报名后活动前一天会提醒您；名额已满的时段可以候补，有人取消时自动递补。"
         "不能参加请在“我的报名”里请假。",
    steps=[
        Step("view", "您想看哪些活动？（也可以直接发送位置查看附近的活动）", choices=VIEWS,
             parse=read_view, accepts_location=True),
        Step("shift", lambda ctx, a: "请选择要报名的时段（回复序号）：" + page_link(ctx, "/activities", "按日期、地点查看全部活动（网页）"),
             label="报名时段", choices=shift_choices, parse=read_shift,
             show=lambda v: v["label"], when=lambda ctx, a: a.get("view") != "mine", depends_on=("view",),
             help="每个时段后面注明了地点和剩余名额；已满的时段可以报名候补。"),
        Step("waitlist", ask_waitlist, label="加入候补", choices=YES_NO, parse=read_waitlist,
             show=lambda v: "是（名额已满，有人取消时递补）", when=is_full, depends_on=("shift",)),
        Step("mine", lambda ctx, a: "您的报名如下，不能参加请回复序号请假（取消该报名）："
             + page_link(ctx, "/activities/mine", "我的报名（网页）"), label="请假（取消报名）", choices=mine_choices,
             parse=read_mine, show=lambda v: v["label"], when=lambda ctx, a: a.get("view") == "mine",
             depends_on=("view",),
             help="请假后名额会让给候补的志愿者；临近开始才请假记为临时请假。"),
    ],
))


@registry.command("ACTIVITIES", "志愿活动", "活动报名")
def activities_command(ctx, message):
    return ctx.start("activities")


@registry.command("MY_SHIFTS", "我的报名", "我的排班", "我的活动", "取消报名", "请假", "不能参加", "来不了")
def my_shifts_command(ctx, message):
    return ctx.start("activities", view="mine")
