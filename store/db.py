"""The SQL database: one engine per process, one session per unit of work.

SQLite (the default) runs in WAL mode with a busy timeout so a web worker and a queue
worker can share the file; PostgreSQL gets short connect and statement timeouts so a slow
database turns into a fast "busy" answer instead of a WeChat time-out, and a pooled
connection is checked before use only when it has sat idle (see `_ping_when_idle`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from store.models import Base

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
IDLE_PING_SECONDS = 1.0


class Database:
    def __init__(self, url: str, *, statement_timeout_ms: int = 4000, echo: bool = False):
        self.url = url
        self.engine: Engine = make_engine(url, statement_timeout_ms=statement_timeout_ms, echo=echo)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any error."""
        with self.Session() as session:
            with session.begin():
                yield session

    @contextmanager
    def turn_transaction(self) -> Iterator["OnDemandSession"]:
        """`transaction()` for a chat turn: the session is opened (and begun) only when the
        turn first uses it, so the many turns that need no SQL (an answer kept in the form
        state) cost no Session, BEGIN or COMMIT."""
        lazy = OnDemandSession(self.Session)
        try:
            yield lazy
            if lazy.opened:
                lazy.opened.commit()
        except BaseException:
            if lazy.opened:
                lazy.opened.rollback()
            raise
        finally:
            if lazy.opened:
                lazy.opened.close()

    def session(self) -> Session:
        return self.Session()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def create_all(self) -> None:
        """Create the schema straight from the models (tests); production uses `upgrade`."""
        Base.metadata.create_all(self.engine)

    def drop_all(self) -> None:
        Base.metadata.drop_all(self.engine)

    def upgrade(self, revision: str = "head", keyring=None) -> None:
        """Migrate to `revision`. `keyring` (`store.sealing.Keyring`) is needed by the
        migrations that seal stored personal data (0005 encrypts phones kept in clear)."""
        from alembic import command

        cfg = alembic_config(self.url)
        cfg.attributes["pii_keyring"] = keyring
        command.upgrade(cfg, revision)

    def downgrade(self, revision: str, keyring=None) -> None:
        from alembic import command

        cfg = alembic_config(self.url)
        cfg.attributes["pii_keyring"] = keyring
        command.downgrade(cfg, revision)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class OnDemandSession:
    """Stands for a `Session` that does not exist yet: the first attribute asked of it
    opens one and begins its transaction; from then on everything goes to that session.
    Its `info` (the per-transaction cache of store/ and handlers/) and `get_bind()` need no
    session: the turns that only read the cached needs menu open none."""

    __slots__ = ("_factory", "opened", "info")

    def __init__(self, factory):
        self._factory = factory
        self.opened: Session | None = None
        self.info: dict = {}

    def get_bind(self, *args, **kwargs):
        if self.opened is not None:
            return self.opened.get_bind(*args, **kwargs)
        return self._factory.kw["bind"]

    def __getattr__(self, name):
        session = self.opened
        if session is None:
            session = self.opened = self._factory()
            session.begin()
        return getattr(session, name)


def make_engine(url: str, *, statement_timeout_ms: int = 4000, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 4, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN is off) and
            # take the write lock at BEGIN so two writers queue instead of deadlocking.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=4000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {"connect_timeout": 3}
    if statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={statement_timeout_ms}"
    engine = create_engine(
        url,
        echo=echo,
        pool_size=10,
        max_overflow=20,
        pool_timeout=3,
        connect_args=connect_args,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's `pool_pre_ping`, but only for a connection that sat in the pool for
    IDLE_PING_SECONDS or more: under load a connection is reused within milliseconds, and a
    ping before each use was one more round trip per turn. A connection found dead makes
    the pool drop every connection as old and open a new one, as pre-ping does. A restart
    can still break a connection that was in use a moment ago: its first statement fails
    with `connection_invalidated`, and the webhook runs such a turn once more
    (bot.pipeline)."""

    @event.listens_for(engine, "checkin")
    def _idle_from(dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, proxy):
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as e:
            if not engine.dialect.is_disconnect(e, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            raise exc.InvalidatePoolError("connection found closed on checkout")


# Each release's schema revision. A release's migrations are never rewritten: a district that
# installed it upgrades through every migration after it (`volbot db upgrade`).
RELEASES = {"0.1.0": "0001"}


def new_migration(message: str) -> Path:
    """Write the next migration (`NNNN_<message>.py`) from the difference between the models
    and the schema the migrations so far build. Data migrations (stored values that change)
    are added to its `upgrade()` by hand."""
    import re
    import tempfile

    from alembic import command
    from alembic.script import ScriptDirectory

    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    if not slug:
        raise ValueError("a migration needs a message (letters or digits)")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{tmp}/current.sqlite3")
        head = ScriptDirectory.from_config(cfg).get_current_head()
        command.upgrade(cfg, "head")
        rev_id = f"{int(head) + 1:04d}"
        command.revision(cfg, message=slug, autogenerate=True, rev_id=rev_id)
    path = next((MIGRATIONS_DIR / "versions").glob(f"{rev_id}_*.py"))
    # No creation date: the file says what changes; git says when.
    text = path.read_text("utf-8")
    path.write_text("\n".join(line for line in text.split("\n") if not line.startswith("Create Date:")), "utf-8")
    return path
