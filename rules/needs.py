"""Finding what a resident's words point to in the needs menu ("家里水管坏了" → 水电维修).

The scorer is small and deterministic: keywords found in the text count by their length
(longer words are more specific; a two-character keyword said with a word or two in between,
借…书, counts half), a category's keywords lift its sub-categories a little, and shared
character pairs with the names and descriptions break ties and catch words nobody listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from menus.catalog import Catalog, Category, Sub
from rules.inputs import normalize

FILLER = ("我想", "我要", "想要", "需要", "请问", "帮忙", "帮我", "一下", "家里", "我家", "有没有",
          "能不能", "可以", "怎么办", "怎么", "谁能", "希望", "找人", "预约")
FILLER_CHARS = "我你他她想要请帮的了吗呢啊吧呀么个在有是和"
MIN_SCORE = 3


@dataclass(frozen=True)
class Hit:
    sub: Sub
    score: int


def search(catalog: Catalog, text: str, limit: int = 5) -> list[Hit]:
    """Sub-categories matching `text`, best first; [] when nothing fits well enough."""
    query = clean(text)
    if len(query) < 2:
        return []
    query_pairs = pairs(query)
    hits = []
    for cat in catalog.categories:
        lift = sum(len(k) for k in cat.keywords if k in query)
        if cat.name in query:
            lift += 2 * len(cat.name)
        for sub in cat.subs:
            score = sum(2 * len(k) if k in query else len(k) if _loose(k, query) else 0
                        for k in sub.keywords)
            if sub.name in query:
                score += 3 * len(sub.name)
            shared = query_pairs & pairs(sub.name + sub.description + "".join(sub.keywords))
            score += len(shared) + lift
            if score >= MIN_SCORE and (score > lift or lift >= MIN_SCORE):
                hits.append(Hit(sub, score))
    hits.sort(key=lambda h: -h.score)  # stable: equal scores keep menu order
    return hits[:limit]

def find_category(catalog: Catalog, text: str) -> Category | None:
    """A category named (or nearly named) in `text`."""
    t = normalize(text)
    for c in catalog.categories:
        if t and (t == c.name or t in c.name or c.name in t):
            return c
    return None


def clean(text: str) -> str:
    """The words that say which service is wanted: normalised, punctuation and filler gone."""
    t = normalize(text)
    t = re.sub(r"[\s\W_]+", "", t)
    for word in FILLER:
        t = t.replace(word, "")
    return t


def _loose(keyword: str, query: str) -> bool:
    """A two-character word said with a little in between: 借…书 in "借几本书"."""
    if len(keyword) != 2:
        return False
    at = query.find(keyword[0])
    return at >= 0 and keyword[1] in query[at + 2:at + 4]


def pairs(text: str) -> set[str]:
    """The text's character pairs, filler characters left out (how similar wordings are compared)."""
    t = "".join(ch for ch in text if ch not in FILLER_CHARS)
    return {t[i:i + 2] for i in range(len(t) - 1)}
