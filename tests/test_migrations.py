"""The Alembic migrations build exactly the schema the models describe, and a district that
installed an earlier release keeps its data across the upgrade.

`tests/fixtures/release-0.1.0.json` is a database of release 0.1.0 (schema revision 0001, the
first release's baseline): the demo district's seed with 12 volunteers, two orders (one
cancelled with a reason), two pushes (one sent), a shift sign-up and a message left for staff,
dumped table by table from a SQLite file made by that release's store functions. The upgrade
test loads it at revision 0001, upgrades to head, and checks that every row is still there and
that the schema then matches the models.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, func, select, text

from bot.config import Config, normalise_database_url
from rules import pii
from store import sealing
from store.db import RELEASES, Database, alembic_config
from store.models import Base, Follower, Order, OrderEvent, Push, Volunteer
from store.sealing import Keyring

RELEASE_DATA = Path(__file__).parent / "fixtures" / "release-0.1.0.json"
ON_POSTGRESQL = bool(os.environ.get("TEST_DATABASE_URL"))


@contextmanager
def empty_database(tmp_path):
    """A URL of an empty database of the kind this run tests: a SQLite file, or a new
    PostgreSQL database beside TEST_DATABASE_URL's (dropped afterwards)."""
    if not ON_POSTGRESQL:
        yield f"sqlite:///{tmp_path}/m.sqlite3"
        return
    admin_url = normalise_database_url(os.environ["TEST_DATABASE_URL"])
    name = f"volbot_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def assert_matches_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ (run `make migration MESSAGE=...`): {diff}"


def test_migrations_match_models(tmp_path):
    with empty_database(tmp_path) as url:
        db = Database(url)
        try:
            db.upgrade()
            assert_matches_models(db)
        finally:
            db.dispose()


def test_the_chain_is_one_line_from_the_first_release():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, "two migration heads: merge them"
    assert script.get_base() == RELEASES["0.1.0"] == "0001"
    assert set(RELEASES.values()) <= {rev.revision for rev in script.walk_revisions()}


def _decode(value):
    if isinstance(value, dict) and len(value) == 1:
        (tag, raw), = value.items()
        if tag == "$dt":
            return datetime.fromisoformat(raw)
        if tag == "$date":
            return date.fromisoformat(raw)
        if tag == "$bytes":
            return base64.b64decode(raw)
        if tag == "$dec":
            return Decimal(raw)
    return value


def load_release_data(db: Database, dump: dict) -> dict[str, int]:
    """Write the dump into a database at the dump's revision; returns the rows per table."""
    meta = MetaData()
    meta.reflect(db.engine)
    counts = {}
    with db.engine.begin() as conn:
        for table in meta.sorted_tables:
            part = dump["tables"].get(table.name)
            if not part or not part["rows"]:
                continue
            rows = [dict(zip(part["columns"], map(_decode, row))) for row in part["rows"]]
            conn.execute(table.insert(), rows)
            counts[table.name] = len(rows)
            if not db.is_sqlite and "id" in table.c:
                # Rows came with their ids: the sequence goes on after them, as in the release.
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                  f"(SELECT max(id) FROM {table.name}))"))
    return counts


@pytest.fixture
def keyring():
    """The key the release's data was sealed with (the development default), as the process's."""
    keys = Keyring.single(Config(instance_path=Path(".")).pii_key)
    previous = sealing.use(keys)
    yield keys
    sealing.use(previous)


def release_rows(dump: dict, table: str) -> list[dict]:
    part = dump["tables"][table]
    return [dict(zip(part["columns"], row)) for row in part["rows"]]


def test_an_upgrade_from_release_0_1_0_keeps_every_row(tmp_path, keyring):
    dump = json.loads(RELEASE_DATA.read_text("utf-8"))
    with empty_database(tmp_path) as url:
        db = Database(url)
        try:
            db.upgrade(RELEASES[dump["release"]])
            counts = load_release_data(db, dump)
            assert counts["orders"] == 2 and counts["pushes"] == 2 and counts["volunteers"] == 12
            # 0007 encrypts the phones kept in clear: without the keys it refuses and changes nothing.
            with pytest.raises(RuntimeError, match="PII keys"):
                db.upgrade()
            with db.engine.connect() as conn:
                assert conn.scalar(text("SELECT version_num FROM alembic_version")) < "0007"  # SQLite: 0006; PostgreSQL: all rolled back
                assert conn.scalar(text("SELECT phone FROM orders WHERE id = 1")) == "13800138000"
            db.upgrade(keyring=keyring)
            assert_matches_models(db)
            meta = MetaData()
            meta.reflect(db.engine)
            with db.engine.connect() as conn:
                for name, n in counts.items():
                    assert conn.scalar(select(func.count()).select_from(meta.tables[name])) == n, name
            with db.transaction() as session:
                orders = session.scalars(select(Order).order_by(Order.id)).all()
                assert orders[0].description == "卫生间水管漏水，需要维修"
                assert orders[0].created_at.tzinfo is not None
                reasons = session.scalars(select(OrderEvent.reason).order_by(OrderEvent.id)).all()
                assert "家里人回来了，不需要了" in reasons
                sent = session.scalar(select(Push).where(Push.state == "sent"))
                assert sent.wechat_msgid == "2453452345"
                # 0002: every push recorded before it got a random key of its own.
                keys = session.scalars(select(Push.client_msg_id)).all()
                assert len(set(keys)) == len(keys) == 2 and all(len(k) == 32 for k in keys)
                # New rows after the upgrade take ids after the release's.
                session.add(Push(openid="o_after", kind="order_status", title="t", data={},
                                 dedup_key="after-upgrade"))
                session.flush()
                assert session.scalar(select(func.max(Push.id))) == 3
                # 0005: phones sealed (hash and last four beside), the ID number's tail cut to
                # its last four and the birth date to its year; the numbers still decrypt.
                old = {v["id"]: v for v in release_rows(dump, "volunteers")}
                for v in session.scalars(select(Volunteer)):
                    was = old[v.id]
                    assert v.phone == was["phone"] and v.phone_last4 == was["phone"][-4:]
                    assert v.phone_hash in pii.phone_hashes(keyring, was["phone"])
                    assert v.id_number_last4 == was["id_number_tail"][-4:]
                    assert v.birth_year == int(was["birth_date"]["$date"][:4])
                    assert pii.decrypt(keyring, v.id_number_enc).endswith(v.id_number_last4)
                followers = {f["id"]: f["phone"] for f in release_rows(dump, "followers")}
                assert {f.id: f.phone for f in session.scalars(select(Follower))} == followers
                assert [o.phone for o in orders] == [o["phone"] for o in release_rows(dump, "orders")]
            with db.engine.connect() as conn:
                stored = [conn.scalar(text("SELECT phone_enc FROM volunteers WHERE id = 1")),
                          conn.scalar(text("SELECT phone_enc FROM orders WHERE id = 1"))]
            assert all(s.startswith("v1:") for s in stored)
            # And back: the downgrade restores what the release stored, exactly.
            db.downgrade("0004", keyring=keyring)
            with db.engine.connect() as conn:
                rows = conn.execute(text("SELECT id, phone, id_number_tail, birth_date FROM volunteers")).all()
                assert {r.id: (r.phone, r.id_number_tail, str(r.birth_date)) for r in rows} == {
                    i: (v["phone"], v["id_number_tail"], v["birth_date"]["$date"]) for i, v in old.items()}
                assert dict(conn.execute(text("SELECT id, phone FROM followers")).all()) == followers
        finally:
            db.dispose()
