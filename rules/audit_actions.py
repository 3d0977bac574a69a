"""The audit log's actions in Chinese, as the 操作日志 page and its CSV export show them.

One entry per action written anywhere (`rules.audit.record`); a new action is one line here.
An action missing from this table is shown as its code, so nothing is hidden.
"""

ACTION_NAMES = {
    "login": "登录",
    "login.failed": "登录失败",
    "login.throttled": "登录被限制（尝试过多）",
    "logout": "退出登录",
    "account.bind_code": "生成微信绑定码",
    "account.unbind": "解除微信绑定",
    "account.password": "修改密码",
    "account.2fa_enable": "启用两步验证",
    "account.2fa_disable": "关闭两步验证",
    "account.2fa_recovery_codes": "重新生成恢复码",
    "session.end": "结束会话",
    "session.end_others": "结束其他所有会话",
    "audit.export": "导出操作日志",
    "activity.create": "发布活动",
    "activity.edit": "修改活动",
    "activity.cancel": "取消活动",
    "shift.create": "新增班次",
    "bus.schedule": "安排巴士",
    "bus.change": "修改巴士安排",
    "bus.cancel": "取消巴士安排",
    "certificate.issue": "开具服务证明",
    "hours.approve": "通过时长",
    "hours.reject": "驳回时长",
    "hours.manual": "补录时长",
    "message.answer": "回复留言",
    "message.handle": "处理留言",
    "order.assign": "派单",
    "order.reassign": "改派工单",
    "phone.reveal": "查看完整电话",
    "place.edit": "修改站点",
    "report.export": "导出报表",
    "volunteer.approve": "通过志愿者注册",
    "volunteer.reject": "驳回志愿者注册",
}


def action_name(action: str) -> str:
    return ACTION_NAMES.get(action, action)
