"""`volbot pii`: the keys that seal personal data at rest (docs/privacy.md).

    volbot pii rotate [--batch N]   re-seal every stored value under PII_KEY_ID (online, resumable)
    volbot pii status               rows per key version: a key is retired once no row uses it

Output never contains a personal value: only tables, columns, versions and counts.
"""

from __future__ import annotations

import click


def register(main) -> None:
    @main.group()
    def pii():
        """Keys of the personal data sealed at rest."""

    @pii.command("rotate")
    @click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10000),
                  help="rows per transaction")
    def rotate(batch):
        """Re-encrypt every stored ID number and phone under the current key (PII_KEY_ID),
        rewriting its lookup hash; safe to run while the service runs and to run again."""
        from bot.cli import build_services
        from store import rotation

        svc = build_services()
        try:
            def progress(sc, n):
                click.echo(f"{sc.table}.{sc.enc}: {n} re-sealed")

            done = rotation.rotate(svc.db, svc.keyring, batch=batch, on_batch=progress)
            click.echo(f"under {svc.keyring.current}: {sum(done.values())} value(s) re-sealed")
            _status(svc)
        finally:
            svc.close()

    @pii.command("status")
    def status():
        """How many stored values each key version still seals."""
        from bot.cli import build_services

        svc = build_services()
        try:
            _status(svc)
        finally:
            svc.close()


def _status(svc) -> None:
    from store import rotation

    held = [v for v, _ in svc.keyring.versions]
    left = 0
    for name, counts in rotation.versions_in_use(svc.db).items():
        click.echo(f"{name}: " + (", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "empty"))
        left += sum(n for v, n in counts.items() if v != svc.keyring.current)
    click.echo(f"current key {svc.keyring.current}; keys held {', '.join(held)}; "
               + ("every value is under the current key" if not left else f"{left} value(s) under older keys"))
