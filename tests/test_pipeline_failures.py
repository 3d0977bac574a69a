"""The deadline and the failure modes, measured over HTTP against extra live apps whose
services point at a dead Redis, a stopped database or a database held by a lock."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
from sqlalchemy import text

from bot.config import ConfigError
from bot.services import Services
from dialogue.types import BUSY
from store.models import Follower
from tests.conftest import WeChat
from tests.protocol_support import broken_services, count_rows, free_port, live

pytestmark = pytest.mark.usefixtures("svc")



def dead_redis(svc) -> Services:
    return broken_services(svc, redis_url=f"redis://127.0.0.1:{free_port()}/0")


def dead_database(svc) -> Services:
    return broken_services(svc, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
                           redis_url=svc.redis_url)


def timed(fn):
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


@pytest.mark.parametrize("make", [dead_redis, dead_database], ids=["redis-down", "database-down"])
@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "safe"])
def test_backend_down_answers_busy_quickly(svc, caplog, make, encrypt):
    broken = make(svc)
    try:
        with live(broken) as url, caplog.at_level(logging.WARNING, logger="volbot.pipeline"):
            chat = WeChat(url, svc, encrypt=encrypt)
            sent, elapsed = timed(lambda: chat.send(chat.sender.event("o_down", "subscribe")))
            assert sent.status == 200 and sent.text == BUSY.text, (sent.status, sent.body)
            assert elapsed < 2.5
            menu = chat.send(chat.sender.text("o_down", "菜单"))
            if make is dead_redis:  # no dedup, no lock, no state: nothing can run
                assert menu.text == BUSY.text
            else:  # the session connects lazily: a turn that needs no SQL still answers
                assert "请回复数字选择服务" in menu.text
            assert "turn failed" in caplog.text
            health = requests.get(url + "/healthz")
            ready, elapsed = timed(lambda: requests.get(url + "/readyz"))
            assert health.status_code == 200 and ready.status_code == 503 and elapsed < 3
            down = "redis" if make is dead_redis else "database"
            assert ready.json()[down].startswith("down") and ready.json()["status"] == "unavailable"
    finally:
        broken.close()
    assert count_rows(svc, Follower) == 0


def test_readyz_when_everything_is_up(base_url):
    ready = requests.get(base_url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "database": "ok", "redis": "ok"}


class HeldDatabase:
    """Another connection holding what a turn needs: SQLite's write lock, or an exclusive
    lock on the followers table in PostgreSQL."""

    def __init__(self, svc):
        self.conn = svc.db.engine.connect()
        self.tx = self.conn.begin()  # SQLite: BEGIN IMMEDIATE (see store.db)
        if not svc.db.is_sqlite:
            self.conn.execute(text("LOCK TABLE followers IN ACCESS EXCLUSIVE MODE"))

    def release(self):
        self.tx.rollback()
        self.conn.close()


def test_slow_database_answers_busy_within_the_deadline_and_the_retry_gets_the_reply(svc, caplog):
    chat = WeChat("http://unused", svc)
    held = HeldDatabase(svc)
    try:
        with live(svc) as url, caplog.at_level(logging.WARNING, logger="volbot.pipeline"):
            chat.url = url + "/wechat"
            push = chat.sender.event("o_slow_db", "subscribe")
            sent, elapsed = timed(lambda: chat.send(push))
            held.release()
            assert sent.status == 200 and sent.text == BUSY.text
            assert elapsed < 4.8, elapsed  # REPLY_DEADLINE is 4.5 s
            time.sleep(0.5)
            again = chat.send(push)  # WeChat's retry: now the database answers
            assert again.status == 200 and "欢迎" in again.text
    finally:
        if held.conn is not None and not held.conn.closed:
            held.release()
    assert count_rows(svc, Follower) == 1


def test_many_pushes_while_the_database_is_held_all_answer_in_time(svc):
    held = HeldDatabase(svc)
    results = []
    try:
        with live(svc) as url:
            chat = WeChat(url, svc)

            def one(i):
                push = chat.sender.event(f"o_held_{i}", "subscribe")
                results.append(timed(lambda: chat.sender.post(requests, chat.url, push)))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(10)
    finally:
        held.release()
    assert len(results) == 6
    assert all(sent.status == 200 and elapsed < 4.9 for sent, elapsed in results), results


@pytest.mark.parametrize("override", ["redis", "database"])
def test_startup_check_fails_fast_with_one_line(svc, override):
    config = {"redis": dict(redis_url=f"redis://127.0.0.1:{free_port()}/0"),
              "database": dict(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                               redis_url=svc.redis_url)}[override]
    from dataclasses import replace

    started = time.monotonic()
    with pytest.raises(ConfigError) as e:
        Services(replace(svc.config, **config), check=True)
    assert time.monotonic() - started < 5
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("REDIS_URL" if override == "redis" else "DATABASE_URL")


@pytest.mark.parametrize("pause, retried", [(0, True), (1.2, False)], ids=["in-use", "idle"])
def test_connections_the_database_dropped_are_replaced_without_a_busy_answer(svc, wechat_plain, caplog,
                                                                             pause, retried):
    """A PostgreSQL restart leaves the pool holding dead connections. One used a moment ago
    fails on its first statement and the turn runs again on a new one; one idle for a second
    or more is pinged at checkout and replaced before use. Either way the user gets the
    answer, not 系统繁忙."""
    if svc.db.is_sqlite:
        pytest.skip("PostgreSQL connections only")
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    assert "1." in wechat_plain.say("o_pg_drop", "菜单")
    admin = create_engine(svc.db.engine.url, poolclass=NullPool)
    with admin.connect() as conn:
        dropped = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()
    assert dropped >= 1
    time.sleep(pause)
    with caplog.at_level(logging.WARNING, logger="volbot.pipeline"):
        reply = wechat_plain.say("o_pg_drop", "我的订单")  # reads the follower row
    assert reply != BUSY.text and "还没有" in reply, reply
    assert ("runs again on a new one" in caplog.text) == retried
