"""The console's 时间银行 page over HTTP: a squad coordinator asks for pool minutes for a
resident of their area, a coordinator of the same squad may not approve, the detachment
above approves; both steps are in the audit log and the ledger names requester and approver."""

from __future__ import annotations

from sqlalchemy import select

from rules import timebank, volunteering
from store.models import AuditLog, Follower, HourRecord, Order, PoolGrant, TimeTransaction, Volunteer
from tests.console_support import signed_in
from tests.seeds import apply
from tests.seeds.console import coordinator


def test_a_grant_is_requested_and_approved_one_level_up(base_url, svc):
    apply(svc, ["console_world"])
    with svc.db.transaction() as s:  # 东风's volunteer donates two hours to the pool
        donor = s.scalar(select(Volunteer).where(Volunteer.number == "KW2026000100"))
        pending = s.scalar(select(HourRecord).where(HourRecord.volunteer_id == donor.id, HourRecord.state == "pending",
                                                    HourRecord.source != "manual").limit(1))
        volunteering.decide_hours(s, [pending.id], approve=True, now=svc.clock.now(), coordinator=None)
        timebank.donate(s, donor, 120, key="console-test", now=svc.clock.now(), actor="test")
        ours = s.scalar(select(Order.number).join(Follower, Follower.id == Order.follower_id)
                        .where(Follower.openid == "o_DF_res").limit(1))
        theirs = s.scalar(select(Order.number).join(Follower, Follower.id == Order.follower_id)
                          .where(Follower.openid == "o_BS_res").limit(1))
    squad = signed_in(base_url, "df_lead")
    page = squad.get("/console/timebank")
    assert page.status_code == 200 and "公益池余额：<strong>2 小时" in page.text and "没有待您审批" in page.text
    refused = squad.post("/console/timebank/grants", {"number": theirs, "hours": "1", "reason": "助浴"})
    assert refused.status_code == 400 and "找不到这位居民" in refused.text
    no_reason = squad.post("/console/timebank/grants", {"number": ours, "hours": "1", "reason": " "})
    assert no_reason.status_code == 400 and "说明原因" in no_reason.text
    asked = squad.post("/console/timebank/grants", {"number": ours, "hours": "1", "reason": "独居老人助浴"})
    assert asked.status_code == 302
    with svc.db.session() as s:
        grant = s.scalar(select(PoolGrant))
        assert (grant.state, grant.minutes) == ("pending", 60)
    second = signed_in(base_url, "df_second")  # the same squad: not one level up
    second.post(f"/console/timebank/grants/{grant.id}", {"decision": "approve"})
    assert "不由您审批" in second.get("/console/timebank").text
    above = signed_in(base_url, "dg_lead")
    page = above.get("/console/timebank")
    assert "独居老人助浴" in page.text and "批准" in page.text
    assert above.post(f"/console/timebank/grants/{grant.id}", {"decision": "approve", "note": "核实"}).status_code == 302
    with svc.db.session() as s:
        grant = s.get(PoolGrant, grant.id)
        tx = s.get(TimeTransaction, grant.tx_id)
        assert grant.state == "approved" and grant.decided_by == coordinator(s, "dg_lead").id
        assert (tx.actor, tx.approved_by) == (f"coordinator:{coordinator(s, 'df_lead').id}",
                                              f"coordinator:{coordinator(s, 'dg_lead').id}")
        resident = s.scalar(select(Follower).where(Follower.openid == "o_DF_res"))
        assert timebank.holder_account(s, resident).balance == 60
        assert {a for a in s.scalars(select(AuditLog.action).where(AuditLog.action.like("timebank.%")))} == {
            "timebank.grant_request", "timebank.grant_approve"}
        assert timebank.audit(s).ok
