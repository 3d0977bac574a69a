"""Unmet needs: what residents asked for that the account could not serve, kept and grouped.

Recorded (`record`) where it happens: a search of the needs menu that matched nothing, a
need typed as 其他, an order refused because its service left the menu, and an order that
ended with no volunteer to take it (dispatch's escalation). Each row keeps the words (long
digit runs dropped: a phone number is not a need), the community and the time — no openid.

Grouping (`group`) puts similar wordings together ("修自行车", "自行车修理", "帮忙修一下自行车"):
the text is normalised as the menu search reads it (NFKC, punctuation and filler words such
as 我想/帮忙 dropped, `rules.needs.clean`), cut into character pairs (`rules.needs.pairs`, plus pairs one character apart, so
"配把钥匙" meets "配钥匙"), and a wording joins the biggest group whose pairs it shares
enough of (Jaccard ≥ `SIMILAR`, or one text containing the other). Our own rather than a word segmenter: jieba,
the usual one, has had no release since 2020 and loads a 20 MB dictionary per process, and
for the short phrases residents type, shared character pairs group as well — the same
measure the menu search already uses, so "what the search missed" and "what it would find"
are judged alike.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rules.needs import clean, pairs
from store.models import Community, UnmetNeed
from store.models.needs import UNMET_KINDS

KIND_LABELS = {"search": "搜索无结果", "other": "选“其他”", "retired": "服务已下架", "no_volunteer": "无志愿者接单"}
SIMILAR = 0.3
COMPARED = 8
MAX_TEXT = 100


def scrub(text: str) -> str:
    """The words without long digit runs (phones, ID numbers), trimmed to MAX_TEXT."""
    text = re.sub(r"\d{5,}[\dXx]*", "…", str(text or "")).strip()
    return text[:MAX_TEXT]


def record(session: Session, *, kind: str, text: str, now: datetime, community_id: int | None = None,
           sub_code: str | None = None) -> UnmetNeed | None:
    """Keep one unmet need (in the caller's transaction); None when nothing is left to keep."""
    if kind not in UNMET_KINDS:
        raise ValueError(f"unknown unmet-need kind {kind!r}")
    words = scrub(text)
    if len(clean(words)) < 2:
        return None
    row = UnmetNeed(kind=kind, text=words, sub_code=sub_code, community_id=community_id, created_at=now)
    session.add(row)
    return row


# ---- grouping ------------------------------------------------------------------------------

@dataclass
class Group:
    label: str  # the most frequent wording
    key: str  # its normalised form
    texts: Counter = field(default_factory=Counter)  # wording -> how many times
    rows: list = field(default_factory=list)
    keys: list = field(default_factory=list)  # (normalised wording, its grams) a newcomer is compared with

    @property
    def count(self) -> int:
        return sum(self.texts.values())


def similar(a: str, b: str, ga: set[str] | None = None, gb: set[str] | None = None) -> bool:
    """Two normalised wordings name the same need: one contains the other, or they share
    enough character pairs (`ga`, `gb`: their `grams`, when already known)."""
    if not a or not b:
        return False
    if len(a) >= 2 and len(b) >= 2 and (a in b or b in a):
        return True
    pa, pb = grams(a) if ga is None else ga, grams(b) if gb is None else gb
    shared = len(pa & pb)
    return shared > 0 and shared / (len(pa) + len(pb) - shared) >= SIMILAR


def grams(text: str) -> set[str]:
    """Adjacent character pairs and pairs one character apart: "配把钥匙" shares 配钥 with
    "配钥匙" (a measure word or particle in between is common in what people type)."""
    skips = {text[i] + text[i + 2] for i in range(len(text) - 2)}
    return pairs(text) | skips


def group(rows: list) -> list[Group]:
    """Rows (anything with `.text`) grouped by similar wording, biggest group first. The same
    input always gives the same groups: wordings are placed most frequent first (ties by
    text), each joining the biggest similar group so far (ties: the older)."""
    by_key: dict[str, list] = {}
    for r in rows:
        by_key.setdefault(clean(r.text) or r.text, []).append(r)
    groups: list[Group] = []
    # Which groups' compared wordings have each character pair: a wording is compared only
    # with groups it shares a pair with (containment implies a shared pair, too), and with
    # each group's first COMPARED wordings (its most frequent: they were placed first), so
    # a year of many distinct wordings groups in about linear time.
    index: dict[str, set[int]] = {}
    for key in sorted(by_key, key=lambda k: (-len(by_key[k]), k)):
        members, own = by_key[key], grams(key)
        near = set().union(*(index.get(x, ()) for x in own)) if own else set()
        home = next((i for i in sorted(near, key=lambda i: (-groups[i].count, i))
                     if any(similar(key, k, own, kg) for k, kg in groups[i].keys)), None)
        if home is None:
            home = len(groups)
            groups.append(Group(label=members[0].text, key=key))
        g = groups[home]
        if len(g.keys) < COMPARED:
            g.keys.append((key, own))
            for x in own:
                index.setdefault(x, set()).add(home)
        for m in members:
            g.texts[m.text] += 1
            g.rows.append(m)
    for g in groups:  # named by its most frequent wording (ties: the shortest)
        g.label = min(g.texts, key=lambda t: (-g.texts[t], len(t), t))
    groups.sort(key=lambda g: (-g.count, g.label))
    return groups


# ---- the report ----------------------------------------------------------------------------

def rows_between(session: Session, start: datetime, end: datetime, community_ids=None, kinds=None) -> list[UnmetNeed]:
    stmt = select(UnmetNeed).where(UnmetNeed.created_at >= start, UnmetNeed.created_at < end)
    if community_ids is not None:
        stmt = stmt.where(UnmetNeed.community_id.in_(community_ids))
    if kinds:
        stmt = stmt.where(UnmetNeed.kind.in_(kinds))
    return list(session.scalars(stmt.order_by(UnmetNeed.id)))


def count_between(session: Session, start: datetime, end: datetime, community_ids=None) -> int:
    stmt = select(func.count()).select_from(UnmetNeed).where(UnmetNeed.created_at >= start, UnmetNeed.created_at < end)
    if community_ids is not None:
        stmt = stmt.where(UnmetNeed.community_id.in_(community_ids))
    return session.scalar(stmt) or 0


def by_group_and_month(groups: list[Group], tz) -> list[list]:
    """[label, other wordings, total, Jan..Dec] per group."""
    out = []
    for g in groups:
        months = [0] * 12
        for r in g.rows:
            months[r.created_at.astimezone(tz).month - 1] += 1
        others = "、".join(t for t, _ in g.texts.most_common(4) if t != g.label)
        out.append([g.label, others, g.count, *months])
    return out


def by_community(session: Session, groups: list[Group], top: int = 3) -> list[list]:
    """[community, total, its most asked groups] per community, most first."""
    names = dict(session.execute(select(Community.id, Community.name)).all())
    per: dict[int | None, Counter] = {}
    for g in groups:
        for r in g.rows:
            per.setdefault(r.community_id, Counter())[g.label] += 1
    out = []
    for cid, counts in per.items():
        most = "、".join(f"{label}（{n}）" for label, n in counts.most_common(top))
        out.append([names.get(cid, "（未知社区）") if cid else "（未填社区）", sum(counts.values()), most])
    out.sort(key=lambda r: (-r[1], r[0]))
    return out
