"""A restore never silences later pushes (issue 28.5): after a restore of an earlier backup
the id sequence hands out ids already used, and WeChat drops a template whose openid +
client_msg_id it saw in the last 10 minutes (the emulator does too). So client_msg_id is
random per push: backup → send → restore → send to the same people, and every new push is
delivered once. SQLite through `volbot backup` / `volbot restore`; PostgreSQL through the
pg_dump / pg_restore procedure `volbot backup` prints."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from bot.cli import main
from pushes.scheduler import run_pass
from store.outbox import notify
from tests.pushes_fixtures import drain

PEOPLE = ("o_restore_a", "o_restore_b", "o_restore_c")


def volbot(svc, *args) -> str:
    env = {"DATABASE_URL": svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
           "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def libpq(url) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def backup(svc, path) -> None:
    if svc.db.is_sqlite:
        assert "integrity ok" in volbot(svc, "backup", "--out", str(path))
        return
    assert "pg_dump --format=custom" in volbot(svc, "backup")  # the procedure it prints, run here
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump not installed")
    subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--file", str(path), libpq(svc.config.sqlalchemy_url)],
                   check=True)


def restore(svc, path) -> None:
    svc.db.engine.dispose()  # the service is stopped for a restore
    if svc.db.is_sqlite:
        assert "restored" in volbot(svc, "restore", str(path)).lower()
        return
    subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
                    "--dbname", libpq(svc.config.sqlalchemy_url), str(path)], check=True)


def notice(svc, title: str) -> list[int]:
    with svc.db.transaction() as s:
        ids = [notify(s, openid=o, kind="star_level", title="星级志愿者",
                      fields={"number": "KW2026000001", "level": title, "hours": "100小时"},
                      dedup_key=f"{title}:{o}").id for o in PEOPLE]
    run_pass(svc)
    drain(svc)
    return ids


def test_pushes_after_a_restore_are_each_delivered_once(svc, dispatcher, emulator, tmp_path):
    with svc.db.transaction() as s:  # something to back up
        notify(s, openid="o_restore_z", kind="star_level", title="星级志愿者",
               fields={"number": "KW2026000002", "level": "备份前", "hours": "1小时"}, dedup_key="before")
    path = tmp_path / ("volbot.sqlite3" if svc.db.is_sqlite else "volbot.dump")
    backup(svc, path)
    old = notice(svc, "巴士改期")  # sent after the backup: lost by the restore, not by WeChat
    restore(svc, path)
    new = notice(svc, "巴士取消")  # the same people, minutes later
    assert new == old  # the rewound sequence really does hand out the same ids
    for openid in PEOPLE:
        titles = sorted(m["data"]["thing2"]["value"] for m in emulator.messages(openid))
        assert titles == ["巴士取消", "巴士改期"]  # each notice delivered once, none dropped as a duplicate
    # The push from before the backup went out after it, and the restore brought it back
    # unsent: its key came back with it, so WeChat drops the resend, as it should.
    assert len(emulator.messages("o_restore_z")) == 1 and emulator.stats()["dedup_hits"] == 1


def test_a_console_session_does_not_follow_a_coordinator_id_a_restore_hands_out_again(svc, base_url):
    """Sessions live in Redis under a coordinator id; after a restore that id can name an
    account created since (here: the same row becomes another person's account)."""
    from console.accounts import hash_password
    from tests.console_support import signed_in
    from tests.seeds import apply
    from tests.seeds.console import coordinator

    apply(svc, ["console_logins"])
    browser = signed_in(base_url, "admin")
    assert browser.get("/console/").status_code == 200
    with svc.db.transaction() as s:
        row = coordinator(s, "admin")
        row.username, row.name, row.password_hash = "newcomer", "新来的", hash_password("another password 2030")
    answer = browser.get("/console/")
    assert answer.status_code == 302 and "/console/login" in answer.headers["Location"]
