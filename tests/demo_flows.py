"""A demo form, registered only by the tests, that uses every step feature of the engine:
paged choices (12 services), a conditional step, multi-select, a number, a location or
typed address, a phone with a default and masking, an ID number with masking, a yes/no
question with a follow-up, an optional note, a `start` hook (refusal and prefilled
answers) and a completion that can refuse (too many people).

Its completion files the answers as a `CoordinatorMessage` (flow "demo"): a real table
with no uniqueness, so a duplicated completion would show as a second row.
"""

from __future__ import annotations

import json

from dialogue import Choice, Flow, Invalid, Step
from dialogue.flows import YES_NO
from handlers import registry
from rules import masks
from rules.inputs import id_number, mobile, parse_int
from store.models import CoordinatorMessage

SERVICES = [
    Choice("meal", "助餐"), Choice("clean", "助洁"), Choice("bath", "助浴"), Choice("doctor", "助医"),
    Choice("walk", "助行"), Choice("shop", "代购"), Choice("haircut", "理发"), Choice("repair", "维修"),
    Choice("chat", "陪聊"), Choice("law", "法律咨询"), Choice("mind", "心理疏导"), Choice("other", "其他"),
]
LABELS = {c.value: c.label for c in SERVICES}
DIETS = [Choice("normal", "普通"), Choice("soft", "软食"), Choice("low_sugar", "低糖")]
DAYS = [Choice(d, d) for d in ("周一", "周二", "周三", "周四", "周五", "周六", "周日")]
MAX_PEOPLE = 8


def read_people(ctx, message, answers):
    n = parse_int(message.text)
    if n is None or not 1 <= n <= 10:
        raise Invalid("请回复人数，1到10之间的数字，例如：2")
    return n


def read_phone(ctx, message, answers):
    phone = mobile(message.text)
    if phone is None:
        raise Invalid("请回复11位手机号，例如：13800138000")
    return phone


def read_id(ctx, message, answers):
    number = id_number(message.text, today=ctx.local_now.date())
    if number is None:
        raise Invalid("身份证号不正确，请回复18位身份证号。")
    return number


def start(ctx, params):
    if params.get("closed"):
        return "演示服务暂停预约。"
    if params.get("service"):
        return {"service": params["service"]}  # picked before the form: not asked again
    return None


def done(ctx, answers):
    if answers["people"] > MAX_PEOPLE:
        raise Invalid(f"一次最多{MAX_PEOPLE}人，请修改人数。")
    ctx.session.add(CoordinatorMessage(
        follower_id=ctx.follower.id, flow="demo", step="done",
        text=json.dumps(answers, ensure_ascii=False, sort_keys=True),
    ))
    return f"演示预约已提交：{LABELS[answers['service']]}，{answers['people']}人。"


DEMO = Flow(
    name="demo",
    title="演示预约",
    start=start,
    done=done,
    help="这是一个演示表单。",
    steps=[
        Step("service", "请选择服务项目：", label="服务项目", choices=SERVICES,
             show=lambda v: LABELS[v], help="回复序号选择，也可以直接说服务名称，比如“助餐”。"),
        Step("diet", "饮食有什么要求？", label="饮食要求", choices=DIETS,
             when=lambda ctx, a: a.get("service") == "meal",
             show=lambda v: {c.value: c.label for c in DIETS}[v]),
        Step("days", "哪几天需要服务？", label="服务日期", choices=DAYS, multi=True),
        Step("people", "一共几位需要服务？", label="人数", parse=read_people),
        Step("address", "请回复服务地址，或者发送位置：", label="服务地址", accepts_location=True,
             help="可以点输入框旁的“+”，选择“位置”发送。"),
        Step("phone", "请回复联系电话：", label="联系电话", parse=read_phone, show=masks.phone,
             default=lambda ctx, a: ctx.follower.phone, help="手机号是11位数字。"),
        Step("id_no", "请回复身份证号：", label="身份证号", parse=read_id, show=masks.id_number),
        Step("pickup", "需要接送吗？", label="需要接送", choices=YES_NO,
             show=lambda v: "是" if v else "否"),
        Step("pickup_place", "在哪里接您？", label="接送地点",
             when=lambda ctx, a: a.get("pickup") is True),
        Step("note", "还有什么要说明的吗？", label="备注", optional=True),
    ],
)


def register() -> None:
    """Register the demo flow and its commands once (tests import this from several
    modules)."""
    if DEMO.name in registry.flows:
        return
    registry.flow(DEMO)

    @registry.command("DEMO", "演示", "演示预约")
    def demo(ctx, message):
        return ctx.start("demo")

    @registry.command("DEMO_MEAL", "演示助餐")
    def demo_meal(ctx, message):
        return ctx.start("demo", service="meal")

    @registry.command("DEMO_CLOSED", "演示暂停")
    def demo_closed(ctx, message):
        return ctx.start("demo", closed=True)


register()
