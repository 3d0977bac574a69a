"""我的留言: the messages a resident left for staff, and whether someone answered or handled
them (the answer itself also reached them as a chat message, rules.inbox)."""

from __future__ import annotations

from handlers import registry
from rules import inbox


@registry.command("MY_MESSAGES", "我的留言", "查留言", "留言回复")
def my_messages(ctx, message):
    left = inbox.of_follower(ctx.session, ctx.follower)
    if not left:
        return ("您还没有给工作人员留过言。填写时遇到困难（连续三次没填对），可以选择“给工作人员留言”，"
                "工作人员会联系您。")
    lines = ["【我的留言】"]
    for i, m in enumerate(left, 1):
        lines.append(f"{i}. {m.at.astimezone(inbox.CHINA):%m-%d %H:%M} “{inbox.clip(m.text, 30)}”")
        if m.answer:
            lines.append(f"   工作人员已回复：{inbox.clip(m.answer, 100)}")
        elif m.handled:
            lines.append("   工作人员已处理")
        else:
            lines.append("   等待工作人员处理，会尽快联系您")
    return "\n".join(lines)


@registry.eraser
def erase_answers(ctx, follower):
    inbox.erase(ctx.session, follower)
