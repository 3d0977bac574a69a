"""The README's guided tour, played in headless Chromium against a real `volbot demo`
(web + console + simulator, queue worker, scheduler, WeChat API emulator, embedded Redis)
on a fresh instance folder. Each step saves a screenshot under artifacts/tour/.

Tour: a resident orders a service in the simulator for their home → the order is offered
to the neighbour volunteer of the resident's community squad, who accepts, serves and
finishes → the neighbour checks their hours (the order's wait for approval) → the street's
coordinator approves them in the console and the neighbour's time-bank balance rises by
the approved minutes → a bus visit is scheduled for the resident's community and its
subscribe notice arrives in the resident's chat.

Skipped with a reason when /usr/bin/chromium or Python Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from rules.volunteering import hours_text
from tests.browser.support import NEEDS_CHROMIUM, launch, sync_api
from tests.processes import stop_group

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "tour"
RESIDENT = "o_demo_res_001"
NEIGHBOUR = "o_demo_vol_002"  # lives near the resident, every skill: the order is offered to them

pytestmark = [
    NEEDS_CHROMIUM,
    pytest.mark.timeout(600),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def volbot(*args: str) -> list[str]:
    return [sys.executable, "-c", "from bot.cli import main; main()", *args]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A running `volbot demo --reset` on free loopback ports and a fresh instance folder."""
    instance = tmp_path_factory.mktemp("demo-instance")
    port, emulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VOLBOT_", "DATABASE_URL", "REDIS_URL", "WECHAT_", "TEST_"))}
    env.update(VOLBOT_INSTANCE=str(instance), VOLBOT_ENV="demo")
    log_path = instance / "demo.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(volbot("demo", "--reset", "--port", str(port), "--emulator-port", str(emulator_port)),
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while "Press Ctrl-C" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("volbot demo did not start:\n" + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    yield {"web": f"http://127.0.0.1:{port}", "instance": instance, "log": log_path}
    stop_group(proc)
    log.close()


@pytest.fixture(scope="module")
def browser():
    shutil.rmtree(SHOTS, ignore_errors=True)  # only this run's steps
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


class Phone:
    """The simulator page, driven like a person would."""

    def __init__(self, page, web: str):
        self.page = page
        self.web = web
        self.step = 0

    def shot(self, name: str, phone_only: bool = False) -> None:
        """A screenshot of the step; `phone_only` also saves the phone alone (README size)."""
        self.step += 1
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{self.step:02d}-{name}.png"))
        if phone_only:
            self.page.locator(".phone").screenshot(path=str(SHOTS / f"phone-{name}.png"))

    def open(self, openid: str) -> None:
        self.page.goto(self.web + "/simulator/")
        self.page.wait_for_selector("body[data-ready=yes]")
        self.page.select_option("#persona-select", openid)
        self.page.wait_for_timeout(200)

    def bot_texts(self) -> list[str]:
        return self.page.locator(".msg.bot").all_inner_texts()

    def last_reply(self) -> str:
        texts = self.bot_texts()
        return texts[-1] if texts else ""

    def _sent(self, action) -> str:
        with self.page.expect_response(lambda r: r.url.endswith("/simulator/api/send")) as resp:
            action()
        data = resp.value.json()
        assert data["ok"], data
        self.page.wait_for_timeout(150)
        return data.get("text") or ""

    def say(self, words: str) -> str:
        if self.page.locator("#keyboard").is_hidden():
            self.page.click("#mode-toggle")
        self.page.fill("#msg-input", words)
        return self._sent(lambda: self.page.click("#send-btn"))

    def tap_menu(self, top: str, item: str) -> str:
        if self.page.locator("#menu").is_hidden():
            self.page.click("#mode-toggle")
        self.page.click(f".menu-btn:text-is('{top}')")
        return self._sent(lambda: self.page.click(f".sub-btn:text-is('{item}')"))

    def wait_for_push(self, text: str, timeout_ms: int = 40000) -> str:
        """The first push card (template or notice) that mentions `text` (sent by the worker through the
        WeChat API emulator and polled by the page)."""
        card = self.page.locator(".push-card", has_text=text).first
        card.wait_for(timeout=timeout_ms)
        return card.inner_text()

    def send_location_on_map(self, place: str) -> str:
        if self.page.locator("#keyboard").is_hidden():
            self.page.click("#mode-toggle")
        self.page.click("#plus-btn")
        self.page.click("#loc-btn")
        self.page.select_option("#place-select", label=place)
        self.shot("resident-picks-a-location")
        return self._sent(lambda: self.page.click("#map-send"))


def order_a_service(phone: Phone, home: str) -> str:
    """Answer the order form as a resident would, whatever order its questions come in:
    the address is their own community's station (`home` is the community's name)."""
    reply = phone.tap_menu("居民服务", "预约志愿服务")
    phone.shot("resident-opens-the-needs-menu")
    for _ in range(14):
        if "订单号" in reply:
            return reply
        if "请核对" in reply:
            phone.shot("resident-checks-the-summary")
            assert f"所在社区：{home}" in reply, reply
            reply = phone.say("确认")
        elif "已收到位置" in reply:
            reply = phone.say("3号楼2单元501")
        elif "服务地址" in reply:
            reply = phone.send_location_on_map(f"{home}党群服务中心志愿服务站")
        elif "哪个社区" in reply:  # nearest first: their own
            assert re.search(rf"1\S*\s*{home}", reply), reply
            reply = phone.say("1")
        elif "什么时间" in reply:
            reply = phone.say("1")
        elif "联系电话" in reply:
            reply = phone.say("13800138000")
        elif "需要什么帮助" in reply:
            reply = phone.say("老人独居，想请志愿者上门陪伴聊天、读读报纸")
        else:  # a list of categories or services: the first one
            reply = phone.say("1")
    raise AssertionError("the order form did not finish: " + reply)


def query(instance: Path, sql: str, **params):
    """One value from the demo's database (what the tour's story says, checked at the source)."""
    engine = create_engine(f"sqlite:///{instance / 'volbot.sqlite3'}")
    with engine.connect() as conn:
        value = conn.execute(text(sql), params).scalar_one()
    engine.dispose()
    return value


def resident_community(instance: Path) -> str:
    """The name of the community the demo resident lives in (and subscribed the bus of)."""
    return query(instance, "SELECT c.name FROM followers f JOIN communities c ON c.id = f.community_id "
                           "WHERE f.openid = :o", o=RESIDENT)


VOLUNTEER_OF = "SELECT v.id FROM volunteers v JOIN followers f ON f.id = v.follower_id WHERE f.openid = :o"


def balance(instance: Path, openid: str) -> int:
    """A volunteer's time-bank balance in minutes."""
    return query(instance, f"SELECT COALESCE(MAX(a.balance), 0) FROM time_accounts a WHERE a.volunteer_id = ({VOLUNTEER_OF})",
                 o=openid)


def order_hours(instance: Path, openid: str, state: str) -> int:
    """Minutes of a volunteer's order hour records in `state`."""
    return query(instance, "SELECT COALESCE(SUM(minutes), 0) FROM hour_records WHERE source = 'order' "
                           f"AND state = :s AND volunteer_id = ({VOLUNTEER_OF})", s=state, o=openid)


def balance_line(reply: str) -> str:
    return re.search(r"时间银行余额：\S+", reply).group(0)


def test_guided_tour(demo, browser):
    page = browser.new_page(viewport={"width": 760, "height": 790})
    phone = Phone(page, demo["web"])

    # 1. A resident orders a service from the needs menu.
    home = resident_community(demo["instance"])
    phone.open(RESIDENT)
    phone.shot("resident-persona")
    confirmation = order_a_service(phone, home)
    assert "预约已提交" in confirmation
    phone.shot("resident-gets-an-order-number", phone_only=True)

    # 2. The order is offered to the neighbour volunteer by push; they accept, serve, finish.
    number = re.search(r"订单号：(\S+)", confirmation).group(1)
    phone.open(NEIGHBOUR)
    offer = phone.wait_for_push(number)
    assert "接单" in offer and home in offer, offer
    offered_to = query(demo["instance"], "SELECT f.openid FROM dispatch_offers o JOIN orders d ON d.id = o.order_id "
                                         "JOIN volunteers v ON v.id = o.volunteer_id JOIN followers f ON f.id = v.follower_id "
                                         "WHERE d.number = :n ORDER BY o.id LIMIT 1", n=number)
    assert offered_to == NEIGHBOUR
    phone.shot("volunteer-gets-the-order-offer")
    accepted = phone.say("接单")
    assert number in accepted, accepted
    phone.shot("volunteer-accepts", phone_only=True)
    phone.say("开始服务")
    asked = phone.say("完成服务")
    assert "多少分钟" in asked, asked
    phone.say("90")
    phone.shot("volunteer-finishes-the-service")

    # The resident confirms and rates; the volunteer's hours wait for approval.
    phone.open(RESIDENT)
    confirmed = phone.say("确认完成")
    assert "服务完成" in confirmed, confirmed
    phone.say("5")
    phone.say("志愿者很耐心，谢谢！")
    phone.shot("resident-confirms-and-rates")

    # 3. The neighbour checks hours, star level and time bank: the order's wait for approval.
    phone.open(NEIGHBOUR)
    hours = phone.tap_menu("志愿者", "我的时长")
    assert "星" in hours and "待审核" in hours and "时间银行" in hours, hours
    phone.shot("volunteer-checks-hours-and-star", phone_only=True)
    claimed = order_hours(demo["instance"], NEIGHBOUR, "pending")
    before = balance(demo["instance"], NEIGHBOUR)
    assert claimed > 0 and balance_line(hours) == f"时间银行余额：{hours_text(before)}", hours

    # 4. The street's coordinator approves the order's hours in the console.
    console = browser.new_page(viewport={"width": 1100, "height": 790})
    shots = Phone(console, demo["web"])
    shots.step = phone.step
    log_in(console, demo["web"], "demo_street")
    console.goto(demo["web"] + "/console/hours?source=order")
    rows = console.locator("input[name=ids]")
    rows.first.wait_for(timeout=10000)
    assert rows.count() == 1, console.locator("main").inner_text()[:1500]
    console.locator("input[name=ids]").first.check()
    shots.shot("coordinator-selects-pending-hours")
    console.click("button[name=decision][value=approve]")
    console.wait_for_selector(".flash")
    assert "已通过 1 条记录" in console.locator(".flash").first.inner_text()
    shots.shot("coordinator-approved-hours")
    # ... and the neighbour's time-bank balance rose by the approved minutes.
    approved = order_hours(demo["instance"], NEIGHBOUR, "approved")
    assert approved == claimed and balance(demo["instance"], NEIGHBOUR) == before + approved
    phone.step = shots.step
    after = phone.tap_menu("志愿者", "我的时长")
    assert balance_line(after) == f"时间银行余额：{hours_text(before + approved)}" != balance_line(hours), after
    phone.shot("volunteer-sees-the-balance-rise", phone_only=True)
    shots.step = phone.step

    # 5. The brigade schedules a bus visit to the resident's community in the console;
    #    the worker sends the push through the emulator and it arrives in the chat.
    console.context.clear_cookies()
    log_in(console, demo["web"], "demo_brigade")
    console.goto(demo["web"] + "/console/bus")
    day = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=2)).date().isoformat()
    form = console.locator("#schedule")
    form.locator("select[name=community_id]").select_option(label=home)
    form.locator("input[name=day]").fill(day)
    form.locator("input[name=start]").fill("09:00")
    form.locator("input[name=end]").fill("11:00")
    form.locator("input[name=place]").fill("社区文化广场")
    for box in form.locator("input[name=services]").all()[:3]:
        box.check()
    shots.shot("coordinator-schedules-a-bus-visit")
    form.locator("button[type=submit]").click()
    console.wait_for_load_state()
    shots.shot("coordinator-sees-the-fan-out")
    phone.step = shots.step
    phone.open(RESIDENT)
    # Wait for the bus card itself: the resident's order pushes are already in the chat.
    phone.wait_for_push("志愿巴士")
    phone.shot("resident-receives-the-bus-push", phone_only=True)
    page.close()
    console.close()


def log_in(page, web: str, username: str) -> None:
    page.goto(web + "/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "demo-pass-2026")
    page.click("button[type=submit]")
    page.wait_for_load_state()
