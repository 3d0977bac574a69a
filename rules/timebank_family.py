"""Family links of the time bank (时间银行家人), made in chat: a volunteer's invite code
(valid INVITE_DAYS, once), accepted by the family member's own follower account; either
side ends a link (kept, with who ended it, as the record of who could spend when); the
volunteer may choose the notices of the member's orders and then confirm them for them.
What a link allows (spending, gifts) is `rules.timebank`'s.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules import masks
from rules import timebank as bank
from rules.timebank import CHINA, TimeBankError
from store.models import Follower, TimeBankFamily, TimeBankInvite, Volunteer
from store.outbox import notify

INVITE_DAYS = 3  # an invite code is valid this long
RELATIONS = ("父亲", "母亲", "配偶", "子女", "祖父母", "外祖父母", "兄弟姐妹", "其他亲属")  # whom a volunteer invites


def links_of(session: Session, follower: Follower) -> tuple[list[TimeBankFamily], list[TimeBankFamily]]:
    """Live links where this follower is the volunteer, and where they are the member."""
    live = TimeBankFamily.ended_at.is_(None)
    mine = list(session.scalars(select(TimeBankFamily).join(Volunteer, Volunteer.id == TimeBankFamily.volunteer_id)
                                .where(Volunteer.follower_id == follower.id, live).order_by(TimeBankFamily.id)))
    theirs = list(session.scalars(select(TimeBankFamily).where(TimeBankFamily.follower_id == follower.id, live)
                                  .order_by(TimeBankFamily.id)))
    return mine, theirs


def invite(session: Session, volunteer: Volunteer, relation: str, now: datetime) -> TimeBankInvite:
    """A new 6-digit invite code for a family member; the volunteer's older open codes end."""
    if volunteer.state != "active":
        raise TimeBankError("只有在册志愿者可以邀请家人。")
    session.execute(update(TimeBankInvite).where(
        TimeBankInvite.volunteer_id == volunteer.id, TimeBankInvite.used_at.is_(None),
        TimeBankInvite.expires_at > now).values(expires_at=now))
    for _ in range(20):
        code = f"{secrets.randbelow(10 ** 6):06d}"
        try:
            with session.begin_nested():
                inv = TimeBankInvite(volunteer_id=volunteer.id, code=code, relation=relation[:16],
                                     created_at=now, expires_at=now + timedelta(days=INVITE_DAYS))
                session.add(inv)
                session.flush()
            return inv
        except IntegrityError:
            continue  # that code was taken before: draw again
    raise TimeBankError("暂时无法生成邀请码，请稍后再试。")


def open_invite(session: Session, code: str, now: datetime) -> TimeBankInvite:
    inv = session.scalar(select(TimeBankInvite).where(TimeBankInvite.code == code))
    if inv is None:
        raise TimeBankError("没有找到这个邀请码，请核对后再输入。")
    if inv.used_at is not None:
        raise TimeBankError("这个邀请码已经使用过了，请让家人重新邀请。")
    if inv.expires_at <= now:
        raise TimeBankError("这个邀请码已过期，请让家人重新邀请。")
    return inv


def accept_invite(session: Session, code: str, follower: Follower, now: datetime) -> TimeBankFamily:
    """The member accepts: the code is used once (conditional update), the link made and
    the volunteer told."""
    inv = open_invite(session, code, now)
    volunteer = session.get(Volunteer, inv.volunteer_id)
    if volunteer.follower_id == follower.id:
        raise TimeBankError("这是您自己的邀请码，请发给家人，由家人在自己的微信里回复。")
    if bank.live_link(session, volunteer.id, follower.id) is not None:
        raise TimeBankError("你们已经是时间银行家人了。")
    used = session.execute(update(TimeBankInvite).where(TimeBankInvite.id == inv.id, TimeBankInvite.used_at.is_(None))
                           .values(used_at=now, used_by=follower.id)).rowcount == 1
    if not used:
        raise TimeBankError("这个邀请码已经使用过了，请让家人重新邀请。")
    try:
        with session.begin_nested():  # the live pair is unique: a second code accepted at once loses
            link = TimeBankFamily(volunteer_id=volunteer.id, follower_id=follower.id, relation=inv.relation,
                                  created_at=now)
            session.add(link)
            session.flush()
    except IntegrityError:
        raise TimeBankError("你们已经是时间银行家人了。") from None
    bank._tell(session, bank.account_for(session, volunteer, lock=False), "家人已接受邀请",
          f"{inv.relation or '家人'}已绑定时间银行", 0, now, f"link:{link.id}:made")
    return link


def end_link(session: Session, link: TimeBankFamily, *, by: Follower | None, now: datetime) -> TimeBankFamily:
    """Either side (or an operator, `by` None) ends a link; the other side is told."""
    volunteer = session.get(Volunteer, link.volunteer_id)
    if by is None:
        side = "operator"
    elif by.id == link.follower_id:
        side = "member"
    elif volunteer.follower_id == by.id:
        side = "volunteer"
    else:
        raise TimeBankError("只有绑定的双方可以解除家人关系。")
    ended = session.execute(update(TimeBankFamily).where(TimeBankFamily.id == link.id, TimeBankFamily.ended_at.is_(None))
                            .values(ended_at=now, ended_by=side).execution_options(synchronize_session=False)).rowcount
    session.refresh(link)
    if not ended:
        raise TimeBankError("这个家人关系已经解除了。")
    others = []
    if side != "volunteer" and volunteer.follower is not None:
        others.append(volunteer.follower)
    if side != "member":
        others.append(session.get(Follower, link.follower_id))
    for other in others:
        if other is not None and other.subscribed:
            notify(session, openid=other.openid, kind="timebank", title="时间银行家人关系已解除",
                   fields={"事项": f"与{masks.name(volunteer.name)}的家人关系已解除", "时长": "", "余额": "",
                           "时间": f"{now.astimezone(CHINA):%Y年%m月%d日 %H:%M}"},
                   dedup_key=f"timebank:link:{link.id}:ended:{other.id}")
    return link


def set_notices(session: Session, link: TimeBankFamily, on: bool, now: datetime) -> None:
    """The volunteer turns the notices of the member's orders on or off; turning them on
    tells the member (they agreed to it when accepting, and may end the link)."""
    was, link.notices = link.notices, on
    session.flush()
    member = session.get(Follower, link.follower_id)
    if on and not was and member is not None and member.subscribed:
        volunteer = session.get(Volunteer, link.volunteer_id)
        notify(session, openid=member.openid, kind="timebank", title="家人开启了您订单的通知",
               fields={"事项": f"{masks.name(volunteer.name)}将收到您订单的进度"[:20], "时长": "", "余额": "",
                       "时间": f"{now.astimezone(CHINA):%Y年%m月%d日 %H:%M}"},
               dedup_key=f"timebank:link:{link.id}:notices:{now.timestamp():.0f}")


def watchers(session: Session, member_follower_id: int) -> list[Follower]:
    """Volunteers (their followers) who chose to get the notices of this member's orders."""
    return list(session.scalars(
        select(Follower).join(Volunteer, Volunteer.follower_id == Follower.id)
        .join(TimeBankFamily, TimeBankFamily.volunteer_id == Volunteer.id)
        .where(TimeBankFamily.follower_id == member_follower_id, TimeBankFamily.ended_at.is_(None),
               TimeBankFamily.notices.is_(True)).order_by(Follower.id)))


def watched_members(session: Session, follower: Follower) -> list[int]:
    """Follower ids of the members whose orders this follower (a volunteer) watches and may
    confirm."""
    return list(session.scalars(
        select(TimeBankFamily.follower_id).join(Volunteer, Volunteer.id == TimeBankFamily.volunteer_id)
        .where(Volunteer.follower_id == follower.id, TimeBankFamily.ended_at.is_(None),
               TimeBankFamily.notices.is_(True))))
