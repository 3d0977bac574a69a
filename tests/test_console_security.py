"""The console's sign-in security end to end over HTTP (issue 20, parts 2 and 4): logins
throttled per (account, real client address) with growing delays, behind a trusted proxy
too; every refused login audited and counted; the TOTP second factor (enrolment by QR,
codes computed with pyotp, recovery codes once each); sessions listed, ended, idle-timed
out, and ended by a password change; the audit log's page, filters, CSV and retention."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import timedelta

import pyotp
import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select, text
from werkzeug.serving import make_server

from bot.app import create_app
from bot.cli import main
from console import throttle, twofactor
from rules import audit as audit_rules
from store.models import AuditLog, Coordinator, CoordinatorRecoveryCode
from tests.console_support import CSRF_RE, Browser, signed_in
from tests.seeds import apply
from tests.seeds.console import PASSWORD


@pytest.fixture
def logins(svc):
    apply(svc, ["console_logins"])
    return svc


@pytest.fixture(scope="module")
def behind_proxy(live_app, services):
    """The same app behind one trusted proxy (VOLBOT_TRUSTED_PROXIES=1), as behind nginx."""
    app = create_app(config=replace(services.config, trusted_proxies=1), services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def two_factor_for_the_brigade(svc, monkeypatch):
    """The production default: brigade accounts must use a second factor."""
    monkeypatch.setattr(svc, "config", replace(svc.config, console_2fa_roles="brigade"))
    return svc


def client_at(base: str, address: str) -> Browser:
    b = Browser(base)
    b.http.headers["X-Forwarded-For"] = address
    return b


def entries(svc, *where):
    with svc.db.session() as s:
        return list(s.scalars(select(AuditLog).where(*where).order_by(AuditLog.id)))


def metric(base: str, reason: str) -> float:
    text = requests.get(base + "/metrics").text
    found = re.search(rf'^volbot_console_login_failures_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


# ---- throttling ------------------------------------------------------------------------------

@pytest.fixture
def cheap_unknown_users(monkeypatch):
    """An unknown username is checked against a dummy Argon2 hash (so it takes as long as a
    known one); with the real costs, 30 of them take most of a minute on a busy CI machine.
    What is tested here is the throttling, so the dummy gets the cheapest parameters."""
    from argon2 import PasswordHasher

    from console import accounts

    monkeypatch.setattr(accounts, "_DUMMY_HASH", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x"))


def test_an_attacker_s_failures_do_not_stop_a_coordinator_elsewhere(logins, behind_proxy, base_url,
                                                                     cheap_unknown_users):
    before = metric(base_url, "password")
    attacker = client_at(behind_proxy, "203.0.113.9")
    for i in range(32):  # made-up usernames, then the coordinator's own from the attacker's address
        assert attacker.login(f"user{i:02d}", "guess guess guess").status_code == 401
    for _ in range(throttle.FREE):
        assert attacker.login("df_lead", "guess guess guess").status_code == 401
    assert attacker.login("df_lead", "guess guess guess").status_code == 401
    assert attacker.login("df_lead", PASSWORD).status_code == 429  # the attacker's pair waits
    # The coordinator at their own desk (another address behind the same proxy) is not stopped.
    assert client_at(behind_proxy, "198.51.100.7").login("df_lead").status_code == 302
    # Nor is anyone reaching the app directly (all "127.0.0.1", as behind nginx before the fix).
    direct = Browser(base_url)
    for i in range(5):
        assert direct.login(f"nobody{i}", "guess guess guess").status_code == 401
    assert Browser(base_url).login("dg_lead").status_code == 302

    failed = entries(logins, AuditLog.action == "login.failed")
    assert len(failed) == 32 + throttle.FREE + 1 + 5
    first = failed[0]
    assert (first.actor, first.ip, first.reason, first.coordinator_id) == ("user00", "203.0.113.9", "用户名不存在", None)
    on_account = [e for e in failed if e.actor == "df_lead"]
    assert {e.reason for e in on_account} == {"密码错误"} and {e.ip for e in on_account} == {"203.0.113.9"}
    assert entries(logins, AuditLog.action == "login.throttled")[0].ip == "203.0.113.9"
    assert entries(logins, AuditLog.action == "login", AuditLog.actor == "东风小队长")[0].ip == "198.51.100.7"
    assert {e.ip for e in failed[-5:]} == {"127.0.0.1"}  # with no trusted proxy the header is ignored
    assert metric(base_url, "password") - before == len(failed)
    assert metric(base_url, "throttled") >= 1


def test_the_delay_grows_with_each_failure_and_a_success_clears_it(logins, base_url):
    b = Browser(base_url)
    for _ in range(throttle.FREE):
        assert b.login("bs_lead", "guess guess guess").status_code == 401
    assert b.login("bs_lead", "guess guess guess").status_code == 401  # now 5 s to wait
    waiting = b.login("bs_lead", PASSWORD)
    assert waiting.status_code == 429 and "5 秒" in waiting.text
    logins.clock.advance(seconds=6)
    assert b.login("bs_lead", "guess guess guess").status_code == 401  # now 10 s
    assert "10 秒" in b.login("bs_lead", PASSWORD).text
    logins.clock.advance(seconds=11)
    assert b.login("bs_lead", PASSWORD).status_code == 302
    assert b.login("bs_lead", "guess guess guess").status_code == 401  # cleared: free again
    assert b.login("bs_lead", PASSWORD).status_code == 302


# ---- the second factor ------------------------------------------------------------------------

def enrol(base_url: str, svc, username: str = "admin") -> tuple[Browser, str, list[str]]:
    """Sign in, be sent to enrolment, read the secret, check the QR, confirm with a code."""
    b = Browser(base_url)
    first = b.login(username)
    assert first.status_code == 302 and first.headers["Location"].endswith("/console/")
    assert b.get("/console/orders").headers["Location"].endswith("/console/account/2fa")
    page = b.get("/console/account/2fa")
    secret = re.search(r'id="secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")
    qr = b.get("/console/account/2fa/qr.png")
    assert qr.headers["Content-Type"] == "image/png" and qr.headers["Cache-Control"] == "no-store"
    assert qr.content == twofactor.qr_png(twofactor.provisioning_uri(secret, username))
    wrong = b.post("/console/account/2fa", {"code": "000000"})
    assert wrong.status_code == 400 and "验证码不正确" in wrong.text
    done = b.post("/console/account/2fa", {"code": pyotp.TOTP(secret).at(svc.clock.timestamp())})
    assert done.status_code == 200 and "恢复码" in done.text
    codes = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", done.text)
    assert len(codes) == twofactor.RECOVERY_CODES
    assert b.get("/console/orders").status_code == 200  # enrolled: the console opens
    return b, secret, codes


def second_step(base_url: str, code: str, username: str = "admin"):
    b = Browser(base_url)
    first = b.login(username)
    assert first.status_code == 302 and "/console/login/2fa" in first.headers["Location"]
    page = b.http.get(base_url + "/console/login/2fa")
    token = CSRF_RE.search(page.text).group(1)
    return b, b.http.post(base_url + "/console/login/2fa", data={"code": code, "csrf_token": token},
                          allow_redirects=False)


def test_brigade_accounts_enrol_a_second_factor_and_then_need_it(logins, two_factor_for_the_brigade, base_url):
    svc = logins
    _b, secret, codes = enrol(base_url, svc)
    with svc.db.session() as s:
        admin = s.scalar(select(Coordinator).where(Coordinator.username == "admin"))
        stored = s.scalar(text("SELECT totp_secret FROM coordinators WHERE username = 'admin'"))
        assert admin.totp_enabled_at is not None and admin.totp_secret == secret and secret not in stored  # sealed
        hashes = set(s.scalars(select(CoordinatorRecoveryCode.code_hash)))
    assert len(hashes) == 10 and not {c.replace("-", "") for c in codes} & hashes
    totp = pyotp.TOTP(secret)

    # The code used for enrolment is spent: the same one is refused; a wrong one too.
    _, replay = second_step(base_url, totp.at(svc.clock.timestamp()))
    assert replay.status_code == 401
    svc.clock.advance(seconds=30)
    b, ok = second_step(base_url, totp.at(svc.clock.timestamp()))
    assert ok.status_code == 302 and b.get("/console/").status_code == 200
    assert entries(svc, AuditLog.action == "login")[-1].after == {"factor": "totp"}
    _, again = second_step(base_url, totp.at(svc.clock.timestamp()))
    assert again.status_code == 401  # a code works once

    # A recovery code instead of the phone, once.
    b, recovered = second_step(base_url, codes[0].upper())
    assert recovered.status_code == 302 and b.get("/console/").status_code == 200
    _, reused = second_step(base_url, codes[0])
    assert reused.status_code == 401
    refused = entries(svc, AuditLog.action == "login.failed")
    assert len(refused) == 3 and {e.reason for e in refused} == {"验证码错误"}

    # A password alone never opens a session: the 2FA page without the first step goes back.
    assert Browser(base_url).http.get(base_url + "/console/login/2fa", allow_redirects=False).status_code == 302
    # The brigade may not turn it off.
    svc.clock.advance(seconds=30)
    b.get("/console/account/2fa")
    off = b.post("/console/account/2fa/disable", {"code": totp.at(svc.clock.timestamp())})
    assert off.status_code == 302 and "不能关闭" in b.get("/console/account/2fa").text

    # An operator's reset (lost phone, no codes left): sessions end, enrolment comes back.
    done = CliRunner().invoke(main, ["console", "reset-2fa", "--username", "admin"], env=cli_env(svc))
    assert done.exit_code == 0, done.output
    assert b.get("/console/").status_code == 302
    assert Browser(base_url).login("admin").headers["Location"].endswith("/console/")


def cli_env(svc) -> dict:
    from tests.test_console_cli import env

    return env(svc)


def test_a_squad_lead_may_turn_an_optional_second_factor_on_and_off(logins, two_factor_for_the_brigade, base_url):
    svc = logins
    b = signed_in(base_url, "bs_lead")  # not required of squads: no enrolment forced
    assert b.get("/console/hours").status_code == 200
    page = b.get("/console/account/2fa")
    secret = re.search(r'id="secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")
    totp = pyotp.TOTP(secret)
    assert b.post("/console/account/2fa", {"code": totp.at(svc.clock.timestamp())}).status_code == 200
    svc.clock.advance(seconds=30)
    b.get("/console/account/2fa")
    assert b.post("/console/account/2fa/disable", {"code": "123456"}).status_code == 302
    assert "已开启两步验证" in b.get("/console/account/2fa").text
    b.post("/console/account/2fa/disable", {"code": totp.at(svc.clock.timestamp())})
    assert "已关闭两步验证" in b.get("/console/account/2fa").text
    assert [e.action for e in entries(svc, AuditLog.action.startswith("account.2fa"))] == [
        "account.2fa_enable", "account.2fa_disable"]


# ---- sessions ---------------------------------------------------------------------------------

def test_sessions_are_listed_ended_timed_out_and_ended_by_a_password_change(logins, base_url):
    svc = logins
    phone = Browser(base_url)
    phone.http.headers["User-Agent"] = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Chrome/120.0 Mobile"
    assert phone.login("df_lead").status_code == 302
    desk = Browser(base_url)
    desk.http.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    assert desk.login("df_lead").status_code == 302
    listed = desk.get("/console/account/sessions").text
    assert "Chrome · 安卓" in listed and "Chrome · Windows" in listed and "当前设备" in listed
    assert "127.0.0.1" in listed
    sid = re.search(r'name="sid" value="([0-9a-f]{64})"', listed).group(1)
    assert desk.post("/console/account/sessions/end", {"sid": sid}).status_code == 302
    assert phone.get("/console/").status_code == 302  # the phone is signed out
    assert "已结束该会话" in desk.get("/console/account/sessions").text

    # Idle: past VOLBOT_CONSOLE_IDLE_MINUTES without a request, the session is over.
    svc.clock.advance(minutes=svc.config.console_idle_minutes - 1)
    assert desk.get("/console/").status_code == 200  # used in time: it slides
    svc.clock.advance(minutes=svc.config.console_idle_minutes + 1)
    assert desk.get("/console/").status_code == 302

    # A password change ends every other session; this browser goes on with a new one.
    other, mine = signed_in(base_url, "df_lead"), signed_in(base_url, "df_lead")
    assert mine.post("/console/account/password", {"password": "wrong one!", "new_password": "a new pass phrase",
                                                   "repeat": "a new pass phrase"}).status_code == 400
    changed = mine.post("/console/account/password", {"password": PASSWORD, "new_password": "a new pass phrase",
                                                      "repeat": "a new pass phrase"})
    assert changed.status_code == 302
    assert "其他 1 处登录已退出" in mine.get("/console/account").text
    assert other.get("/console/").status_code == 302
    assert Browser(base_url).login("df_lead", "a new pass phrase").status_code == 302
    assert [e.action for e in entries(svc, AuditLog.action.in_(["session.end", "account.password"]))] == [
        "session.end", "account.password"]


# ---- the audit log ----------------------------------------------------------------------------

def table(html: str) -> str:
    return html[html.index('<table id="audit">'):html.index("</table>")]


def test_the_audit_log_in_chinese_with_filters_a_masked_export_and_failed_logins(logins, base_url):
    svc = logins
    Browser(base_url).login("13812345678", "typed a phone as the username")
    Browser(base_url).login("bs_lead", "wrong password!")
    admin = signed_in(base_url, "admin")
    page = table(admin.get("/console/audit").text)
    assert "登录失败" in page and "用户名不存在" in page and "密码错误" in page and "127.0.0.1" in page
    assert "138****5678" in page and "13812345678" not in page
    when = entries(svc, AuditLog.action == "login.failed")[0].created_at
    china = (when + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert china in page  # China time

    failed = table(admin.get("/console/audit?action=login.failed&actor=bs_").text)
    assert "bs_lead" in failed and "138****5678" not in failed and "区大队管理员" not in failed
    assert admin.get("/console/audit?action=login").text.count("<td title=\"login\">") == 1
    day = (when + timedelta(hours=8)).date()
    assert "没有记录" in admin.get(f"/console/audit?to={day - timedelta(days=1)}").text
    assert "bs_lead" in admin.get(f"/console/audit?from={day}&to={day}").text

    export = admin.get(f"/console/audit.csv?action=login.failed&from={day}")
    assert export.status_code == 200 and export.headers["Content-Type"].startswith("text/csv")
    text = export.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("时间（北京时间）,操作人,地址,操作")
    assert "138****5678" in text and "13812345678" not in text and "登录失败" in text
    assert len(text.strip().splitlines()) == 3
    exported = entries(svc, AuditLog.action == "audit.export")
    assert len(exported) == 1 and exported[0].after == {
        "filters": {"action": "login.failed", "from": day.isoformat()}, "rows": 2}
    # A squad lead sees the attempt on their own account, not the unknown username.
    own = table(signed_in(base_url, "bs_lead").get("/console/audit").text)
    assert "bs_lead" in own and "138****5678" not in own


def test_instants_in_the_before_and_after_pictures_are_shown_in_china_time():
    from console.views.audit import _dumps

    assert _dumps({"starts_at": "2030-05-04T01:00:00+00:00", "day": "2030-05-04", "n": 1}) == \
        '{"day": "2030-05-04", "n": 1, "starts_at": "2030-05-04 09:00"}'


def test_old_audit_entries_are_pruned_by_the_retention_policy(logins):
    svc = logins
    now = svc.clock.now()
    with svc.db.transaction() as s:
        for age in (400, 366, 10):
            s.add(AuditLog(actor="x", team_path="/", action="login", created_at=now - timedelta(days=age)))
    assert svc.config.audit_retention_days == 365
    assert audit_rules.prune_due(svc) == 2
    with svc.db.transaction() as s:
        s.add(AuditLog(actor="x", team_path="/", action="login", created_at=now - timedelta(days=500)))
    assert audit_rules.prune_due(svc) == 0  # at most once an hour
    done = CliRunner().invoke(main, ["console", "prune-audit"], env=cli_env(svc))
    assert done.exit_code == 0 and "removed 1 audit log entries older than 365 days" in done.output
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 1
