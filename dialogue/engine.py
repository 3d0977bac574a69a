"""The turn: one message in, one reply out.

Order of business for every message (the state document is `ctx.state`):

1. an open form that has been idle too long is set aside (offered back on this message);
2. a pending question of the engine's own (resume? stuck?) takes its answer;
3. global words: 菜单, 取消/0, 返回/上一步, 帮助/?, 重复, 继续;
4. an open form's current step reads the answer (a wrong one gets a hint and the question);
5. otherwise events, QR scenes, menu numbers, command words and fallbacks route it.

State shape: {flow, step, answers, retries, history, page, return_to, updated_at,
paused: {flow, step, answers, history, updated_at}, pending: "resume"|"stuck"|"message"}.
"""

from __future__ import annotations

from typing import Any

from dialogue import types as t
from dialogue.context import Ctx, as_reply
from dialogue.flows import PAGE_SIZE, Flow, Invalid, Step, match_choice, match_many, numbered
from dialogue.inputs import normalize, parse_int, yes_no
from dialogue.registry import Registry
from dialogue.types import Message, Reply
from menus import MainMenu
from store.models import CoordinatorMessage

MAX_WRONG = 3

GLOBAL_WORDS = {
    "菜单": "menu", "主菜单": "menu", "目录": "menu", "menu": "menu",
    "取消": "cancel", "退出": "cancel", "0": "cancel", "结束": "cancel", "不填了": "cancel",
    "返回": "back", "上一步": "back", "后退": "back", "回上一步": "back",
    "帮助": "help", "help": "help", "怎么用": "help", "说明": "help",
    "重复": "repeat", "再说一遍": "repeat", "再说一次": "repeat",
    "继续": "resume", "继续填写": "resume",
}
KEEP_WORDS = ("保留", "不变", "不修改", "不改")
NEXT_PAGE = ("下一页", "下页", "更多", "下")
PREV_PAGE = ("上一页", "上页")
CONFIRM_WORDS = ("确认", "确定", "提交", "确认提交", "对", "是", "是的", "好", "好的", "没问题", "可以")


def global_word(raw: str) -> str | None:
    norm = normalize(raw).lower()
    if not norm and raw.strip() and set(raw.strip()) <= set("?？"):
        return "help"
    return GLOBAL_WORDS.get(norm)


class Engine:
    def __init__(self, registry: Registry, menu: MainMenu):
        self.registry = registry
        self.menu = menu
        self.texts = menu.form

    # ---- entry point ------------------------------------------------------------------

    def handle(self, ctx: Ctx) -> Reply:
        ctx.engine = self
        msg = ctx.message
        state = ctx.state
        now_ts = ctx.now.timestamp()
        self._expire(state, now_ts, ctx.settings)

        if msg.is_event:
            return self._event(ctx, msg)
        if msg.kind == t.LOCATION and not self._active(state):
            return self._route_location(ctx, msg)

        text = msg.text if msg.kind in (t.TEXT, t.VOICE) else ""
        pending = state.get("pending")
        if pending:
            reply = self._pending(ctx, pending, text)
            if reply is not None:
                return reply

        word = global_word(text) if text else None
        if word:
            reply = self._global(ctx, word)
            if reply is not None:
                return reply

        if self._active(state):
            return self._answer(ctx, msg, text)
        return self._route_text(ctx, msg, text)

    # ---- state helpers ----------------------------------------------------------------

    @staticmethod
    def _active(state: dict) -> bool:
        return bool(state.get("flow"))

    def _flow(self, state: dict) -> Flow:
        return self.registry.flows[state["flow"]]

    def _touch(self, ctx: Ctx) -> None:
        ctx.state["updated_at"] = ctx.now.timestamp()

    def _expire(self, state: dict, now_ts: float, settings) -> None:
        if self._active(state) and state.get("flow") not in self.registry.flows:
            self._clear_form(state)  # a flow that no longer exists (after a deploy)
        if self._active(state) and now_ts - state.get("updated_at", now_ts) > settings.state_idle:
            self._pause(state)
            state["pending"] = "resume"
        paused = state.get("paused")
        if paused and (
            now_ts - paused.get("updated_at", now_ts) > settings.resume_window
            or paused.get("flow") not in self.registry.flows
        ):
            state.pop("paused", None)
            if state.get("pending") in ("resume", "message"):
                state.pop("pending", None)

    def _pause(self, state: dict) -> None:
        if not self._active(state):
            return
        state["paused"] = {k: state.get(k) for k in ("flow", "step", "answers", "history", "return_to", "updated_at")}
        self._clear_form(state)

    @staticmethod
    def _clear_form(state: dict) -> None:
        for k in ("flow", "step", "answers", "history", "retries", "page", "return_to", "pending"):
            state.pop(k, None)

    def _restore(self, ctx: Ctx) -> Reply:
        state = ctx.state
        paused = state.pop("paused")
        state.update({k: v for k, v in paused.items() if v is not None})
        state["retries"] = 0
        state["page"] = 0
        state.pop("pending", None)
        self._touch(ctx)
        return self._ask(ctx)

    # ---- starting and finishing flows -------------------------------------------------

    def start_flow(self, ctx: Ctx, name: str, params: dict | None = None) -> Reply:
        flow = self.registry.flows[name]
        answers: dict = {}
        if flow.start is not None:
            result = flow.start(ctx, params or {})
            if isinstance(result, dict):
                answers = result
            elif result is not None:
                return as_reply(result)
        state = ctx.state
        if self._active(state) and state["flow"] != name:
            self._pause(state)
        self._clear_form(state)
        if state.get("paused", {}).get("flow") == name:
            state.pop("paused")
        state.update(flow=name, answers=answers, history=[], retries=0, page=0)
        self._touch(ctx)
        nxt = self._next_step(ctx, flow, None)
        # Answers the starter already gave (a service picked while browsing, an order
        # number typed) are not asked again; 返回 still reaches them through the history.
        while nxt is not None and nxt.name in answers:
            state["history"].append(nxt.name)
            nxt = self._next_step(ctx, flow, nxt.name)
        if nxt is None:
            return self._finish_or_confirm(ctx, flow)
        state["step"] = nxt.name
        return self._ask(ctx, intro=f"【{flow.title}】")

    def _next_step(self, ctx: Ctx, flow: Flow, after: str | None) -> Step | None:
        answers = ctx.state.get("answers", {})
        start = 0 if after is None else flow.index(after) + 1
        for step in flow.steps[start:]:
            if step.applies(ctx, answers):
                return step
            answers.pop(step.name, None)
        return None

    def _finish_or_confirm(self, ctx: Ctx, flow: Flow) -> Reply:
        state = ctx.state
        if flow.confirm:
            state["step"] = "__confirm__"
            state["return_to"] = None
            return Reply(self._summary(ctx, flow))
        return self._complete(ctx, flow)

    def _complete(self, ctx: Ctx, flow: Flow) -> Reply:
        answers = dict(ctx.state.get("answers", {}))
        try:
            result = flow.done(ctx, answers)
        except Invalid as e:
            # The world changed since the answers were given (a shift filled up, an ID
            # number was registered meanwhile): say why and return to the summary.
            ctx.state["step"] = "__confirm__"
            return Reply(f"{e.hint}\n\n{self._summary(ctx, flow)}" if flow.confirm else e.hint)
        self._clear_form(ctx.state)
        return as_reply(result)

    def _summary_steps(self, ctx: Ctx, flow: Flow) -> list[Step]:
        answers = ctx.state.get("answers", {})
        return [s for s in flow.steps if s.label and s.name in answers and s.applies(ctx, answers)]

    def _summary(self, ctx: Ctx, flow: Flow) -> str:
        answers = ctx.state.get("answers", {})
        lines = [flow.summary_title or self.texts["summary_title"]]
        for i, s in enumerate(self._summary_steps(ctx, flow), 1):
            value = answers.get(s.name)
            shown = "（未填）" if value in (None, "", []) else s.display(value)
            lines.append(f"{i}. {s.label}：{shown}")
        lines.append(self.texts["summary_footer"])
        return "\n".join(lines)

    # ---- asking -----------------------------------------------------------------------

    def _ask(self, ctx: Ctx, intro: str = "", hint: str = "") -> Reply:
        state = ctx.state
        flow = self._flow(state)
        if state.get("step") == "__confirm__":
            return Reply((hint + "\n" if hint else "") + self._summary(ctx, flow))
        step = flow.step(state["step"])
        answers = state.get("answers", {})
        parts = []
        if intro:
            parts.append(intro)
        if hint:
            parts.append(hint)
        parts.append(step.question(ctx, answers))
        choices = step.options(ctx, answers)
        if choices:
            page = state.get("page", 0)
            pages = max(1, -(-len(choices) // PAGE_SIZE))
            page = min(page, pages - 1)
            chunk = choices[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
            parts.append(numbered(chunk, start=page * PAGE_SIZE + 1))
            if pages > 1:
                nav = []
                if page + 1 < pages:
                    nav.append(self.texts["paging"])
                if page > 0:
                    nav.append(self.texts["paging_back"])
                parts.append("，".join(nav) + f"（第{page + 1}/{pages}页）")
        if step.name in answers and answers[step.name] not in (None, "", []):
            parts.append(self.texts["keep"].format(value=step.display(answers[step.name])))
        elif step.default is not None:
            dv = step.default(ctx, answers)
            if dv:
                shown = step.default_label(dv) if step.default_label else step.display(dv)
                parts.append(self.texts["default"].format(value=shown))
        parts.append(self.texts["footer"])
        return Reply("\n".join(p for p in parts if p))

    # ---- answering --------------------------------------------------------------------

    def _answer(self, ctx: Ctx, msg: Message, text: str) -> Reply:
        state = ctx.state
        flow = self._flow(state)
        self._touch(ctx)
        if state.get("step") == "__confirm__":
            return self._answer_confirm(ctx, flow, text)
        step = flow.step(state["step"])
        answers = state.setdefault("answers", {})
        norm = normalize(text)

        choices = step.options(ctx, answers)
        if choices and len(choices) > PAGE_SIZE and norm in NEXT_PAGE + PREV_PAGE:
            pages = -(-len(choices) // PAGE_SIZE)
            page = state.get("page", 0) + (1 if norm in NEXT_PAGE else -1)
            state["page"] = max(0, min(pages - 1, page))
            return self._ask(ctx)
        if norm in KEEP_WORDS and answers.get(step.name) not in (None, "", []):
            return self._advance(ctx, flow, step)
        try:
            value = self._read(ctx, step, msg, text, choices, answers)
        except Invalid as e:
            return self._wrong(ctx, e.hint or step.hint)
        answers[step.name] = value
        return self._advance(ctx, flow, step)

    def _read(self, ctx: Ctx, step: Step, msg: Message, text: str, choices, answers) -> Any:
        if msg.kind == t.LOCATION:
            if step.accepts_location and step.parse:
                return step.parse(ctx, msg, answers)
            raise Invalid(self.texts["media"])
        if msg.kind not in (t.TEXT, t.VOICE) and not step.accepts_media:
            raise Invalid(self.texts["media"])
        if not normalize(text) and msg.kind in (t.TEXT, t.VOICE):
            raise Invalid(step.hint or self.texts["wrong"])
        if step.optional and normalize(text) in ("跳过", "无", "没有"):
            return None
        if step.default is not None and answers.get(step.name) in (None, "", []) and yes_no(text) is True:
            dv = step.default(ctx, answers)
            if dv:
                return dv
        if choices:
            if step.multi:
                picked = match_many(text, choices)
                if picked:
                    value = [c.value for c in picked]
                    return step.parse(ctx, value, answers) if step.parse else value
            else:
                c = match_choice(text, choices)
                if c is not None:
                    return step.parse(ctx, c.value, answers) if step.parse else c.value
            if step.parse is None:
                raise Invalid(step.hint or f"请回复 1-{len(choices)} 之间的序号。")
            # A step may take free text as well as choices (e.g. a typed time).
        if step.parse is None:
            return normalize(text)
        return step.parse(ctx, msg, answers)

    def _wrong(self, ctx: Ctx, hint: str) -> Reply:
        state = ctx.state
        state["retries"] = state.get("retries", 0) + 1
        if state["retries"] >= MAX_WRONG:
            state["retries"] = 0
            state["pending"] = "stuck"
            return Reply(f"{hint or self.texts['wrong']}\n{self.texts['stuck']}")
        return self._ask(ctx, hint=hint or self.texts["wrong"])

    def _advance(self, ctx: Ctx, flow: Flow, step: Step) -> Reply:
        state = ctx.state
        state["retries"] = 0
        state["page"] = 0
        if state.get("return_to") == "__confirm__":
            # An edit from the summary: later steps that now apply still need answers.
            answers = state.get("answers", {})
            for s in flow.steps:
                if s.applies(ctx, answers) and s.name not in answers and not s.optional:
                    state.setdefault("history", []).append(step.name)
                    state["step"] = s.name
                    return self._ask(ctx)
                if not s.applies(ctx, answers):
                    answers.pop(s.name, None)
            return self._finish_or_confirm(ctx, flow)
        nxt = self._next_step(ctx, flow, step.name)
        state.setdefault("history", []).append(step.name)
        if nxt is None:
            return self._finish_or_confirm(ctx, flow)
        state["step"] = nxt.name
        return self._ask(ctx)

    def _answer_confirm(self, ctx: Ctx, flow: Flow, text: str) -> Reply:
        norm = normalize(text)
        if norm in CONFIRM_WORDS or yes_no(text) is True:
            return self._complete(ctx, flow)
        n = parse_int(norm)
        rows = self._summary_steps(ctx, flow)
        if n is not None and 1 <= n <= len(rows):
            ctx.state["step"] = rows[n - 1].name
            ctx.state["return_to"] = "__confirm__"
            ctx.state["page"] = 0
            return self._ask(ctx)
        return self._wrong(ctx, f"请回复“确认”提交，或回复 1-{len(rows)} 修改对应的一项。")

    # ---- engine questions: resume / stuck / leave a message ---------------------------

    def _pending(self, ctx: Ctx, pending: str, text: str) -> Reply | None:
        state = ctx.state
        norm = normalize(text)
        if pending == "resume":
            state.pop("pending", None)
            if norm in ("1", "继续", "继续填写") and state.get("paused"):
                return self._restore(ctx)
            if norm in ("2", "重新开始", "重新填写") and state.get("paused"):
                name = state.pop("paused")["flow"]
                return self.start_flow(ctx, name)
            return None
        if pending == "stuck":
            state.pop("pending", None)
            if norm == "1":
                state["pending"] = "message"
                self._touch(ctx)
                return Reply(self.texts["leave_message"])
            if norm == "2":
                return self.start_flow(ctx, state["flow"])
            return None  # taken as another try at the question
        if pending == "message":
            state.pop("pending", None)
            if global_word(text) or not norm:
                return None
            follower = ctx.follower
            ctx.session.add(CoordinatorMessage(
                follower_id=follower.id, flow=state.get("flow", ""), step=state.get("step", ""),
                text=norm[:1000],
            ))
            title = self._flow(state).title if self._active(state) else ""
            self._pause(state)
            return Reply(self.texts["message_left"].format(title=title))
        state.pop("pending", None)
        return None

    def _global(self, ctx: Ctx, word: str) -> Reply | None:
        state = ctx.state
        active = self._active(state)
        if word == "menu":
            if active:
                self._pause(state)
            return self.main_menu_reply(ctx)
        if word == "cancel":
            if active:
                self._clear_form(state)
                return Reply(self.texts["cancelled"] + "\n" + self.menu.footer)
            return self.main_menu_reply(ctx)
        if word == "resume":
            if state.get("paused") and not active:
                return self._restore(ctx)
            if active:
                return self._ask(ctx)
            return None
        if not active:
            if word == "help":
                return Reply(self.menu.help)
            if word == "repeat":
                return Reply(self.texts["nothing_to_repeat"] + "\n" + self.menu.footer)
            return None  # 返回 outside a form: let routing try it (usually the menu)
        self._touch(ctx)
        if word == "repeat":
            return self._ask(ctx)
        if word == "help":
            flow = self._flow(state)
            if state.get("step") == "__confirm__":
                return Reply(self.texts["summary_footer"])
            step = flow.step(state["step"])
            return self._ask(ctx, hint=step.help or flow.help or self.texts["help_default"])
        if word == "back":
            return self._back(ctx)
        return None

    def _back(self, ctx: Ctx) -> Reply:
        state = ctx.state
        if state.get("return_to") == "__confirm__" or state.get("step") == "__confirm__" and not state.get("history"):
            state["step"] = "__confirm__"
            state["return_to"] = None
            return self._ask(ctx)
        history = state.get("history") or []
        if not history:
            return self._ask(ctx, hint=self.texts["first_step"])
        state["step"] = history.pop()
        state["retries"] = 0
        state["page"] = 0
        return self._ask(ctx)

    # ---- routing outside forms ----------------------------------------------------------

    def main_menu_reply(self, ctx: Ctx, intro: str = "") -> Reply:
        lines = [intro] if intro else []
        lines.append(self.menu.title)
        for i, item in enumerate(self.menu.items, 1):
            ready = item.key in self.registry.commands or item.key == "HELP"
            lines.append(f"{i}. {item.label}" + ("" if ready else self.menu.coming_soon))
        paused = ctx.state.get("paused")
        if paused and paused.get("flow") in self.registry.flows:
            lines.append(self.texts["paused"].format(title=self.registry.flows[paused["flow"]].title))
        lines.append(self.menu.footer)
        return Reply("\n".join(lines))

    def run_command(self, ctx: Ctx, key: str, msg: Message) -> Reply | None:
        if key == "HELP" and key not in self.registry.commands:
            return Reply(self.menu.help)
        cmd = self.registry.commands.get(key)
        if cmd is None:
            item = next((i for i in self.menu.items if i.key == key), None)
            if item is not None:
                return Reply(f"“{item.label}”即将开放，敬请期待。\n" + self.menu.footer)
            return None
        return as_reply(cmd.handler(ctx, msg))

    def _route_text(self, ctx: Ctx, msg: Message, text: str) -> Reply:
        norm = normalize(text)
        if msg.kind not in (t.TEXT, t.VOICE):
            return self.main_menu_reply(ctx, intro="收到。如需帮助请回复数字选择服务：")
        if global_word(text) == "back":
            return self.main_menu_reply(ctx)
        n = parse_int(norm) if norm.isdigit() or len(norm) <= 3 else None
        if n is not None and 1 <= n <= len(self.menu.items):
            reply = self.run_command(ctx, self.menu.items[n - 1].key, msg)
            if reply is not None:
                return reply
        cmd = self.registry.command_for_word(norm)
        if cmd is None:
            item = next((i for i in self.menu.items if norm and norm in i.words + (i.label,)), None)
            if item is not None:
                return self.run_command(ctx, item.key, msg) or self.main_menu_reply(ctx)
        if cmd is not None:
            return as_reply(cmd.handler(ctx, msg))
        for fb in self.registry.fallbacks:
            reply = fb(ctx, msg)
            if reply is not None:
                return as_reply(reply)
        return self.main_menu_reply(ctx, intro=self.menu.not_understood)

    def _route_location(self, ctx: Ctx, msg: Message) -> Reply:
        for fn in self.registry.locations:
            reply = fn(ctx, msg)
            if reply is not None:
                return as_reply(reply)
        return self.main_menu_reply(ctx, intro="收到您的位置。")

    def _event(self, ctx: Ctx, msg: Message) -> Reply:
        event = msg.event
        if event in (t.CLICK, t.SCANCODE) and msg.key:
            # A menu tap starts its journey, setting aside any open form.
            if self._active(ctx.state):
                self._pause(ctx.state)
            ctx.state.pop("pending", None)
            reply = self.run_command(ctx, msg.key, msg)
            return reply if reply is not None else self.main_menu_reply(ctx)
        if event == t.LOCATION_SELECT and msg.location:
            located = Message(openid=msg.openid, kind=t.LOCATION, location=msg.location,
                              msg_id=msg.msg_id, create_time=msg.create_time)
            if self._active(ctx.state):
                ctx.message = located
                return self._answer(ctx, located, "")
            return self._route_location(ctx, located)
        if event in (t.SUBSCRIBE, t.SCAN) and msg.key:
            handler = self.registry.events.get(event)
            first = as_reply(handler(ctx, msg)) if handler else Reply()
            scene = self.registry.scene_handler(msg.key)
            if scene is not None:
                second = as_reply(scene(ctx, msg))
                if first.text and second.text:
                    return Reply(first.text + "\n\n" + second.text)
                return second if not second.is_empty else first
            return first if not first.is_empty else self.main_menu_reply(ctx)
        handler = self.registry.events.get(event)
        if handler is not None:
            return as_reply(handler(ctx, msg))
        return Reply()

