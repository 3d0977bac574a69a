"""Volunteer rules used by chat, CLI and the console: registration with a central number,
approval of sign-ups, service hours (record, approve, reject), star levels.

- Numbers are `KW` + year + 6-digit serial, taken by one atomic `UPDATE … RETURNING` on the
  year's `VolunteerSerial` row: the row lock makes concurrent sign-ups queue for a serial,
  and a rolled-back sign-up never hands out its number twice (the update rolls back too).
- One volunteer per ID number (unique keyed hash) and per follower.
- Coordinators act on their team's subtree only (path prefix).
- Deciding hours is an atomic `UPDATE … WHERE state = 'pending'`: of two coordinators
  approving the same record at once, one wins; the other sees it decided. Approvals take the
  time bank's issuing account lock first, so star checks and deposits never race.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from menus import load_yaml
from rules import pii, reports, timebank
from rules.teams import in_subtree, subtree_ids
from store.models import Coordinator, Follower, HourRecord, Team, Volunteer, VolunteerSerial, VolunteerStar
from store.outbox import notify

CHINA = ZoneInfo("Asia/Shanghai")
ADULT_AGE = 18


class VolunteerError(ValueError):
    """A refused operation; the message is a short Chinese sentence for the user."""


@dataclass(frozen=True)
class Availability:
    code: str
    label: str


@dataclass(frozen=True)
class Rules:
    stars: tuple[int, ...] = (100, 300, 600, 1000, 1500)  # approved hours for 1..5 stars
    bank: timebank.BankRules = field(default_factory=timebank.BankRules)
    number_prefix: str = "KW"
    privacy_version: str = ""
    privacy_notice: str = ""
    availability: tuple[Availability, ...] = ()

    def star_for(self, minutes: int) -> int:
        return sum(1 for h in self.stars if minutes >= h * 60)

    def minutes_to_next_star(self, minutes: int) -> int | None:
        level = self.star_for(minutes)
        return None if level >= len(self.stars) else self.stars[level] * 60 - minutes


@lru_cache(maxsize=None)  # immutable district data shipped with the code
def rules() -> Rules:
    data = load_yaml("volunteers.yaml")
    stars = tuple(int(h) for h in data["stars"])
    if list(stars) != sorted(set(stars)) or not stars or stars[0] <= 0:
        raise ValueError("volunteers.yaml: stars must be increasing positive hours")
    bank = data.get("timebank") or {}
    cap = bank.get("cap_minutes")
    return Rules(
        stars=stars,
        bank=timebank.BankRules(int(bank.get("rate_numerator", 1)), int(bank.get("rate_denominator", 1)),
                                None if cap is None else int(cap)),
        number_prefix=str(data.get("number_prefix", "KW")),
        privacy_version=str(data.get("privacy_version", "")),
        privacy_notice=data.get("privacy_notice", ""),
        availability=tuple(Availability(a["code"], a["label"]) for a in data.get("availability") or ()),
    )


# ---- numbers ------------------------------------------------------------------------------

def next_serial(session: Session, year: int) -> int:
    """The next serial of `year`, atomically (row lock until the transaction ends)."""
    bump = (update(VolunteerSerial).where(VolunteerSerial.year == year)
            .values(last=VolunteerSerial.last + 1).returning(VolunteerSerial.last))
    value = session.execute(bump).scalar()
    if value is None:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(VolunteerSerial).values(year=year, last=0).on_conflict_do_nothing())
        value = session.execute(bump).scalar()
    return int(value)


def format_number(prefix: str, year: int, serial: int) -> str:
    return f"{prefix}{year}{serial:06d}"


# ---- coordinators -------------------------------------------------------------------------

def coordinator_for(session: Session, follower: Follower | None) -> Coordinator | None:
    if follower is None:
        return None
    return session.scalar(select(Coordinator).where(
        Coordinator.follower_id == follower.id, Coordinator.active.is_(True)))


def can_act(coordinator: Coordinator | None, team: Team) -> bool:
    return coordinator is not None and coordinator.active and in_subtree(team, coordinator.team)


# ---- registration -------------------------------------------------------------------------

def find_by_id_number(session: Session, pii_key: pii.Keys, number: str) -> Volunteer | None:
    """By the keyed hash, under every key held (a key rotation may be half done)."""
    return session.scalar(select(Volunteer).where(Volunteer.id_number_hash.in_(pii.lookup_hashes(pii_key, number))))


_VOLUNTEER_OF = select(Volunteer).where(Volunteer.follower_id == bindparam("follower_id"))


def volunteer_of(session: Session, follower: Follower) -> Volunteer | None:
    return session.scalar(_VOLUNTEER_OF, {"follower_id": follower.id})


def register(session: Session, *, pii_key: pii.Keys, follower: Follower | None, name: str, phone: str,
             id_number: pii.IdNumber, team: Team, now: datetime, skills: list | None = None,
             availability: list | None = None, guardian_name: str | None = None,
             guardian_phone: str | None = None, consent: bool = True,
             rule: Rules | None = None) -> Volunteer:
    """Register a volunteer and issue their number: active at once for an `auto` team,
    pending for an `approval` team. Raises VolunteerError for a duplicate ID number, a
    follower already registered, a minor without a guardian, or missing consent."""
    rule = rule or rules()
    if not consent:
        raise VolunteerError("需要同意隐私说明才能注册。")
    if team.kind not in ("squad", "professional"):
        raise VolunteerError("请选择具体的小队或专业分队。")
    today = now.astimezone(CHINA).date()
    if id_number.age_on(today) < ADULT_AGE and not (guardian_name and guardian_phone):
        raise VolunteerError("未满18周岁需要填写监护人姓名和电话。")
    if follower is not None and volunteer_of(session, follower) is not None:
        raise VolunteerError("您已经注册过志愿者了。")
    if find_by_id_number(session, pii_key, id_number.number) is not None:
        raise VolunteerError("该身份证号已经注册过志愿者。")
    sealed = pii.seal_id_number(pii_key, id_number.number)
    year = today.year
    volunteer = Volunteer(
        number=format_number(rule.number_prefix, year, next_serial(session, year)),
        follower_id=follower.id if follower else None, name=name, phone=phone,
        id_number_enc=sealed.enc, id_number_hash=sealed.hash, id_number_last4=sealed.last4,
        birth_year=id_number.birth_date.year, guardian_name=guardian_name, guardian_phone=guardian_phone,
        team_id=team.id, skills=list(skills or []), availability=list(availability or []),
        state="active" if team.join_policy == "auto" else "pending",
        consent_at=now, consent_version=rule.privacy_version or None, created_at=now,
    )
    if volunteer.state == "active":
        volunteer.decided_at = now
    try:
        with session.begin_nested():  # a concurrent sign-up with the same ID number
            session.add(volunteer)
            session.flush()
    except IntegrityError:
        raise VolunteerError("该身份证号已经注册过志愿者。") from None
    if follower is not None and not follower.phone:
        follower.phone = phone
    if volunteer.state == "pending" and follower is not None:  # a sign-up in chat, not an import
        for coord in coordinators_over(session, team):
            notify(session, openid=coord.follower.openid, kind="volunteer_signup", title="新的志愿者注册待审核",
                   fields={"team": team.name, "number": volunteer.number, "hint": "回复“待审志愿者”处理"},
                   dedup_key=f"volunteer:{volunteer.id}:signup:{coord.id}")
    return volunteer


def coordinators_over(session: Session, team: Team) -> list[Coordinator]:
    """Active coordinators, reachable in chat, of `team` or any team above it."""
    ancestors = [int(i) for i in team.path.strip("/").split("/") if i]
    return list(session.scalars(select(Coordinator).where(
        Coordinator.team_id.in_(ancestors), Coordinator.active.is_(True), Coordinator.follower_id.is_not(None))))


def relink(session: Session, *, pii_key: pii.Keys, follower: Follower, id_number: pii.IdNumber,
           name: str) -> Volunteer:
    """Tie a volunteer record left unlinked by an unsubscribe to this follower again, when
    the name and ID number both match: the number, hours and stars come back with it."""
    vol = find_by_id_number(session, pii_key, id_number.number)
    if vol is None or vol.follower_id is not None or vol.name != name:
        raise VolunteerError("该身份证号已经注册过志愿者。如需找回编号，请联系所在队伍的协调员。")
    if volunteer_of(session, follower) is not None:
        raise VolunteerError("您已经注册过志愿者了。")
    vol.follower_id = follower.id
    session.flush()
    return vol


def pending_volunteers(session: Session, coordinator: Coordinator, limit: int = 20) -> list[Volunteer]:
    return list(session.scalars(
        select(Volunteer).where(Volunteer.state == "pending",
                                Volunteer.team_id.in_(subtree_ids(session, coordinator.team)))
        .order_by(Volunteer.id).limit(limit)))


def decide_volunteer(session: Session, volunteer: Volunteer, *, approve: bool, now: datetime,
                     coordinator: Coordinator | None, reason: str = "") -> bool:
    """Approve or reject a pending sign-up; False if it was already decided. A coordinator
    must cover the volunteer's team (None = an operator through the CLI)."""
    if coordinator is not None and not can_act(coordinator, volunteer.team):
        raise VolunteerError("这名志愿者不在您管理的队伍范围内。")
    if not approve and not reason.strip():
        raise VolunteerError("驳回需要说明原因。")
    done = session.execute(
        update(Volunteer).where(Volunteer.id == volunteer.id, Volunteer.state == "pending")
        .values(state="active" if approve else "rejected", decided_at=now,
                decided_by=coordinator.id if coordinator else None,
                decision_reason=reason.strip()[:255] or None)
        .execution_options(synchronize_session=False)).rowcount == 1
    session.refresh(volunteer)
    if done and volunteer.follower is not None:
        notify(session, openid=volunteer.follower.openid, kind="volunteer_decision",
               title="志愿者注册审核结果",
               fields={"number": volunteer.number, "result": "已通过" if approve else "未通过",
                       "reason": reason.strip()[:60] or "—"},
               dedup_key=f"volunteer:{volunteer.id}:decision")
    return done


# ---- hours --------------------------------------------------------------------------------

def record_hours(session: Session, volunteer: Volunteer, *, source: str, started_at: datetime,
                 ended_at: datetime, now: datetime, source_ref: str | None = None,
                 travel_minutes: int = 0, minutes: int | None = None,
                 recorded_by: Coordinator | None = None, description: str = "",
                 flagged: str | None = None) -> HourRecord:
    """A pending hour record. Credited minutes are the service span minus travel (travel is
    never counted) unless given, and never more than the span. A manual entry needs a
    coordinator of the volunteer's team and may not overlap another record of theirs."""
    if ended_at <= started_at:
        raise VolunteerError("结束时间必须晚于开始时间。")
    if ended_at > now + timedelta(minutes=5):
        raise VolunteerError("不能记录未来的服务时长。")
    span = int((ended_at - started_at).total_seconds() // 60)
    if travel_minutes < 0:
        raise VolunteerError("路途时间不能为负数。")
    credited = span - travel_minutes if minutes is None else minutes
    if credited <= 0 or credited > span:
        raise VolunteerError("服务时长必须大于零，且不超过开始到结束的时间（路途时间不计入）。")
    if source == "manual":
        if recorded_by is None or not can_act(recorded_by, volunteer.team):
            raise VolunteerError("补录时长需要该志愿者所在队伍的协调员。")
        overlap = session.scalar(select(HourRecord.id).where(
            HourRecord.volunteer_id == volunteer.id, HourRecord.state != "rejected",
            HourRecord.started_at < ended_at, HourRecord.ended_at > started_at).limit(1))
        if overlap is not None:
            raise VolunteerError(f"与已有的时长记录（{overlap}号）时间重叠。")
    record = HourRecord(
        volunteer_id=volunteer.id, source=source,
        source_ref=source_ref or f"{source}:{uuid.uuid4().hex[:16]}", minutes=credited,
        travel_minutes=travel_minutes, started_at=started_at, ended_at=ended_at,
        description=description[:500], flagged=flagged,
        recorded_by=recorded_by.id if recorded_by else None, state="pending", created_at=now)
    session.add(record)
    session.flush()
    return record


def pending_hours(session: Session, coordinator: Coordinator, limit: int = 20) -> list[HourRecord]:
    return list(session.scalars(
        select(HourRecord).join(Volunteer, Volunteer.id == HourRecord.volunteer_id)
        .where(HourRecord.state == "pending",
               Volunteer.team_id.in_(subtree_ids(session, coordinator.team)))
        .order_by(HourRecord.id).limit(limit)))


@dataclass
class Decision:
    record_id: int
    outcome: str  # approved | rejected | already | forbidden | own_entry | missing
    star: int | None = None  # a star level newly reached


def decide_hours(session: Session, record_ids: list[int], *, approve: bool, now: datetime,
                 coordinator: Coordinator | None, actor: str | None = None, reason: str = "",
                 rule: Rules | None = None, bank: timebank.Policy | None = None) -> list[Decision]:
    """Approve or reject pending records, each at most once. Approval credits the time
    bank (once per record, under the district's `bank` policy) and records a new star
    level. `coordinator` None = operator."""
    rule = rule or rules()
    if not approve and not reason.strip():
        raise VolunteerError("驳回需要说明原因。")
    actor = actor or (f"coordinator:{coordinator.id}" if coordinator else "operator")
    if approve:
        timebank.lock_issuing(session)  # approvals queue here: deposits and star checks never race
    results: list[Decision] = []
    for rid in record_ids:
        record = session.get(HourRecord, rid)
        if record is None:
            results.append(Decision(rid, "missing"))
            continue
        if coordinator is not None and not can_act(coordinator, record.volunteer.team):
            results.append(Decision(rid, "forbidden"))
            continue
        if (approve and coordinator is not None and record.source == "manual"
                and record.recorded_by == coordinator.id):
            # Two-person rule: a manual entry is approved by someone other than its author.
            results.append(Decision(rid, "own_entry"))
            continue
        won = session.execute(
            update(HourRecord).where(HourRecord.id == rid, HourRecord.state == "pending")
            .values(state="approved" if approve else "rejected", decided_at=now,
                    decided_by=coordinator.id if coordinator else None,
                    reason=reason.strip()[:255] or None)
            .execution_options(synchronize_session=False)).rowcount == 1
        session.refresh(record)
        if not won:
            results.append(Decision(rid, "already"))
            continue
        _announce_decision(session, record, approve, reason)
        if not approve:
            results.append(Decision(rid, "rejected"))
            continue
        timebank.deposit_for_hours(session, record, actor=actor, now=now, rules=rule.bank, policy=bank)
        reports.count_approved(session, record)  # the reports' running totals, same transaction
        results.append(Decision(rid, "approved", check_stars(session, record.volunteer, now, rule, record)))
    return results


def _announce_decision(session: Session, record: HourRecord, approved: bool, reason: str) -> None:
    """Tell the volunteer their hours were approved or rejected (once per record)."""
    volunteer = record.volunteer
    if volunteer.follower is None or not volunteer.follower.subscribed:
        return
    notify(session, openid=volunteer.follower.openid, kind="hours_result", title="服务时长审核结果",
           fields={"number": volunteer.number, "result": "已通过" if approved else "未通过",
                   "hours": hours_text(record.minutes),
                   "note": (reason.strip() or record.description or "")[:20]},
           dedup_key=f"hours:{record.id}:{'approved' if approved else 'rejected'}")


def approved_minutes(session: Session, volunteer_id: int) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(HourRecord.minutes), 0)).where(
        HourRecord.volunteer_id == volunteer_id, HourRecord.state == "approved")) or 0)


def check_stars(session: Session, volunteer: Volunteer, now: datetime, rule: Rules | None = None,
                record: HourRecord | None = None) -> int | None:
    """Record (and announce) a star level newly reached; returns it, or None."""
    rule = rule or rules()
    total = approved_minutes(session, volunteer.id)
    level = rule.star_for(total)
    if level <= volunteer.star_level:
        return None
    for lvl in range(volunteer.star_level + 1, level + 1):
        try:
            with session.begin_nested():
                session.add(VolunteerStar(volunteer_id=volunteer.id, level=lvl, approved_minutes=total,
                                          reached_at=now, hour_record_id=record.id if record else None))
                session.flush()
        except IntegrityError:
            pass  # recorded already
    volunteer.star_level = level
    if volunteer.follower is not None:
        notify(session, openid=volunteer.follower.openid, kind="star_level", title="星级志愿者",
               fields={"number": volunteer.number, "level": f"{level}星",
                       "hours": hours_text(total)},
               dedup_key=f"star:{volunteer.id}:{level}")
    return level


# ---- my hours -----------------------------------------------------------------------------

@dataclass
class HoursSummary:
    approved: int  # minutes
    pending: int
    this_year: int
    star: int
    to_next_star: int | None
    balance: int
    latest: list[HourRecord]


def summary(session: Session, volunteer: Volunteer, now: datetime, rule: Rules | None = None,
            latest: int = 5) -> HoursSummary:
    """Totals in one aggregate query over the (volunteer, state, started_at) index."""
    rule = rule or rules()
    local = now.astimezone(CHINA)
    year_start = datetime(local.year, 1, 1, tzinfo=CHINA)
    approved = HourRecord.state == "approved"
    row = session.execute(select(
        func.coalesce(func.sum(case((approved, HourRecord.minutes), else_=0)), 0),
        func.coalesce(func.sum(case((HourRecord.state == "pending", HourRecord.minutes), else_=0)), 0),
        func.coalesce(func.sum(case((and_(approved, HourRecord.started_at >= year_start), HourRecord.minutes),
                                    else_=0)), 0),
    ).where(HourRecord.volunteer_id == volunteer.id)).one()
    total, pending, year = (int(v) for v in row)
    recent = list(session.scalars(select(HourRecord).where(HourRecord.volunteer_id == volunteer.id)
                                  .order_by(HourRecord.started_at.desc(), HourRecord.id.desc()).limit(latest)))
    return HoursSummary(total, pending, year, rule.star_for(total), rule.minutes_to_next_star(total),
                        timebank.balance(session, volunteer), recent)


def hours_text(minutes: int) -> str:
    """10 → "10分钟" (under an hour, minutes: "0.2小时" says little); 1234 → "20.6小时";
    whole hours without a decimal."""
    if 0 < minutes < 60:
        return f"{minutes}分钟"
    h = minutes / 60
    return f"{int(h)}小时" if minutes % 60 == 0 else f"{h:.1f}小时"



def stored_phone(follower: Follower | None) -> str | None:
    """The mobile a follower gave before (remembered on the follower), if any."""
    return follower.phone if follower is not None and follower.phone else None
