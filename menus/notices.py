"""The push kinds as data (`menus/templates.yaml`): which channel carries each, which
WeChat template it uses, and how its values are fitted to WeChat's field rules.

Channels (research/platform-rules.md):
- `template` (模板消息): only the result of the recipient's own action — never a reminder
  or a broadcast;
- `subscribe` (订阅通知, message/subscribe/bizsend): what the recipient asked to hear, sent
  only with their consent for that notice template (one-time or long-term);
- `customer_service` (客服消息): a staff reply, within 48 h of the user's last message;
- `mass_send` (群发 by tag): an announcement's text to a tag of followers, 4 a month.

`fit(key, value)` is THE function that turns a value into what a template key of that
type accepts (since 2023 WeChat shows no `first`/`remark` line and `thing` at most 20
characters). A value that cannot be fitted raises `FitError`: the push fails as a bad
push rather than WeChat rejecting it, or worse, showing something wrong.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

DEFAULT_PATH = Path(__file__).with_name("templates.yaml")
CHANNELS = ("template", "subscribe", "customer_service", "mass_send")
AUDIENCES = ("personal", "broadcast")
CONSENTS = ("one_time", "long_term")
FORBIDDEN_KEYS = ("first", "remark")  # not shown since 2023-05-04: nothing may rely on them

# WeChat's value rules per key type (notice and template fields, checked 2026-12):
# type -> the most characters it shows/accepts.
LIMITS = {"thing": 20, "number": 32, "letter": 32, "symbol": 5, "character_string": 32, "time": 40,
          "date": 40, "amount": 14, "phone_number": 17, "car_number": 8, "name": 10, "phrase": 5,
          "const": 20}
ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HAN = re.compile(r"[\u3400-\u9fff]")
_DATE = re.compile(r"(?:(\d{4})\s*[年/-]\s*)?(\d{1,2})\s*[月/-]\s*(\d{1,2})\s*日?")
_CLOCK = re.compile(r"(\d{1,2})\s*[:：]\s*(\d{2})")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class FitError(ValueError):
    """A value that no WeChat field of that type would take."""


class CatalogError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def field_type(key: str) -> str:
    """`thing3` → `thing`, `character_string12` → `character_string`."""
    return key.rstrip("0123456789")


def _clean(value) -> str:
    text = unicodedata.normalize("NFKC", str(value if value is not None else ""))
    return " ".join(_CONTROL.sub(" ", text).split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + ELLIPSIS


def _span(text: str, with_date: bool) -> str:
    """Dates and clock times found in `text` as WeChat writes them: "2026年12月7日 09:00",
    a span joined by "~" ("12月7日 09:00~11:00"). Weekday words and the like are dropped."""
    parts = []
    rest = text
    for _ in range(2):
        date = _DATE.search(rest)
        clock = _CLOCK.search(rest)
        if not date and not clock:
            break
        pieces = []
        ends = []
        if date and (not clock or date.start() < clock.start()):
            year, month, day = date.groups()
            if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
                raise FitError(f"not a date: {text!r}")
            pieces.append(f"{year + '年' if year else ''}{int(month)}月{int(day)}日")
            ends.append(date.end())
            clock = _CLOCK.search(rest, date.end())
            nxt = _DATE.search(rest, date.end())
            if clock and nxt and nxt.start() < clock.start():
                clock = None  # the clock time belongs to the next date
        if clock:
            hour, minute = int(clock.group(1)), int(clock.group(2))
            if hour > 24 or minute > 59:
                raise FitError(f"not a time: {text!r}")
            pieces.append(f"{hour:02d}:{minute:02d}")
            ends.append(clock.end())
        parts.append(" ".join(pieces))
        rest = rest[max(ends):]
    if not parts:
        raise FitError(f"no date or time in {text!r}")
    if with_date and not _DATE.search(parts[0]):
        raise FitError(f"a date field without a date: {text!r}")
    return "~".join(parts)


def fit(key: str, value) -> str:
    """`value` as the template key `key` (its type is the key without digits) accepts it;
    raises `FitError` when no honest value of that type can be made from it."""
    kind = field_type(key)
    text = _clean(value)
    if kind in ("thing", "const"):
        return _clip(text, LIMITS[kind]) if text else "无"
    if not text:
        raise FitError(f"{key}: empty")
    if kind == "phrase":
        han = "".join(_HAN.findall(text))
        if not han:
            raise FitError(f"{key}: a phrase is Chinese characters only: {text!r}")
        return han[:LIMITS["phrase"]]
    if kind == "number":
        found = _NUMBER.search(text.replace(",", ""))
        if not found or len(found.group()) > LIMITS["number"]:
            raise FitError(f"{key}: no number in {text!r}")
        return found.group()
    if kind == "amount":
        found = _NUMBER.search(text.replace(",", ""))
        if not found or len(found.group().lstrip("-").split(".")[0]) > 10:
            raise FitError(f"{key}: no amount in {text!r}")
        return f"{found.group()}元"
    if kind == "character_string":
        kept = "".join(c for c in text if c.isascii() and c.isprintable())
        kept = kept.strip()
        if not kept:
            raise FitError(f"{key}: no letters, digits or symbols in {text!r}")
        return kept[:LIMITS["character_string"]]
    if kind == "letter":
        kept = "".join(c for c in text if c.isascii() and c.isalpha())
        if not kept:
            raise FitError(f"{key}: no letters in {text!r}")
        return kept[:LIMITS["letter"]]
    if kind == "symbol":
        kept = "".join(c for c in text if not c.isalnum() and not c.isspace() and not _HAN.match(c))
        if not kept:
            raise FitError(f"{key}: no symbols in {text!r}")
        return kept[:LIMITS["symbol"]]
    if kind == "phone_number":
        kept = "".join(c for c in text if c.isdigit() or c in "+-()")
        if sum(c.isdigit() for c in kept) < 3 or len(kept) > LIMITS["phone_number"]:
            raise FitError(f"{key}: not a phone number: {text!r}")
        return kept
    if kind == "car_number":
        kept = "".join(c for c in text if (c.isascii() and c.isalnum()) or _HAN.match(c)).upper()
        if not 2 <= len(kept) <= 8 or any(_HAN.match(c) for c in kept[1:-1]):
            raise FitError(f"{key}: not a plate number: {text!r}")
        return kept
    if kind == "name":
        if _HAN.search(text):  # a Chinese name is Chinese characters only (and the middle dot)
            return _clip("".join(c for c in text if _HAN.match(c) or c == "·"), LIMITS["name"])
        letters = "".join(c for c in text if c.isascii() and (c.isalpha() or c in " .-"))
        if not letters.strip():
            raise FitError(f"{key}: not a name: {text!r}")
        return letters.strip()[:20]
    if kind in ("time", "date"):
        return _span(text, with_date=kind == "date")
    raise FitError(f"{key}: unknown field type {kind!r}")


@dataclass(frozen=True)
class Field:
    key: str  # the template's key, e.g. thing1
    source: str  # the push field that fills it
    label: str  # what the phone shows before the value (the template's own label)


@dataclass(frozen=True)
class Kind:
    name: str
    channel: str
    audience: str
    title: str  # the template's own title: the phone's header line
    template_id: str
    consent: str | None = None  # subscribe notices: what WeChat grants for this template
    fields: tuple[Field, ...] = ()

    @property
    def resend_guard(self) -> bool:
        """Whether WeChat drops a resend of the same push (template messages'
        client_msg_id). Notices and customer-service messages have no such guard: a send
        whose outcome was lost with its worker is never repeated."""
        return self.channel in ("template", "mass_send")  # client_msg_id / clientmsgid

    def render(self, values: dict) -> dict:
        """The `data` WeChat wants ({key: {"value": ...}}), every value fitted to its key;
        a field the push lacks raises `FitError` (nothing is silently left out)."""
        data = {}
        for f in self.fields:
            if f.source not in values:
                raise FitError(f"{self.name}: the push has no {f.source!r} for {f.key}")
            data[f.key] = {"value": fit(f.key, values[f.source])}
        return data

    def preview(self, values: dict) -> list[str]:
        """The notice as a phone shows it: the template title, then one line per field."""
        data = self.render(values)
        return [self.title] + [f"{f.label}：{data[f.key]['value']}" for f in self.fields]


@dataclass(frozen=True)
class Catalog:
    kinds: dict[str, Kind]

    def kind(self, name: str) -> Kind:
        try:
            return self.kinds[name]
        except KeyError:
            raise KeyError(f"push kind {name!r} is not declared in menus/templates.yaml") from None

    def channel(self, name: str) -> str:
        return self.kind(name).channel

    def labels(self, template_id: str) -> dict[str, str]:
        """Key → label of the template `template_id` (the emulator's readable view)."""
        for k in self.kinds.values():
            if k.template_id == template_id:
                return {f.key: f.label for f in k.fields}
        return {}


def from_dict(raw: dict, ids: dict | None = None) -> Catalog:
    """Check and build the catalog; every problem is listed (`CatalogError.problems`)."""
    ids = {str(k).lower(): v for k, v in (ids or {}).items()}
    problems, kinds = [], {}
    for name, spec in ((raw or {}).get("kinds") or {}).items():
        spec = spec or {}
        where = f"kind {name}"
        channel, audience, consent = spec.get("channel"), spec.get("audience", "personal"), spec.get("consent")
        if channel not in CHANNELS:
            problems.append(f"{where}: channel must be one of {', '.join(CHANNELS)} (has {channel!r})")
        if audience not in AUDIENCES:
            problems.append(f"{where}: audience must be personal or broadcast")
        if channel == "template" and audience == "broadcast":
            problems.append(f"{where}: a broadcast may not go as a template message (WeChat allows "
                            "templates only for the result of the recipient's own action)")
        if channel == "subscribe" and consent not in CONSENTS:
            problems.append(f"{where}: a subscribe notice declares consent: one_time or long_term")
        if channel != "subscribe" and consent is not None:
            problems.append(f"{where}: only subscribe notices take consent")
        fields = []
        for key, value in (spec.get("fields") or {}).items():
            if key in FORBIDDEN_KEYS:
                problems.append(f"{where}: {key} is not shown since 2023; put its meaning in a field")
                continue
            if field_type(key) not in LIMITS:
                problems.append(f"{where}: {key} has no known field type")
                continue
            if not (isinstance(value, list) and len(value) == 2):
                problems.append(f"{where}: {key} maps to [push field, label]")
                continue
            fields.append(Field(key, str(value[0]), str(value[1])))
        if channel in ("customer_service", "mass_send") and fields:
            problems.append(f"{where}: a {channel} message is one text, it has no fields")
        if channel == "mass_send" and audience != "broadcast":
            problems.append(f"{where}: a mass send is a broadcast")
        if channel in ("template", "subscribe") and not fields:
            problems.append(f"{where}: a {channel} needs its fields")
        if channel in ("template", "subscribe") and not spec.get("template_id"):
            problems.append(f"{where}: no template_id")
        kinds[name] = Kind(name=name, channel=channel, audience=audience, title=str(spec.get("title") or ""),
                           template_id=str(ids.get(name) or spec.get("template_id") or ""),
                           consent=consent, fields=tuple(fields))
    shared: dict[str, Kind] = {}
    for k in kinds.values():
        other = shared.setdefault(k.template_id, k) if k.template_id else k
        if other is not k and (other.channel, other.consent) != (k.channel, k.consent):
            problems.append(f"kinds {other.name} and {k.name} share template {k.template_id} "
                            "but not its channel and consent")
    if problems:
        raise CatalogError(problems)
    return Catalog(kinds)


def load(path: Path = DEFAULT_PATH, ids: dict | None = None) -> Catalog:
    """The catalog of `path`, each kind's template id replaced by the account's own where
    `ids` has one (WECHAT_TEMPLATE_<KIND>, bot/config.py)."""
    return from_dict(yaml.safe_load(Path(path).read_text(encoding="utf-8")), ids)


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The shipped catalog (ids as in the file): which channel each kind goes by."""
    return load()
