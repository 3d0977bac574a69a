"""Revising the needs menu: a brigade coordinator drafts the next version, previews it and
publishes it from a date.

A draft (`MenuDraft`) starts as a copy of the version in use and is changed one step at a
time — add a sub-category, rename one, retire one — each step checked by the catalog's own
rules (`menus.catalog.from_dict`), so a draft is always a menu that could be published.
A new sub-category gets a code never used before in any version or order (codes are stored
on orders and in reports: a retired code is never given to something else).

Publishing records a `CatalogVersion` with `effective_from`; the menu in use is chosen at
read time (`rules.orders.version_in_use`), so nothing has to run on the day. Orders keep the
sub-category they were made for (they hold a snapshot of code and names); a form still open
on a retired item is told the service changed, and that is kept as an unmet need. Reports
read codes, so they span versions; `sub_names` gives each code the name of its newest
version.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from menus.catalog import MAX_SUBS_PER_CATEGORY, MODES, Catalog, CatalogError, from_dict, load
from rules import orders as order_rules
from store.models import CatalogVersion, MenuDraft, Order


class RevisionError(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def open_draft(session: Session) -> MenuDraft | None:
    return session.scalar(select(MenuDraft).where(MenuDraft.published_version_id.is_(None))
                          .order_by(MenuDraft.id.desc()).limit(1))


def start_draft(session: Session, *, author_id: int | None, now: datetime) -> MenuDraft:
    """The open draft, or a new one copied from the version in use now."""
    draft = open_draft(session)
    if draft is not None:
        return draft
    row = order_rules.version_in_use(session, now)
    menu = order_rules.catalog_at(session, now)
    draft = MenuDraft(data=menu.to_dict(), retired=[], base_version_id=row.id if row else None,
                      author_id=author_id, created_at=now, updated_at=now)
    session.add(draft)
    session.flush()
    return draft


def catalog_of(draft: MenuDraft) -> Catalog:
    return from_dict(_without_expect(draft.data))


def _without_expect(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "expect"}


def _save(draft: MenuDraft, data: dict, now: datetime) -> None:
    try:
        menu = from_dict(_without_expect(data))
    except CatalogError as e:
        raise RevisionError("；".join(e.problems)) from None
    draft.data = menu.to_dict()  # a new object: the JSON column sees the change
    draft.updated_at = now


def _copy(draft: MenuDraft) -> dict:
    return copy.deepcopy(draft.data)


def _find(data: dict, code: str) -> tuple[dict, dict]:
    for cat in data["categories"]:
        for sub in cat["subs"]:
            if sub["code"] == code:
                return cat, sub
    raise RevisionError(f"草稿里没有 {code}")


def used_codes(session: Session, draft: MenuDraft | None = None) -> set[str]:
    """Every sub-category code any version, the shipped file, a draft or an order ever had."""
    codes = {s.code for s in load().subs}
    for data in session.scalars(select(CatalogVersion.data)):
        codes |= {s["code"] for c in data.get("categories", []) for s in c.get("subs", [])}
    if draft is not None:
        codes |= {s["code"] for c in draft.data["categories"] for s in c["subs"]} | set(draft.retired or [])
    codes |= set(session.scalars(select(Order.sub_code).distinct()))
    return codes


def add_sub(session: Session, draft: MenuDraft, *, category_code: str, name: str, description: str,
            keywords: list[str], mode: str, minutes: int, now: datetime) -> str:
    data = _copy(draft)
    cat = next((c for c in data["categories"] if c["code"] == category_code), None)
    if cat is None:
        raise RevisionError("请选择类别")
    if len(cat["subs"]) >= MAX_SUBS_PER_CATEGORY:
        raise RevisionError(f"“{cat['name']}”已有{MAX_SUBS_PER_CATEGORY}项（聊天里一页显示8项），请先下架一项")
    if mode not in MODES:
        raise RevisionError("请选择服务方式")
    used = used_codes(session, draft)
    n = next(i for i in range(1, 100) if f"{category_code}-{i:02d}" not in used)
    code = f"{category_code}-{n:02d}"
    cat["subs"].append({"code": code, "name": name.strip(), "description": description.strip(),
                        "keywords": [k for k in keywords if k] or [name.strip()], "mode": mode, "minutes": minutes})
    _save(draft, data, now)
    return code


def rename_sub(draft: MenuDraft, code: str, *, name: str, description: str | None, now: datetime) -> None:
    data = _copy(draft)
    _cat, sub = _find(data, code)
    old = sub["name"]
    sub["name"] = name.strip()
    if description:
        sub["description"] = description.strip()
    if old not in sub["keywords"]:
        sub["keywords"].append(old)  # residents who learnt the old name still find it
    _save(draft, data, now)


def retire_sub(draft: MenuDraft, code: str, now: datetime) -> None:
    data = _copy(draft)
    cat, sub = _find(data, code)
    if len(cat["subs"]) == 1:
        raise RevisionError(f"“{cat['name']}”至少要保留一项")
    cat["subs"].remove(sub)
    _save(draft, data, now)
    draft.retired = sorted(set(draft.retired or []) | {code})


def discard(session: Session, draft: MenuDraft) -> None:
    session.delete(draft)


@dataclass
class Changes:
    added: list[tuple[str, str]]  # (code, name)
    renamed: list[tuple[str, str, str]]  # (code, old, new)
    retired: list[tuple[str, str]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.renamed or self.retired)


def changes(session: Session, draft: MenuDraft, now: datetime) -> Changes:
    """What the draft changes against the version in use at `now`."""
    base = {s.code: s for s in order_rules.catalog_at(session, now).subs}
    new = {s.code: s for s in catalog_of(draft).subs}
    return Changes(
        added=[(c, s.name) for c, s in new.items() if c not in base],
        renamed=[(c, base[c].name, s.name) for c, s in new.items() if c in base and base[c].name != s.name],
        retired=[(c, s.name) for c, s in base.items() if c not in new],
    )


def pending_version(session: Session, now: datetime) -> CatalogVersion | None:
    """A version published for a date still to come."""
    return session.scalar(select(CatalogVersion).where(CatalogVersion.effective_from > now)
                          .order_by(CatalogVersion.id.desc()).limit(1))


def publish(session: Session, draft: MenuDraft, *, effective_from: datetime | None, coordinator_id: int | None,
            now: datetime) -> CatalogVersion:
    """Publish the draft: in use from `effective_from` (None or past: at once)."""
    if draft.published_version_id is not None:
        raise RevisionError("这份草稿已经发布过了")
    if changes(session, draft, now).empty:
        raise RevisionError("草稿与现行菜单相同，没有需要发布的修改")
    if pending_version(session, now) is not None:
        raise RevisionError("已有一个待生效的版本，请等它生效后再发布下一版")
    menu = catalog_of(draft)
    when = effective_from if effective_from is not None and effective_from > now else None
    version = order_rules.import_catalog(session, menu, source=f"console draft {draft.id}",
                                         effective_from=when, published_by=coordinator_id)
    draft.published_version_id = version.id
    draft.updated_at = now
    return version


def versions(session: Session) -> list[CatalogVersion]:
    return list(session.scalars(select(CatalogVersion).order_by(CatalogVersion.id.desc())))


def sub_names(session: Session) -> dict[str, tuple[str, str]]:
    """code -> (sub-category name, category name) as the newest version that had it says
    (the shipped file first, then every version in order): reports across versions."""
    names: dict[str, tuple[str, str]] = {}
    menus = [load().to_dict()] + list(session.scalars(select(CatalogVersion.data).order_by(CatalogVersion.id)))
    for data in menus:
        for cat in data.get("categories", []):
            for sub in cat.get("subs", []):
                names[sub["code"]] = (sub["name"], cat["name"])
    return names
