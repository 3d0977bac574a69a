"""Finding work in SQL and putting it on the queue: `volbot scheduler` runs `run_pass`
every second or so; `volbot push resume` (and every worker at start) runs it once.

A pass:
1. due pending rows (new pushes, retries whose backoff ended, reminders whose day came)
   → queued, in chunks, one RQ job per chunk (committed first, then enqueued: a crash in
   between leaves rows whose job does not exist, which step 2 finds);
2. queued rows whose job is gone (Redis lost or flushed) or over (failed — among them the
   jobs of dead workers: RQ's StartedJobRegistry cleanup, run first, fails a started job
   whose worker stopped heartbeating, see pushes.worker.JOB_TTL) → a new job;
3. sending rows whose lease ran out, or whose job is over (a worker died mid-send) →
   queued again; the worker resends within WeChat's client_msg_id window or gives the
   row up as unknown;
4. parked delivery receipts whose push is now sent → applied.
Steps 2-4 (recovery) run every ten seconds; step 1 every pass, and so does applying the
delivery receipts the webhook queued in Redis (rules.receipts.apply_queued_receipts).

Nothing is timed in memory: every decision is a query on `state` and `due_at`, so any
number of schedulers may run (PostgreSQL rows are taken with SKIP LOCKED).
"""

from __future__ import annotations

import importlib
import logging
import time
import uuid
from datetime import timedelta

from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import func, select, update

from pushes.worker import LOST, PushSettings, push_queue, send_chunk
from rules.receipts import apply_queued_receipts, sweep_receipts
from store.models import Push

log = logging.getLogger("volbot.scheduler")

LOST_JOB_GRACE = 30  # seconds a queued row's job may take to appear before we look
PASS_LIMIT = 20_000  # rows queued per pass; the next pass takes the rest
# Other domains' due work, run first in every pass (so pushes it records go out in the same
# pass): "module:function" called with the services, returning how many items it handled.
# Each is a query on due times in SQL, like everything here.
DUE_WORK = ("rules.dispatch:run_due", "rules.activities:run_due", "rules.attendance:run_due", "rules.inbox:run_due",
            "rules.audit:prune_due", "rules.timebank_pool:run_due")


def _job_id(first: int) -> str:
    return f"push-{first}-{uuid.uuid4().hex[:10]}"


def _queue_rows(services, session, ids: list[int], chunk: int, now) -> list[tuple[str, list[int]]]:
    jobs = []
    for i in range(0, len(ids), chunk):
        group = ids[i:i + chunk]
        job_id = _job_id(group[0])
        session.execute(update(Push).where(Push.id.in_(group))
                        .values(state="queued", job_id=job_id, queued_at=now)
                        .execution_options(synchronize_session=False))
        jobs.append((job_id, group))
    return jobs


def _enqueue(services, jobs: list[tuple[str, list[int]]]) -> None:
    if not jobs:
        return
    queue = push_queue(services.redis)
    for i in range(0, len(jobs), 500):
        queue.enqueue_many([Queue.prepare_data(send_chunk, (group,), job_id=job_id, timeout=600,
                                               result_ttl=600, failure_ttl=24 * 3600)
                            for job_id, group in jobs[i:i + 500]])


def _locked(q, services):
    return q.with_for_update(skip_locked=True) if not services.db.is_sqlite else q


def enqueue_due(services, settings: PushSettings) -> int:
    now = services.clock.now()
    with services.db.transaction() as session:
        ids = session.scalars(_locked(select(Push.id).where(Push.state == "pending", Push.due_at <= now)
                                      .order_by(Push.id).limit(PASS_LIMIT), services)).all()
        jobs = _queue_rows(services, session, list(ids), settings.chunk, now)
    _enqueue(services, jobs)
    return len(ids)


DEAD_JOB_STATES = {JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value,
                   JobStatus.FINISHED.value}


def fail_abandoned(services) -> None:
    """RQ's own abandoned-job cleanup of the push queue: a started job whose worker stopped
    heartbeating (pushes.worker.JOB_TTL) is failed, so the steps below find its rows."""
    push_queue(services.redis).started_job_registry.cleanup()


def _job_states(services, job_ids: list[str]) -> dict[str, str | None]:
    """Each job's RQ status (None: no such job). One Redis round trip for all of them."""
    with services.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        answers = pipe.execute()
    return {job_id: (status.decode() if status else None) for job_id, status in zip(job_ids, answers)}


def requeue_lost(services, settings: PushSettings) -> int:
    """Queued rows whose job is over (failed: e.g. abandoned by a dead worker) or gone (Redis
    lost or flushed; or never enqueued, LOST_JOB_GRACE after the rows were queued) → a new
    job. Re-queueing a live job's rows would be harmless: the claim lets one job send each."""
    now = services.clock.now()
    with services.db.transaction() as session:
        queued = dict(session.execute(select(Push.job_id, func.max(Push.queued_at))
                                      .where(Push.state == "queued").group_by(Push.job_id)).all())
    states = _job_states(services, [j for j in queued if j])
    settled = now - timedelta(seconds=LOST_JOB_GRACE)
    lost = [j for j, queued_at in queued.items()
            if states.get(j) in DEAD_JOB_STATES
            or (states.get(j) is None and (queued_at is None or queued_at < settled))]
    if not lost:
        return 0
    with services.db.transaction() as session:
        gone = Push.job_id.in_([j for j in lost if j])
        if None in lost:
            gone = gone | Push.job_id.is_(None)
        ids = session.scalars(_locked(select(Push.id).where(Push.state == "queued", gone)
                                      .order_by(Push.id), services)).all()
        jobs = _queue_rows(services, session, list(ids), settings.chunk, now)
    _enqueue(services, jobs)
    return len(ids)


def reclaim_expired(services, settings: PushSettings) -> int:
    """Rows a dead worker was sending — their lease ran out, or their job is over (failed as
    abandoned, say: nobody will record them) — queued again, remembering the attempt was
    lost (the worker decides from `claimed_at` whether WeChat would still drop a resend)."""
    now = services.clock.now()
    with services.db.transaction() as session:
        job_ids = session.scalars(select(Push.job_id).distinct()
                                  .where(Push.state == "sending", Push.job_id.is_not(None))).all()
    states = _job_states(services, list(job_ids))
    # Over, not gone: a job lost with Redis may still be running in a live worker (its
    # lease tells when to give up on it).
    over = [j for j, state in states.items() if state in DEAD_JOB_STATES]
    with services.db.transaction() as session:
        ids = session.scalars(_locked(select(Push.id).where(Push.state == "sending",
                                                            (Push.lease_until < now) | Push.job_id.in_(over))
                                      .order_by(Push.id), services)).all()
        if ids:
            session.execute(update(Push).where(Push.id.in_(ids)).values(last_error=LOST, lease_until=None)
                            .execution_options(synchronize_session=False))
        jobs = _queue_rows(services, session, list(ids), settings.chunk, now)
    _enqueue(services, jobs)
    return len(ids)


def _run_due_work(services, path: str) -> int:
    module, name = path.split(":")
    try:
        return int(getattr(importlib.import_module(module), name)(services) or 0)
    except Exception:  # one domain's failure must not stop the pushes
        log.exception("due work %s failed", path)
        return 0


def run_pass(services, settings: PushSettings | None = None, *, recover: bool = True) -> dict[str, int]:
    """One pass of the scheduler (see the module doc); returns what it did. `recover=False`
    only queues due rows (the cheap part, done every second)."""
    settings = settings or services.push_settings
    done = {path: _run_due_work(services, path) for path in DUE_WORK}  # first: its pushes go out now
    done.update(reclaimed=0, requeued=0)
    if recover:
        fail_abandoned(services)
        done.update(reclaimed=reclaim_expired(services, settings), requeued=requeue_lost(services, settings))
    done["queued"] = enqueue_due(services, settings)
    done["receipts_queued"] = apply_queued_receipts(services)
    if recover:
        done["receipts"] = sweep_receipts(services, services.clock.now())
    return done


def run_forever(services, interval: float = 1.0, passes: int | None = None, recover_every: float = 10.0) -> None:
    """`volbot scheduler`: due rows every `interval` seconds, recovery (lost jobs, expired
    leases, parked receipts) every `recover_every` seconds. Errors are logged, not fatal
    (a database or Redis hiccup is retried on the next pass)."""
    settings = services.push_settings
    n, last_recovery = 0, float("-inf")
    while passes is None or n < passes:
        n += 1
        started = time.monotonic()
        recover = started - last_recovery >= recover_every
        try:
            done = run_pass(services, settings, recover=recover)
            if recover:
                last_recovery = started
            if any(done.values()):
                log.info("scheduler pass: %s", done)
        except Exception:  # keep scheduling through transient failures
            log.exception("scheduler pass failed")
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
