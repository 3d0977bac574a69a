"""Coordinators review in chat: 审核 (pending hours) and 待审志愿者 (pending sign-ups) in
their team's subtree. The list is numbered; "通过 1 3 5", "全部通过" or "驳回 2 原因…"
decides one or many at once. Anyone who is not a coordinator gets a polite refusal.
"""

from __future__ import annotations

import re
from typing import Callable

from sqlalchemy import select

from dialogue import Flow, Invalid, Step
from dialogue.flows import counted
from handlers import registry
from menus import main_menu
from rules import volunteering
from rules.inputs import normalize
from rules.volunteering import CHINA, hours_text
from store.bounded import bounded_int
from store.models import HourRecord, Volunteer

NOT_COORDINATOR = "抱歉，审核功能只对队伍的协调员开放。如需成为协调员，请联系所在街道分队。"
LIST_LIMIT = 20
PAGE = 10  # records shown at once: a page, its paging line and the instructions fit one reply
INSTRUCTIONS = "回复“通过 1 3”、“全部通过”，或“驳回 2 原因”。"
_VERB = re.compile(r"^(通过|批准|同意|驳回|拒绝|不通过)\s*(全部|所有)?\s*([\d\s,，、和]*)(.*)$", re.S)


def read_decision(ctx, message, answers) -> dict:
    """{"approve": bool, "picks": [1-based numbers], "reason": str}."""
    text = normalize(message.text)
    if text in ("全部通过", "都通过", "全部批准"):
        return {"approve": True, "picks": list(range(1, len(answers["ids"]) + 1)), "reason": ""}
    m = _VERB.match(text)
    if not m:
        raise Invalid("请回复“通过 序号”（可多个，如“通过 1 3”）、“全部通过”，或“驳回 序号 原因”。")
    approve = m.group(1) in ("通过", "批准", "同意")
    count = len(answers["ids"])
    if m.group(2):
        numbers, picks = [], list(range(1, count + 1))
    else:
        numbers = re.findall(r"\d+", m.group(3))
        picks = [bounded_int(n, 1, count) for n in numbers]  # None: not a number in the list
    if not picks:
        raise Invalid("请在后面写上序号，例如“通过 1 3”。")
    bad = [n for n, pick in zip(numbers, picks) if pick is None]
    if bad:
        shown = bad[0] if len(bad[0]) <= 6 else bad[0][:6] + "…"
        raise Invalid(f"序号 {shown} 不在列表里。" + counted(main_menu().form["choose_range"], count))
    reason = re.sub(r"^(原因|理由)?[:：\s]*", "", m.group(4).strip())
    if not approve and not reason:
        raise Invalid("驳回请写明原因，例如“驳回 2 没有签到记录”。")
    return {"approve": approve, "picks": sorted(set(picks)), "reason": reason}


def _coordinator(ctx):
    return volunteering.coordinator_for(ctx.session, ctx.follower)


def review_flow(*, name: str, key: str, words: tuple[str, ...], title: str, heading: str, empty: str,
                model, pending: Callable, line: Callable, decide: Callable) -> Flow:
    """A one-step flow started by command `key`/`words`: the numbered list of what
    `pending(session, coordinator, limit)` returns, then one decision on some or all of it,
    made by `decide(ctx, coordinator, ids, approve, reason)` which returns the reply lines."""

    def start(ctx, params):
        coord = _coordinator(ctx)
        if coord is None:
            return NOT_COORDINATOR
        items = pending(ctx.session, coord, limit=LIST_LIMIT)
        if not items:
            return f"{coord.team.name}及下属队伍{empty}"
        return {"ids": [item.id for item in items]}

    def pages(ctx, answers) -> int:
        return max(1, -(-len(answers["ids"]) // PAGE))

    def ask(ctx, answers) -> str:
        # One page of the list, numbered across pages (so "通过 12" means the same on any
        # page); the instructions close every page, so the reply never loses them.
        count = pages(ctx, answers)
        page = min(max(0, ctx.state.form.page), count - 1)
        shown = answers["ids"][page * PAGE:(page + 1) * PAGE]
        rows = {r.id: r for r in ctx.session.scalars(select(model).where(model.id.in_(shown)))}
        lines = [heading]
        lines += [f"{i}. {line(rows[rid])}" for i, rid in enumerate(shown, page * PAGE + 1) if rid in rows]
        lines.append(ctx.engine.page_line(page, count))
        lines.append(INSTRUCTIONS)
        return "\n".join(x for x in lines if x)

    def done(ctx, answers):
        coord = _coordinator(ctx)
        if coord is None:
            return NOT_COORDINATOR
        d = answers["decision"]
        ids = [answers["ids"][n - 1] for n in d["picks"]]
        lines = decide(ctx, coord, ids, d["approve"], d["reason"])
        remaining = len(pending(ctx.session, coord, limit=LIST_LIMIT + 1))
        if remaining:
            # Counted up to one more than a list holds: more than that is "20 多", not "21".
            shown = f"{LIST_LIMIT} 多" if remaining > LIST_LIMIT else f"{remaining} "
            lines.append(f"还有 {shown}条待审核，回复“{words[0]}”继续。")
        return "\n".join(lines)

    registry.command(key, *words)(lambda ctx, message: ctx.start(name))
    return registry.flow(Flow(
        name=name, title=title, start=start, done=done, confirm=False,
        steps=[Step("decision", ask, parse=read_decision, pages=pages,
                    help="“通过 1 3 5”一次处理多条；“驳回 2 原因”需要写明原因。")],
    ))


# ---- hours --------------------------------------------------------------------------------

def hour_line(r: HourRecord) -> str:
    start, end = r.started_at.astimezone(CHINA), r.ended_at.astimezone(CHINA)
    flag = f"［{r.flagged}］" if r.flagged else ""
    return (f"{r.volunteer.name}（{r.volunteer.number}）{start:%m-%d %H:%M}-{end:%H:%M} "
            f"{hours_text(r.minutes)} {r.description[:20]}{flag}").rstrip()


def decide_hours(ctx, coord, ids, approve, reason) -> list[str]:
    results = volunteering.decide_hours(ctx.session, ids, approve=approve, now=ctx.now,
                                        coordinator=coord, reason=reason,
                                        bank=ctx.settings.timebank)
    done = [r for r in results if r.outcome in ("approved", "rejected")]
    own = [r for r in results if r.outcome == "own_entry"]
    lines = [f"已{'通过' if approve else '驳回'} {len(done)} 条。"]
    if own:
        lines.append(f"{len(own)} 条补录由您本人录入，需另一位协调员审核。")
    if len(results) > len(done) + len(own):
        lines.append(f"{len(results) - len(done) - len(own)} 条已被其他协调员处理，未重复操作。")
    for r in results:
        if r.star:
            vol = ctx.session.get(HourRecord, r.record_id).volunteer
            lines.append(f"{vol.name}（{vol.number}）达到{r.star}星志愿者！")
    return lines


review_flow(name="review_hours", key="REVIEW_HOURS", words=("审核", "审核时长", "时长审核"),
            title="审核时长", heading="待审核的服务时长：", empty="暂无待审核的服务时长。",
            model=HourRecord, pending=volunteering.pending_hours, line=hour_line, decide=decide_hours)


# ---- sign-ups -----------------------------------------------------------------------------

def volunteer_line(v: Volunteer) -> str:
    minor = "（未成年，监护人已登记）" if v.guardian_name else ""
    return f"{v.name} {v.number} {v.team.name}{minor}"


def decide_volunteers(ctx, coord, ids, approve, reason) -> list[str]:
    decided = 0
    for vid in ids:
        try:
            decided += volunteering.decide_volunteer(ctx.session, ctx.session.get(Volunteer, vid), approve=approve,
                                                     now=ctx.now, coordinator=coord, reason=reason)
        except volunteering.VolunteerError:
            continue  # moved out of this coordinator's subtree meanwhile
    lines = [f"已{'通过' if approve else '驳回'} {decided} 名志愿者的注册。"]
    if decided < len(ids):
        lines.append(f"{len(ids) - decided} 名已被处理过，未重复操作。")
    return lines


review_flow(name="review_volunteers", key="REVIEW_VOLUNTEERS", words=("待审志愿者", "审核志愿者", "志愿者审核"),
            title="审核志愿者", heading="待审核的志愿者注册：", empty="暂无待审核的志愿者。",
            model=Volunteer, pending=volunteering.pending_volunteers, line=volunteer_line,
            decide=decide_volunteers)
