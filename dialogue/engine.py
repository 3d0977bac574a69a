"""The turn: one message in, one reply out.

Order of business for every message (the state document is `ctx.state`):

1. an open form idle longer than STATE_IDLE_SECONDS is set aside and offered back;
2. a pending question of the engine's own (resume? stuck? your message?) takes its answer;
3. global words: 菜单, 取消/0, 返回/上一步, 帮助/?, 重复, 继续, 重新开始;
4. an open form's current step reads the answer (a wrong one gets a hint and the question;
   the third wrong one in a row offers a message to a coordinator or a fresh start);
5. otherwise events, QR scenes, menu numbers, command words and fallbacks route it.

The state (`ctx.state`) is a `dialogue.state.ConversationState`: decoded and checked once when
the shell loads it (`read_state`), encoded once when it is saved. `offered` on the open form
holds the choices the current step's question showed: the answer is read against them, so "1"
means what the user saw even when the choices have moved on since (a time slot that began
meanwhile, a community added), and the step's choices are not looked up again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dialogue import types as t
from dialogue.context import Ctx, as_reply
from dialogue.flows import PAGE_SIZE, Choice, Flow, Invalid, Step, clip, counted, match_choice, match_many, numbered
from dialogue.registry import Registry
from dialogue.state import CONFIRM, ConversationState, Form, Offered
from dialogue.types import Message, Reply
from menus import MainMenu
from rules import places
from rules.inputs import as_written, normalize, parse_int, yes_no

log = logging.getLogger("volbot.dialogue")

MAX_WRONG = 3
REPLY_LIMIT = 2048  # bytes of UTF-8 in one passive text reply
VALUE_WIDTH = 40  # characters of an answer echoed back in a summary or "已填" line

GLOBAL_WORDS = {
    "菜单": "menu", "主菜单": "menu", "目录": "menu", "menu": "menu", "返回主菜单": "menu",
    "取消": "cancel", "退出": "cancel", "0": "cancel", "结束": "cancel", "不填了": "cancel",
    "返回": "back", "上一步": "back", "后退": "back", "回上一步": "back",
    "帮助": "help", "help": "help", "怎么用": "help", "说明": "help",
    "重复": "repeat", "再说一遍": "repeat", "再说一次": "repeat", "没看清": "repeat",
    "继续": "resume", "继续填写": "resume",
    "重新开始": "restart", "重新填写": "restart", "重填": "restart",
}
KEEP_WORDS = ("保留", "不变", "不修改", "不改")
NEXT_PAGE = ("下一页", "下页", "更多", "下")
PREV_PAGE = ("上一页", "上页", "上")
CONFIRM_WORDS = ("确认", "确定", "提交", "确认提交", "对", "是", "是的", "好", "好的", "没问题", "可以")
SKIP_WORDS = ("跳过", "无", "没有", "不填")
RETRY_WORDS = ("3", "再试一次", "再试", "重试")
LOCATION_ECHO_SECONDS = 30  # a location message right after location_select repeats it


def global_word(raw: str) -> str | None:
    norm = normalize(raw).lower()
    if not norm and raw.strip() and set(raw.strip()) <= set("?？"):
        return "help"
    return GLOBAL_WORDS.get(norm)


def jsonable(value) -> Any:
    """`value` if it survives JSON (the state document), else None."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return None


FORM_TEXTS = (
    "intro", "footer", "keep", "default", "optional", "multi", "paging", "paging_back", "page",
    "summary_title", "summary_footer", "unanswered", "confirm_hint", "choose_range", "choose_many",
    "too_long", "cancelled", "wrong", "wrong_again", "stuck", "leave_message", "message_left", "paused", "resume",
    "first_step", "nothing_to_repeat", "media", "location_here", "voice_unclear", "voice_unclear_choices",
    "voice_call", "voice_call_hotline", "help_default", "help_choices",
    "got_media", "got_location", "item_soon",
)


class Engine:
    def __init__(self, registry: Registry, menu: MainMenu):
        missing = [k for k in FORM_TEXTS if k not in menu.form]
        if missing:
            raise ValueError(f"menus/main.yaml `form:` lacks {', '.join(missing)}")
        self.registry = registry
        self.menu = menu
        self.texts = menu.form

    # ---- entry point ------------------------------------------------------------------

    def read_state(self, doc) -> ConversationState:
        """A stored state document, checked against the flows registered now."""
        return ConversationState.decode(doc, self.registry.flows)

    def handle(self, ctx: Ctx) -> Reply:
        ctx.engine = self
        return fit(self._handle(ctx))

    def _handle(self, ctx: Ctx) -> Reply:
        msg = ctx.message
        state = ctx.state
        # A transcript of a voice message we could not hear (bot/speech.py) counts only while
        # that message is still the user's latest: once they typed on, it is dropped unsaid.
        unheard, state.unheard = state.unheard, None
        heard = msg.extra.get("heard")
        if heard is not None and heard != unheard:
            return Reply()
        expired = self._expire(ctx)
        if msg.is_event:
            return self._event(ctx, msg)
        if msg.kind == t.LOCATION and self._location_echo(ctx, msg):
            return Reply()  # the location_select event already answered with this place
        text = msg.text if msg.kind in (t.TEXT, t.VOICE) else ""
        if msg.kind == t.VOICE and not normalize(text) and text.strip() not in ("?", "？"):
            state.unheard = msg.msg_id or None
            return self._unheard(ctx, expired)
        word = global_word(text) if text else None
        if expired and word is None:
            state.pending = "resume"
            return self._resume_offer(ctx)
        pending = state.pending
        if pending:
            reply = self._pending(ctx, pending, text, word)
            if reply is not None:
                return reply
        if word:
            reply = self._global(ctx, word)
            if reply is not None:
                return reply
        if state.form:
            return self._answer(ctx, msg, text)
        if msg.kind == t.LOCATION:
            return self._route_location(ctx, msg)
        return self._route_text(ctx, msg, text)

    def _unheard(self, ctx: Ctx, expired: bool) -> Reply:
        """A voice message without recognised text (WeChat is withdrawing `Recognition`): the
        question that was open, again with its numbers, a kind word that typing the number
        is enough, and whom to phone. Nothing changes, nothing counts as a wrong answer."""
        state = ctx.state
        if expired:
            state.pending = "resume"
        pending, form = state.pending, state.form
        numbered_hint = self.texts["voice_unclear_choices"]
        if pending == "resume" and state.paused:
            body = numbered_hint + "\n" + self._resume_offer(ctx).text
        elif pending == "stuck" and form:
            body = numbered_hint + "\n" + self.texts["stuck"]
        elif pending == "message" and form:
            body = self.texts["voice_unclear"] + "\n" + self.texts["leave_message"]
        elif form:
            step = None if form.step == CONFIRM else self._flow(form).step(form.step)
            listed = step is not None and bool(self._offered(ctx, step, form.answers))
            body = self._ask(ctx, hint=numbered_hint if listed else self.texts["voice_unclear"]).text
        else:
            body = self.main_menu_reply(ctx, intro=numbered_hint).text
        return Reply(body + "\n" + self._call_line(ctx))

    def _call_line(self, ctx: Ctx) -> str:
        """Whom to phone: the station of the user's community if it has a number, else the hotline."""
        place = places.station_to_call(ctx.session, ctx.follower.community)
        if place is None:
            return self.texts["voice_call_hotline"]
        return self.texts["voice_call"].format(name=place.name, phone=place.phone)

    # ---- state helpers ----------------------------------------------------------------

    def _flow(self, form: Form) -> Flow:
        return self.registry.flows[form.flow]

    def _expire(self, ctx: Ctx) -> bool:
        """Set aside an idle form; drop one set aside too long ago. True when a form has
        just been set aside for idleness (the user is offered it back)."""
        state, settings = ctx.state, ctx.settings
        now = ctx.now.timestamp()
        expired = False
        if state.form and now - _age_from(state.form, now) > settings.state_idle:
            if state.form.answered:
                self._pause(state)
                expired = True
            else:
                state.form = None  # nothing answered yet: nothing to offer back
        if state.paused and now - _age_from(state.paused, now) > settings.resume_window:
            state.paused = None
            expired = False
        if state.pending in ("resume", "message") and not state.paused and not state.form:
            state.pending = None
        if state.pending == "stuck" and not state.form:
            state.pending = None
        return expired

    def _pause(self, state: ConversationState) -> None:
        """Set the open form aside to be offered back; a list being looked through is only
        closed (there is nothing to come back to)."""
        if state.form is None:
            return
        if not self._flow(state.form).browse:
            state.paused = state.form.set_aside()
        state.form = None
        state.pending = None

    @staticmethod
    def _clear_form(state: ConversationState) -> None:
        state.form = None
        state.pending = None

    def _restore(self, ctx: Ctx) -> Reply:
        state = ctx.state
        state.form, state.paused, state.pending = state.paused.set_aside(), None, None
        state.form.updated_at = ctx.now.timestamp()
        return self._ask(ctx)

    def _resume_offer(self, ctx: Ctx) -> Reply:
        paused = ctx.state.paused
        return Reply(self.texts["resume"].format(title=self._flow(paused).title, count=paused.answered))

    # ---- starting and finishing flows -------------------------------------------------

    def start_flow(self, ctx: Ctx, name: str, params: dict | None = None, fresh: bool = False) -> Reply:
        """Begin flow `name`. A form of the same flow that was set aside with answers is
        offered back first (继续填写 / 重新开始) unless `fresh`."""
        flow = self.registry.flows[name]
        params = params or {}
        answers: dict = {}
        if flow.start is not None:
            result = flow.start(ctx, params)
            if isinstance(result, dict):
                answers = result
            elif result is not None:
                return as_reply(result)
        state = ctx.state
        paused = state.paused
        if not fresh and not state.form and paused and paused.flow == name and paused.answered:
            paused.restart_params = jsonable(params)
            state.pending = "resume"
            return self._resume_offer(ctx)
        if state.form and state.form.flow != name:
            self._pause(state)
        self._clear_form(state)
        if state.paused and state.paused.flow == name:
            state.paused = None
        form = state.form = Form(name, "", answers=answers, params=jsonable(params), updated_at=ctx.now.timestamp())
        nxt = self._next_step(ctx, flow, None)
        # Answers the starter already gave (a service picked while browsing, an order
        # number typed) are not asked again; 返回 still reaches them through the history.
        while nxt is not None and nxt.name in answers:
            form.history.append(nxt.name)
            nxt = self._next_step(ctx, flow, nxt.name)
        if nxt is None:
            return self._finish_or_confirm(ctx, flow)
        form.step = nxt.name
        return self._ask(ctx, intro=self.texts["intro"].format(title=flow.title))

    def _restart(self, ctx: Ctx, form: Form) -> Reply:
        ctx.state.pending = None
        params = form.restart_params if form.restart_params is not None else form.params
        return self.start_flow(ctx, form.flow, params or {}, fresh=True)

    def _next_step(self, ctx: Ctx, flow: Flow, after: str | None) -> Step | None:
        answers = ctx.state.form.answers
        start = 0 if after is None else flow.index(after) + 1
        for step in flow.steps[start:]:
            if step.applies(ctx, answers):
                return step
            answers.pop(step.name, None)  # a condition turned off: its old answer goes
        return None

    def _finish_or_confirm(self, ctx: Ctx, flow: Flow) -> Reply:
        form = ctx.state.form
        if flow.confirm:
            form.step = CONFIRM
            form.return_to = None
            return Reply(self._summary(ctx, flow))
        return self._complete(ctx, flow)

    def _complete(self, ctx: Ctx, flow: Flow) -> Reply:
        form = ctx.state.form
        try:
            result = flow.done(ctx, dict(form.answers))
        except Invalid as e:
            # The world changed since the answers were given (a shift filled up, an ID
            # number was registered meanwhile): say why and return to the summary.
            if flow.confirm:
                form.step = CONFIRM
                return Reply(f"{e.hint}\n\n{self._summary(ctx, flow)}")
            # No summary to return to: ask the last question again.
            if form.history and form.history[-1] == form.step:
                form.history.pop()
            return self._ask(ctx, hint=e.hint)
        self._clear_form(ctx.state)
        return as_reply(result)

    def _summary_steps(self, ctx: Ctx, flow: Flow) -> list[Step]:
        answers = ctx.state.form.answers
        return [s for s in flow.steps if s.label and s.name in answers and s.applies(ctx, answers)]

    def _summary(self, ctx: Ctx, flow: Flow) -> str:
        answers = ctx.state.form.answers
        steps = self._summary_steps(ctx, flow)
        # Long answers are clipped harder until the whole summary, with its footer saying
        # how to confirm, fits one reply (with room for a hint above it).
        for width in (VALUE_WIDTH, 20, 10, 4):
            lines = [flow.summary_title or self.texts["summary_title"]]
            for i, s in enumerate(steps, 1):
                lines.append(f"{i}. {clip(s.label, 12)}：{self._shown(s, answers.get(s.name), width)}")
            lines.append(self.texts["summary_footer"])
            text = "\n".join(lines)
            if len(text.encode("utf-8")) <= REPLY_LIMIT - 300:
                break
        return text

    def _shown(self, step: Step, value, width: int = VALUE_WIDTH) -> str:
        if value in (None, "", []):
            return self.texts["unanswered"]
        try:
            shown = step.display(value)
        except Exception:  # noqa: BLE001 - an answer kept from before a deploy changed `show`
            log.warning("step %s cannot show its kept answer", step.name)
            shown = self.texts["unanswered"]
        return clip(shown, width)

    # ---- asking -----------------------------------------------------------------------

    def _ask(self, ctx: Ctx, intro: str = "", hint: str = "") -> Reply:
        form = ctx.state.form
        flow = self._flow(form)
        form.offered = None  # what this question shows replaces it
        if form.step == CONFIRM:
            return Reply((hint + "\n" if hint else "") + self._summary(ctx, flow))
        step = flow.step(form.step)
        answers = form.answers
        parts = [intro, hint, step.question(ctx, answers)]
        choices = step.options(ctx, answers)
        if choices:
            form.offered = Offered(step.name, list(choices))
            pages = max(1, -(-len(choices) // PAGE_SIZE))
            page = min(max(0, form.page), pages - 1)
            chunk = choices[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
            parts.append(numbered(chunk, start=page * PAGE_SIZE + 1))
            parts.append(self.page_line(page, pages))
            if step.multi:
                parts.append(self.texts["multi"])
        if answers.get(step.name) not in (None, "", []):
            parts.append(self.texts["keep"].format(value=self._shown(step, answers[step.name])))
        elif step.default is not None:
            dv = step.default(ctx, answers)
            if dv not in (None, "", []):
                shown = step.default_label(dv) if step.default_label else self._shown(step, dv)
                parts.append(self.texts["default"].format(value=shown))
        if step.optional:
            parts.append(self.texts["optional"])
        parts.append(self.texts["footer"])
        return Reply("\n".join(p for p in parts if p))

    def page_line(self, page: int, pages: int) -> str:
        """How to turn the pages of a list shown on page `page` (0-based) of `pages`; "" for one page."""
        if pages <= 1:
            return ""
        nav = []
        if page + 1 < pages:
            nav.append(self.texts["paging"])
        if page > 0:
            nav.append(self.texts["paging_back"])
        return "，".join(nav) + self.texts["page"].format(page=page + 1, pages=pages)

    def counted(self, key: str, count: int, **values) -> str:
        """Form text `key` said of `count` things (`dialogue.flows.counted`)."""
        return counted(self.texts[key], count, **values)

    # ---- answering --------------------------------------------------------------------

    def _answer(self, ctx: Ctx, msg: Message, text: str) -> Reply:
        form = ctx.state.form
        flow = self._flow(form)
        self._touch(ctx)
        if form.step == CONFIRM:
            return self._answer_confirm(ctx, flow, text)
        step = flow.step(form.step)
        answers = form.answers
        norm = normalize(text)
        had = answers.get(step.name) not in (None, "", [])

        choices = self._offered(ctx, step, answers)
        pages = -(-len(choices) // PAGE_SIZE) if choices else (step.pages(ctx, answers) if step.pages else 1)
        if pages > 1 and norm in NEXT_PAGE + PREV_PAGE:
            page = form.page + (1 if norm in NEXT_PAGE else -1)
            form.page = max(0, min(pages - 1, page))
            return self._ask(ctx)
        if norm in KEEP_WORDS and had:
            return self._advance(ctx, flow, step)
        try:
            value = self._read(ctx, step, msg, text, choices, answers)
        except Invalid as e:
            if had and msg.kind in (t.TEXT, t.VOICE) and yes_no(text) is True:
                return self._advance(ctx, flow, step)  # "是" keeps the answer given before
            if flow.browse and self._names_a_journey(norm):
                self._clear_form(ctx.state)  # a list is not a form: the word goes where it leads
                return self._route_text(ctx, msg, text)
            return self._wrong(ctx, e.hint or step.hint)
        changed = had and answers[step.name] != value
        answers[step.name] = value
        if changed:
            self._recheck(ctx, flow, step.name)
        return self._advance(ctx, flow, step)

    @staticmethod
    def _recheck(ctx: Ctx, flow: Flow, changed: str) -> None:
        """An answer changed: every later answer given under it (`depends_on`, directly or
        through another) stays only if its step's choices still offer it."""
        answers, moved = ctx.state.form.answers, {changed}
        for step in flow.steps[flow.index(changed) + 1:]:
            if step.name not in answers or not moved.intersection(step.depends_on):
                continue
            kept = answers[step.name]
            offered = [c.value for c in step.options(ctx, answers)] if step.applies(ctx, answers) else []
            still = all(v in offered for v in kept) if step.multi and isinstance(kept, list) else kept in offered
            if not still:
                answers.pop(step.name)
                moved.add(step.name)

    @staticmethod
    def _offered(ctx: Ctx, step: Step, answers: dict) -> list[Choice]:
        """The choices the step's question showed (kept in the state by `_ask`), or, for a
        state saved before they were kept, the step's choices now."""
        offered = ctx.state.form.offered
        if offered is not None and offered.step == step.name:
            return offered.choices
        return step.options(ctx, answers)

    def _read(self, ctx: Ctx, step: Step, msg: Message, text: str, choices, answers) -> Any:
        if msg.kind == t.LOCATION:
            if not step.accepts_location or msg.location is None:
                raise Invalid(self.texts["location_here"])
            if step.parse:
                return step.parse(ctx, msg, answers)
            loc = msg.location
            return loc.label or f"{loc.lat:.5f},{loc.lng:.5f}"
        if msg.kind not in (t.TEXT, t.VOICE):
            if step.accepts_media and step.parse:
                return step.parse(ctx, msg, answers)
            raise Invalid(self.texts["media"])
        norm = normalize(text)
        if not norm:
            raise Invalid(step.hint or self.texts["wrong"])
        if step.optional and norm in SKIP_WORDS:
            return None
        if step.default is not None and answers.get(step.name) in (None, "", []) and yes_no(text) is True:
            dv = step.default(ctx, answers)
            if dv not in (None, "", []):
                return dv
        if choices:
            if step.multi:
                picked = match_many(text, choices)
                if picked:
                    value = [c.value for c in picked]
                    return step.parse(ctx, value, answers) if step.parse else value
                if step.parse is None:
                    raise Invalid(step.hint or self.texts["choose_many"])
            else:
                c = match_choice(text, choices)
                if c is not None:
                    return step.parse(ctx, c.value, answers) if step.parse else c.value
                if step.parse is None:
                    raise Invalid(step.hint or self.counted("choose_range", len(choices)))
                # A step may take free text as well as choices (e.g. a typed time); a number
                # it does not take was meant as a choice: say which numbers there are.
                try:
                    return step.parse(ctx, msg, answers)
                except Invalid:
                    if parse_int(norm) is not None:
                        raise Invalid(self.counted("choose_range", len(choices))) from None
                    raise
        if step.parse is None:
            written = as_written(text)  # matching normalises; what is kept is what they wrote
            if len(written) > step.max_length:
                raise Invalid(self.texts["too_long"].format(limit=step.max_length))
            return written
        return step.parse(ctx, msg, answers)

    def _wrong(self, ctx: Ctx, hint: str) -> Reply:
        form = ctx.state.form
        form.retries += 1
        hint = hint or self.texts["wrong"]
        if form.retries >= MAX_WRONG:
            form.retries = 0
            ctx.state.pending = "stuck"
            return Reply(f"{hint}\n{self.texts['stuck']}")
        if form.retries == MAX_WRONG - 1:
            hint += self.texts["wrong_again"]  # the second miss: say where help is
        return self._ask(ctx, hint=hint)

    def _advance(self, ctx: Ctx, flow: Flow, step: Step) -> Reply:
        form = ctx.state.form
        form.retries = form.page = 0
        if form.return_to == CONFIRM:
            # An edit from the summary: steps that now apply and were never asked still
            # need answers; steps that no longer apply lose theirs.
            for s in flow.steps:
                if not s.applies(ctx, form.answers):
                    form.answers.pop(s.name, None)
                elif s.name not in form.answers:
                    form.history.append(step.name)
                    form.step = s.name
                    return self._ask(ctx)
            return self._finish_or_confirm(ctx, flow)
        nxt = self._next_step(ctx, flow, step.name)
        form.history.append(step.name)
        if nxt is None:
            return self._finish_or_confirm(ctx, flow)
        form.step = nxt.name
        return self._ask(ctx)

    def _answer_confirm(self, ctx: Ctx, flow: Flow, text: str) -> Reply:
        norm = normalize(text)
        if norm in CONFIRM_WORDS or yes_no(text) is True:
            return self._complete(ctx, flow)
        n = parse_int(norm)
        rows = self._summary_steps(ctx, flow)
        if n is not None and 1 <= n <= len(rows):
            form = ctx.state.form
            form.step, form.return_to, form.page = rows[n - 1].name, CONFIRM, 0
            return self._ask(ctx)
        return self._wrong(ctx, self.counted("confirm_hint", len(rows)))

    # ---- engine questions: resume / stuck / leave a message ---------------------------

    def _pending(self, ctx: Ctx, pending: str, text: str, word: str | None) -> Reply | None:
        state = ctx.state
        state.pending = None
        norm = normalize(text)
        if pending == "resume":
            paused = state.paused
            if not paused or word not in (None, "resume", "restart"):
                return None
            if norm == "1" or word == "resume":
                return self._restore(ctx)
            if norm == "2" or word == "restart":
                return self._restart(ctx, paused)
            return None
        if pending == "stuck":
            if not state.form or word:
                return None
            if norm == "1":
                state.pending = "message"
                self._touch(ctx)
                return Reply(self.texts["leave_message"])
            if norm == "2":
                return self._restart(ctx, state.form)
            if norm in RETRY_WORDS:
                self._touch(ctx)
                return self._ask(ctx)
            return None  # taken as another try at the question
        if pending == "message":
            if word or not norm:
                return None
            form = state.form
            ctx.records.leave_message(ctx.session, ctx.follower, flow=form.flow if form else "",
                                      step=form.step if form else "", text=text)
            title = self._flow(form).title if form else ""
            self._pause(state)
            return Reply(self.texts["message_left"].format(title=title))
        return None

    def _global(self, ctx: Ctx, word: str) -> Reply | None:
        state = ctx.state
        form, paused = state.form, state.paused
        if word == "menu":
            self._pause(state)
            return self.main_menu_reply(ctx)
        if word == "cancel":
            if form or paused:
                self._clear_form(state)
                state.paused = None
                return self.main_menu_reply(ctx, intro=self.texts["cancelled"])
            return None if self.registry.command_for_word(ctx.message.text) else self.main_menu_reply(ctx)
        if word == "resume":
            if paused and not form:
                return self._restore(ctx)
            if form:
                self._touch(ctx)
                return self._ask(ctx)
            return None
        if word == "restart":
            if form or paused:
                return self._restart(ctx, form or paused)
            return None
        if not form:
            if word == "help":
                return self.run_command(ctx, "HELP", ctx.message)
            if word == "repeat":
                return Reply(self.texts["nothing_to_repeat"] + "\n" + self.menu.footer)
            return self.main_menu_reply(ctx)  # 返回 outside a form
        self._touch(ctx)
        if word == "repeat":
            return self._ask(ctx)
        if word == "help":
            flow = self._flow(form)
            if form.step == CONFIRM:
                return Reply(self._summary(ctx, flow))
            return self._ask(ctx, hint=self._step_help(ctx, flow, flow.step(form.step)))
        return self._back(ctx)

    def _back(self, ctx: Ctx) -> Reply:
        form = ctx.state.form
        form.retries = form.page = 0
        if form.return_to == CONFIRM:
            # Editing one field from the summary: 返回 goes back to the summary.
            form.step, form.return_to = CONFIRM, None
            return self._ask(ctx)
        if not form.history:
            return self._ask(ctx, hint=self.texts["first_step"])
        form.step = form.history.pop()
        return self._ask(ctx)

    def _step_help(self, ctx: Ctx, flow: Flow, step: Step) -> str:
        """What this step wants, with an example: for a list, the numbers and what "1" would
        pick, then the step's own help; else its help or its hint; the form's help only when
        the step says nothing."""
        choices = self._offered(ctx, step, ctx.state.form.answers)
        if choices:
            line = self.counted("help_choices", len(choices), first=clip(choices[0].label, 12))
            return f"{line}\n{step.help}" if step.help else line
        return step.help or step.hint or flow.help or self.texts["help_default"]

    def _names_a_journey(self, norm: str) -> bool:
        """A command word or a main-menu item's word or label."""
        return bool(norm) and (self.registry.command_for_word(norm) is not None
                               or any(norm in item.words + (item.label,) for item in self.menu.items))

    def _touch(self, ctx: Ctx) -> None:
        ctx.state.form.updated_at = ctx.now.timestamp()

    # ---- routing outside forms ----------------------------------------------------------

    def main_menu_reply(self, ctx: Ctx, intro: str = "") -> Reply:
        lines = [intro] if intro else []
        lines.append(self.menu.title)
        for i, item in enumerate(self.menu.items, 1):
            ready = item.key in self.registry.commands or item.key == "HELP"
            lines.append(f"{i}. {item.label}" + ("" if ready else self.menu.coming_soon))
        paused = ctx.state.paused
        if paused:
            lines.append(self.texts["paused"].format(title=self._flow(paused).title))
        lines.append(self.menu.footer)
        return Reply("\n".join(lines))

    def run_command(self, ctx: Ctx, key: str, msg: Message) -> Reply | None:
        cmd = self.registry.commands.get(key)
        if cmd is None:
            if key == "HELP":
                return Reply(self.menu.help)
            item = next((i for i in self.menu.items if i.key == key), None)
            if item is not None:
                return Reply(self.texts["item_soon"].format(label=item.label) + "\n" + self.menu.footer)
            return None
        return as_reply(cmd.handler(ctx, msg))

    def _route_text(self, ctx: Ctx, msg: Message, text: str) -> Reply:
        norm = normalize(text)
        if msg.kind not in (t.TEXT, t.VOICE):
            return self.main_menu_reply(ctx, intro=self.texts["got_media"])
        n = parse_int(norm) if norm.isdigit() or len(norm) <= 3 else None
        if n is not None and 1 <= n <= len(self.menu.items):
            reply = self.run_command(ctx, self.menu.items[n - 1].key, msg)
            if reply is not None:
                return reply
        cmd = self.registry.command_for_word(norm)
        if cmd is not None:
            return as_reply(cmd.handler(ctx, msg))
        item = next((i for i in self.menu.items if norm and norm in i.words + (i.label,)), None)
        if item is not None:
            return self.run_command(ctx, item.key, msg) or self.main_menu_reply(ctx)
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
        return self.main_menu_reply(ctx, intro=self.texts["got_location"])

    def _location_echo(self, ctx: Ctx, msg: Message) -> bool:
        """WeChat follows a location_select event with the same place as a location
        message; answering both would answer two steps with one tap."""
        last, ctx.state.last_loc = ctx.state.last_loc, None
        if last is None or not msg.location:
            return False
        lat, lng, ts = last
        return (abs(lat - msg.location.lat) < 1e-4 and abs(lng - msg.location.lng) < 1e-4
                and ctx.now.timestamp() - ts <= LOCATION_ECHO_SECONDS)

    def _event(self, ctx: Ctx, msg: Message) -> Reply:
        event = msg.event
        state = ctx.state
        if event in (t.CLICK, t.SCANCODE) and msg.key:
            # A menu tap starts its journey, setting aside any open form.
            self._pause(state)
            state.pending = None
            reply = self.run_command(ctx, msg.key, msg)
            return reply if reply is not None else self.main_menu_reply(ctx)
        if event == t.LOCATION_SELECT and msg.location:
            located = Message(openid=msg.openid, kind=t.LOCATION, location=msg.location,
                              msg_id=msg.msg_id, create_time=msg.create_time)
            state.last_loc = (msg.location.lat, msg.location.lng, ctx.now.timestamp())
            if state.form:
                state.pending = None
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


def _age_from(form: Form, now: float) -> float:
    """When a form was last touched; a document that never said counts as touched now."""
    return now if form.updated_at is None else form.updated_at


def fit(reply: Reply, limit: int = REPLY_LIMIT) -> Reply:
    """A reply whose text fits one passive message: whole lines are kept while they fit."""
    if not reply.text or len(reply.text.encode("utf-8")) <= limit:
        return reply
    kept, size = [], len("…".encode("utf-8"))
    for line in reply.text.split("\n"):
        n = len(line.encode("utf-8")) + 1
        if size + n > limit:
            break
        kept.append(line)
        size += n
    text = "\n".join(kept) + "\n…" if kept else reply.text.encode("utf-8")[: limit - 3].decode("utf-8", "ignore")
    return Reply(text=text, article=reply.article)
