"""The conversation state of one user, typed: what form is open, what was set aside, what the
engine is waiting for.

It is stored as one JSON document per openid (in Redis, by the shell) and crosses that border
only here: `ConversationState.decode` reads a stored document once per turn, checking every
part against the flows that exist now, and `encode` writes it back. A part that is damaged, or
names a flow or step a deploy removed, is dropped with a log line, so the engine only ever
works on a state it can trust; a document from an older release (a part missing) is simply
read with that part at its default.

The document is flat, as it always was, so states saved before this module existed still read:

    {version, flow, step, answers, history, retries, page, return_to, params, updated_at,
     offered: {step, choices: [[value, label(, aliases)], ...]},
     paused: {flow, step, answers, history, return_to, params, updated_at, restart_params},
     pending: "resume" | "stuck" | "message", last_loc: [lat, lng, ts]}

`step` is a step name or CONFIRM (the numbered summary).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol

from dialogue.flows import Choice

log = logging.getLogger("volbot.dialogue")

CONFIRM = "__confirm__"
Pending = Literal["resume", "stuck", "message"]
PENDING: tuple[str, ...] = ("resume", "stuck", "message")


class KnownFlow(Protocol):
    """What decoding needs to know of a flow: the names of its steps."""

    @property
    def steps(self) -> Any: ...


@dataclass
class Offered:
    """The choices the current step's question showed: its answer is read against them, so
    "1" means what the user saw even when the choices have moved on since."""

    step: str
    choices: list[Choice]

    def encode(self) -> dict:
        return {"step": self.step,
                "choices": [[c.value, c.label, *([list(c.aliases)] if c.aliases else [])] for c in self.choices]}

    @classmethod
    def decode(cls, doc: Any) -> Offered | None:
        if not (isinstance(doc, dict) and isinstance(doc.get("step"), str) and isinstance(doc.get("choices"), list)):
            return None
        choices = []
        for c in doc["choices"]:
            if not (isinstance(c, list) and len(c) in (2, 3) and isinstance(c[1], str)):
                return None
            aliases = c[2] if len(c) == 3 else []
            if not (isinstance(aliases, list) and all(isinstance(a, str) for a in aliases)):
                return None
            choices.append(Choice(c[0], c[1], tuple(aliases)))
        return cls(doc["step"], choices)


@dataclass
class Form:
    """A form being filled in (or, as `ConversationState.paused`, one set aside)."""

    flow: str
    step: str
    answers: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    return_to: str | None = None  # CONFIRM while one field is edited from the summary
    params: dict | None = None  # the flow's start parameters (JSON), kept for 重新开始
    updated_at: float | None = None  # None: a document that never said (taken as just now)
    retries: int = 0  # wrong answers in a row to the current question
    page: int = 0  # the page of the current question's choices
    offered: Offered | None = None
    restart_params: dict | None = None  # a set-aside form: the parameters a restart would use

    @property
    def answered(self) -> int:
        return sum(1 for v in self.answers.values() if v not in (None, "", []))

    def set_aside(self) -> Form:
        """The copy kept while another form (or none) is open: what the question showed and
        the wrong-answer count start afresh when it is taken up again."""
        return Form(self.flow, self.step, self.answers, self.history, self.return_to, self.params,
                    self.updated_at)


@dataclass
class ConversationState:
    """Everything the engine remembers of one user between turns."""

    version: int = 0  # the stored document's version, for the shell's compare-and-set
    form: Form | None = None
    paused: Form | None = None
    pending: Pending | None = None  # a question of the engine's own awaiting its answer
    last_loc: tuple[float, float, float] | None = None  # a location_select's place and time
    # The MsgId of a voice message that came without recognised text, while it is the user's
    # latest message: a transcript of it arriving later is taken only while this still holds.
    unheard: int | None = None

    def clear(self) -> None:
        """Forget everything but the version (the save still compares against it)."""
        self.form = self.paused = self.pending = self.last_loc = self.unheard = None

    # ---- the stored document --------------------------------------------------------------

    def encode(self) -> dict:
        doc: dict[str, Any] = {"version": self.version}
        if self.form is not None:
            f = self.form
            doc.update(flow=f.flow, step=f.step, answers=f.answers, history=f.history, retries=f.retries,
                       page=f.page, return_to=f.return_to, params=f.params, updated_at=f.updated_at)
            if f.offered is not None:
                doc["offered"] = f.offered.encode()
        if self.paused is not None:
            p = self.paused
            doc["paused"] = {"flow": p.flow, "step": p.step, "answers": p.answers, "history": p.history,
                             "return_to": p.return_to, "params": p.params, "updated_at": p.updated_at}
            if p.restart_params is not None:
                doc["paused"]["restart_params"] = p.restart_params
        if self.pending is not None:
            doc["pending"] = self.pending
        if self.last_loc is not None:
            doc["last_loc"] = list(self.last_loc)
        if self.unheard is not None:
            doc["unheard"] = self.unheard
        return doc

    @classmethod
    def decode(cls, doc: Any, flows: Mapping[str, KnownFlow]) -> ConversationState:
        """The state a stored document describes, checked against the flows there are now.
        Whatever cannot be trusted is dropped (and logged); nothing here raises."""
        if not isinstance(doc, dict):
            if doc is not None:
                log.warning("conversation state was not a document; starting afresh")
            return cls()
        dropped: list[str] = []
        version = doc.get("version", 0)
        state = cls(version=version if _is_int(version) and version >= 0 else 0)
        if doc.get("flow"):
            state.form = _form(doc, flows, dropped, "form")
            if state.form is not None:
                state.form.retries = _count(doc.get("retries"), dropped, "retries")
                state.form.page = _count(doc.get("page"), dropped, "page")
                if doc.get("offered") is not None:
                    state.form.offered = Offered.decode(doc["offered"])
                    if state.form.offered is None:
                        dropped.append("offered")
        paused = doc.get("paused")
        if isinstance(paused, dict):
            state.paused = _form(paused, flows, dropped, "paused")
            if state.paused is not None and isinstance(paused.get("restart_params"), dict):
                state.paused.restart_params = paused["restart_params"]
        elif paused is not None:
            dropped.append("paused")
        pending = doc.get("pending")
        if pending in PENDING:
            state.pending = pending
        elif pending is not None:
            dropped.append("pending")
        last = doc.get("last_loc")
        if isinstance(last, list) and len(last) == 3 and all(_is_number(x) for x in last):
            state.last_loc = (float(last[0]), float(last[1]), float(last[2]))
        elif last is not None:
            dropped.append("last_loc")
        unheard = doc.get("unheard")
        if _is_int(unheard):
            state.unheard = unheard
        elif unheard is not None:
            dropped.append("unheard")
        if dropped:
            log.warning("conversation state repaired: dropped %s", ", ".join(dropped))
        return state


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _count(value: Any, dropped: list[str], name: str) -> int:
    if value is None:
        return 0
    if _is_int(value) and value >= 0:
        return value
    dropped.append(name)
    return 0


def _form(doc: dict, flows: Mapping[str, KnownFlow], dropped: list[str], name: str) -> Form | None:
    """The form a document's flow/step/answers/history/... describe, or None (noted in
    `dropped`) when its flow or step no longer exists or a part has the wrong type. Steps a
    deploy removed are taken out of the history."""
    flow_name, step = doc.get("flow"), doc.get("step")
    flow = flows.get(flow_name) if isinstance(flow_name, str) else None
    answers, history = doc.get("answers", {}), doc.get("history", [])
    updated_at, params, return_to = doc.get("updated_at"), doc.get("params"), doc.get("return_to")
    names = {s.name for s in flow.steps} if flow is not None else set()
    if (flow is None or not isinstance(step, str) or not (step == CONFIRM or step in names)
            or not isinstance(answers, dict) or not isinstance(history, list)
            or not (updated_at is None or _is_number(updated_at))):
        dropped.append(name)
        return None
    kept = [h for h in history if isinstance(h, str) and h in names]
    if len(kept) != len(history):
        dropped.append(f"{name}.history (in part)")
    if params is not None and not isinstance(params, dict):
        dropped.append(f"{name}.params")
        params = None
    if return_to not in (None, CONFIRM):
        dropped.append(f"{name}.return_to")
        return_to = None
    return Form(flow_name, step, answers, kept, return_to, params,
                None if updated_at is None else float(updated_at))
