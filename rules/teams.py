"""The team tree (归口管理、分级负责): brigade → detachments → squads, plus professional
detachments. Import from CSV/YAML, subtree queries by materialised path, team search.

A team's `path` is "/<root id>/…/<own id>/", so "is X inside Y's subtree" is a prefix test
and "everything under Y" is one indexed `LIKE 'path%'` query.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from store.models import Community, Team
from store.models.district import JOIN_POLICIES, TEAM_KINDS

FIELDS = ("code", "name", "kind", "parent", "join_policy", "community", "community_name", "street")


class TeamImportError(ValueError):
    pass


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    communities: int = 0


def in_subtree(team: Team, root: Team) -> bool:
    return team.path.startswith(root.path)


def subtree_ids(session: Session, root: Team):
    """A select of the ids of `root` and everything below it (for `.in_(...)`)."""
    return select(Team.id).where(Team.path.startswith(root.path, autoescape=True))


def subtree(session: Session, root: Team) -> list[Team]:
    return list(session.scalars(
        select(Team).where(Team.path.startswith(root.path, autoescape=True)).order_by(Team.path)))


def by_code(session: Session, code: str) -> Team | None:
    return session.scalar(select(Team).where(Team.code == code.strip()))


def joinable(session: Session) -> list[Team]:
    """Teams a volunteer may join directly: squads and professional detachments."""
    return list(session.scalars(
        select(Team).where(Team.kind.in_(("squad", "professional"))).order_by(Team.code)))


def search(session: Session, text: str, limit: int = 20) -> list[Team]:
    """Joinable teams matching a code exactly, or a team, community or street name."""
    q = text.strip()
    if not q:
        return []
    exact = session.scalar(select(Team).where(func.upper(Team.code) == q.upper()))
    if exact is not None and exact.kind in ("squad", "professional"):
        return [exact]
    matched = select(Team.path).outerjoin(Community, Team.community_id == Community.id).where(
        or_(func.upper(Team.code) == q.upper(),
            *(col.contains(q, autoescape=True) for col in (Team.name, Team.street, Community.name, Community.street))))
    paths = list(session.scalars(matched))
    if not paths:
        return []
    # A matched detachment (e.g. a street) stands for the squads under it.
    conds = [Team.path.startswith(p, autoescape=True) for p in paths]
    return list(session.scalars(
        select(Team).where(Team.kind.in_(("squad", "professional")), or_(*conds))
        .order_by(Team.code).limit(limit)))


def set_parent(session: Session, team: Team, parent: Team | None) -> None:
    """Place `team` under `parent` and rewrite the paths of its whole subtree."""
    if parent is not None and parent.path.startswith(team.path) and team.path != "/":
        raise TeamImportError(f"{team.code}: a team cannot be placed under its own subtree")
    session.flush()  # ids for new rows
    old = team.path
    team.parent_id = parent.id if parent else None
    team.path = (parent.path if parent else "/") + f"{team.id}/"
    if old not in ("/", team.path):
        for t in session.scalars(select(Team).where(Team.path.startswith(old, autoescape=True),
                                                    Team.id != team.id)):
            t.path = team.path + t.path[len(old):]


def read_rows(path: str | Path) -> list[dict]:
    """Rows from a CSV (header with FIELDS) or a YAML file (a list, or {teams: [...]},
    where a team may hold its `children`)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() in (".yaml", ".yml"):
        return rows_from_yaml(yaml.safe_load(text))
    return list(csv.DictReader(io.StringIO(text)))


def rows_from_yaml(data) -> list[dict]:
    items = data.get("teams", []) if isinstance(data, dict) else (data or [])
    rows: list[dict] = []

    def walk(nodes, parent_code):
        for node in nodes:
            row = {k: node.get(k) for k in FIELDS if k in node}
            if parent_code and not row.get("parent"):
                row["parent"] = parent_code
            rows.append(row)
            walk(node.get("children") or [], row.get("code"))

    walk(items, None)
    return rows


def import_rows(session: Session, rows: list[dict]) -> ImportResult:
    """Create or update teams by code (parents may come later in the file)."""
    result = ImportResult()
    clean = []
    for i, raw in enumerate(rows, 1):
        row = {k: str(raw.get(k) or "").strip() for k in FIELDS}
        if not row["code"] or not row["name"]:
            raise TeamImportError(f"row {i}: code and name are required")
        if row["kind"] not in TEAM_KINDS:
            raise TeamImportError(f"row {i} ({row['code']}): kind must be one of {', '.join(TEAM_KINDS)}")
        row["join_policy"] = row["join_policy"] or "auto"
        if row["join_policy"] not in JOIN_POLICIES:
            raise TeamImportError(f"row {i} ({row['code']}): join_policy must be auto or approval")
        clean.append(row)
    codes = [r["code"] for r in clean]
    if len(set(codes)) != len(codes):
        raise TeamImportError("duplicate team codes in the file")

    teams: dict[str, Team] = {}
    for row in clean:
        team = by_code(session, row["code"])
        if team is None:
            team = Team(code=row["code"], name=row["name"], kind=row["kind"], path="/")
            session.add(team)
            result.created += 1
        else:
            result.updated += 1
        team.name, team.kind, team.join_policy = row["name"], row["kind"], row["join_policy"]
        team.street = row["street"]
        if row["community"]:
            team.community = _community(session, row, result)
        teams[row["code"]] = team
    session.flush()
    # Parents first, so each path is built on its parent's final path.
    placed: set[str] = set()

    def place(code: str, seen: tuple = ()) -> None:
        if code in placed:
            return
        if code in seen:
            raise TeamImportError(f"{code}: the parent links form a cycle")
        row = next(r for r in clean if r["code"] == code)
        parent = None
        if row["parent"]:
            if row["parent"] in teams:
                place(row["parent"], seen + (code,))
                parent = teams[row["parent"]]
            else:
                parent = by_code(session, row["parent"])
                if parent is None:
                    raise TeamImportError(f"{code}: unknown parent {row['parent']}")
        set_parent(session, teams[code], parent)
        placed.add(code)

    for code in codes:
        place(code)
    session.flush()
    return result


def _community(session: Session, row: dict, result: ImportResult) -> Community:
    c = session.scalar(select(Community).where(Community.code == row["community"]))
    if c is None:
        if not row["community_name"]:
            raise TeamImportError(f"{row['code']}: community {row['community']} is unknown; give community_name")
        c = Community(code=row["community"], name=row["community_name"], street=row["street"])
        session.add(c)
        result.communities += 1
    elif row["community_name"]:
        c.name = row["community_name"]
    return c
