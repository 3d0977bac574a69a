"""A push worker SIGKILLed, with real processes (issue 28.4): the systemd unit's command
(`volbot worker --name <host>-<n>`) starts again at once under the same name, and the
work the dead worker held is back on the queue within 30 s (its job stops heartbeating;
the scheduler has RQ fail it as abandoned, then queues its rows again)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from rq import SimpleWorker as PushWorker  # any class reads the registration
from sqlalchemy import func, select

from store.models import Push
from store.outbox import notify
from tests.conftest import TEST_APPID, TEST_TOKEN

VOLBOT = [sys.executable, "-c", "from bot.cli import main; main()"]


@pytest.fixture
def spawn(svc, emulator, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLBOT_", "PUSH_", "WECHAT_"))}
    env.update(VOLBOT_INSTANCE=str(tmp_path / "instance"), VOLBOT_ENV="testing",
               DATABASE_URL=svc.config.sqlalchemy_url, REDIS_URL=svc.redis_url,
               WECHAT_TOKEN=TEST_TOKEN, WECHAT_APPID=TEST_APPID, WECHAT_SECRET=svc.config.wechat_secret,
               WECHAT_API_BASE=emulator.base)
    started = []

    def start(*args, **extra):
        log = open(tmp_path / f"{args[0]}-{len(started)}.log", "wb")
        proc = subprocess.Popen([*VOLBOT, *args], env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT)
        proc.log = log.name
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def registered(svc, name: str):
    worker = PushWorker.find_by_key(PushWorker.redis_worker_namespace_prefix + name, connection=svc.redis)
    return worker if worker is not None and worker.death_date is None else None


def until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


def log_of(proc) -> str:
    return open(proc.log, errors="replace").read()[-2000:]


def test_a_killed_worker_starts_again_at_once_under_its_name(svc, spawn):
    first = spawn("worker", "--name", "host-1")
    until(lambda: (w := registered(svc, "host-1")) and w.pid == first.pid, 30, "the first worker registered")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = time.monotonic()
    again = spawn("worker", "--name", "host-1")  # what systemd's Restart=always runs
    until(lambda: (w := registered(svc, "host-1")) and w.pid == again.pid or again.poll() is not None, 30,
          "the second worker registered")
    assert again.poll() is None, log_of(again)
    print(f"restarted under the same name {time.monotonic() - killed:.1f} s after the SIGKILL")
    time.sleep(2)
    assert again.poll() is None and registered(svc, "host-1").pid == again.pid, log_of(again)
    # A live worker's name is still refused (one clear line): two processes never share it.
    third = spawn("worker", "--name", "host-1")
    assert third.wait(30) != 0 and "an active worker named 'host-1'" in log_of(third)


def test_a_dead_workers_job_is_queued_again_within_30_seconds(svc, spawn, emulator):
    n = 12
    with svc.db.transaction() as s:
        ids = [notify(s, openid=f"o_killed_{i}", kind="star_level", title="星级志愿者",
                      fields={"number": f"KW{i:010d}", "level": "1星", "hours": "100小时"},
                      dedup_key=f"killed-{i}").id for i in range(n)]
    # Two sends a second: the one job of 12 rows is still running when the worker dies.
    slow = spawn("worker", "--name", "slow-1", PUSH_RATE="2", PUSH_BURST="1")
    until(lambda: len(emulator.messages()) >= 2, 60, "the first sends")
    with svc.db.session() as s:
        [held] = s.scalars(select(Push.job_id).distinct().where(Push.id.in_(ids), Push.state != "sent")).all()
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    killed = time.monotonic()
    spawn("scheduler")
    spawn("worker", "--name", "rescuer-1")

    def requeued():
        with svc.db.session() as s:
            return s.scalar(select(func.count()).where(Push.id.in_(ids), Push.job_id == held,
                                                       Push.state.in_(("queued", "sending")))) == 0

    until(requeued, 45, "the dead worker's rows queued again")
    back = time.monotonic() - killed
    print(f"the dead worker's rows were back on the queue {back:.1f} s after the SIGKILL")
    assert back <= 30
    until(lambda: len({m["openid"] for m in emulator.messages()}) == n, 60, "every push sent")

    def recorded():  # the worker records a claim's outcomes after its sends: a moment later
        with svc.db.session() as s:
            return s.scalar(select(func.count()).where(Push.id.in_(ids), Push.state != "sent")) == 0

    until(recorded, 30, "every push recorded sent")
    # Exactly once each: a resend of the push in flight was dropped by client_msg_id.
    assert sorted(m["openid"] for m in emulator.messages()) == sorted(f"o_killed_{i}" for i in range(n))
