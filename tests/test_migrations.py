"""The Alembic migrations build exactly the schema the models describe."""

import os
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from bot.config import normalise_database_url
from store.db import Database
from store.models import Base


def _assert_matches_models(url):
    db = Database(url)
    try:
        db.upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations differ (run `make schema`): {diff}"
    finally:
        db.dispose()


def test_sqlite_migrations_match_models(tmp_path):
    _assert_matches_models(f"sqlite:///{tmp_path}/m.sqlite3")


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL run only")
def test_postgresql_migrations_match_models():
    admin_url = normalise_database_url(os.environ["TEST_DATABASE_URL"])
    name = f"volbot_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _assert_matches_models(admin_url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
