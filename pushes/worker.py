"""Sending pushes: the RQ job that sends a chunk of push rows, exactly once each.

A job carries push ids, not content: SQL holds the truth. For each chunk the worker

1. claims a handful of rows in one UPDATE (queued/pending and due → sending, attempts + 1,
   a lease), so a job run twice, or two jobs with the same row, send it once: only one
   claim wins;
2. waits for the shared Redis token bucket, then sends the push by its kind's channel
   (menus/templates.yaml): a template message with the row's `client_msg_id` (random,
   made at insert: never the row id, which a restore of an earlier backup hands out
   again), a subscribe notice (only with the user's consent, rules.notices) or a
   customer-service text. If this worker dies after WeChat accepted a template but before
   step 3, the row's lease runs out, the scheduler queues it again, and WeChat drops the
   resend (same openid + client_msg_id within 10 minutes). A row whose lost attempt is
   older than that window — or went by a channel WeChat cannot deduplicate (notices,
   customer-service texts) — is failed as "outcome unknown", never resent: at most once;
3. records the handful's outcomes in one transaction (each guarded by state and attempt
   number, so a late worker whose lease was taken over cannot overwrite the newer attempt),
   or one by one if that fails (store.dead_letters: one bad outcome never blocks the rest).
   A row that cannot even be rendered fails alone, as a bad push.

Transient errors (network, -1, 45011, a token still refused after one refresh) put the row
back to pending with exponential backoff; 45009 (daily quota) waits for the next day;
permanent ones (43004 not following, 40003 unknown openid, 43019 blacklisted) fail the row
and mark the follower `push_blocked`, so nothing more is tried. 43101 (the user refuses
this template) revokes that consent only; 40252 holds the row for WeChat's review; 40249
(blocked) fails it; 43116 (template banned) pauses the kind and alerts staff
(rules.notices.ERRORS says what each means to a coordinator).

A worker that dies is noticed sooner than its leases run out: `PushWorker` heartbeats its
running job to RQ every few seconds, and the scheduler has RQ fail a job whose beats
stopped, then queues its rows again (see HEARTBEAT below).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psutil
import redis
from rq import Queue, SimpleWorker
from rq.utils import now as now_utc
from rq.worker import WorkerStatus
from sqlalchemy import and_, select, update

from menus.notices import Catalog
from menus.notices import load as load_catalog
from pushes.client import WeChatError, client_for
from pushes.ratelimit import TokenBucket
from rules import announcements, notices
from rules.receipts import apply_early_receipt, valid_msgid
from store.dead_letters import drain
from store.models import Follower, NoticeConsent, PausedKind, Push

log = logging.getLogger("volbot.pushes")

QUEUE_NAME = "volbot-pushes"
CHINA = ZoneInfo("Asia/Shanghai")
LOST = "lease expired mid-send"
# The recipient cannot get pushes: stop and remember it on the follower.
BLOCKING = {43004: "not following", 40003: "unknown openid", 43019: "blacklisted", 48002: "blocked the account"}
REFUSED, HELD, BLOCKED, BANNED = 43101, 40252, 40249, 43116
PAUSE_RECHECK = timedelta(minutes=15)  # a paused kind's pushes look again this often
# Channels WeChat cannot deduplicate a resend on (no client_msg_id): at most once.
NO_RESEND_GUARD = ("subscribe", "customer_service")
TAG_BATCH = 50  # openids per tags/members/batchtagging call
# The push itself is wrong (template id, data): retrying cannot help.
BAD_PUSH = {40037, 41028, 47001, 47003, 45002, 48001}
DAILY_QUOTA = 45009
# The user's customer-service window is closed or used up: this push cannot go; the
# follower may still get template messages.
WINDOW_CLOSED = {45015: "customer-service window closed (48 h since the user's last message)",
                 45047: "customer-service window used up (5 messages)"}


@dataclass(frozen=True)
class PushSettings:
    """Tunables, configured in bot/config.py (PUSH_RATE, PUSH_BURST, PUSH_MAX_ATTEMPTS,
    PUSH_LEASE_SECONDS, PUSH_CHUNK, PUSH_CLAIM, PUSH_BACKOFF_SECONDS, PUSH_BACKOFF_MAX_SECONDS);
    the shell passes the configured ones (`Services.push_settings`)."""

    rate: float = 50.0  # sends per second, all workers together
    burst: float | None = None
    max_attempts: int = 6
    lease_seconds: int = 60
    chunk: int = 50  # push ids per queue job
    claim: int = 10  # rows claimed (and their outcomes recorded) at a time within a job
    backoff: float = 5.0
    backoff_max: float = 3600.0
    # WeChat dedups client_msg_id for 600 s; past this a lost attempt is not resent.
    resend_window: int = 540


def push_queue(client: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=client)


def backoff_delay(attempts: int, settings: PushSettings) -> float:
    """Seconds before retry number `attempts` + 1: doubling, capped, with ±20 % jitter."""
    base = min(settings.backoff * (2 ** max(0, attempts - 1)), settings.backoff_max)
    return base * random.uniform(0.8, 1.2)


def next_china_day(now: datetime) -> datetime:
    """Five minutes past the next midnight in Beijing, when WeChat's daily quotas reset."""
    local = now.astimezone(CHINA)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=CHINA)
    return midnight + timedelta(minutes=5)


class Dispatcher:
    """Sends claimed push rows; one per worker process (it holds the connections)."""

    def __init__(self, services, *, client=None, settings: PushSettings | None = None,
                 catalog: Catalog | None = None):
        self.services = services
        self.settings = settings or services.push_settings
        self.client = client or client_for(services.config, services.redis)
        self.catalog = catalog or load_catalog(ids=services.config.template_ids)
        self.bucket = TokenBucket(services.redis, "wechat-send", self.settings.rate, self.settings.burst)

    def now(self) -> datetime:
        return self.services.clock.now()

    # ---- claiming -------------------------------------------------------------------------

    def claim(self, ids: list[int]) -> list[Push]:
        """Take the rows of `ids` that may be sent now; each returned row is ours alone
        (detached, with `.blocked` set to the recipient's push_blocked reason, if any,
        `.paused` to its kind's pause, `.consent` to whether its notice may go)."""
        now = self.now()
        lease = self.settings.lease_seconds + len(ids) / self.settings.rate
        with self.services.db.transaction() as session:
            lost = and_(Push.last_error == LOST, Push.state.in_(("queued", "pending")), Push.id.in_(ids))
            session.execute(
                update(Push).where(lost, Push.claimed_at < now - timedelta(seconds=self.settings.resend_window))
                .values(state="failed", lease_until=None,
                        last_error="outcome unknown: a worker was lost mid-send and WeChat's "
                                   "10-minute dedup window has passed, so it is not resent")
                .execution_options(synchronize_session=False))
            session.execute(
                update(Push).where(lost, Push.channel.in_(NO_RESEND_GUARD))
                .values(state="failed", lease_until=None,
                        last_error="outcome unknown: a worker was lost mid-send and WeChat cannot "
                                   "deduplicate this channel, so it is not resent")
                .execution_options(synchronize_session=False))
            claimed = session.execute(
                update(Push)
                .where(Push.id.in_(ids), Push.state.in_(("queued", "pending")), Push.due_at <= now)
                .values(state="sending", attempts=Push.attempts + 1, claimed_at=now,
                        lease_until=now + timedelta(seconds=lease))
                .returning(Push.id)
                .execution_options(synchronize_session=False)).scalars().all()
            if not claimed:
                return []
            rows = list(session.scalars(select(Push).where(Push.id.in_(claimed)).order_by(Push.id)))
            # Recipients known to refuse pushes, read in the same transaction (one fewer
            # round of SQLite's write lock per handful).
            blocked = dict(session.execute(
                select(Follower.openid, Follower.push_blocked)
                .where(Follower.openid.in_({p.openid for p in rows}), Follower.push_blocked.is_not(None))).all())
            pauses = {p.kind: p.reason for p in session.scalars(select(PausedKind))}
            consents = self._consents(session, rows)
            session.expunge_all()
            for push in rows:
                push.blocked = blocked.get(push.openid)
                push.paused = pauses.get(push.kind)
                push.consent = consents.get(push.id)
            return rows

    def _consents(self, session, rows: list[Push]) -> dict[int, bool]:
        """Per notice or template row, whether it may go: a subscribe notice needs an
        accepted consent (with a grant left, for a one-time template); a template message
        must not go to someone who refused its template (43101 before)."""
        wanted = {}
        for push in rows:
            kind = self.catalog.kinds.get(push.kind)
            if kind is not None and kind.channel in ("subscribe", "template"):
                wanted[push.id] = (push.openid, kind)
        if not wanted:
            return {}
        found = {(c.openid, c.template_id): c for c in session.scalars(
            select(NoticeConsent).where(NoticeConsent.openid.in_({o for o, _ in wanted.values()}),
                                        NoticeConsent.template_id.in_({k.template_id for _, k in wanted.values()})))}
        answer = {}
        for push_id, (openid, kind) in wanted.items():
            c = found.get((openid, kind.template_id))
            if kind.channel == "template":
                answer[push_id] = c is None or c.state != "rejected"
            else:
                answer[push_id] = c is not None and c.state == "accepted" and (
                    kind.consent == "long_term" or c.sent < c.grants)
        return answer

    # ---- one chunk ------------------------------------------------------------------------

    def send_chunk(self, ids: list[int]) -> dict:
        """Send the rows of `ids` that still wait, a few at a time: claim a handful, send
        them, record their outcomes in one transaction. A small claim keeps each lease
        short and a worker's death costs at most a handful of (deduplicated) resends."""
        counts = {"sent": 0, "failed": 0, "retry": 0, "skipped": 0}
        quota_hit = False
        for i in range(0, len(ids), self.settings.claim):
            group = ids[i:i + self.settings.claim]
            rows = self.claim(group)
            counts["skipped"] += len(group) - len(rows)
            if not rows:
                continue
            outcomes = []
            granted: dict[tuple[str, str], int] = {}  # one-time grants used in this handful
            for push in rows:
                kind = self.catalog.kinds.get(push.kind)
                if push.blocked:
                    outcome = Outcome(push, "failed", error=f"recipient blocked: {push.blocked}")
                elif push.paused:
                    outcome = Outcome(push, "pending", error=f"{BANNED} template banned: kind paused ({push.paused})"[:500],
                                      due=self.now() + PAUSE_RECHECK, count_attempt=False)
                elif push.consent is False or (kind and kind.consent == "one_time"
                                               and granted.get((push.openid, kind.template_id))):
                    outcome = Outcome(push, "failed", error=(
                        f"{REFUSED} user refused this template before" if kind and kind.channel == "template"
                        else f"{notices.NO_CONSENT}: the user has not subscribed to this notice"))
                elif quota_hit:
                    outcome = Outcome(push, "pending", error="45009 daily quota reached",
                                      due=next_china_day(self.now()), count_attempt=False)
                else:
                    outcome = self.send_one(push)
                    quota_hit = outcome.error is not None and outcome.error.startswith(str(DAILY_QUOTA))
                    if outcome.spend:
                        granted[outcome.spend] = 1
                if outcome.pause:
                    paused_now = outcome.pause[0]
                    for later in rows:  # the rest of the handful waits too
                        if later.kind == paused_now:
                            later.paused = later.paused or "43116"
                outcomes.append(outcome)
                counts[outcome.tally] += 1
            self.record(outcomes)
        return counts

    def send_one(self, push: Push) -> "Outcome":
        if not self.bucket.take(timeout=max(30.0, self.settings.lease_seconds / 2)):
            return Outcome(push, "pending", error="rate limiter busy", due=self.now(), count_attempt=False)
        try:
            kind = self.catalog.kind(push.kind)
        except KeyError as e:
            return Outcome(push, "failed", error=f"bad push: {e}"[:500])
        if kind.channel == "customer_service":
            return self.send_text(push)
        if kind.channel == "mass_send":
            return self.send_mass(push)
        try:
            data = kind.render(push.data or {})
        except Exception as e:  # noqa: BLE001 - this row cannot be sent; the others of its handful can
            log.error("push %s cannot be rendered: %s", push.id, type(e).__name__)
            return Outcome(push, "failed", error=f"bad push: cannot render ({type(e).__name__}: {e})"[:500])
        if kind.channel == "subscribe":
            try:
                self.client.send_notice(push.openid, kind.template_id, data, page=push.url)
            except WeChatError as e:
                return self.failed_send(push, e, kind)
            return Outcome(push, "sent", spend=(push.openid, kind.template_id))
        try:
            msgid = self.client.send_template(push.openid, kind.template_id, data, url=push.url,
                                              client_msg_id=push.client_msg_id)
        except WeChatError as e:
            return self.failed_send(push, e, kind)
        if msgid and not valid_msgid(msgid):  # no receipt could ever match it: keep the push, not the id
            log.warning("push %s: WeChat answered a msgid that cannot be stored (%d characters)", push.id, len(msgid))
            msgid = None
        return Outcome(push, "sent", msgid=msgid or None)

    def send_text(self, push: Push) -> "Outcome":
        text = str((push.data or {}).get("text") or "")
        if not text:
            return Outcome(push, "failed", error="bad push: a customer-service text without text")
        try:
            self.client.send_text(push.openid, text)
        except WeChatError as e:
            return self.failed_send(push, e)
        return Outcome(push, "sent")

    def send_mass(self, push: Push) -> "Outcome":
        """An announcement's 群发: a fresh tag of its audience (per attempt, so a resend never
        meets a half-made one), one sendall under the row's clientmsgid (WeChat sends it
        once in 24 h), then the tag is removed (an account has at most 100)."""
        announcement_id = int((push.data or {}).get("announcement") or 0)
        text = str((push.data or {}).get("text") or "")
        with self.services.db.transaction() as session:
            a = session.get(announcements.Announcement, announcement_id)
            audience = announcements.audience_openids(session, a) if a is not None else []
        if not audience or not text:
            return Outcome(push, "failed", error="bad push: a mass send without audience or text",
                           mass=(announcement_id, False))
        try:
            tag = self.client.create_tag(f"公告{announcement_id}-{push.attempts}")
            for i in range(0, len(audience), TAG_BATCH):
                self.client.tag_users(tag, audience[i:i + TAG_BATCH])
            msgid = self.client.mass_send_text(tag, text, push.client_msg_id)
        except WeChatError as e:
            outcome = self.failed_send(push, e)
            if outcome.state == "failed":
                outcome.mass = (announcement_id, False)
            return outcome
        try:
            self.client.delete_tag(tag)
        except WeChatError:
            log.warning("mass send %s: its tag %s could not be removed", push.id, tag)
        # Its msg_id is of another space than template msgids: no receipt is matched on it.
        log.info("mass send %s went out as WeChat msg_id %s", push.id, msgid)
        return Outcome(push, "sent", mass=(announcement_id, True))

    def failed_send(self, push: Push, e: WeChatError, kind=None) -> "Outcome":
        reason = f"{e.code} {e.message}".strip() if e.code is not None else f"network: {e.message}"
        if e.code == HELD:  # WeChat has it and reviews it: it delivers or blocks it itself
            return Outcome(push, "held", error=f"{HELD} held for review by WeChat")
        if e.code == BLOCKED:
            return Outcome(push, "failed", error=f"{BLOCKED} blocked by WeChat")
        if e.code == REFUSED and kind is not None:
            return Outcome(push, "failed", error=f"{REFUSED} user refused", refuse=(push.openid, kind.template_id))
        if e.code == BANNED and kind is not None:
            return Outcome(push, "pending", error=f"{BANNED} template banned: kind paused", due=self.now() + PAUSE_RECHECK,
                           count_attempt=False, pause=(push.kind, kind.template_id))
        if e.code in WINDOW_CLOSED:
            return Outcome(push, "failed", error=f"{e.code} {WINDOW_CLOSED[e.code]}")
        if e.code in BLOCKING:
            return Outcome(push, "failed", error=reason, block=f"{e.code} {BLOCKING[e.code]}")
        if e.code in BAD_PUSH:
            return Outcome(push, "failed", error=reason)
        if e.code == DAILY_QUOTA:
            return Outcome(push, "pending", error=reason, due=next_china_day(self.now()), count_attempt=False)
        if push.attempts >= self.settings.max_attempts:
            return Outcome(push, "failed", error=f"gave up after {push.attempts} attempts: {reason}")
        due = self.now() + timedelta(seconds=backoff_delay(push.attempts, self.settings))
        return Outcome(push, "pending", error=reason, due=due)

    # ---- recording outcomes (each guarded by our claim) -------------------------------------

    def record(self, outcomes: list["Outcome"]) -> None:
        """One transaction for a handful of outcomes, or one each if that fails (no poison
        pill: an outcome that cannot be recorded alone is a dead letter, its row stays
        `sending` and its lease runs out as for a lost worker). Each update only applies
        while the row is still ours (state sending, our attempt number): a worker whose
        lease was taken over cannot overwrite the newer attempt."""
        now = self.now()
        done = drain(self.services, "push-outcomes", outcomes, lambda session, o: self._record(session, o, now),
                     apply_all=lambda session, handful: self._record_all(session, handful, now),
                     key=lambda o: f"push:{o.push.client_msg_id}:{o.push.attempts}",
                     show=lambda o: f"push {o.push.id} → {o.state} msgid={o.msgid!r} error={o.error!r}")
        if done.error is not None:
            raise done.error

    def _record_all(self, session, outcomes: list["Outcome"], now: datetime) -> None:
        for o in outcomes:
            self._record(session, o, now)

    def _record(self, session, o: "Outcome", now: datetime) -> None:
        values = {"state": o.state, "lease_until": None, "last_error": o.error}
        if o.state == "sent":
            values.update(wechat_msgid=o.msgid, sent_at=now, last_error=None)
        elif o.state == "held":
            values.update(sent_at=now)
        elif o.state == "pending":
            values.update(due_at=o.due, job_id=None)
            if not o.count_attempt:
                values["attempts"] = Push.attempts - 1
        push = o.push
        done = session.execute(
            update(Push).where(Push.id == push.id, Push.state == "sending", Push.attempts == push.attempts)
            .values(**values).execution_options(synchronize_session=False)).rowcount
        if not done:
            log.warning("push %s: claim lost before recording %s", push.id, o.state)
            return
        if o.block:
            session.execute(update(Follower).where(Follower.openid == push.openid,
                                                   Follower.push_blocked.is_(None))
                            .values(push_blocked=o.block[:64]).execution_options(synchronize_session=False))
        if o.msgid:
            apply_early_receipt(session, push.id, o.msgid, now)
        if o.spend:
            notices.spent(session, *o.spend, now)
        if o.mass:
            announcements.mass_outcome(session, *o.mass)
        if o.refuse:
            notices.refused(session, *o.refuse, now)
        if o.pause and notices.pause(session, o.pause[0], o.pause[1], "43116 template banned by WeChat", now):
            # Staff alert: operations watch ERROR lines; the push page and `volbot push
            # status` show the pause until a coordinator resumes the kind.
            log.error("ALERT: WeChat banned the template %s; push kind %s is paused until resumed",
                      o.pause[1], o.pause[0])


@dataclass
class Outcome:
    """What became of one claimed push: sent, failed, or back to pending until `due`."""

    push: Push
    state: str
    msgid: str | None = None
    error: str | None = None
    block: str | None = None  # mark the follower push_blocked with this reason
    due: datetime | None = None
    count_attempt: bool = True
    spend: tuple[str, str] | None = None  # (openid, template_id): a notice sent under that consent
    refuse: tuple[str, str] | None = None  # (openid, template_id): 43101, revoke that consent
    pause: tuple[str, str] | None = None  # (kind, template_id): 43116, pause the kind
    mass: tuple[int, bool] | None = None  # (announcement id, sent): a mass send's outcome

    @property
    def tally(self) -> str:
        return {"sent": "sent", "held": "sent", "failed": "failed"}.get(self.state, "retry")


# ---- the RQ entry point ------------------------------------------------------------------------

class _Current:
    """The dispatcher of this worker process. RQ calls a plain function by its import path,
    so the process's connections are installed here once (by `volbot worker` or a test)."""

    dispatcher: Dispatcher | None = None


def install(dispatcher: Dispatcher | None) -> None:
    _Current.dispatcher = dispatcher


def send_chunk(ids: list[int]) -> dict:
    """The job: send the push rows `ids` (those still waiting; the rest are skipped)."""
    if _Current.dispatcher is None:
        # The job runs only in a process that installed its connections: `volbot worker`
        # (the shell composes the services; this package does not reach up for them).
        raise RuntimeError("push jobs run in `volbot worker`, which installs the dispatcher first")
    return _Current.dispatcher.send_chunk(list(ids))


# A busy worker refreshes its job's entry in RQ's StartedJobRegistry every HEARTBEAT
# seconds, each time for JOB_TTL seconds. A worker that dies stops refreshing: its entry
# expires JOB_TTL seconds after the last beat at most, and the scheduler's recovery (every
# 10 s) has RQ's own abandoned-job cleanup fail the job, whose rows it then queues again:
# work held by a dead worker is back on the queue within about 25 s. (RQ's own TTLs add
# 60 s to every interval, and a SimpleWorker refreshes nothing while its job runs: the
# job's 600 s timeout plus 60 s was all there was.)
HEARTBEAT = 5
JOB_TTL = 15
# Idle, RQ heartbeats the worker's registration every WORKER_TTL - 15 s (5 s), keeping it
# for WORKER_TTL + 60 s; `free_name` takes over the name of one silent for JOB_TTL.
WORKER_TTL = 20


def _heartbeats(worker, job, execution, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT):
        try:
            worker.maintain_heartbeats(job, execution)  # RQ's: worker, execution and job
        except redis.RedisError:
            log.warning("heartbeat for job %s failed; trying again", job.id)


class PushWorker(SimpleWorker):
    """RQ's SimpleWorker (the job runs in this process, on the connections `install` made)
    that heartbeats while a job runs, so a dead worker's job is found abandoned in seconds."""

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return JOB_TTL

    def execute_job(self, job, queue):
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeats, args=(self, job, execution, stop),
                                name="rq-heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beat.join()  # no beat after the job's entry is gone (RQ's beats only update, XX)
        self.set_state(WorkerStatus.IDLE)


def _still_running(pid, birth: datetime | None) -> bool:
    """Whether the process `pid` on this host is the one that registered at `birth` (a pid
    taken by a process started later, or this very process, is not)."""
    if not pid or int(pid) == os.getpid():
        return False
    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except psutil.Error:
        return False
    return birth is None or started <= birth.timestamp() + 1


def free_name(connection: redis.Redis, name: str) -> None:
    """Take over the name of a worker that died without registering its death (SIGKILL, a
    lost host), which RQ would refuse until the record expires; exit with one line while a
    live worker has it. Dead: on this host its process is gone (or the pid is another
    process's now); anywhere, it has not heartbeated for JOB_TTL seconds (a live worker
    beats every HEARTBEAT seconds, busy or idle)."""
    old = PushWorker.find_by_key(PushWorker.redis_worker_namespace_prefix + name, connection=connection)
    if old is None or old.death_date is not None:
        return
    here = old.hostname == socket.gethostname()
    silent = old.last_heartbeat is None or (now_utc() - old.last_heartbeat).total_seconds() > JOB_TTL
    if (here and _still_running(old.pid, old.birth_date)) or (not here and not silent):
        raise SystemExit(f"volbot worker: there exists an active worker named {name!r} already "
                         f"(pid {old.pid} on {old.hostname}); give this one another --name")
    log.warning("worker %s: the previous worker of this name (pid %s on %s) is gone; taking its name",
                name, old.pid, old.hostname)
    old.register_death()


def run_worker(services, *, burst: bool = False, dispatcher: Dispatcher | None = None,
               name: str | None = None) -> None:
    """`volbot worker`: one resume pass (jobs lost with Redis come back), take over `name`
    from a predecessor killed without a trace, then work the queue."""
    from pushes.scheduler import run_pass

    install(dispatcher or Dispatcher(services))
    try:
        run_pass(services)
    except Exception:  # e.g. SQLite busy under a big fan-out: the scheduler retries
        log.exception("start-up resume pass failed; working the queue anyway")
    connection = redis.Redis.from_url(services.redis_url)
    if name:
        free_name(connection, name)  # a restart after a SIGKILL must not wait for RQ's TTL
    worker = PushWorker([push_queue(connection)], connection=connection, name=name,
                        worker_ttl=WORKER_TTL, job_monitoring_interval=HEARTBEAT)
    worker.work(burst=burst, logging_level="WARNING")


def status(session, batch: str | None = None) -> dict[str, int]:
    """How many pushes (of one fan-out, or all) are in each state."""
    from sqlalchemy import func

    q = select(Push.state, func.count()).group_by(Push.state)
    if batch:
        q = q.where(Push.batch == batch)
    return {state: n for state, n in session.execute(q)}

