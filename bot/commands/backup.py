"""`volbot backup` / `volbot restore`: copies of the SQL database, the only state that
matters (Redis holds what may be lost).

SQLite: SQLite's online backup API (`sqlite3.Connection.backup`) copies a consistent
snapshot while the service keeps running, and the copy is checked with
`PRAGMA integrity_check`. A restore refuses while any other process has the database open
(the web workers, the queue worker and the scheduler keep it open), unless `--force`; the
current database is saved beside the backups first.

PostgreSQL: the procedure (pg_dump / pg_restore) is printed, and documented in deploy/.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import click


def sqlite_path(config) -> Path | None:
    """The SQLite file of this configuration, or None for another database."""
    url = config.sqlalchemy_url
    if not url.startswith("sqlite"):
        return None
    return Path(url.split("///", 1)[-1]).resolve()


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy `source` to `target` online; returns the number of pages copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst, pages=1024)  # in steps, so writers are not held up for the whole copy
        pages = dst.execute("PRAGMA page_count").fetchone()[0]
    finally:
        dst.close()
        src.close()
    check_sqlite(partial)
    partial.replace(target)
    return pages


def check_sqlite(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise click.ClickException(f"{path}: not a SQLite database ({e})")
    finally:
        conn.close()
    if result != "ok":
        raise click.ClickException(f"{path}: integrity check failed: {result}")
    if "followers" not in tables:
        raise click.ClickException(f"{path}: not a volunteer-bot database (no followers table)")


def restore_sqlite(backup: Path, target: Path) -> None:
    """Write the backup's content into the live database file (through SQLite, so its WAL
    and locks are respected)."""
    src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=10)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def processes_using(path: Path) -> list[int]:
    """Pids of other processes holding `path` (or its -wal/-shm) open (Linux /proc)."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in names for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to look at
            continue
    return sorted(found)


def postgres_procedure(url: str) -> str:
    from sqlalchemy.engine import make_url

    safe = make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
    return "\n".join([
        "PostgreSQL: use its own tools (consistent while the service runs):",
        f"  backup:  pg_dump --format=custom --no-owner --file volbot-$(date +%Y%m%d-%H%M%S).dump '{safe}'",
        "  restore: stop `volbot serve`, `volbot worker` and `volbot scheduler` on every host, then",
        f"           pg_restore --clean --if-exists --no-owner --single-transaction --dbname '{safe}' FILE.dump",
        "           volbot db upgrade   # if the dump is from an older release",
        "           then start the services again.",
        "See deploy/README.md (backups) for scheduling and point-in-time recovery.",
    ])


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--out", "out", default=None, type=click.Path(dir_okay=False, path_type=Path),
                  help="Backup file (default instance/backups/volbot-<UTC time>.sqlite3).")
    def backup(out):
        """Back up the database (SQLite online; PostgreSQL: prints the pg_dump procedure)."""
        from bot.config import load_config

        config = load_config()
        source = sqlite_path(config)
        if source is None:
            click.echo(postgres_procedure(config.sqlalchemy_url))
            return
        if not source.exists():
            raise click.ClickException(f"no database at {source}")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        target = (out or config.instance_path / "backups" / f"volbot-{stamp}.sqlite3").resolve()
        pages = backup_sqlite(source, target)
        click.echo(f"backed up {source} → {target} ({pages} pages, {target.stat().st_size:,} bytes, integrity ok)")

    @main.command()
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--force", is_flag=True, help="Restore even while other processes use the database.")
    def restore(file, force):
        """Replace the database with the backup FILE (SQLite; PostgreSQL: prints the procedure)."""
        from bot.config import load_config

        config = load_config()
        target = sqlite_path(config)
        if target is None:
            click.echo(postgres_procedure(config.sqlalchemy_url))
            return
        check_sqlite(file.resolve())
        users = processes_using(target)
        if users and not force:
            raise click.ClickException(
                f"{target} is in use by process(es) {', '.join(map(str, users))} — stop volbot serve, worker "
                "and scheduler first (or pass --force to restore under them)")
        if target.exists():
            saved = config.instance_path / "backups" / (
                f"pre-restore-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}.sqlite3")
            backup_sqlite(target, saved)
            click.echo(f"current database saved to {saved}")
        restore_sqlite(file.resolve(), target)
        click.echo(f"restored {file} → {target}. Conversation state in Redis is kept; start the services again.")
