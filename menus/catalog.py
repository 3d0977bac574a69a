"""The needs menu (需求菜单): reading and checking it.

`load()` reads `menus/needs.yaml` (or any file in that format) and `from_dict()` checks a
parsed document: unique codes, sub-category codes under their category, the counts the
file declares, name and description lengths, modes and durations. A bad file is refused
as a whole with every problem listed (`CatalogError.problems`), so an import never leaves
half a menu. Finding what a resident's words point to is `rules.needs`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

DEFAULT_PATH = Path(__file__).with_name("needs.yaml")
MODES = {"onsite": "上门服务", "remote": "电话/线上服务"}
CATEGORY_CODE = re.compile(r"^\d{2}$")
SUB_CODE = re.compile(r"^(\d{2})-\d{2}$")
MAX_CATEGORY_NAME = 6
MAX_SUB_NAME = 8
MAX_DESCRIPTION = 40
MAX_CATEGORIES = 20
MAX_SUBS_PER_CATEGORY = 8

# Words that say nothing about which service is wanted; dropped before scoring.


class CatalogError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Sub:
    code: str
    name: str
    description: str
    keywords: tuple[str, ...]
    mode: str
    minutes: int
    category_code: str

    @property
    def mode_label(self) -> str:
        return MODES[self.mode]

    def detail(self) -> str:
        """The one-paragraph description residents see before ordering."""
        return f"【{self.name}】{self.description}\n（{self.mode_label}，一般约{duration(self.minutes)}）"


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    description: str
    keywords: tuple[str, ...]
    subs: tuple[Sub, ...]


@dataclass(frozen=True)
class Catalog:
    district: str
    categories: tuple[Category, ...]

    @property
    def subs(self) -> tuple[Sub, ...]:
        return tuple(s for c in self.categories for s in c.subs)

    def category(self, code: str) -> Category | None:
        return next((c for c in self.categories if c.code == code), None)

    def sub(self, code: str) -> Sub | None:
        return next((s for s in self.subs if s.code == code), None)

    def category_of(self, sub: Sub) -> Category:
        return next(c for c in self.categories if c.code == sub.category_code)

    def to_dict(self) -> dict:
        return {
            "district": self.district,
            "expect": {"categories": len(self.categories), "subcategories": len(self.subs)},
            "categories": [
                {"code": c.code, "name": c.name, "description": c.description,
                 "keywords": list(c.keywords),
                 "subs": [{"code": s.code, "name": s.name, "description": s.description,
                           "keywords": list(s.keywords), "mode": s.mode, "minutes": s.minutes}
                          for s in c.subs]}
                for c in self.categories
            ],
        }


def duration(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes}分钟"
    hours, rest = divmod(minutes, 60)
    return f"{hours}小时" + (f"{rest}分钟" if rest else "")


# ---- reading and checking ---------------------------------------------------------------

def load(path: str | Path | None = None) -> Catalog:
    """The catalog in `path` (default: the district's `menus/needs.yaml`), checked."""
    p = Path(path) if path else DEFAULT_PATH
    text = p.read_text(encoding="utf-8")
    return parse_text(text)


@lru_cache(maxsize=8)  # keyed by the file's content: the same text always gives the same menu
def parse_text(text: str) -> Catalog:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError([f"not valid YAML/JSON: {str(e).splitlines()[0]}"])
    return from_dict(data)


def from_dict(data) -> Catalog:
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise CatalogError(["the file needs a `categories:` list"])
    seen: set[str] = set()
    categories = []
    for i, raw in enumerate(data["categories"], 1):
        if not isinstance(raw, dict):
            problems.append(f"category #{i}: not a mapping")
            continue
        code = str(raw.get("code", ""))
        where = f"category {code or '#' + str(i)}"
        if not CATEGORY_CODE.match(code):
            problems.append(f"{where}: code must be two digits, e.g. \"01\"")
        _check_code(code, where, seen, problems)
        name = _text(raw, "name", where, problems, MAX_CATEGORY_NAME)
        desc = _text(raw, "description", where, problems, MAX_DESCRIPTION)
        subs = []
        raw_subs = raw.get("subs")
        if not isinstance(raw_subs, list) or not raw_subs:
            problems.append(f"{where}: needs at least one sub-category in `subs:`")
            raw_subs = []
        if len(raw_subs) > MAX_SUBS_PER_CATEGORY:
            problems.append(f"{where}: more than {MAX_SUBS_PER_CATEGORY} sub-categories")
        for j, rs in enumerate(raw_subs, 1):
            sub = _sub(rs, code, f"{where} sub #{j}", seen, problems)
            if sub is not None:
                subs.append(sub)
        categories.append(Category(code, name, desc, _keywords(raw, where, problems), tuple(subs)))
    if not categories:
        problems.append("no categories")
    if len(categories) > MAX_CATEGORIES:
        problems.append(f"more than {MAX_CATEGORIES} categories")
    names = [c.name for c in categories]
    if len(set(names)) != len(names):
        problems.append("two categories have the same name")
    expect = data.get("expect") or {}
    n_subs = sum(len(c.subs) for c in categories)
    if "categories" in expect and expect["categories"] != len(categories):
        problems.append(f"expected {expect['categories']} categories, found {len(categories)}")
    if "subcategories" in expect and expect["subcategories"] != n_subs:
        problems.append(f"expected {expect['subcategories']} sub-categories, found {n_subs}")
    if problems:
        raise CatalogError(problems)
    return Catalog(str(data.get("district") or ""), tuple(categories))


def _sub(raw, category_code: str, where: str, seen: set[str], problems: list[str]) -> Sub | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: not a mapping")
        return None
    code = str(raw.get("code", ""))
    where = f"sub-category {code}" if code else where
    m = SUB_CODE.match(code)
    if not m:
        problems.append(f"{where}: code must look like \"{category_code}-01\"")
    elif m.group(1) != category_code:
        problems.append(f"{where}: code does not start with its category {category_code}")
    _check_code(code, where, seen, problems)
    name = _text(raw, "name", where, problems, MAX_SUB_NAME)
    desc = _text(raw, "description", where, problems, MAX_DESCRIPTION)
    mode = raw.get("mode")
    if mode not in MODES:
        problems.append(f"{where}: mode must be one of {', '.join(MODES)}")
    minutes = raw.get("minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 10 <= minutes <= 600:
        problems.append(f"{where}: minutes must be a whole number from 10 to 600")
        minutes = 0
    keywords = _keywords(raw, where, problems)
    if not keywords:
        problems.append(f"{where}: needs search keywords")
    return Sub(code, name, desc, keywords, str(mode), minutes, category_code)


def _check_code(code: str, where: str, seen: set[str], problems: list[str]) -> None:
    if code in seen:
        problems.append(f"{where}: code {code} used twice")
    seen.add(code)


def _text(raw: dict, key: str, where: str, problems: list[str], limit: int) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: `{key}` is missing")
        return ""
    value = value.strip()
    if len(value) > limit:
        problems.append(f"{where}: `{key}` longer than {limit} characters ({value})")
    return value


def _keywords(raw: dict, where: str, problems: list[str]) -> tuple[str, ...]:
    words = raw.get("keywords") or []
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        problems.append(f"{where}: `keywords` must be a list of words")
        return ()
    # Kept canonical (NFKC, trimmed) so that matching them needs no second pass.
    return tuple(unicodedata.normalize("NFKC", w).strip() for w in words)
