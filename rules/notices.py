"""Subscribe-notice consent, what WeChat's answers to a send mean, and paused kinds.

Consent (订阅通知) is collected only by WeChat's own `wx-open-subscribe` button (on a web
page or in an article) and the notice settings; WeChat tells us through the webhook
(subscribe_msg_popup_event / subscribe_msg_change_event) and the web page tells us through
its consent endpoint. Both end in `record_consent`, the one function that writes it.

The worker asks `may_send` before a subscribe notice and records the outcome with
`spent` (one more notice sent under the consent) or `refused` (43101: the user refused,
the consent is revoked). No consent, no send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from menus.notices import Catalog
from menus.notices import load as load_catalog
from store.models import NoticeConsent, PausedKind, Push

# PopupScene of subscribe_msg_popup_event (research: developers.weixin.qq.com/doc/service/
# guide/product/subscription_messages/push.html): 1 a web page (H5), 2 an article.
POPUP_SOURCES = {"1": "h5_popup", "2": "article_popup"}
SOURCES = ("h5_popup", "article_popup", "settings", "page", "refused_43101")
TEMPLATE_ID_MAX = 128


class ConsentError(ValueError):
    """A consent report that cannot be recorded (no openid, no template id, unknown source)."""


def _row(session: Session, openid: str, template_id: str) -> NoticeConsent | None:
    return session.scalar(select(NoticeConsent).where(NoticeConsent.openid == openid,
                                                      NoticeConsent.template_id == template_id))


def record_consent(session: Session, openid: str, template_id: str, *, accepted: bool, source: str,
                   now: datetime) -> NoticeConsent:
    """Record that `openid` accepted (or refused) the notice template `template_id`, and
    where (`source`: h5_popup, article_popup, settings, page). Each acceptance adds one
    grant (a one-time notice template allows one notice per grant); a refusal revokes
    every grant. Called for the webhook's subscribe events and by the web pages' consent
    endpoint (what the page's wx-open-subscribe `success` callback reports)."""
    openid, template_id = (openid or "").strip(), (template_id or "").strip()
    if not openid or len(openid) > 64:
        raise ConsentError("openid missing or too long")
    if not template_id or len(template_id) > TEMPLATE_ID_MAX:
        raise ConsentError("template id missing or too long")
    if source not in SOURCES:
        raise ConsentError(f"unknown consent source {source!r}")
    row = _row(session, openid, template_id)
    if row is None:
        row = NoticeConsent(openid=openid, template_id=template_id, state="rejected", grants=0, sent=0,
                            source=source)
        try:
            with session.begin_nested():  # the same user's page and webhook reports at once
                session.add(row)
                session.flush()
        except IntegrityError:  # the same user's page and webhook report at once
            row = _row(session, openid, template_id)
    row.source, row.updated_at = source, now
    if accepted:
        if row.state != "accepted":
            row.grants, row.sent = 0, 0
        row.state, row.grants, row.granted_at = "accepted", row.grants + 1, now
        row.first_granted_at = row.first_granted_at or now
    else:
        row.state, row.grants, row.sent, row.refused_at = "rejected", 0, 0, now
    session.flush()
    return row


def record_events(session: Session, openid: str, event: str, items: list[dict], now: datetime) -> int:
    """The items of one subscribe_msg_popup_event / subscribe_msg_change_event (each
    {template_id, status, scene}); how many were recorded. Items out of shape are skipped:
    the event is WeChat's, a bad item must not lose the good ones."""
    done = 0
    for item in items:
        status = item.get("status")
        if status not in ("accept", "reject"):
            continue
        source = "settings" if event == "change" else POPUP_SOURCES.get(str(item.get("scene") or ""), "h5_popup")
        try:
            record_consent(session, openid, item.get("template_id") or "", accepted=status == "accept",
                           source=source, now=now)
        except ConsentError:
            continue
        done += 1
    return done


def may_send(session: Session, openid: str, template_id: str, consent: str) -> bool:
    """Whether a notice of `template_id` may go to `openid` now: accepted, and for a
    one-time template a grant not yet used."""
    row = _row(session, openid, template_id)
    if row is None or row.state != "accepted":
        return False
    return consent == "long_term" or row.sent < row.grants


def consenting(session: Session, openids: list[str], template_id: str, consent: str) -> set[str]:
    """Those of `openids` who may get a notice of `template_id` now (one query per 1,000)."""
    found: set[str] = set()
    for i in range(0, len(openids), 1000):
        q = select(NoticeConsent.openid).where(NoticeConsent.openid.in_(openids[i:i + 1000]),
                                               NoticeConsent.template_id == template_id,
                                               NoticeConsent.state == "accepted")
        if consent != "long_term":
            q = q.where(NoticeConsent.sent < NoticeConsent.grants)
        found.update(session.scalars(q))
    return found


def spent(session: Session, openid: str, template_id: str, now: datetime) -> None:
    """One notice went out under the consent (a one-time grant is used up by it)."""
    session.execute(update(NoticeConsent)
                    .where(NoticeConsent.openid == openid, NoticeConsent.template_id == template_id)
                    .values(sent=NoticeConsent.sent + 1, last_sent_at=now, updated_at=now)
                    .execution_options(synchronize_session=False))


def refused(session: Session, openid: str, template_id: str, now: datetime) -> None:
    """WeChat answered 43101 (the user refuses this template): the consent is revoked, and
    for a template message a refusal is remembered so it is not tried again."""
    record_consent(session, openid, template_id, accepted=False, source="refused_43101", now=now)


def refuses(session: Session, openid: str, template_id: str) -> bool:
    """Whether `openid` refused `template_id` (a template message is not tried then)."""
    row = _row(session, openid, template_id)
    return row is not None and row.state == "rejected"


def erase(session: Session, openid: str) -> int:
    """On unsubscribe: the user's consent records go (they would consent again on return)."""
    return session.execute(delete(NoticeConsent).where(NoticeConsent.openid == openid)).rowcount or 0


# ---- what WeChat's answers mean ------------------------------------------------------------------

# code -> (what the coordinator reads, what happens). The worker acts on each as said here
# (pushes.worker); the push page and `volbot push status` show these words.
ERRORS = {
    40252: ("微信审核中（约30分钟）", "held: WeChat took the message and reviews it; not resent"),
    40249: ("被微信拦截", "failed: WeChat blocked the message; not resent"),
    43116: ("模板被封禁，此类通知已暂停", "the kind is paused and staff alerted; its pushes wait"),
    43101: ("用户拒收", "failed: the user's consent is revoked"),
    45015: ("超出48小时回复时限", "failed: the customer-service window is closed; phone instead"),
    45047: ("超出5条回复上限", "failed: the customer-service window is used up; phone instead"),
    45009: ("今日发送额度已用完", "waits: retried after midnight Beijing time"),
    40003: ("用户标识无效", "failed: the follower is marked unreachable"),
    43004: ("用户已取消关注", "failed: the follower is marked unreachable"),
    47003: ("通知内容不符合模板规则", "failed: a bad push (a value WeChat would not take)"),
    40037: ("模板ID无效", "failed: a bad push (the district's template id is wrong)"),
}
NO_CONSENT = "no consent"
_CODE = re.compile(r"^(\d{5})\b")


def meaning(last_error: str | None) -> str:
    """A push's last error in the coordinator's words (or the raw text)."""
    if not last_error:
        return ""
    found = _CODE.match(last_error)
    if found and int(found.group(1)) in ERRORS:
        return ERRORS[int(found.group(1))][0]
    if last_error.startswith(NO_CONSENT):
        return "用户未订阅此通知"
    if last_error.startswith("outcome unknown"):
        return "发送结果未知（未重发）"
    if last_error.startswith("bad push"):
        return "通知内容无法生成"
    return last_error[:60]


def outcomes(session: Session, *where) -> list[tuple[str, str, int]]:
    """(state, meaning, count) of the pushes matching `where` (a batch, a kind), the
    most common first: what became of a fan-out, as the push page shows it."""
    rows = session.execute(select(Push.state, Push.last_error, func.count()).where(*where)
                           .group_by(Push.state, Push.last_error)).all()
    merged: dict[tuple[str, str], int] = {}
    for state, error, n in rows:
        key = (state, meaning(error) if state in ("failed", "held", "pending") else "")
        merged[key] = merged.get(key, 0) + n
    return sorted(((s, m, n) for (s, m), n in merged.items()), key=lambda r: -r[2])


def by_channel(session: Session, *where) -> dict[str, int]:
    """How many pushes (matching `where`) went or go by each channel."""
    return dict(session.execute(select(Push.channel, func.count()).where(*where).group_by(Push.channel)).all())


# ---- paused kinds (43116: the template was banned) ----------------------------------------------

def pause(session: Session, kind: str, template_id: str, reason: str, now: datetime) -> bool:
    """Pause `kind` (True if it was not paused yet): its pushes wait until `resume`."""
    if session.get(PausedKind, kind) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(PausedKind(kind=kind, template_id=template_id[:128], reason=reason[:255], paused_at=now))
            session.flush()
    except IntegrityError:  # a concurrent worker paused it first
        return False
    return True


def paused(session: Session) -> dict[str, PausedKind]:
    return {p.kind: p for p in session.scalars(select(PausedKind))}


def resume(session: Session, kind: str, now: datetime) -> int:
    """Lift the pause of `kind` (after the district fixed its template): its waiting
    pushes are due now. Returns how many pushes were released."""
    session.execute(delete(PausedKind).where(PausedKind.kind == kind))
    return session.execute(
        update(Push).where(Push.kind == kind, Push.state == "pending", Push.last_error.like("43116%"))
        .values(due_at=now).execution_options(synchronize_session=False)).rowcount or 0


# ---- offering consent in chat ---------------------------------------------------------------------

@dataclass(frozen=True)
class Topic:
    """Subscribe kinds as a resident thinks of them: the chat offers a topic's consent, the
    page /m/notices carries one consent button a topic."""

    title: str
    what: str
    kinds: tuple[str, ...]


TOPICS = {
    "bus": Topic("志愿巴士", "巴士到访、变更和取消", ("bus_visit", "bus_change", "bus_cancel")),
    "shifts": Topic("活动提醒", "报名的活动开始前提醒、变更和取消", ("shift_reminder", "shift_changed", "activity_cancelled")),
    "news": Topic("通知公告", "区志愿服务大队发布的通知和社区问卷", ("announcement", "survey_invite")),
    "work": Topic("志愿者", "派给我的服务工单、缺人时的召集", ("order_offer", "callout")),
}


@lru_cache(maxsize=8)
def _catalog(ids: tuple) -> Catalog:
    return load_catalog(ids=dict(ids))


def catalog_for(template_ids: dict | None) -> Catalog:
    """The catalog with the account's template ids (WECHAT_TEMPLATE_<KIND>)."""
    return _catalog(tuple(sorted((template_ids or {}).items())))


def offer(session: Session, openid: str, kinds: tuple[str, ...], what: str, settings) -> str:
    """A reply line offering the notices of `kinds` (their subscribe button's page, or where
    to find the button), or "" when the user may already get all of them. WeChat lets
    only its own button ask for consent, never the chat: the line points there."""
    catalog = catalog_for(settings.template_ids)
    wanted = [catalog.kind(k) for k in kinds]
    if all(may_send(session, openid, k.template_id, k.consent) for k in wanted if k.channel == "subscribe"):
        return ""
    url = settings.notices_url
    if url:
        return f"想收到{what}，请点这里订阅通知：{url}"
    return f"想收到{what}，请留意本号文章里的“订阅通知”按钮，点“允许”即可。"
