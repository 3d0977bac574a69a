"""Conversation tests as data: every case in `tests/conversations/*.yaml` is played through
the real Flask app over HTTP as signed WeChat XML, once in plain and once in safe (AES)
mode unless the case restricts `modes:`. The format is documented in `tests/README.md`.

Each turn sends at most one push (say, voice, location, click, scan, subscribe,
unsubscribe, image, event, resend), moves the clock (advance) or runs one scheduler pass
(scheduler: due work such as the first offer of a new order, then due pushes), then checks what it was
told to: the reply (`expect`), the user's Redis state (`state`) and SQL (`db`). A failure
names the file, the case, the turn number, what was sent and the full reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text as sql_text

from store.ephemeral import StateStore
from tests import demo_flows, seeds
from tests.conftest import WeChat

demo_flows.register()  # the engine's demo form (command DEMO, word 演示), for engine.yaml

HERE = Path(__file__).parent / "conversations"
MODES = ("plain", "safe")
# A reply this long ending in "…" was cut by the engine or the protocol to fit one passive
# reply (2048 bytes): every case fails on it, whatever it expects.
CUT_SIZE = 1800

ACTIONS = ("say", "voice", "location", "click", "scan", "subscribe", "unsubscribe", "image",
           "event", "advance", "resend", "scheduler")
CHECKS = ("expect", "state", "db")
MODIFIERS = ("as", "note", "capture")
# `capture: {name: regex}` keeps the regex's first group of the reply; later turns write
# ${name} to send it (an invite code the bot made up, say).
VARIABLE = re.compile(r"\$\{(\w+)\}")
EXPECT_KEYS = ("contains", "not_contains", "regex", "not_regex", "same_reply", "empty", "equals")


# ---- collection ---------------------------------------------------------------------------

@dataclass
class Case:
    file: str
    index: int
    name: str
    data: dict = field(repr=False)
    error: str = ""  # the file or case could not be read: the item fails with this


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(HERE.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            items = doc.get("cases")
            if not isinstance(items, list):
                raise ValueError("top level must be a mapping with a `cases:` list")
        except Exception as e:  # noqa: BLE001 - one broken file must not hide the others
            cases.append(Case(path.name, 0, "(file)", {}, error=f"{type(e).__name__}: {e}"))
            continue
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                cases.append(Case(path.name, i, f"case {i}", {}, error="a case must be a mapping"))
                continue
            cases.append(Case(path.name, i, str(item.get("name") or f"case {i}"), item))
    return cases


def case_params():
    params = []
    for case in load_cases():
        modes = case.data.get("modes") or MODES
        if isinstance(modes, str):
            modes = [modes]
        for mode in modes:
            if mode not in MODES:
                case = Case(case.file, case.index, case.name, case.data,
                            error=f"unknown mode {mode!r} (use {', '.join(MODES)})")
                mode = "plain"
            stem = case.file.rsplit(".", 1)[0]
            params.append(pytest.param(case, mode, id=f"{stem}-{case.index:02d}-{mode}"))
    return params


# ---- playing a case ------------------------------------------------------------------------

def fail(message: str):
    # pytrace=False: the report below says everything; the runner's own stack does not help.
    pytest.fail(message, pytrace=False)


class Player:
    """Plays one case against the live app and keeps what a failure report needs."""

    def __init__(self, case: Case, mode: str, base_url: str, svc):
        self.case = case
        self.mode = mode
        self.svc = svc
        self.wechat = WeChat(base_url, svc, encrypt=mode == "safe")
        self.user = str(case.data.get("user") or "o_conv_user")
        self.states = StateStore(svc.redis)
        self.last_fields: dict | None = None
        self.last_reply: str | None = None
        self.last_create_time = 0
        self.transcript: list[str] = []
        self.captured: dict[str, str] = {}

    # -- failure reporting --

    def fail(self, n: int, turn: dict, why: str, reply: str | None = None) -> None:
        lines = [f"{self.case.file} · case {self.case.index} “{self.case.name}” [{self.mode}]",
                 f"turn {n}: {json.dumps(turn, ensure_ascii=False, default=str)}",
                 f"  {why}"]
        if reply is not None:
            lines.append("  reply was:")
            lines.extend("    | " + line for line in (reply or "(empty: \"success\")").splitlines() or [""])
        if self.transcript:
            lines.append("  conversation so far (last 6 turns):")
            lines.extend("    " + t for t in self.transcript[-6:])
        fail("\n".join(lines))

    # -- the turn --

    def play(self) -> None:
        if self.case.error:
            fail(f"{self.case.file} · case {self.case.index}: {self.case.error}")
        setup = self.case.data.get("setup") or []
        if isinstance(setup, str):
            setup = [setup]
        known = seeds.load_all()
        missing = [s for s in setup if s not in known]
        if missing:
            fail(f"{self.case.file} · “{self.case.name}”: unknown seed(s) {missing}; "
                             f"known: {sorted(known)}")
        if setup:
            seeds.apply(self.svc, setup)
        turns = self.case.data.get("turns") or []
        if not isinstance(turns, list) or not turns:
            fail(f"{self.case.file} · “{self.case.name}”: `turns:` must be a non-empty list")
        for n, turn in enumerate(turns, 1):
            self.play_turn(n, turn)

    def play_turn(self, n: int, turn) -> None:
        if not isinstance(turn, dict):
            self.fail(n, {"turn": turn}, "a turn must be a mapping")
        unknown = set(turn) - set(ACTIONS) - set(CHECKS) - set(MODIFIERS)
        if unknown:
            self.fail(n, turn, f"unknown key(s) {sorted(unknown)}; "
                               f"allowed: {', '.join(ACTIONS + CHECKS + MODIFIERS)}")
        actions = [k for k in ACTIONS if k in turn]
        if len(actions) > 1:
            self.fail(n, turn, f"one action per turn, got {actions}")
        user = str(turn.get("as") or self.user)
        reply = None
        if actions:
            reply = self.act(n, turn, actions[0], user)
        if "expect" in turn:
            if reply is None:
                self.fail(n, turn, "`expect` needs a turn that sends something")
            self.check_reply(n, turn, turn["expect"], reply)
        if "state" in turn:
            self.check_state(n, turn, user, turn["state"], reply)
        if "db" in turn:
            self.check_db(n, turn, turn["db"], reply)
        if "capture" in turn:
            self.capture(n, turn, turn["capture"], reply)
        if reply is not None:
            self.last_reply = reply

    def capture(self, n: int, turn: dict, spec, reply) -> None:
        if not isinstance(spec, dict) or reply is None:
            self.fail(n, turn, "capture takes {name: regex} on a turn that sends something", reply)
        for name, pattern in spec.items():
            m = re.search(str(pattern), reply, re.MULTILINE)
            if not m or not m.groups():
                self.fail(n, turn, f"capture {name}: /{pattern}/ (with a group) did not match", reply)
            self.captured[str(name)] = m.group(1)

    def expand(self, n: int, turn: dict, text: str) -> str:
        def value(m):
            if m.group(1) not in self.captured:
                self.fail(n, turn, f"${{{m.group(1)}}} was not captured by an earlier turn")
            return self.captured[m.group(1)]
        return VARIABLE.sub(value, text)

    def act(self, n: int, turn: dict, action: str, user: str) -> str | None:
        value = turn[action]
        s = self.wechat.sender
        if action == "advance":
            if not isinstance(value, dict):
                self.fail(n, turn, "advance takes a mapping such as {minutes: 31}")
            self.svc.clock.advance(**value)
            self.transcript.append(f"#{n} (clock +{value})")
            return None
        if action == "scheduler":
            from pushes.scheduler import run_pass  # the pass `volbot scheduler` runs every second
            done = run_pass(self.svc, recover=False)
            self.transcript.append(f"#{n} (scheduler pass: {done})")
            return None
        if action == "resend":
            if self.last_fields is None:
                self.fail(n, turn, "nothing to resend yet")
            fields = self.last_fields
        elif action == "say":
            fields = s.text(user, self.expand(n, turn, str(value)))
        elif action == "voice":
            fields = s.voice(user, str(value))
        elif action == "location":
            if not isinstance(value, dict) or "lat" not in value or "lng" not in value:
                self.fail(n, turn, "location takes {lat, lng, label?}")
            fields = s.location(user, float(value["lat"]), float(value["lng"]), str(value.get("label", "")))
        elif action == "click":
            fields = s.event(user, "CLICK", str(value))
        elif action == "scan":
            fields = s.event(user, "SCAN", str(value), Ticket="ticket_test")
        elif action == "subscribe":
            if value in (None, True, ""):
                fields = s.event(user, "subscribe")
            else:
                fields = s.event(user, "subscribe", f"qrscene_{value}", Ticket="ticket_test")
        elif action == "unsubscribe":
            fields = s.event(user, "unsubscribe")
        elif action == "image":
            fields = s.image(user)
        else:  # event: {name: VIEW, key: ..., any other XML fields}
            if not isinstance(value, dict) or "name" not in value:
                self.fail(n, turn, "event takes {name, key?, other fields}")
            extra = {k: v for k, v in value.items() if k not in ("name", "key")}
            fields = s.event(user, str(value["name"]), value.get("key"), **extra)
        if action != "resend":
            # WeChat identifies an event by sender + CreateTime (seconds); two events in the
            # same second of a fast test must not look like a retry of one another.
            ct = max(int(fields["CreateTime"]), self.last_create_time + 1)
            fields["CreateTime"] = self.last_create_time = ct
        sent = self.wechat.send(fields)
        shown = f"{action}: {value}" if action != "resend" else f"resend of {self.last_fields.get('MsgType')}"
        if sent.status != 200:
            self.fail(n, turn, f"HTTP {sent.status} for {shown}", sent.body)
        reply = sent.text if sent.body != "success" else ""
        if len(reply.encode("utf-8")) > CUT_SIZE and reply.endswith("…"):
            self.fail(n, turn, "the reply was cut to fit one message (2048 bytes): make it shorter", reply)
        self.last_fields = fields
        self.transcript.append(f"#{n} {shown} → {reply[:80]!r}")
        return reply

    # -- checks --

    def check_reply(self, n: int, turn: dict, expect, reply: str) -> None:
        if isinstance(expect, str):
            expect = {"contains": [expect]}
        if not isinstance(expect, dict):
            self.fail(n, turn, "expect takes a mapping", reply)
        unknown = set(expect) - set(EXPECT_KEYS)
        if unknown:
            self.fail(n, turn, f"unknown expectation(s) {sorted(unknown)}; allowed: {', '.join(EXPECT_KEYS)}", reply)
        for want in as_list(expect.get("contains")):
            if str(want) not in reply:
                self.fail(n, turn, f"expected the reply to contain {want!r}", reply)
        for unwanted in as_list(expect.get("not_contains")):
            if str(unwanted) in reply:
                self.fail(n, turn, f"expected the reply NOT to contain {unwanted!r}", reply)
        for pattern in as_list(expect.get("regex")):
            if not re.search(str(pattern), reply, re.MULTILINE):
                self.fail(n, turn, f"expected the reply to match /{pattern}/", reply)
        for pattern in as_list(expect.get("not_regex")):
            if re.search(str(pattern), reply, re.MULTILINE):
                self.fail(n, turn, f"expected the reply NOT to match /{pattern}/", reply)
        if "equals" in expect and reply != str(expect["equals"]):
            self.fail(n, turn, f"expected the reply to be exactly {expect['equals']!r}", reply)
        if "empty" in expect and bool(expect["empty"]) != (reply == ""):
            self.fail(n, turn, "expected no reply (\"success\")" if expect["empty"] else "expected a reply", reply)
        if expect.get("same_reply"):
            if "resend" not in turn:
                self.fail(n, turn, "same_reply only makes sense on a resend turn", reply)
            if reply != self.last_reply:
                self.fail(n, turn, f"expected the same reply as the first delivery:\n{self.last_reply}", reply)

    def check_state(self, n: int, turn: dict, user: str, expected, reply) -> None:
        actual = self.states.load(user)
        problem = subset_mismatch(expected, actual, "state")
        if problem:
            self.fail(n, turn, f"{problem}\n  state of {user}: "
                               f"{json.dumps(actual, ensure_ascii=False, default=str)}", reply)

    def check_db(self, n: int, turn: dict, spec, reply) -> None:
        if not isinstance(spec, dict) or "sql" not in spec or "equals" not in spec:
            self.fail(n, turn, "db takes {sql, equals, params?}", reply)
        with self.svc.db.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(sql_text(spec["sql"]), spec.get("params") or {})]
        want = spec["equals"]
        if isinstance(want, list):
            got = [r[0] if len(r) == 1 else list(r) for r in rows]
            ok = len(got) == len(want) and all(same_value(g, w) for g, w in zip(got, want))
        else:
            got = rows[0][0] if rows and rows[0] else None
            ok = same_value(got, want)
        if not ok:
            self.fail(n, turn, f"SQL {spec['sql']!r} gave {got!r}, expected {want!r}", reply)


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def same_value(got, want) -> bool:
    """SQL values compared across SQLite and PostgreSQL (0/1 vs bool, Decimal, datetimes)."""
    if isinstance(want, bool):
        return got is not None and bool(got) == want
    if want is None:
        return got is None
    if isinstance(want, (int, float)) and not isinstance(got, str) and got is not None:
        try:
            return float(got) == float(want)
        except (TypeError, ValueError):
            return False
    if isinstance(want, str) and not isinstance(got, str) and got is not None:
        return str(got) == want
    return got == want


def subset_mismatch(expected, actual, path: str) -> str:
    """"" when `expected` is contained in `actual`; otherwise what differs. A None expected
    value means "absent or null"."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected a mapping, got {actual!r}"
        for k, v in expected.items():
            if v is None:
                if actual.get(k) is not None:
                    return f"{path}.{k}: expected absent/null, got {actual.get(k)!r}"
                continue
            if k not in actual:
                return f"{path}.{k}: missing (expected {v!r})"
            problem = subset_mismatch(v, actual[k], f"{path}.{k}")
            if problem:
                return problem
        return ""
    if expected != actual:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return ""


@pytest.mark.parametrize("case,mode", case_params())
def test_conversation(case: Case, mode: str, base_url, svc):
    Player(case, mode, base_url, svc).play()
