"""我的时长: a volunteer's approved and pending hours, star level and the way to the next
star, this year's hours, the latest records and the time-bank balance.

All totals come from one aggregate query (`rules.volunteering.summary`), so a volunteer
with thousands of records gets the answer as fast as one with three.
"""

from __future__ import annotations

from handlers import registry
from handlers.common import page_link
from rules import volunteering
from rules.volunteering import hours_text

SOURCE_NAMES = {"activity": "活动", "order": "订单服务", "manual": "补录"}
STATE_NAMES = {"pending": "待审核", "approved": "已通过", "rejected": "未通过"}


def stars_text(level: int) -> str:
    return "★" * level + f"（{level}星）" if level else "暂无星级"


@registry.command("MY_HOURS", "我的时长", "时长", "查时长", "时间银行", "星级")
def my_hours(ctx, message):
    vol = volunteering.volunteer_of(ctx.session, ctx.follower)
    if vol is None:
        return "您还不是注册志愿者。回复“注册”成为志愿者，服务时长会记在您的志愿者编号下。"
    rule = volunteering.rules()
    s = volunteering.summary(ctx.session, vol, ctx.now, rule)
    lines = [f"【我的时长】编号 {vol.number}（{vol.team.name}）"]
    if vol.state == "pending":
        lines.append("注册正在等待队伍审核。")
    lines.append(f"累计服务时长：{hours_text(s.approved)}（平台记录，已审核）")
    if s.pending:
        lines.append(f"待审核：{hours_text(s.pending)}")
    lines.append(f"今年：{hours_text(s.this_year)}")
    lines.append(f"星级：{stars_text(s.star)}")
    if s.to_next_star is not None:
        lines.append(f"距离{s.star + 1}星还差 {hours_text(s.to_next_star)}")
    lines.append(f"时间银行余额：{hours_text(s.balance)} （回复“存折”看明细，“邀请家人”让家人使用）")
    if s.latest:
        lines.append("最近记录：")
        for r in s.latest:
            local = r.started_at.astimezone(volunteering.CHINA)
            lines.append(f"· {local:%m-%d} {SOURCE_NAMES.get(r.source, r.source)} "
                         f"{hours_text(r.minutes)} {STATE_NAMES.get(r.state, r.state)}")
    else:
        lines.append("还没有服务记录，回复“活动”报名志愿活动。")
    return "\n".join(lines) + page_link(ctx, "/records", "全部记录和时间银行存折")
