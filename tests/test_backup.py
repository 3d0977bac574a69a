"""`volbot backup` / `volbot restore`: an online SQLite backup restores exactly the data it
was taken with; a restore refuses while another process holds the database; PostgreSQL
gets its procedure printed."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from store.db import Database
from store.models import Follower


def run(tmp_path, *args, database_url=None):
    env = {"VOLBOT_INSTANCE": str(tmp_path), "DATABASE_URL": database_url or f"sqlite:///{tmp_path}/volbot.sqlite3",
           "REDIS_URL": "redis://127.0.0.1:1/0"}  # backups never need Redis
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def openids(db: Database) -> list[str]:
    with db.transaction() as s:
        return sorted(s.scalars(select(Follower.openid)))


def test_backup_change_restore_gives_back_the_backed_up_data(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/volbot.sqlite3")
    db.create_all()
    with db.transaction() as s:
        s.add_all([Follower(openid="o_backup_1"), Follower(openid="o_backup_2")])
    out = tmp_path / "copy.sqlite3"

    # Taken while a connection of "the service" is open (and a write just committed).
    with db.engine.connect():
        result = run(tmp_path, "backup", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "integrity ok" in result.output and out.exists()

    with db.transaction() as s:
        s.delete(s.scalars(select(Follower).where(Follower.openid == "o_backup_1")).one())
        s.add(Follower(openid="o_backup_3"))
    assert openids(db) == ["o_backup_2", "o_backup_3"]
    db.dispose()  # the service is stopped for a restore

    result = run(tmp_path, "restore", str(out))
    assert result.exit_code == 0, result.output
    assert "current database saved to" in result.output
    assert openids(db) == ["o_backup_1", "o_backup_2"]
    saved = sorted((tmp_path / "backups").glob("pre-restore-*.sqlite3"))
    assert len(saved) == 1 and openids(Database(f"sqlite:///{saved[0]}")) == ["o_backup_2", "o_backup_3"]


def test_restore_refuses_over_a_running_service_unless_forced(tmp_path):
    path = tmp_path / "volbot.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.create_all()
    with db.transaction() as s:
        s.add(Follower(openid="o_backup_kept"))
    db.dispose()
    assert run(tmp_path, "backup", "--out", str(tmp_path / "b.sqlite3")).exit_code == 0

    # Another process keeps the database open, as a web worker does.
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); "
                               "c.execute('SELECT 1 FROM followers').fetchall(); print('open', flush=True); "
                               "time.sleep(60)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        refused = run(tmp_path, "restore", str(tmp_path / "b.sqlite3"))
        assert refused.exit_code == 1 and f"in use by process(es) {holder.pid}" in refused.output
        assert not (tmp_path / "backups").exists()  # nothing was touched
        forced = run(tmp_path, "restore", "--force", str(tmp_path / "b.sqlite3"))
        assert forced.exit_code == 0, forced.output
    finally:
        holder.kill()
        holder.wait()
    assert openids(db) == ["o_backup_kept"]


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path):
    Database(f"sqlite:///{tmp_path}/volbot.sqlite3").create_all()
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    result = run(tmp_path, "restore", str(junk))
    assert result.exit_code == 1 and "not a SQLite database" in result.output


def test_postgres_gets_the_procedure(tmp_path):
    url = "postgresql://volbot:s3cret@db.internal:5432/volbot"
    for command in (["backup"], ["restore", os.devnull]):
        result = run(tmp_path, *command, database_url=url)
        assert result.exit_code == 0, result.output
        assert "pg_dump --format=custom" in result.output and "pg_restore" in result.output
        assert "s3cret" not in result.output and "db.internal:5432/volbot" in result.output
