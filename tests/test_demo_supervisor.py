"""`volbot demo`'s supervisor: which children it starts and with what, keeping the data on
a re-run and starting clean with --reset, and stopping every child on request."""

from __future__ import annotations

import io
import sys
from datetime import timezone

import click
import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.config import load_config
from bot.services import Services
from demo import district, supervisor
from store.models import Follower, Team


def test_children_come_from_the_installed_commands():
    plan = supervisor.Plan(host="127.0.0.1", port=8123, emulator_port=8124)
    children, missing = supervisor.plan_children(main, plan)
    names = [c.name for c in children]
    assert names[0] == "web" and missing == []
    assert set(names) == {"web", "wechat-emulator", "worker", "scheduler"}
    emulator = next(c for c in children if c.name == "wechat-emulator")
    assert emulator.argv[-6:] == ["--host", "127.0.0.1", "--port", "8124",
                                  "--callback-url", "http://127.0.0.1:8123/wechat"]
    web = children[0]
    assert web.url == "http://127.0.0.1:8123/healthz" and web.argv[0] == sys.executable


def test_a_missing_command_is_reported_not_started():
    bare = click.Group("volbot")
    bare.add_command(click.Command("run"))
    children, missing = supervisor.plan_children(bare, supervisor.Plan())
    assert [c.name for c in children] == ["web"]
    assert missing == ["wechat-emulator", "worker", "scheduler"]


@pytest.fixture
def demo_services(tmp_path, svc):
    """A migrated SQLite instance of its own (the supervisor runs Alembic), on the test Redis."""
    config = load_config(tmp_path, environ={}, env="demo", redis_url=svc.redis_url)
    services = Services(config)
    yield services
    services.close()


def teams(services) -> int:
    with services.db.session() as s:
        return s.scalar(select(func.count()).select_from(Team))


def test_seeds_once_keeps_data_and_reset_starts_clean(demo_services, monkeypatch):
    calls = []
    real_seed = district.seed

    def small_seed(session, **kw):
        calls.append(kw["now"])
        return real_seed(session, **{**kw, "volunteers": 20})

    monkeypatch.setattr(district, "seed", small_seed)
    out = io.StringIO()
    say = lambda line="": out.write(line + "\n")  # noqa: E731 - a one-line helper beside its use
    summary = supervisor.prepare_database(demo_services, False, say)
    assert summary is not None and teams(demo_services) >= 188
    assert calls[0].tzinfo is not None and calls[0].utcoffset() == timezone.utc.utcoffset(None)
    with demo_services.db.transaction() as s:  # something a visitor did during the demo
        s.add(Follower(openid="o_sim_visitor"))
    assert supervisor.prepare_database(demo_services, False, say) is None
    assert "kept as it is" in out.getvalue()
    with demo_services.db.session() as s:
        assert s.scalar(select(Follower.id).where(Follower.openid == "o_sim_visitor")) is not None
    demo_services.redis.set("demo-test-key", "1")
    assert supervisor.prepare_database(demo_services, True, say) is not None
    assert len(calls) == 2
    with demo_services.db.session() as s:
        assert s.scalar(select(Follower.id).where(Follower.openid == "o_sim_visitor")) is None
    assert demo_services.redis.get("demo-test-key") is None


def test_stop_ends_every_child(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    plan = supervisor.Plan(children=[supervisor.Child("a", sleeper), supervisor.Child("b", sleeper)])
    sup = supervisor.Supervisor(plan, env={}, out=io.StringIO())
    sup.start()
    assert all(c.process.poll() is None for c in plan.children)
    sup.request_stop()
    assert sup.watch() == 0
    sup.stop()
    assert all(c.process.poll() is not None for c in plan.children)
    assert "stopped a, b" in sup.out.getvalue()


def test_a_dead_child_stops_the_demo(tmp_path):
    plan = supervisor.Plan(children=[
        supervisor.Child("dies", [sys.executable, "-c", "raise SystemExit(3)"]),
        supervisor.Child("lives", [sys.executable, "-c", "import time; time.sleep(60)"])])
    sup = supervisor.Supervisor(plan, env={}, out=io.StringIO())
    sup.start()
    assert sup.watch() == 1
    sup.stop()
    assert "dies exited with status 3" in sup.out.getvalue()
    assert plan.children[1].process.poll() is not None


def test_a_database_from_an_older_schema_is_refused_with_what_to_do(demo_services):
    from sqlalchemy import text

    demo_services.db.upgrade()
    with demo_services.db.engine.begin() as conn:
        conn.execute(text("DROP TABLE bus_subscriptions"))
    with pytest.raises(supervisor.SchemaOutdated, match=r"bus_subscriptions.*volbot demo --reset"):
        supervisor.prepare_database(demo_services, False, lambda line="": None)
    assert supervisor.prepare_database(demo_services, True, lambda line="": None) is not None
    assert supervisor.missing_tables(demo_services) == []
