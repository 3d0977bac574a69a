"""问卷: a resident answers an open survey in chat, one question a message.

The survey's questions are data in SQL (`rules.surveys`); the form is the engine's own, so
返回, 取消, 帮助, the summary with edit-by-number, set-aside and resume (继续 / 重新开始)
work as in every other form. The flow declares a fixed set of question slots, four per
position (single, multi, number, text — a step's reading is declared, not computed), and a
slot applies only when the chosen survey has a question of that kind at that position.

Started by the word 问卷 (or the menu key SURVEY) — the invitation push says to reply 问卷 —
or by `ctx.start("survey", survey=<id>)`. With several open surveys the first step asks
which one.
"""

from __future__ import annotations

from dialogue import Choice, Flow, Invalid, Step
from dialogue.types import Message, Reply
from handlers import registry
from rules import surveys
from rules.inputs import as_written, normalize, parse_int
from store.models import Survey

PICK = "survey"


def _survey(ctx, answers) -> Survey | None:
    sid = answers.get(PICK)
    return ctx.session.get(Survey, sid) if isinstance(sid, int) else None  # identity-mapped: one read a turn


def _question(ctx, answers, i: int) -> dict | None:
    survey = _survey(ctx, answers)
    if survey is None or i >= len(survey.questions):
        return None
    return survey.questions[i]


def _header(survey: Survey) -> str:
    lines = [f"【{survey.title}】"]
    if survey.intro:
        lines.append(survey.intro)
    if survey.personal_reason:
        lines.append(f"本问卷会询问个人信息，用途：{survey.personal_reason}")
    else:
        lines.append("本问卷不收集姓名、电话等个人信息。")
    return "\n".join(lines)


def survey_choices(ctx, answers):
    return [Choice(s.id, s.title) for s in surveys.open_for(ctx.session, ctx.follower)]


def _asker(i: int):
    def ask(ctx, answers):
        survey = _survey(ctx, answers)
        q = survey.questions[i]
        head = _header(survey) + "\n\n" if i == 0 else ""
        line = f"第{i + 1}/{len(survey.questions)}题：{q['text']}"
        if q["kind"] == "number":
            line += f"\n请回复{q['min']}到{q['max']}之间的数字："
        elif q["kind"] == "text":
            line += f"\n请直接回复（{surveys.MAX_TEXT_ANSWER}字以内）："
        return head + line
    return ask


def _choices(i: int):
    def choices(ctx, answers):
        q = _question(ctx, answers, i) or {}
        return [Choice(o, o) for o in q.get("options", [])]
    return choices


def _applies(i: int, kind: str):
    def when(ctx, answers):
        q = _question(ctx, answers, i)
        return q is not None and q["kind"] == kind
    return when


def _number(i: int):
    def parse(ctx, arg, answers):
        q = _question(ctx, answers, i)
        n = parse_int(normalize(arg.text)) if isinstance(arg, Message) else None
        if n is None or not q["min"] <= n <= q["max"]:
            raise Invalid(f"请回复{q['min']}到{q['max']}之间的数字。")
        return n
    return parse


def read_text(ctx, arg, answers):
    text = as_written(arg.text)
    if len(text) > surveys.MAX_TEXT_ANSWER:
        raise Invalid(f"请控制在{surveys.MAX_TEXT_ANSWER}字以内（现在{len(text)}字）。")
    return text


def slot(i: int, kind: str) -> str:
    return f"q{i + 1}{kind[0]}"


def _steps() -> list[Step]:
    steps = [Step(PICK, "有以下问卷正在进行，请选择（回复序号）：", choices=survey_choices,
                  help="选一份问卷开始填写；“0”退出。")]
    for i in range(surveys.MAX_QUESTIONS):
        label = f"第{i + 1}题"
        common = dict(ask=_asker(i), label=label, depends_on=(PICK,))
        steps += [
            Step(slot(i, "single"), choices=_choices(i), when=_applies(i, "single"), **common,
                 help="回复一个序号。"),
            Step(slot(i, "multi"), choices=_choices(i), multi=True, when=_applies(i, "multi"), **common,
                 help="可以选多项，例如回复：1 3"),
            Step(slot(i, "number"), parse=_number(i), when=_applies(i, "number"), **common,
                 help="回复一个数字即可，例如：2"),
            Step(slot(i, "text"), parse=read_text, optional=True, when=_applies(i, "text"), **common,
                 help="用几句话说说您的想法；不想答可回复“跳过”。"),
        ]
    return steps


def start(ctx, params):
    follower = ctx.follower
    wanted = params.get("survey")
    if isinstance(wanted, int):
        survey = ctx.session.get(Survey, wanted)
        if survey is None or survey.state != "open" or not surveys.is_for(ctx.session, survey, follower):
            return "这份问卷已经结束或不面向您所在的社区，谢谢关心！回复“菜单”查看其他服务。"
        if surveys.answered(ctx.session, survey.id, follower.id):
            return f"您已经填写过“{survey.title}”，谢谢参与！"
        return {PICK: survey.id}
    available = surveys.open_for(ctx.session, follower)
    if not available:
        return "目前没有需要您填写的问卷，谢谢关心！回复“菜单”查看其他服务。"
    if len(available) == 1:
        return {PICK: available[0].id}
    return None  # the first step asks which


def done(ctx, answers):
    survey = _survey(ctx, answers)
    if survey is None or survey.state != "open":
        return Reply("这份问卷已经结束，您的回答没有保存。谢谢关心！")
    values = []
    for i, q in enumerate(survey.questions):
        values.append(answers.get(slot(i, q["kind"])))
    kept = surveys.submit(ctx.session, survey, ctx.follower, values, ctx.now)
    if not kept:
        return Reply(f"您已经填写过“{survey.title}”，以第一次的回答为准。谢谢参与！")
    return Reply(f"提交成功！感谢您参与“{survey.title}”。\n您的意见会用来调整社区志愿服务项目。回复“菜单”查看其他服务。")


SURVEY_FLOW = registry.flow(Flow(
    name="survey", title="问卷调查", summary_title="请核对您的回答：",
    help="一题一题回答即可；“返回”改上一题，“0”退出（已答的会保留一天，回复“问卷”继续）。",
    steps=_steps(), start=start, done=done,
))


@registry.command("SURVEY", "问卷", "问卷调查", "调查问卷", "填问卷", "摸底调查")
def survey(ctx, message):
    return ctx.start("survey")


@registry.eraser
def erase_answers(ctx, follower):
    surveys.erase_for_follower(ctx.session, follower.id)
