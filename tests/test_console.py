"""The console end to end over HTTP: login (Argon2, throttling), CSRF, and each page's
actions with the domain rules and the audit log behind them."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from console import accounts, throttle
from store.models import AuditLog, HourRecord, Offer, Order, Push, ServiceCertificate, Volunteer
from store.models.activities import Activity, Shift
from tests.console_support import Browser, one, signed_in
from tests.seeds import apply
from tests.seeds.console import PASSWORD, coordinator
from tests.seeds.volunteers import id_number


@pytest.fixture
def world(svc):
    apply(svc, ["console_world"])
    return svc



def volunteer_id(svc, number):
    return one(svc, select(Volunteer.id).where(Volunteer.number == number))


# ---- accounts, sessions, CSRF ---------------------------------------------------------------

def test_pages_need_a_login(base_url, world):
    b = Browser(base_url)
    for path in ("/console/", "/console/hours", "/console/volunteers", "/console/orders", "/console/reports"):
        r = b.get(path)
        assert r.status_code == 302 and "/console/login" in r.headers["Location"], path
    assert b.get("/console/bus/1/progress.json").status_code == 401


def test_login_with_argon2_and_logout(base_url, world):
    with world.db.session() as s:
        stored = coordinator(s, "df_lead").password_hash
    assert stored.startswith("$argon2id$")
    b = signed_in(base_url, "df_lead")
    page = b.get("/console/")
    assert page.status_code == 200 and "东风小队长" in page.text and "小队负责人" in page.text
    assert b.post("/console/logout").status_code == 302
    assert b.get("/console/").status_code == 302  # the server-side session is gone
    assert one(world, select(func.count()).select_from(AuditLog).where(AuditLog.action == "login")) == 1


def test_wrong_password_and_unknown_user_look_the_same(base_url, world):
    b = Browser(base_url)
    wrong = b.login("df_lead", "not the password")
    unknown = b.login("nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "用户名或密码错误" in wrong.text and "用户名或密码错误" in unknown.text


def test_login_is_throttled_even_with_the_right_password(base_url, world):
    b = Browser(base_url)
    for _ in range(throttle.FREE + 1):
        assert b.login("bs_lead", "guess guess guess").status_code == 401
    blocked = b.login("bs_lead", PASSWORD)
    assert blocked.status_code == 429 and f"{throttle.BASE_DELAY} 秒" in blocked.text
    # another account is not slowed by it
    assert Browser(base_url).login("by_lead").status_code == 302


def test_login_form_needs_its_csrf_cookie(base_url, world):
    b = Browser(base_url)
    r = b.http.post(b.url("/console/login"), data={"username": "admin", "password": PASSWORD, "csrf_token": "x"},
                    allow_redirects=False)
    assert r.status_code == 400


def test_actions_without_or_with_a_wrong_csrf_token_are_refused(base_url, world):
    b = signed_in(base_url, "df_lead")
    rid = one(world, select(HourRecord.id).where(HourRecord.source_ref == "DF:p0"))
    for data in ({"ids": rid, "decision": "approve"}, {"ids": rid, "decision": "approve", "csrf_token": "forged"}):
        r = b.post("/console/hours/decide", data, csrf=False)
        assert r.status_code == 400 and "CSRF" in r.text
    assert one(world, select(HourRecord.state).where(HourRecord.id == rid)) == "pending"
    # a token from another session does not work either
    other = signed_in(base_url, "df_second")
    r = b.post("/console/hours/decide", {"ids": rid, "decision": "approve", "csrf_token": other.csrf}, csrf=False)
    assert r.status_code == 400


def test_open_redirect_after_login_is_refused(base_url, world):
    b = Browser(base_url)
    page = b.http.get(b.url("/console/login"))
    from tests.console_support import CSRF_RE

    r = b.http.post(b.url("/console/login"), allow_redirects=False, data={
        "username": "admin", "password": PASSWORD, "csrf_token": CSRF_RE.search(page.text).group(1),
        "next": "https://evil.example/console"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")


def test_create_account_checks_role_against_team(svc):
    from tests.seeds.volunteers import vol_teams

    with svc.db.transaction() as s:
        vol_teams(s)
        with pytest.raises(accounts.AccountError):
            accounts.create_account(s, team_code="VT-DF", username="x", role="brigade", password="long enough pw")
        with pytest.raises(accounts.AccountError):
            accounts.create_account(s, team_code="VT-DF", username="x", role="squad", password="short")
        c = accounts.create_account(s, team_code="VT-YL", username="yl", role="detachment", password="long enough pw")
        assert accounts.verify_password(c.password_hash, "long enough pw")
        with pytest.raises(accounts.AccountError):
            accounts.create_account(s, team_code="VT-DF", username="YL", role="squad", password="long enough pw")


# ---- hours ----------------------------------------------------------------------------------

def test_approve_many_and_reject_with_reason(base_url, world):
    b = signed_in(base_url, "df_lead")
    page = b.get("/console/hours")
    assert "DF甲" in page.text and "BS甲" not in page.text
    ids = [one(world, select(HourRecord.id).where(HourRecord.source_ref == f"DF:p{i}")) for i in range(3)]
    r = b.post("/console/hours/decide", [("ids", ids[0]), ("ids", ids[1]), ("decision", "approve")])
    assert r.status_code == 302
    no_reason = b.post("/console/hours/decide", [("ids", ids[2]), ("decision", "reject")])
    assert no_reason.status_code == 302
    assert one(world, select(HourRecord.state).where(HourRecord.id == ids[2])) == "pending"
    b.post("/console/hours/decide", [("ids", ids[2]), ("decision", "reject"), ("reason", "时间重复")])
    with world.db.session() as s:
        states = {r.id: (r.state, r.reason) for r in s.scalars(select(HourRecord).where(HourRecord.id.in_(ids)))}
        entries = list(s.scalars(select(AuditLog).where(AuditLog.action.in_(("hours.approve", "hours.reject")))))
    assert states[ids[0]][0] == states[ids[1]][0] == "approved"
    assert states[ids[2]] == ("rejected", "时间重复")
    assert len(entries) == 3
    assert all(e.before["state"] == "pending" and e.actor == "东风小队长" for e in entries)


def test_manual_entry_needs_a_second_coordinator(base_url, world):
    b = signed_in(base_url, "df_lead")
    r = b.post("/console/hours/new", {"number": "KW2026000100", "day": "2026-01-05", "start": "09:00",
                                      "minutes": "90", "description": "补录：敬老院陪护"})
    assert r.status_code == 302
    rid = one(world, select(HourRecord.id).where(HourRecord.description == "补录：敬老院陪护"))
    b.post("/console/hours/decide", [("ids", rid), ("decision", "approve")])
    assert one(world, select(HourRecord.state).where(HourRecord.id == rid)) == "pending"
    assert "需另一位管理员审核" in b.get("/console/hours").text
    second = signed_in(base_url, "df_second")
    second.post("/console/hours/decide", [("ids", rid), ("decision", "approve")])
    assert one(world, select(HourRecord.state).where(HourRecord.id == rid)) == "approved"


def test_manual_entry_for_a_volunteer_outside_the_subtree_is_refused(base_url, world):
    b = signed_in(base_url, "df_lead")
    r = b.post("/console/hours/new", {"number": "KW2026000200", "day": "2026-01-05", "start": "09:00",
                                      "minutes": "60", "description": "越权补录"})
    assert r.status_code == 400 and "不在您管理的范围内" in r.text
    assert one(world, select(func.count()).select_from(HourRecord).where(HourRecord.description == "越权补录")) == 0


# ---- volunteers -----------------------------------------------------------------------------

def test_volunteer_search_by_name_number_and_phone_tail_with_masked_phone(base_url, world):
    b = signed_in(base_url, "dg_lead")
    by_tail = b.get("/console/volunteers?q=1334")  # DF甲's phone is 13901001334
    assert "DF甲" in by_tail.text and "139****1334" in by_tail.text and "13901001334" not in by_tail.text
    assert "DF乙" in b.get("/console/volunteers?q=DF乙").text
    by_number = b.get("/console/volunteers?q=KW2026000101").text
    assert "DF乙" in by_number and "DF甲" not in by_number
    # 北苑 is another subtree: not found by any key
    assert "KW2026000200" not in b.get("/console/volunteers?q=BS甲").text


def test_volunteer_detail_masks_the_id_number(base_url, world):
    b = signed_in(base_url, "df_lead")
    vid = volunteer_id(world, "KW2026000100")
    page = b.get(f"/console/volunteers/{vid}").text
    # Only the last four are kept in clear, so only they are shown.
    assert "**************" + id_number(order="100")[-4:] in page
    assert "3707**" not in page and "370705198005011" not in page


def test_approve_a_sign_up(base_url, world):
    b = signed_in(base_url, "df_lead")
    vid = volunteer_id(world, "KW2026000102")
    assert b.post(f"/console/volunteers/{vid}/decide", {"decision": "approve"}).status_code == 302
    assert one(world, select(Volunteer.state).where(Volunteer.id == vid)) == "active"
    entry = one(world, select(AuditLog).where(AuditLog.action == "volunteer.approve"))
    assert entry.before == {"state": "pending"} and entry.after == {"state": "active"}


# ---- orders ---------------------------------------------------------------------------------

def test_assign_and_reassign_an_order(base_url, world):
    b = signed_in(base_url, "df_lead")
    oid = one(world, select(Order.id).where(Order.status == "submitted", Order.community_id.is_not(None))
              .order_by(Order.id))
    page = b.get(f"/console/orders/{oid}").text
    assert "DF甲" in page and "DF乙" in page and "BS甲" not in page
    assert "同社区（东风社区）+40" in page  # the ranking's reasons are shown
    first, second = volunteer_id(world, "KW2026000100"), volunteer_id(world, "KW2026000101")
    assert b.post(f"/console/orders/{oid}/assign", {"volunteer_id": first}).status_code == 302
    assert one(world, select(Order.status).where(Order.id == oid)) == "offered"
    b.post(f"/console/orders/{oid}/assign", {"volunteer_id": second, "reason": "甲临时有事"})
    with world.db.session() as s:
        offers = [(o.volunteer_id, o.state) for o in s.scalars(select(Offer).where(Offer.order_id == oid).order_by(Offer.id))]
        pushed = s.scalar(select(func.count()).select_from(Push).where(Push.kind == "order_offer"))
    assert offers == [(first, "withdrawn"), (second, "offered")]
    assert pushed == 2  # each chosen volunteer was asked
    assert one(world, select(func.count()).select_from(AuditLog).where(AuditLog.action == "order.reassign")) == 1
    again = b.post(f"/console/orders/{oid}/assign", {"volunteer_id": second})
    assert again.status_code == 302
    assert "无需重复派单" in b.get(f"/console/orders/{oid}").text


def test_order_filters(base_url, world):
    b = signed_in(base_url, "admin")
    assert b.get("/console/orders?state=completed").text.count("/console/orders/") == 2
    assert b.get("/console/orders?state=submitted&category=08").text.count("/console/orders/") == 2
    assert b.get("/console/orders?category=99").text.count("/console/orders/") == 0


# ---- activities -----------------------------------------------------------------------------

def test_create_and_edit_an_activity_with_a_second_shift(base_url, world):
    b = signed_in(base_url, "df_lead")
    page = b.get("/console/activities/new").text
    assert "DF四点半学校" in page and "BS四点半学校" not in page
    import re

    project_id = re.search(r'<option value="(\d+)"[^>]*>DF四点半学校', page).group(1)
    r = b.post("/console/activities/new", {"project_id": project_id, "title": "作业辅导", "day": "2030-03-02",
                                           "start": "16:30", "end": "18:00", "capacity": "8"})
    assert r.status_code == 302
    aid = one(world, select(Activity.id).where(Activity.title == "作业辅导"))
    b.post(f"/console/activities/{aid}/shifts", {"name": "加场", "start": "18:00", "end": "19:00", "capacity": "4"})
    b.post(f"/console/activities/{aid}/edit", {"project_id": project_id, "title": "作业辅导（三月）", "day": "2030-03-02",
                                               "start": "16:30", "end": "18:00", "capacity": "8"})
    detail = b.get(f"/console/activities/{aid}").text
    assert "作业辅导（三月）" in detail and "加场" in detail
    assert one(world, select(func.count()).select_from(Shift).where(Shift.activity_id == aid)) == 2


def test_cancelling_an_activity_tells_everyone_signed_up(base_url, world):
    from rules import activities as activity_rules
    from store.models import Follower

    with world.db.transaction() as s:
        vol = s.scalar(select(Volunteer).where(Volunteer.number == "KW2026000100"))
        activity = s.scalar(select(Activity).where(Activity.title == "DF周末课堂"))
        shift = activity.shifts[0]
        activity_rules.sign_up(s, vol, shift.id, world.clock.now())
        openid = s.get(Follower, vol.follower_id).openid
        aid = activity.id
    b = signed_in(base_url, "df_lead")
    r = b.post(f"/console/activities/{aid}/cancel", {"reason": "场地维修"})
    assert r.status_code == 302
    assert one(world, select(Activity.state).where(Activity.id == aid)) == "cancelled"
    told = one(world, select(func.count()).select_from(Push).where(
        Push.kind == "activity_cancelled", Push.openid == openid))
    assert told == 1
    # A second cancel changes nothing and tells nobody again.
    b.post(f"/console/activities/{aid}/cancel", {"reason": "场地维修"})
    assert one(world, select(func.count()).select_from(Push).where(Push.kind == "activity_cancelled")) == 1


# ---- reports, exports, certificate, audit ---------------------------------------------------

def test_reports_with_charts_and_exports(base_url, world):
    b = signed_in(base_url, "admin")
    page = b.get("/console/reports").text
    assert page.count("<svg") >= 4 and "东关街道分队" in page
    csv_body = b.get("/console/reports/hours.csv")
    assert csv_body.status_code == 200 and csv_body.content.startswith(b"\xef\xbb\xbf")
    assert "队伍" in csv_body.content.decode("utf-8-sig").splitlines()[0]
    xlsx = b.get("/console/reports/orders.xlsx")
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][0] == "类别" and sum(r[-1] for r in rows[2:]) == 4


def test_squad_leads_do_not_get_the_annual_rankings(base_url, world):
    assert signed_in(base_url, "df_lead").get("/console/reports/volunteer_ranking.csv").status_code == 403
    admin = signed_in(base_url, "admin").get("/console/reports/volunteer_ranking.csv")
    assert admin.status_code == 200 and "DF甲" in admin.content.decode("utf-8-sig")


def test_certificate_of_service_pdf(base_url, world):
    from rules.certificates import FontMissing, find_font

    try:
        find_font()
    except FontMissing:
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-microhei)")
    b = signed_in(base_url, "df_lead")
    vid = volunteer_id(world, "KW2026000100")
    r = b.post(f"/console/volunteers/{vid}/certificate", {})
    assert r.status_code == 302
    pdf = b.get(r.headers["Location"].replace(base_url, ""))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    cert = one(world, select(ServiceCertificate))
    assert cert.minutes == 5 * 90 and cert.number.startswith("KWZM")


def test_audit_log_is_scoped(base_url, world):
    signed_in(base_url, "bs_lead")  # writes a login entry in 北苑's subtree
    df = signed_in(base_url, "df_lead")
    page = df.get("/console/audit").text
    assert "东风小队长" in page and "北苑小队长" not in page
    assert "北苑小队长" in signed_in(base_url, "admin").get("/console/audit").text


def test_every_page_renders(base_url, world):
    b = signed_in(base_url, "admin")
    vid = volunteer_id(world, "KW2026000100")
    oid = one(world, select(Order.id).order_by(Order.id))
    aid = one(world, select(Activity.id).order_by(Activity.id))
    for path in ("/console/", "/console/orders", f"/console/orders/{oid}", "/console/hours",
                 "/console/hours?state=approved", "/console/hours/new", "/console/volunteers",
                 f"/console/volunteers/{vid}", f"/console/volunteers/{vid}/certificate", "/console/activities",
                 "/console/activities?when=past", f"/console/activities/{aid}", "/console/activities/new",
                 "/console/bus", "/console/places", "/console/reports", "/console/audit", "/console/account",
                 "/console/static/console.css", "/console/static/console.js"):
        page = b.get(path)
        assert page.status_code == 200, path
        assert 'name="csrf_token" value=""' not in page.text, path  # every form carries the token


# ---- binding the account to WeChat ----------------------------------------------------------

def test_bind_the_account_to_a_wechat_follower(base_url, world, wechat):
    import re

    b = signed_in(base_url, "df_lead")
    page = b.post("/console/account/bind-code").text
    code = re.search(r'id="bind-code">(\d{6})<', page).group(1)
    assert "请回复" in wechat.say("o_df_lead", "绑定管理员")
    assert "绑定码不正确或已过期" in wechat.say("o_df_lead", "000000" if code != "000000" else "111111")
    assert "已绑定管理员账号“东风小队长”" in wechat.say("o_df_lead", code)
    with world.db.session() as s:
        assert coordinator(s, "df_lead").follower.openid == "o_df_lead"
    assert "已绑定" in b.get("/console/account").text
    # a used code does not work twice, not even for someone else
    wechat.say("o_other", "绑定管理员")
    assert "绑定码不正确或已过期" in wechat.say("o_other", code)
    b.post("/console/account/unbind")
    with world.db.session() as s:
        assert coordinator(s, "df_lead").follower_id is None


def test_a_bind_code_expires(base_url, world, wechat_plain):
    import re

    b = signed_in(base_url, "df_lead")
    code = re.search(r'id="bind-code">(\d{6})<', b.post("/console/account/bind-code").text).group(1)
    world.clock.advance(minutes=11)
    wechat_plain.say("o_late", "绑定管理员")
    assert "绑定码不正确或已过期" in wechat_plain.say("o_late", code)
