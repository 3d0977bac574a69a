"""召集: a volunteer agrees to be called out (接收召集) or stops it (关闭召集), and answers a
call-out by replying 报名 — a place on the shift at risk (its waitlist when it filled
meanwhile), or the order nobody took. With no call-out to answer, 报名 opens the activity
list. The rules (who is asked, one a day, the first to answer an order wins) are in
`rules.callouts`.
"""

from __future__ import annotations

from handlers import registry
from handlers.activities import PENDING_WHY, active_volunteer, settings, shift_title
from rules import activities as acts
from rules import callouts as callout_rules

OPTED_IN = ("已开启召集提醒：活动缺人或有工单无人接时，会给您发召集通知（每天最多一条），"
            "回复“报名”即可参加。回复“关闭召集”可随时关闭。")


@registry.command("CALLOUT_ON", "接收召集", "开启召集", "召集提醒")
def callout_on(ctx, message):
    vol, refusal = active_volunteer(ctx)
    if vol is None:
        return refusal
    if not callout_rules.opt_in(ctx.session, vol, ctx.now):
        return "您已经开启了召集提醒。回复“关闭召集”可关闭。"
    return OPTED_IN


@registry.command("CALLOUT_OFF", "关闭召集", "不接收召集", "退订召集")
def callout_off(ctx, message):
    vol, refusal = active_volunteer(ctx)
    if vol is None:
        return refusal
    if not callout_rules.opt_out(ctx.session, vol):
        return "您没有开启召集提醒。回复“接收召集”可开启。"
    return "已关闭召集提醒，不会再收到召集通知。回复“接收召集”可重新开启。"


@registry.command("CALLOUT_ANSWER", "报名")
def callout_answer(ctx, message):
    vol, refusal = active_volunteer(ctx)
    if vol is None:
        return refusal
    r = callout_rules.answer_callout(ctx.session, vol, ctx.now, approval_above=settings(ctx).approval_above)
    if r.outcome == "none":
        return ctx.start("activities")
    if r.order is not None:
        if r.outcome == "taken":
            return (f"接单成功！工单 {r.order.number}（{r.order.sub_name}）。"
                    "回复“我的任务”查看详情，上门前请先电话联系居民。")
        if r.outcome == "already":
            return f"您已经接了工单 {r.order.number}，回复“我的任务”查看详情。"
        return r.message
    shift = r.shift
    label = f"“{shift_title(shift)}”（{acts.when_label(shift.starts_at, shift.ends_at)}）"
    if r.outcome == "signed":
        return f"报名成功！{label}\n地点：{acts.place_label(shift.activity)}\n到场后扫码签到，谢谢您补位！"
    if r.outcome == "waitlisted":
        return f"{label}刚刚报满，已为您加入候补，排第{r.position}位；有人请假时自动递补并通知您。"
    if r.outcome == "pending":
        return f"已提交{label}的报名，需活动负责人审核后生效。{PENDING_WHY}"
    if r.outcome == "already":
        return f"您已经报名了{label}，无需重复报名。"
    if r.outcome == "overlap":
        return f"不能报名{label}：与您已报名的时段时间重叠。"
    return f"{label}已经开始或停止报名，谢谢您的热心！回复“活动”看看其他活动。"
