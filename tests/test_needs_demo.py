"""The needs reports on the demo district's year of history: last year's survey, the unmet
needs grouped by wording and by community, and demand beside supply per sub-category for
the brigade (the whole district) and for a street's detachment (its own communities)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from demo import district
from demo import needs as demo_needs
from rules import access, needs_report, surveys, unmet
from store.models import Coordinator, Survey

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def test_the_needs_reports_on_the_demo_district(svc):
    with svc.db.transaction() as s:
        summary = district.seed(s, now=NOW, pii_key=svc.config.pii_key, volunteers=60)  # fewer: quicker, same shape
    assert summary.counts["unmet needs recorded (past year)"] == sum(n for _, n in demo_needs.ASKED)
    with svc.db.session() as s:
        survey = s.scalar(select(Survey))
        total, results = surveys.results(s, survey)
        assert survey.state == "closed" and total == summary.counts["survey answers (last year)"] > 30
        picks = dict(results[0].counts)
        assert set(picks) == set(demo_needs.OPTIONS) and sum(picks.values()) >= total

        rows = unmet.rows_between(s, datetime(2025, 11, 1, tzinfo=timezone.utc), NOW)
        groups = unmet.group(rows)
        # Each asked-for need is one group, whatever its wording: six groups of the sizes asked.
        assert sorted(g.count for g in groups) == sorted(n for _, n in demo_needs.ASKED)
        for wordings, n in demo_needs.ASKED:
            home = [g for g in groups if set(g.texts) & set(wordings)]
            assert len(home) == 1 and home[0].count == n and set(home[0].texts) <= set(wordings)
        by_place = unmet.by_community(s, groups)
        assert sum(r[1] for r in by_place) == len(rows) and all(r[0].endswith("社区") for r in by_place)

        brigade = access.scope_for(s, s.scalar(select(Coordinator).where(Coordinator.username == "demo_brigade")))
        table = needs_report.report(s, brigade, survey.opened_at.year)
        by_name = {r[0]: r for r in table.rows}
        assert len(table.rows) == 48
        assert by_name["作业辅导"][4] == picks["作业辅导"]  # survey picks reach the sub-category they name
        assert all(r[7] > 0 for r in table.rows)  # every category has skilled volunteers in the demo
        assert sum(r[6] for r in table.rows) >= demo_needs.PROJECT_LINKS
        street = access.scope_for(s, s.scalar(select(Coordinator).where(Coordinator.username == "demo_street")))
        mine = needs_report.report(s, street, survey.opened_at.year)
        assert sum(r[7] for r in mine.rows) < sum(r[7] for r in table.rows)
        assert unmet.by_group_and_month(groups, district.CHINA)[0][2] == groups[0].count
