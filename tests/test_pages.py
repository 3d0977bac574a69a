"""The pages at /m over HTTP, signed in through the emulator's OAuth, as a volunteer, a
resident and a stranger: each sees and changes only their own rows; other people's ids
are 404 and change nothing; a POST without the page's CSRF token changes nothing."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import func, select

from store.models import BusSubscription, Follower, Order, Volunteer
from store.models.activities import Shift, SignUp
from tests.console_support import one
from tests.pages_support import csrf, open_as
from tests.seeds import apply


def test_volunteer_records_passbook_and_csv(m, emulator, svc):
    apply(svc, ["console_world"])
    http, home = open_as(emulator, m, "o_DF_vol")
    assert "我的志愿记录" in home.text and "DF甲" in home.text
    page = http.get(m + "/m/records", timeout=10)
    assert page.status_code == 200
    assert "已认证时长" in page.text and "7.5小时" in page.text  # 5 × 90 min approved
    assert "待审核" in page.text and "补录" in page.text and "距 1 星还差" in page.text
    assert "BS甲" not in page.text
    sheet = http.get(m + "/m/records.csv", timeout=10)
    assert sheet.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert rows[0][0] == "日期" and len(rows) == 1 + 9  # 3 pending + 5 approved + 1 manual
    assert {r[6] for r in rows[1:]} == {"待审核", "已认证"}


def test_a_resident_is_not_a_volunteer_and_a_stranger_sees_nothing(m, emulator, svc):
    apply(svc, ["console_world"])
    http, _ = open_as(emulator, m, "o_DF_res")
    page = http.get(m + "/m/records", timeout=10)
    assert page.status_code == 200 and "您还不是注册志愿者" in page.text
    stranger, _ = open_as(emulator, m, "o_nobody_at_all")
    for path in ("/m/records", "/m/orders", "/m/activities", "/m/activities/mine", "/m/bus", "/m/nearby"):
        resp = stranger.get(m + path, timeout=10)
        assert resp.status_code == 200, path
        assert "DF甲" not in resp.text and "BS甲" not in resp.text and "D20" not in resp.text, path


def test_resident_orders_timeline_cancel_and_rate(m, emulator, svc):
    apply(svc, ["console_world"])
    numbers = {status: one(svc, select(Order.number).join(Order.follower).where(
        Order.status == status, Order.sub_code.like("08%" if status == "submitted" else "05%")).order_by(Order.id))
        for status in ("submitted", "completed")}
    http, _ = open_as(emulator, m, "o_DF_res")
    listing = http.get(m + "/m/orders", timeout=10)
    mine = set(re.findall(r"/m/orders/(D[0-9-]+)", listing.text))
    assert len(mine) == 2
    done = next(n for n in mine if one(svc, select(Order.status).where(Order.number == n)) == "completed")
    detail = http.get(m + f"/m/orders/{done}", timeout=10)
    assert "志愿者接单" in detail.text and "提交评价" in detail.text
    token = csrf(detail.text)
    rated = http.post(m + f"/m/orders/{done}/rate", data={"csrf_token": token, "stars": "4", "comment": "很好"},
                      timeout=10)
    assert rated.status_code == 200 and "感谢您的评价" in rated.text
    assert one(svc, select(Order.status).where(Order.number == done)) == "rated"
    assert one(svc, select(Order.rating_comment).where(Order.number == done)) == "很好"
    again = http.post(m + f"/m/orders/{done}/rate", data={"csrf_token": token, "stars": "2"}, timeout=10)
    assert again.status_code == 409 and "服务完成后才能评价" in again.text
    assert one(svc, select(Order.rating).where(Order.number == done)) == 4
    open_ = next(n for n in mine if n != done)
    no_token = http.post(m + f"/m/orders/{open_}/cancel", data={}, timeout=10)
    assert no_token.status_code == 400
    assert one(svc, select(Order.status).where(Order.number == open_)) == "submitted"
    cancelled = http.post(m + f"/m/orders/{open_}/cancel", data={"csrf_token": token}, timeout=10)
    assert "已取消订单" in cancelled.text
    assert one(svc, select(Order.status).where(Order.number == open_)) == "cancelled"
    assert numbers  # both seeded


def test_other_peoples_orders_are_404_and_unchanged(m, emulator, svc):
    apply(svc, ["console_world"])
    theirs = one(svc, select(Order.number).join(Order.follower).where(Order.status == "submitted")
                 .where(Order.follower.has(openid="o_DF_res")))
    http, home = open_as(emulator, m, "o_BS_res")
    token = csrf(http.get(m + "/m/bus", timeout=10).text)
    assert http.get(m + f"/m/orders/{theirs}", timeout=10).status_code == 404
    for action in ("cancel", "rate", "confirm"):
        resp = http.post(m + f"/m/orders/{theirs}/{action}", data={"csrf_token": token, "stars": "1"}, timeout=10)
        assert resp.status_code == 404, action
    assert one(svc, select(Order.status).where(Order.number == theirs)) == "submitted"
    assert http.get(m + "/m/orders/%27%20OR%201=1", timeout=10).status_code == 404


def test_volunteer_signs_up_and_cancels_a_shift_others_cannot(m, emulator, svc):
    apply(svc, ["console_world"])
    http, _ = open_as(emulator, m, "o_DF_vol")
    listing = http.get(m + "/m/activities", timeout=10)
    assert "DF周末课堂" in listing.text and "BS周末课堂" in listing.text
    shift_id = one(svc, select(Shift.id).join(Shift.activity).where(Shift.activity.has(title="DF周末课堂")))
    token = csrf(listing.text)
    signed = http.post(m + f"/m/activities/shifts/{shift_id}/signup", data={"csrf_token": token}, timeout=10)
    assert "报名成功" in signed.text and "DF周末课堂" in signed.text
    signup_id = one(svc, select(SignUp.id).where(SignUp.shift_id == shift_id, SignUp.state == "signed"))
    filtered = http.get(m + "/m/activities", params={"place": "999999"}, timeout=10)
    assert "DF周末课堂" not in filtered.text
    other, _ = open_as(emulator, m, "o_BS_vol")
    other_token = csrf(other.get(m + "/m/activities", timeout=10).text)
    refused = other.post(m + f"/m/activities/signups/{signup_id}/cancel", data={"csrf_token": other_token},
                         timeout=10)
    assert refused.status_code == 404
    assert one(svc, select(SignUp.state).where(SignUp.id == signup_id)) == "signed"
    cancelled = http.post(m + f"/m/activities/signups/{signup_id}/cancel", data={"csrf_token": token}, timeout=10)
    assert "已取消报名" in cancelled.text
    assert one(svc, select(SignUp.state).where(SignUp.id == signup_id)) == "cancelled"
    # Within the district's cut-off (ATTENDANCE_CUTOFF_HOURS, 24 h) a cancellation still frees
    # the place but counts as late notice, as in the chat.
    http.post(m + f"/m/activities/shifts/{shift_id}/signup", data={"csrf_token": token}, timeout=10)
    again = one(svc, select(SignUp.id).where(SignUp.shift_id == shift_id, SignUp.state == "signed"))
    start = one(svc, select(Shift.starts_at).where(Shift.id == shift_id))
    svc.clock.advance(seconds=(start - svc.clock.now()).total_seconds() - 3600)
    late = http.post(m + f"/m/activities/signups/{again}/cancel", data={"csrf_token": token}, timeout=10)
    assert "临时请假" in late.text
    assert one(svc, select(SignUp.late_notice).where(SignUp.id == again)) is True
    assert http.post(m + "/m/activities/shifts/999999/signup", data={"csrf_token": token},
                     timeout=10).status_code == 404


def test_bus_subscribe_unsubscribe_and_nearby(m, emulator, svc):
    apply(svc, ["console_world", "bus_visits"])
    http, _ = open_as(emulator, m, "o_page_resident")
    page = http.get(m + "/m/bus", timeout=10)
    assert page.status_code == 200 and "<svg" in page.text
    community = re.search(r'<option value="(\d+)">', page.text).group(1)
    token = csrf(page.text)
    done = http.post(m + "/m/bus/subscribe", data={"csrf_token": token, "community": community}, timeout=10)
    assert "已订阅" in done.text
    twice = http.post(m + "/m/bus/subscribe", data={"csrf_token": token, "community": community}, timeout=10)
    assert "已经订阅" in twice.text
    assert one(svc, select(func.count()).select_from(BusSubscription).join(Follower)
               .where(Follower.openid == "o_page_resident")) == 1
    gone = http.post(m + "/m/bus/unsubscribe", data={"csrf_token": token, "community": community}, timeout=10)
    assert "已取消订阅" in gone.text
    assert http.post(m + "/m/bus/unsubscribe", data={"csrf_token": token, "community": community},
                     timeout=10).status_code == 404
    assert http.post(m + "/m/bus/subscribe", data={"csrf_token": token, "community": "x"},
                     timeout=10).status_code == 404
    near = http.get(m + "/m/nearby", params={"lat": "36.7", "lng": "119.1"}, timeout=10)
    assert "DF志愿服务站" in near.text and "周六 9:00-11:30" in near.text and "<circle" in near.text
    bad = http.get(m + "/m/nearby", params={"lat": "x", "lng": "1e999"}, timeout=10)
    assert bad.status_code == 200 and "请选择一个社区" in bad.text
    assert one(svc, select(func.count()).select_from(Volunteer)) > 0


def test_unknown_addresses_and_wrong_methods_get_a_page(m, emulator, svc):
    http, _ = open_as(emulator, m, "o_page_lost")
    lost = http.get(m + "/m/no-such-page", timeout=10)
    assert lost.status_code == 404 and "回到首页" in lost.text
    wrong = http.get(m + "/m/bus/subscribe", timeout=10)
    assert wrong.status_code == 405 and "回到首页" in wrong.text
    elsewhere = http.get(m + "/no-such-page", timeout=10)
    assert elsewhere.status_code == 404 and "回到首页" not in elsewhere.text


def test_passbook_lines_carry_the_balance_after_each_entry(m, emulator, svc):
    """Deposits from approved hours and a payment, two years: each year's lines, newest
    first, with 存入 / 支出 and the balance after each (rules.timebank.passbook_year)."""
    from datetime import datetime, timedelta, timezone

    from rules import timebank, volunteering
    from rules.timebank import CHINA
    from tests.seeds.volunteers import add_hours

    apply(svc, ["console_world"])
    now = datetime.now(timezone.utc)
    with svc.db.transaction() as s:
        v = s.scalar(select(Volunteer).where(Volunteer.number == "KW2026000100"))
        bank = volunteering.rules().bank
        last_year = add_hours(s, v, 120, "approved", days_ago=400, ref="pb:old")
        timebank.deposit_for_hours(s, last_year, actor="test", now=now - timedelta(days=400), rules=bank)
        for i, minutes in enumerate((60, 90)):
            r = add_hours(s, v, minutes, "approved", days_ago=3 - i, ref=f"pb:{i}")
            timebank.deposit_for_hours(s, r, actor="test", now=now - timedelta(minutes=10 - i), rules=bank)
        timebank.spend_for_order(s, v, 30, order_ref="D-PB-1", payer=v.follower, now=now)
        lines = timebank.passbook_year(s, v, now.astimezone(CHINA).year, newest_first=True)
        assert [(ln.kind, ln.minutes, ln.balance_after) for ln in lines] == [
            ("spend", -30, 240), ("deposit", 90, 270), ("deposit", 60, 180)]
    http, _ = open_as(emulator, m, "o_DF_vol")
    page = http.get(m + "/m/passbook", timeout=10).text
    rows = re.findall(r"<tr><td>[^<]+</td><td>(存入|支出)", page)
    assert rows == ["支出", "存入", "存入"] and "4小时" in page  # 240 min now
    earlier = http.get(m + f"/m/passbook?year={now.year - 1}", timeout=10).text
    assert re.findall(r"<tr><td>[^<]+</td><td>(存入|支出)", earlier) == ["存入"] and "2小时" in earlier


def test_notices_page_carries_a_consent_button_per_group_until_granted(m, emulator, svc):
    """订阅通知: one wx-open-subscribe per group of subscribe kinds, with its template ids;
    a group whose notices this follower may already be sent says so and has no button
    (nor does the bus page then)."""
    from datetime import datetime, timezone

    from rules import notices

    apply(svc, ["console_world"])
    http, page = open_as(emulator, m, "o_DF_vol", "/m/notices")
    assert page.status_code == 200 and page.text.count("<wx-open-subscribe") == 4
    bus_ids = re.search(r'<wx-open-subscribe template="([^"]+)" id="notices-1"', page.text).group(1).split(",")
    assert set(bus_ids) == {"volbot-bus-visit", "volbot-bus-change", "volbot-bus-cancel"}
    assert "<wx-open-subscribe" in http.get(m + "/m/bus", timeout=10).text
    with svc.db.transaction() as s:
        for tid in bus_ids:
            notices.record_consent(s, "o_DF_vol", tid, accepted=True, source="page", now=datetime.now(timezone.utc))
    page = http.get(m + "/m/notices", timeout=10)
    assert page.text.count("<wx-open-subscribe") == 3 and "已订阅" in page.text
    assert "<wx-open-subscribe" not in http.get(m + "/m/bus", timeout=10).text
    # Another follower's page knows nothing of it.
    other, page = open_as(emulator, m, "o_BS_vol", "/m/notices")
    assert page.text.count("<wx-open-subscribe") == 4


def test_family_links_made_and_ended_on_the_page_only_by_their_sides(m, emulator, svc):
    """时间银行家人 on the web, as in the chat: the volunteer draws a code, the family member
    enters it as themselves, a stranger can touch nothing, either side ends the link."""
    from store.models import TimeBankFamily

    apply(svc, ["console_world"])
    vol, page = open_as(emulator, m, "o_DF_vol", "/m/family")
    assert "邀请家人" in page.text
    drawn = vol.post(m + "/m/family/invite", data={"csrf_token": csrf(page.text), "relation": "母亲"}, timeout=10)
    code = re.search(r"邀请码：(\d{6})", drawn.text).group(1)
    res, page = open_as(emulator, m, "o_DF_res", "/m/family")
    assert "邀请家人" not in page.text  # not a volunteer: only the code box
    wrong = res.post(m + "/m/family/accept", data={"csrf_token": csrf(page.text), "code": "12"}, timeout=10)
    assert wrong.status_code == 400 and "6 位" in wrong.text
    accepted = res.post(m + "/m/family/accept", data={"csrf_token": csrf(page.text), "code": code}, timeout=10)
    assert "绑定成功" in accepted.text and "志愿者D**" in accepted.text
    link_id = one(svc, select(TimeBankFamily.id).where(TimeBankFamily.ended_at.is_(None)))
    stranger, page = open_as(emulator, m, "o_BS_vol", "/m/family")
    refused = stranger.post(m + f"/m/family/{link_id}/end", data={"csrf_token": csrf(page.text)}, timeout=10)
    assert refused.status_code == 404 and one(svc, select(TimeBankFamily.ended_at).where(
        TimeBankFamily.id == link_id)) is None
    page = vol.get(m + "/m/family", timeout=10)
    assert "您的母亲" in page.text
    vol.post(m + f"/m/family/{link_id}/notices", data={"csrf_token": csrf(page.text), "on": "1"}, timeout=10)
    assert one(svc, select(TimeBankFamily.notices).where(TimeBankFamily.id == link_id)) is True
    page = res.get(m + "/m/family", timeout=10)
    assert res.post(m + f"/m/family/{link_id}/notices", data={"csrf_token": csrf(page.text), "on": "0"},
                    timeout=10).status_code == 404  # the member does not choose the volunteer's notices
    ended = res.post(m + f"/m/family/{link_id}/end", data={"csrf_token": csrf(page.text)}, timeout=10)
    assert "已解除" in ended.text
    assert one(svc, select(TimeBankFamily.ended_by).where(TimeBankFamily.id == link_id)) == "member"
