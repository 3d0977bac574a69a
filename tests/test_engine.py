"""The engine on its own registry: what conversation files cannot easily show — damaged or
outdated state documents, replies that must fit one message, the location_select echo,
the state version surviving handlers that clear the state, and the menu texts check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dialogue import Choice, Flow, Invalid, Location, Message, Step
from dialogue import types as t
from dialogue.context import Ctx
from dialogue.engine import CONFIRM, REPLY_LIMIT, Engine, fit
from dialogue.registry import Registry
from dialogue.types import Reply
from menus import main_menu
from rules import followers


def make_engine() -> tuple[Engine, list]:
    done = []
    reg = Registry()
    many = [Choice(i, f"选项{i}" + "很长的说明文字" * 3) for i in range(1, 40)]
    reg.flow(Flow(
        name="big", title="大表单",
        done=lambda ctx, a: done.append(dict(a)) or "已提交",
        steps=[Step(f"f{i}", f"第{i}项是什么？", label=f"第{i}项") for i in range(1, 31)],
    ))
    reg.flow(Flow(
        name="pick", title="选择", done=lambda ctx, a: done.append(dict(a)) or "好了", confirm=False,
        steps=[Step("item", "选一个：", choices=many),
               Step("place", "在哪里？", accepts_location=True)],
    ))
    reg.flow(Flow(
        name="strict", title="严格", confirm=False,
        done=lambda ctx, a: (_ for _ in ()).throw(Invalid("已经满了，请换一个数字。")) if a["n"] == "9" else "收到",
        steps=[Step("n", "回复一个数字：")],
    ))

    @reg.command("BIG", "大表单")
    def big(ctx, message):
        return ctx.start("big")

    @reg.command("PICK", "选择")
    def pick(ctx, message):
        return ctx.start("pick")

    @reg.command("STRICT", "严格")
    def strict(ctx, message):
        return ctx.start("strict")

    @reg.on_event(t.UNSUBSCRIBE)
    def leave(ctx, message):
        ctx.state.clear()

    return Engine(reg, main_menu()), done


class Talk:
    """One user talking to an engine, the state document kept between turns as the pipeline
    keeps it (decoded when a turn starts, encoded when it ends)."""

    def __init__(self, svc, engine: Engine):
        self.svc, self.engine = svc, engine
        self.state: dict = {"version": 0}

    def send(self, message: Message) -> str:
        with self.svc.db.transaction() as session:
            ctx = Ctx(openid="o_unit", message=message, session=session, now=self.svc.clock.now(),
                      records=followers.TurnRecords(now=self.svc.clock.now(), message=not message.is_event),
                      settings=self.svc.settings, state=self.engine.read_state(self.state))
            reply = self.engine.handle(ctx)
        self.state = ctx.state.encode()  # the stored document, as the pipeline saves it
        assert len(reply.text.encode("utf-8")) <= REPLY_LIMIT
        return reply.text

    def say(self, text: str) -> str:
        return self.send(Message(openid="o_unit", text=text, msg_id=1))


@pytest.fixture
def talk(svc):
    engine, done = make_engine()
    talk = Talk(svc, engine)
    talk.done = done
    return talk


def test_a_long_summary_fits_one_reply(talk):
    talk.say("大表单")
    for _ in range(1, 31):
        reply = talk.say("很长的回答" * 40)
    assert talk.state["step"] == CONFIRM
    assert len(reply.encode("utf-8")) <= REPLY_LIMIT
    assert "30. 第30项：" in reply and "…" in reply  # every row, long answers clipped
    assert reply.endswith(main_menu().form["summary_footer"])
    talk.say("99")  # a wrong answer puts a hint above the summary: still one reply
    assert talk.say("确认") == "已提交" and len(talk.done[0]) == 30


def test_free_text_longer_than_the_limit_gets_a_hint(talk):
    talk.say("大表单")
    reply = talk.say("长" * 201)
    assert "内容太长了" in reply and talk.state["step"] == "f1"


def test_many_choices_are_paged_eight_at_a_time_and_numbers_are_global(talk):
    first = talk.say("选择")
    assert "8. 选项8" in first and "9. 选项9" not in first and "第1/5页" in first
    talk.say("下一页")
    page = talk.say("下一页")
    assert "17. 选项17" in page and "第3/5页" in page
    assert "在哪里" in talk.say("17")
    assert talk.state["answers"]["item"] == 17 and talk.state["page"] == 0


def test_location_select_answers_once_and_its_echo_message_is_ignored(talk):
    talk.say("选择")
    talk.say("1")
    loc = Location(36.71, 119.12, "奎文区东风东街")
    event = Message(openid="o_unit", kind=t.EVENT, event=t.LOCATION_SELECT, key="LOC", location=loc)
    assert talk.send(event) == "好了"
    assert talk.done == [{"item": 1, "place": "奎文区东风东街"}]
    echo = Message(openid="o_unit", kind=t.LOCATION, location=loc, msg_id=2)
    assert talk.send(echo) == ""
    assert "last_loc" not in talk.state
    # A later location message is a location again (routed outside forms).
    assert "收到您的位置" in talk.send(echo)


def test_a_refusing_completion_without_summary_asks_again(talk):
    talk.say("严格")
    reply = talk.say("9")
    assert "已经满了" in reply and "回复一个数字" in reply
    assert talk.state["step"] == "n" and talk.state["history"] == []
    assert talk.say("8") == "收到" and not talk.state.get("flow")


@pytest.mark.parametrize("damage", [
    {"flow": "gone_after_deploy", "step": "x", "answers": {}},
    {"flow": "big", "step": "renamed_step", "answers": {}},
    {"flow": "big", "step": "f2", "answers": "not a dict"},
    {"flow": "big", "step": "f2", "answers": {}, "history": ["f1", "removed"], "retries": "x"},
    {"paused": {"flow": "gone", "step": "a"}, "pending": "resume"},
    {"paused": "garbage", "pending": "nonsense"},
    {"flow": "big", "step": "f2", "answers": {}, "updated_at": "yesterday"},
    {"flow": ["big"], "step": {"x": 1}, "answers": [], "history": [["f1"]]},
    {"flow": "big", "step": ["f1"], "answers": {}},
    {"flow": "big", "step": "f2", "answers": {}, "history": [["f1"], None, "f1"]},
])
def test_damaged_or_outdated_state_never_breaks_a_turn(talk, damage):
    talk.state = {"version": 3, **damage}
    reply = talk.say("菜单")
    assert main_menu().title in reply
    assert talk.state["version"] == 3
    assert not talk.state.get("flow")


def test_a_kept_answer_the_step_can_no_longer_show_does_not_break_the_summary(svc):
    engine, done = make_engine()
    engine.registry.flows["big"].steps[0].show = lambda v: {"old": "旧的"}[v]
    talk = Talk(svc, engine)
    talk.state = {"version": 1, "flow": "big", "step": CONFIRM, "history": [],
                  "answers": {f"f{i}": "x" for i in range(1, 31)}}
    reply = talk.say("看看")
    assert "1. 第1项：（未填）" in reply and "2. 第2项：x" in reply
    assert talk.say("1").startswith("第1项是什么")


def test_a_removed_step_in_history_is_dropped(talk, svc):
    talk.say("大表单")
    talk.say("a")
    talk.state["history"].append("removed")
    talk.state["updated_at"] = svc.clock.now().timestamp()
    assert "第3项" in talk.say("b")
    assert talk.state["history"] == ["f1", "f2"]


def test_version_survives_a_handler_that_clears_the_state(talk):
    talk.say("大表单")
    talk.state["version"] = 7
    talk.send(Message(openid="o_unit", kind=t.EVENT, event=t.UNSUBSCRIBE))
    assert talk.state == {"version": 7}


def test_idle_expiry_follows_the_setting(talk, svc):
    talk.say("大表单")
    talk.say("a")
    svc.clock.advance(seconds=svc.settings.state_idle - 5)
    assert "第3项" in talk.say("b")
    svc.clock.advance(seconds=svc.settings.state_idle + 5)
    assert "继续填写" in talk.say("c")
    assert talk.state["paused"]["step"] == "f3"


def test_an_idle_form_with_nothing_answered_is_simply_gone(talk, svc):
    talk.say("大表单")
    svc.clock.advance(seconds=svc.settings.state_idle + 5)
    assert "继续填写" not in talk.say("你好")
    assert not talk.state.get("flow") and not talk.state.get("paused")


def test_menu_texts_must_be_complete():
    menu = main_menu()
    broken = replace(menu, form={k: v for k, v in menu.form.items() if k != "stuck"})
    with pytest.raises(ValueError, match="stuck"):
        Engine(Registry(), broken)


def test_fit_keeps_whole_lines():
    text = "\n".join(f"第{i}行" + "字" * 50 for i in range(40))
    cut = fit(Reply(text))
    assert len(cut.text.encode("utf-8")) <= REPLY_LIMIT and cut.text.endswith("\n…")
    assert all(line in text.split("\n") for line in cut.text.split("\n")[:-1])
    assert fit(Reply("短")).text == "短"


def test_an_answer_is_read_against_the_choices_its_question_showed(svc):
    """The choices move between the question and the answer (a slot began, a place was
    added): "1" is still the first choice the user saw, and they are not looked up again."""
    shelf = ["苹果", "香蕉"]
    looked_up = []
    reg = Registry()
    reg.flow(Flow(name="fruit", title="水果", confirm=False, done=lambda ctx, a: f"选了{a['fruit']}",
                  steps=[Step("fruit", "选一个：",
                              choices=lambda ctx, a: looked_up.append(1) or [Choice(f, f) for f in shelf])]))
    reg.command("FRUIT", "水果")(lambda ctx, message: ctx.start("fruit"))
    talk = Talk(svc, Engine(reg, main_menu()))
    assert "1. 苹果" in talk.say("水果")
    shelf.insert(0, "西瓜")
    looked_up.clear()
    assert talk.say("1") == "选了苹果"
    assert looked_up == []


def test_a_state_without_the_choices_shown_reads_them_anew(talk):
    """A form saved before the choices were kept, or with a damaged copy of them."""
    talk.say("选择")
    for damage in (None, "garbage", {"step": "item", "choices": [[1]]}, {"step": "item", "choices": [[1, 2]]},
                   {"step": "item", "choices": [[1, "选项1", "别名"]]}, {"step": 3, "choices": []}):
        if damage is None:
            talk.state.pop("offered")
        else:
            talk.state["offered"] = damage
        assert "在哪里" in talk.say("3")
        assert talk.state["answers"]["item"] == 3
        talk.say("返回")
        assert talk.state["step"] == "item" and talk.state["offered"]["step"] == "item"
