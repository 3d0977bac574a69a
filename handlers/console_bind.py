"""A coordinator binds their console account to this WeChat follower: "绑定管理员", then
the 6-digit code the console shows (rules.console_binding)."""

from __future__ import annotations

import re

from dialogue import Flow, Invalid, Step
from handlers import registry
from rules import console_binding


def read_code(ctx, message, answers):
    code = re.sub(r"\s", "", message.text or "")
    if not re.fullmatch(r"\d{6}", code):
        raise Invalid("请回复管理后台“我的账号”页面上的 6 位数字绑定码。")
    try:
        coordinator = console_binding.redeem(ctx.session, code, ctx.follower, ctx.now)
    except console_binding.BindError as e:
        raise Invalid(str(e)) from None
    return coordinator.name


def bound(ctx, answers):
    return f"已绑定管理员账号“{answers['code']}”。今后待审核的时长和待派的工单会在这里提醒您。"


registry.flow(Flow(
    name="console_bind",
    title="绑定管理员账号",
    confirm=False,
    steps=[Step("code", "请回复管理后台“我的账号”页面上的 6 位绑定码（10 分钟内有效）：", label="绑定码",
                parse=read_code, help="在电脑上登录管理后台，点击右上角您的名字，生成绑定码后在这里回复。")],
    done=bound,
))


@registry.command("CONSOLE_BIND", "绑定管理员", "管理员绑定", "绑定后台")
def bind_command(ctx, message):
    return ctx.start("console_bind")
