"""One inbound message, from parsed `Message` to `Reply`, with WeChat's guarantees:

- a retry of the same push (same dedup key) never repeats a side effect and gets the
  same reply as the first delivery, waiting for it if the first is still running;
- two messages from one user are handled one after the other (a Redis lock);
- whatever happens, an answer is ready before the deadline: a slow or dead Redis or
  database turns into "系统繁忙，请稍后再试" and a log line, never a time-out or a 500.

The work itself runs on a small thread pool so the request thread can stop waiting at the
deadline; the work then finishes (or fails) on its own and caches its reply for retries.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy.exc import DBAPIError

from bot import observability as metrics
from bot import speech
from dialogue.context import Ctx
from dialogue.types import BUSY, SILENT, TEMPLATE_FINISH, UNSUBSCRIBE, Message, Reply
from rules import followers
from rules.receipts import queue_receipt, record_receipt
from store.ephemeral import Dedup, Deliveries, LockTimeout, StaleState, StateStore, UserLock
from store.redis import PerThreadRedis

log = logging.getLogger("volbot.pipeline")


class Pipeline:
    def __init__(self, services, max_workers: int = 32):
        self.services = services
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="turn")
        self.redis = PerThreadRedis(services.redis)  # the turn threads' own connections
        self.dedup = Dedup(self.redis, services.config.dedup_ttl)
        self.states = StateStore(self.redis)
        self.deliveries = Deliveries(self.redis, self.dedup, self.states)
        self.hears = bool(services.config.speech_engine)  # voice without Recognition: queue it (bot/speech.py)

    def handle(self, message: Message, arrived: float | None = None) -> Reply:
        """The reply for `message`, within the configured deadline from `arrived` (the
        request's arrival on the host, `time.monotonic()`; now when not known)."""
        if message.is_event and message.event == TEMPLATE_FINISH:
            return self._receipt(message)
        deadline = (arrived or time.monotonic()) + self.services.config.reply_deadline
        # The turn thread runs in a copy of this context: its log lines keep the request id.
        future = self.executor.submit(contextvars.copy_context().run, self._deliver, message, deadline)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            log.warning("reply deadline passed", extra={"event": message.event or message.kind})
            metrics.BUSY.labels("deadline").inc()
            return BUSY
        except Exception:  # Redis/DB down: answer busy, keep the log
            log.exception("turn failed", extra={"event": message.event or message.kind})
            metrics.BUSY.labels("error").inc()
            return BUSY

    def _receipt(self, message: Message) -> Reply:
        """A template message's delivery receipt skips the turn (no dedup claim, lock, state
        or engine: applying one twice is harmless): queued in Redis for the scheduler's next
        pass and answered at once. Without Redis it is recorded in SQL right here."""
        now = self.services.clock.now()
        try:
            queue_receipt(self.redis, message.key, message.text, now)
        except Exception:  # Redis down: one small SQL transaction instead
            log.warning("receipt not queued, recorded directly", exc_info=True)
            try:
                with self.services.db.transaction() as session:
                    record_receipt(session, message.key, message.text, now)
            except Exception:  # both stores down: WeChat keeps its own record
                log.exception("receipt lost")
                metrics.BUSY.labels("error").inc()
                return BUSY
        return SILENT

    # ---- the delivery: dedup, then lock, then the turn -----------------------------------

    def _deliver(self, message: Message, deadline: float) -> Reply:
        key = message.dedup_key
        lock = UserLock(self.redis, message.openid)
        # One round trip claims the delivery, takes the free lock and reads the state.
        opened = self.deliveries.open(key, lock)
        if not opened.claimed:
            metrics.DEDUP_HITS.inc()
            return self._await_first(key, opened.cached, deadline)
        state = opened.state
        if not opened.locked:
            try:
                lock.acquire(timeout=max(0.0, deadline - time.monotonic() - 0.2))
            except BaseException as e:
                if isinstance(e, LockTimeout):
                    log.warning("user lock wait timed out")
                    metrics.LOCK_WAITS.labels("timeout").inc()
                self.dedup.release(key)  # nothing was done: a retry may try again
                raise
            metrics.LOCK_WAITS.labels("acquired").inc()
            metrics.LOCK_WAIT_SECONDS.observe(lock.waited)
            state = None  # read after the lock, not before
        try:
            reply, unsaved = self.turn(message, state)
            if message.is_event and message.event == UNSUBSCRIBE:
                # Erasure (handlers.welcome): cached replies may repeat what the user typed.
                self.dedup.forget_user(message.openid)
        except BaseException:
            self.deliveries.close(key, lock, None)
            raise
        if not self.deliveries.close(key, lock, json.dumps(reply.to_dict(), ensure_ascii=False).encode("utf-8"),
                                     unsaved):
            log.warning("stale conversation state not saved")  # as in turn(): the newer state wins
        if self.hears and speech.wanted(message):
            try:
                speech.enqueue(self.services.redis, message)
            except Exception:
                log.warning("voice message not queued for speech to text", exc_info=True)
        return reply

    def _await_first(self, key: str, cached: bytes, deadline: float) -> Reply:
        delay = 0.01
        while cached == Dedup.PENDING:
            if time.monotonic() + delay >= deadline:
                return BUSY
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            cached = self.dedup.peek(key)
            if cached is None:  # the first delivery failed and released its claim
                return BUSY
        return Reply.from_dict(json.loads(cached))

    def turn(self, message: Message, state: dict | None = None) -> tuple[Reply, dict | None]:
        """Run the engine in one SQL transaction, save the state (loaded here unless the
        caller read it under the lock), commit. Returns the reply, and the new state when
        the turn touched no SQL: that one the caller saves as it closes the delivery, in
        the same Redis round trip (there is no transaction it must precede)."""
        services = self.services
        doc = self.states.load(message.openid) if state is None else state
        state = services.engine.read_state(doc)
        before = _snapshot(doc)  # as stored: a state repaired on reading is written back
        for attempt in (1, 2):
            saving, unsaved = False, None
            try:
                with services.db.turn_transaction() as session:
                    now = services.clock.now()
                    ctx = Ctx(openid=message.openid, message=message, session=session, now=now,
                              records=followers.TurnRecords(now=now, message=not message.is_event),
                              settings=services.settings,
                              state=state if attempt == 1 else services.engine.read_state(json.loads(before)))
                    reply = services.engine.handle(ctx)
                    if session.opened:  # a failing SQL write surfaces before the state moves on
                        session.flush()
                    # The state is saved before the commit: if Redis fails here the turn's SQL
                    # work rolls back, so a form can never be committed while its saved state
                    # still shows it open (the next 确认 would commit it a second time).
                    saving = True
                    after = ctx.state.encode()
                    changed = _snapshot(after) != before  # an unchanged state needs no write
                    if changed and not session.opened:
                        unsaved = after  # no SQL for it to precede: saved as the delivery closes
                    elif changed:
                        try:
                            self.states.save(message.openid, after)
                        except StaleState:
                            # Only possible if the lock expired mid-turn; the newer state wins.
                            log.warning("stale conversation state not saved")
                break
            except DBAPIError as e:
                # A pooled connection the database dropped (a restart) fails on first use;
                # the pool has now dropped its peers too. Before the state is saved nothing
                # of the turn is kept anywhere, so it runs once more on a new connection.
                if attempt == 2 or saving or not e.connection_invalidated:
                    raise
                log.warning("database connection lost; the turn runs again on a new one")
        try:
            ctx.run_after_commit()
        except Exception:  # committed: the reply stands, a retry must not redo it
            log.exception("after-commit hook failed")
        return reply, unsaved


def _snapshot(state: dict) -> str:
    return json.dumps(state, sort_keys=True, ensure_ascii=False, default=str)
