"""`volbot reports`: the running totals of approved hours behind the console's reports.

    volbot reports rebuild   # recompute them from hour_records (after a bulk load or an upgrade)
    volbot reports audit     # prove they equal that recomputation; exit 1 on any difference
"""

from __future__ import annotations

import sys
import time

import click

from bot.cli import build_services


def register(main) -> None:
    @main.group("reports")
    def reports_group():
        """Running totals of approved hours (store.models.rollups)."""

    @reports_group.command("rebuild")
    def reports_rebuild():
        """Recompute the totals from hour_records in one transaction (approvals wait meanwhile)."""
        from store import reports

        svc = build_services()
        try:
            started = time.perf_counter()
            with svc.db.transaction() as s:
                months, years = reports.rebuild(s)
        finally:
            svc.close()
        click.echo(f"rebuilt: {months} team-month rows, {years} volunteer-year rows "
                   f"in {time.perf_counter() - started:.1f} s")

    @reports_group.command("audit")
    def reports_audit():
        """Compare the totals with a recomputation from hour_records; exit 1 on any difference."""
        from store import reports

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                result = reports.audit(s)
        finally:
            svc.close()
        for problem in result.problems:
            click.echo(problem)
        click.echo(f"report totals: {result.month_rows} team-month rows, {result.year_rows} volunteer-year rows, "
                   + ("OK" if result.ok else f"{len(result.problems)} problem(s)"))
        if not result.ok:
            sys.exit(1)
