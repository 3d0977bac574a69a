"""`volbot reports`: the running totals of approved hours behind the console's reports.

    volbot reports rebuild   # recompute them from hour_records (after a bulk load or an upgrade)
    volbot reports audit     # prove they equal that recomputation; exit 1 on any difference
"""

from __future__ import annotations

import time

import click

from bot.commands import finish_audit, operator_session


def register(main) -> None:
    @main.group("reports")
    def reports_group():
        """Running totals of approved hours (store.models.rollups)."""

    @reports_group.command("rebuild")
    def reports_rebuild():
        """Recompute the totals from hour_records in one transaction (approvals wait meanwhile)."""
        from rules import reports

        started = time.perf_counter()
        with operator_session() as (_, s):
            months, years = reports.rebuild(s)
        click.echo(f"rebuilt: {months} team-month rows, {years} volunteer-year rows "
                   f"in {time.perf_counter() - started:.1f} s")

    @reports_group.command("audit")
    def reports_audit():
        """Compare the totals with a recomputation from hour_records; exit 1 on any difference."""
        from rules import reports

        with operator_session() as (_, s):
            result = reports.audit(s)
        finish_audit(result.problems,
                     f"report totals: {result.month_rows} team-month rows, {result.year_rows} volunteer-year rows")
