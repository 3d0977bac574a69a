"""Forms as data: a `Flow` is a list of `Step`s plus what to do when it is complete.

A step declares its prompt, how to read an answer (choices, a parser, or both), when it
applies, how its answer is shown in the summary (masked where personal) and its help text.
The engine (`dialogue.engine`) does the rest: asking, re-asking with a hint, 返回, 帮助,
the numbered summary with edit-by-number, and the one transaction at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from dialogue.types import Reply
from rules.inputs import normalize, parse_int, yes_no

PAGE_SIZE = 8


class Invalid(Exception):
    """An answer that does not fit; `hint` says briefly what is expected."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


@dataclass(frozen=True)
class Choice:
    value: Any  # a JSON value: the chosen one becomes an answer, and the shown ones are kept (engine: offered)
    label: str
    aliases: tuple[str, ...] = ()
    note: str = ""  # shown after the label, e.g. a description


Text = str | Callable[..., str]


@dataclass
class Step:
    """One question of a form.

    Reading an answer: a step with `choices` takes a number (1-based across pages), the
    label or an alias; `parse`, if given, then gets `(ctx, chosen_value, answers)` (a list
    of values when `multi`). A step without choices gets `parse(ctx, message, answers)` with
    the whole `Message` (its `.text` is the typed or spoken text, `.location` a sent
    location when `accepts_location`); without `parse` the normalised text is the answer.
    `parse` raises `Invalid("hint")` for a wrong answer.

    `depends_on` names earlier steps whose answers this one was given under (a service
    chosen within a category): when one of them changes, this answer is kept only if the
    step's choices still offer it, and otherwise asked again.
    """

    name: str
    ask: Text  # the question; a callable gets (ctx, answers)
    label: str = ""  # how the summary names this answer
    choices: list[Choice] | Callable[..., list[Choice]] | None = None
    parse: Callable[..., Any] | None = None  # (ctx, message, answers) -> value | raise Invalid
    multi: bool = False  # choices: several numbers at once ("1 3 5")
    when: Callable[..., bool] | None = None  # (ctx, answers) -> does this step apply
    show: Callable[[Any], str] | None = None  # value -> text for the summary
    help: str = ""
    hint: str = ""  # said with the question again after a wrong answer
    default: Callable[..., Any] | None = None  # (ctx, answers) -> a value offered as "1"
    default_label: Callable[[Any], str] | None = None
    accepts_location: bool = False  # a location message is a valid answer (to parse)
    accepts_media: bool = False
    optional: bool = False  # "跳过" leaves it empty
    max_length: int = 200  # longest free-text answer (characters) taken without parse
    depends_on: tuple[str, ...] = ()
    # A question that pages a list of its own (read by `parse`, not `choices`): (ctx, answers)
    # -> how many pages it shows. 下一页/上一页 turn them; the question reads ctx.state.form.page.
    pages: Callable[..., int] | None = None

    def question(self, ctx, answers: dict) -> str:
        return self.ask(ctx, answers) if callable(self.ask) else self.ask

    def options(self, ctx, answers: dict) -> list[Choice]:
        if self.choices is None:
            return []
        return self.choices(ctx, answers) if callable(self.choices) else list(self.choices)

    def applies(self, ctx, answers: dict) -> bool:
        return self.when is None or bool(self.when(ctx, answers))

    def display(self, value: Any) -> str:
        if self.show:
            return self.show(value)
        if isinstance(value, list):
            return "、".join(str(v) for v in value)
        return str(value)


@dataclass
class Flow:
    name: str
    title: str  # "预约服务"
    steps: list[Step]
    done: Callable[..., Reply | str]  # (ctx, answers) -> reply; runs in the turn's transaction
    confirm: bool = True  # show a numbered summary and wait for 确认
    start: Callable[..., Reply | str | dict | None] | None = None
    # (ctx, params) -> None to go on, a Reply/str to refuse, or a dict of prefilled answers
    summary_title: str = ""
    help: str = ""
    # A list to look through (我的订单), not a form to fill in: a command word or menu item
    # typed in it leaves it, and it is never set aside to be offered back.
    browse: bool = False

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def index(self, name: str) -> int:
        return [s.name for s in self.steps].index(name)

    def __post_init__(self):
        seen: set[str] = set()
        for s in self.steps:
            later = [d for d in s.depends_on if d not in seen]
            if later:
                raise ValueError(f"flow {self.name!r}: step {s.name!r} depends on {later[0]!r}, not an earlier step")
            seen.add(s.name)


# ---- choice matching, shared by the engine and by handlers that list things -------------

# A ready-made pair for yes/no questions: "是", "好的", "1" pick True; "不", "不用", "2" False.
YES_NO = [Choice(True, "是"), Choice(False, "否")]


def match_choice(text: str, choices: list[Choice]) -> Choice | None:
    """A choice by its number (1-based), its exact label or an alias, a yes/no word when
    the choices are a yes/no pair, or a unique containing label."""
    t = normalize(text)
    if not t:
        return None
    n = parse_int(t)
    if n is not None:
        return choices[n - 1] if 1 <= n <= len(choices) else None
    low = t.lower()
    for c in choices:
        if low == normalize(c.label).lower() or low in (normalize(a).lower() for a in c.aliases):
            return c
    polarity = [yes_no(c.label) for c in choices]
    if set(polarity) == {True, False}:
        # 是/否-like choices: "不好" must not pick "好"; "是不是" picks nothing.
        said = yes_no(t)
        return choices[polarity.index(said)] if said is not None else None
    contained = [c for c in choices
                 if (len(low) >= 2 and low in normalize(c.label).lower())
                 or (len(normalize(c.label)) >= 2 and normalize(c.label).lower() in low)]
    return contained[0] if len(contained) == 1 else None


ALL_WORDS = ("全部", "全选", "都要", "都可以", "全都要")


def match_many(text: str, choices: list[Choice]) -> list[Choice] | None:
    """Several choices: "1 3 5", "1、3、5", "1,3", "135" (when all single digits), "全部"."""
    t = normalize(text)
    if t in ALL_WORDS:
        return list(choices) or None
    parts = [p for p in re.split(r"[\s,，、;；和及/.。]+", t) if p]
    if len(parts) == 1 and re.fullmatch(r"\d{2,}", parts[0]) and len(choices) < 10:
        parts = list(parts[0])
    picked: list[Choice] = []
    for p in parts:
        c = match_choice(p, choices)
        if c is None:
            return None
        if c not in picked:
            picked.append(c)
    return picked or None


def numbered(choices: list[Choice], start: int = 1) -> str:
    lines = []
    for i, c in enumerate(choices, start):
        lines.append(f"{i}. {clip(c.label, 30)}" + (f"（{clip(_unbracketed(c.note), 30)}）" if c.note else ""))
    return "\n".join(lines)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, marking a cut with "…" (keeps every line short)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def counted(text: str | dict, count: int, **values) -> str:
    """A text said of `count` things. It may be written as {one: ..., other: ...} (menus/main.yaml
    `form:`) so that one thing is not offered as a range ("回复 1-1 修改")."""
    if isinstance(text, dict):
        text = text["one"] if count == 1 else text["other"]
    return text.format(count=count, **values)


def _unbracketed(note: str) -> str:
    """A note without the one pair of full-width brackets around it: `numbered` adds them, so a
    note written as "（已订阅）" is not shown as "（（已订阅））"."""
    if note.startswith("（") and note.endswith("）") and "（" not in note[1:-1] and "）" not in note[1:-1]:
        return note[1:-1]
    return note
