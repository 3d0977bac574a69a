"""The one place where console queries are scoped to a coordinator's subtree.

Teams form a tree (brigade → detachments → squads) with a materialised path ("/1/7/42/").
A coordinator acts on their own team and everything below it — "归口管理、分级负责". Every
console page and action builds its queries from the helpers here, and fetches single rows
with `get`, which raises `OutOfScope` for a row outside the subtree exactly as for a row
that does not exist (so a URL does not even reveal that another team's record exists).

The subtree is resolved once per request into the list of its team ids (a district has a
few hundred teams); queries then filter by `team_id IN (...)`, which uses the plain
foreign-key indexes on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from store.models import (
    AuditLog,
    BusVisit,
    Community,
    Coordinator,
    CoordinatorMessage,
    HourRecord,
    Order,
    Team,
    Volunteer,
)
from store.models.activities import Activity, Project, Shift, SignUp
from store.models.places import Place

ROLES = ("brigade", "detachment", "squad")
ROLE_LABELS = {"brigade": "大队管理员", "detachment": "分队负责人", "squad": "小队负责人"}
# Which team kinds a role may be given for (a professional detachment is a detachment).
ROLE_TEAM_KINDS = {"brigade": ("brigade",), "detachment": ("detachment", "professional"), "squad": ("squad",)}


class OutOfScope(LookupError):
    """The row does not exist or lies outside the coordinator's subtree."""


class Forbidden(PermissionError):
    """The coordinator's role does not allow this action."""


@dataclass(frozen=True)
class Scope:
    """What one coordinator may see: their team's subtree."""

    coordinator_id: int
    coordinator_name: str
    role: str
    team_id: int
    team_name: str
    path: str
    team_ids: tuple[int, ...]
    community_ids: tuple[int, ...]
    is_district: bool  # the root of the only tree: every row of the district is theirs

    def can(self, capability: str) -> bool:
        return self.role in CAPABILITIES.get(capability, ())


# Actions that not every role may take; anything not listed is open to every role
# (within the subtree). Bus visits and places are district resources shared by streets.
CAPABILITIES = {
    "bus.manage": ("brigade", "detachment"),
    "places.manage": ("brigade", "detachment"),
    "rankings.view": ("brigade", "detachment"),
    "menu.revise": ("brigade",),  # the needs menu is the district's (rules.menu_revisions)
}


def scope_for(session: Session, coordinator: Coordinator) -> Scope:
    """Resolve a coordinator's subtree. Fails closed on a team without a proper path."""
    team = session.get(Team, coordinator.team_id)
    if team is None or not team.path.endswith(f"/{team.id}/"):
        raise OutOfScope(f"team {coordinator.team_id} has no materialised path")
    rows = session.execute(
        select(Team.id, Team.community_id).where(Team.path.startswith(team.path, autoescape=True))
    ).all()
    team_ids = tuple(sorted({r.id for r in rows} | {team.id}))
    # The root of the only tree sees every row, so its queries need no team filter (the
    # big tables are then read without a 200-id IN list). A second root would be another
    # district sharing the database: then even the root is filtered.
    is_district = team.parent_id is None and session.scalar(
        select(func.count()).select_from(Team).where(Team.parent_id.is_(None))) == 1
    if is_district:
        community_ids = tuple(session.scalars(select(Community.id).order_by(Community.id)))
    else:
        community_ids = tuple(sorted({r.community_id for r in rows if r.community_id is not None}))
    return Scope(
        coordinator_id=coordinator.id, coordinator_name=coordinator.name, role=coordinator.role,
        team_id=team.id, team_name=team.name, path=team.path, team_ids=team_ids,
        community_ids=community_ids, is_district=is_district,
    )


def require(scope: Scope, capability: str) -> None:
    if not scope.can(capability):
        raise Forbidden(capability)


# ---- scoped selects, one per entity ---------------------------------------------------

def teams(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Team) if stmt is None else stmt
    return stmt.where(Team.id.in_(scope.team_ids))


def communities(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Community) if stmt is None else stmt
    return stmt if scope.is_district else stmt.where(Community.id.in_(scope.community_ids))


def volunteers(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Volunteer) if stmt is None else stmt
    return stmt if scope.is_district else stmt.where(Volunteer.team_id.in_(scope.team_ids))


def hour_records(scope: Scope, stmt: Select | None = None) -> Select:
    """Hour records of the subtree's volunteers (joined, so callers may filter on them)."""
    stmt = select(HourRecord) if stmt is None else stmt
    stmt = stmt.select_from(HourRecord).join(Volunteer, Volunteer.id == HourRecord.volunteer_id)
    if scope.is_district:
        return stmt
    # The same condition again as `volunteer_id IN (subquery OFFSET 0)`: the OFFSET keeps
    # PostgreSQL from flattening it, so it reads the subtree's few volunteers first and
    # their records through (volunteer_id, state, started_at) instead of walking the whole
    # table in id order and filtering (seconds, at a million records).
    own = select(Volunteer.id).where(Volunteer.team_id.in_(scope.team_ids)).offset(0).scalar_subquery()
    return stmt.where(Volunteer.team_id.in_(scope.team_ids), HourRecord.volunteer_id.in_(own))


def coordinators(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Coordinator) if stmt is None else stmt
    return stmt.where(Coordinator.team_id.in_(scope.team_ids))


def audit_entries(scope: Scope, stmt: Select | None = None) -> Select:
    """Entries written in the subtree; the district reads every entry (failed logins for
    usernames that name no account are filed under no team)."""
    stmt = select(AuditLog) if stmt is None else stmt
    return stmt if scope.is_district else stmt.where(AuditLog.team_path.startswith(scope.path, autoescape=True))


def orders(scope: Scope, stmt: Select | None = None) -> Select:
    """Orders of the subtree's communities (the district sees every order, also those
    without a community)."""
    stmt = select(Order) if stmt is None else stmt
    return stmt if scope.is_district else stmt.where(Order.community_id.in_(scope.community_ids))


def projects(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Project) if stmt is None else stmt
    return stmt.where(Project.team_id.in_(scope.team_ids))


def activities(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Activity) if stmt is None else stmt
    return stmt.select_from(Activity).join(Project, Project.id == Activity.project_id).where(Project.team_id.in_(scope.team_ids))


def shifts(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(Shift) if stmt is None else stmt
    return (stmt.select_from(Shift).join(Activity, Activity.id == Shift.activity_id)
            .join(Project, Project.id == Activity.project_id).where(Project.team_id.in_(scope.team_ids)))


def signups(scope: Scope, stmt: Select | None = None) -> Select:
    """Sign-ups for the subtree's shifts (a volunteer of another team may sign up)."""
    stmt = select(SignUp) if stmt is None else stmt
    return (stmt.select_from(SignUp).join(Shift, Shift.id == SignUp.shift_id).join(Activity, Activity.id == Shift.activity_id)
            .join(Project, Project.id == Activity.project_id).where(Project.team_id.in_(scope.team_ids)))


def places(scope: Scope, stmt: Select | None = None) -> Select:
    """Places run by a team of the subtree or standing in one of its communities."""
    stmt = select(Place) if stmt is None else stmt
    if scope.is_district:
        return stmt
    return stmt.where(Place.team_id.in_(scope.team_ids) | Place.community_id.in_(scope.community_ids))


def bus_visits(scope: Scope, stmt: Select | None = None) -> Select:
    stmt = select(BusVisit) if stmt is None else stmt
    return stmt if scope.is_district else stmt.where(BusVisit.community_id.in_(scope.community_ids))


def messages(scope: Scope, stmt: Select | None = None) -> Select:
    """Messages left for staff routed to a team of the subtree (the district also sees
    those left before routing existed, which have no team)."""
    stmt = select(CoordinatorMessage) if stmt is None else stmt
    return stmt if scope.is_district else stmt.where(CoordinatorMessage.team_id.in_(scope.team_ids))


SCOPED = {
    Team: teams,
    Community: communities,
    Volunteer: volunteers,
    HourRecord: hour_records,
    Coordinator: coordinators,
    AuditLog: audit_entries,
    Order: orders,
    Project: projects,
    Activity: activities,
    Shift: shifts,
    SignUp: signups,
    Place: places,
    BusVisit: bus_visits,
    CoordinatorMessage: messages,
}


def get(session: Session, scope: Scope, model, row_id, *, for_update: bool = False):
    """One row of `model` by primary key, or `OutOfScope` if it is not in the subtree."""
    try:
        scoper = SCOPED[model]
    except KeyError:
        raise OutOfScope(f"{model.__name__} has no scoping rule") from None
    try:
        row_id = int(row_id)
    except (TypeError, ValueError):
        raise OutOfScope(f"bad id {row_id!r}") from None
    stmt = scoper(scope, select(model)).where(model.id == row_id)
    if for_update and session.bind.dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=model)
    row = session.scalar(stmt)
    if row is None:
        raise OutOfScope(f"{model.__name__} {row_id}")
    return row


def get_many(session: Session, scope: Scope, model, row_ids) -> list:
    """The rows of `model` among `row_ids` that are in the subtree; raises `OutOfScope`
    if any is not (a bulk action is all or nothing)."""
    ids = set()
    for rid in row_ids:
        try:
            ids.add(int(rid))
        except (TypeError, ValueError):
            raise OutOfScope(f"bad id {rid!r}") from None
    if not ids:
        return []
    rows = list(session.scalars(SCOPED[model](scope, select(model)).where(model.id.in_(ids))))
    if len(rows) != len(ids):
        raise OutOfScope(f"{model.__name__}: {len(ids) - len(rows)} of {len(ids)} outside the subtree")
    return rows
