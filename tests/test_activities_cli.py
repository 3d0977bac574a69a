"""`volbot` commands of the activities domain: import places and activities, add projects and
activities, close forgotten check-outs, and render QR codes (locally and through the
WeChat API emulator)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import click
import pytest
import segno
from click.testing import CliRunner
from sqlalchemy import func, select

import bot.cli  # noqa: F401 - the CLI first: its modules import it
from bot.commands import activities as commands
from rules import activities as acts
from store.models import Activity, Attendance, Place, Project
from tests import seeds
from tests.conftest import TEST_APPID
from tests.seeds.activities import volunteer


@pytest.fixture
def volbot():
    """A `volbot` group holding only this domain's commands (so no other module's command
    of the same name can stand in for them)."""
    group = click.Group("volbot")
    commands.register(group)
    return group


@pytest.fixture
def env(svc):
    return {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
            "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing"}


def run(volbot, env, *args):
    result = CliRunner().invoke(volbot, list(args), env=env)
    return result.exit_code, result.output


def png_of(content: str, scale: int = 10) -> bytes:
    out = io.BytesIO()
    segno.make(content, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def test_import_places_and_activities_then_add_by_hand(svc, volbot, env, tmp_path):
    seeds.apply(svc, ["vol_teams"])
    places_csv = tmp_path / "places.csv"
    places_csv.write_text("code,name,kind,community,lat,lng,opening_times,services\n"
                          "S1,东风站,station,东风社区,36.708,119.12,周一至周五,理发、义诊\n"
                          "P1,文化广场,plaza,,36.715,119.13,每周六,文艺演出\n", encoding="utf-8")
    code, out = run(volbot, env, "import", "places", str(places_csv))
    assert code == 0 and "2 created, 0 updated" in out, out
    code, out = run(volbot, env, "project", "add", "--name", "清洁家园", "--team", "VT-DF", "--description", "环境整治")
    assert code == 0 and "project 1: 清洁家园 (东风社区小队)" in out, out
    assert run(volbot, env, "project", "add", "--name", "x", "--team", "NOPE")[0] != 0
    acts_csv = tmp_path / "activities.csv"
    acts_csv.write_text("project,title,place,start,end,shift,capacity,skills\n"
                        "清洁家园,楼道清理,S1,2026-12-05 09:00,10:30,上午,4,\n"
                        "清洁家园,楼道清理,S1,2026-12-05 14:00,16:00,下午,6,\n", encoding="utf-8")
    code, out = run(volbot, env, "import", "activities", str(acts_csv))
    assert code == 0 and "activities: 1 created" in out and "act:1  楼道清理  (2 shift(s))" in out, out
    code, out = run(volbot, env, "activity", "add", "--project", "1", "--title", "广场义诊", "--place", "P1",
                    "--shift", "2026-12-06 09:00-11:00 上午场", "--shift", "2026-12-06 14:00-16:00",
                    "--capacity", "3", "--skills", "04,05")
    assert code == 0 and "activity 2: 广场义诊, scene act:2" in out and "12月6日（周日）09:00-11:00 上午场 ×3" in out, out
    code, out = run(volbot, env, "activity", "add", "--project", "1", "--title", "x", "--shift", "明天上午")
    assert code != 0 and "shift" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("project,title,place,start,end\n清洁家园,x,NOPE,2026-12-05 09:00,10:00\n", encoding="utf-8")
    code, out = run(volbot, env, "import", "activities", str(bad))
    assert code == 1 and "row 1: unknown place 'NOPE'" in out, out
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Activity)) == 2
        a2 = s.get(Activity, 2)
        assert a2.skills == ["04", "05"] and a2.lat == 36.715 and [sh.capacity for sh in a2.shifts] == [3, 3]
        assert s.scalar(select(func.count()).select_from(Project)) == 1
        assert s.scalar(select(Place.services).where(Place.code == "S1")) == ["理发", "义诊"]


def test_close_overdue_command(svc, volbot, env):
    seeds.apply(svc, ["act_base", "act_on_shift"])
    with svc.db.transaction() as s:
        acts.check(s, volunteer(s, "o_act_a"), datetime.now(timezone.utc), activity_id=2)
    code, out = run(volbot, env, "activity", "close-overdue")
    assert code == 0 and "closed 0" in out
    # The command runs on the real clock: move the shift and the check-in 3 hours back.
    with svc.db.transaction() as s:
        att = s.scalar(select(Attendance))
        att.shift.starts_at -= timedelta(hours=3)
        att.shift.ends_at -= timedelta(hours=3)
        att.checked_in_at -= timedelta(hours=3)
    code, out = run(volbot, env, "activity", "close-overdue")
    assert code == 0 and "closed 1 forgotten" in out, out
    with svc.db.transaction() as s:
        assert s.scalar(select(Attendance.flags)) == ["no_checkout"]


def test_qr_local_png_encodes_the_scene(svc, volbot, env, tmp_path):
    seeds.apply(svc, ["act_base"])
    out_file = tmp_path / "act2.png"
    code, out = run(volbot, env, "qr", "--scene", "act:2", "--out", str(out_file))
    assert code == 0 and "act:2 (activity 四点半学校), local" in out, out
    assert out_file.read_bytes() == png_of("act:2")
    code, out = run(volbot, env, "qr", "st:1", "--out", str(tmp_path / "st1.png"), "--scale", "4")
    assert code == 0 and (tmp_path / "st1.png").read_bytes() == png_of("st:1", 4)
    assert run(volbot, env, "qr", "--scene", "act:99", "--out", str(tmp_path / "x.png"))[1].count("does not exist")
    assert run(volbot, env, "qr", "--scene", "zz:1", "--out", str(tmp_path / "x.png"))[0] != 0
    assert run(volbot, env, "qr", "--scene", "act:2")[0] != 0  # no API: only a PNG can be made


def test_qr_from_a_wechat_ticket(svc, volbot, env, tmp_path, emulator):
    seeds.apply(svc, ["act_base"])
    env = dict(env, WECHAT_API_BASE=emulator.base, WECHAT_APPID=TEST_APPID, WECHAT_SECRET=svc.config.wechat_secret)
    out_file = tmp_path / "st1.png"
    code, out = run(volbot, env, "qr", "--scene", "st:1", "--out", str(out_file))
    assert code == 0 and "WeChat parametric QR ticket" in out, out
    tickets = emulator.state.tickets
    (ticket,) = [t for t in tickets.values() if t["scene"] == "st:1"]
    assert ticket["expire_seconds"] is None  # permanent, for print
    assert out_file.read_bytes() == png_of(ticket["url"])
    code, out = run(volbot, env, "qr", "--scene", "act:1", "--temporary")
    assert code == 0 and "showqrcode?ticket=" in out, out


def test_pattern_add_list_materialise_and_callout(volbot, env, svc):
    from store.models import Callout, Shift, ShiftPattern
    from store.models.attendance import CalloutOptIn

    seeds.apply(svc, ["act_base"])
    code, out = run(volbot, env, "pattern", "add", "--project", "东风社区志愿服务", "--title", "广场值守", "--place", "ACT-PZ1",
              "--weekdays", "6,7", "--time", "09:00-11:30", "--from", "2026-01-01", "--capacity", "4", "--min", "2",
              "--weeks", "2")
    assert code == 0, out
    assert out.startswith("pattern 1: 广场值守")
    made = out.count("  shift ")
    assert 2 <= made <= 4  # two weekends (fewer only over a holiday or today's shift already begun)
    assert "made 0 shift(s)" in run(volbot, env, "pattern", "materialise")[1]
    assert "每周周六、周日 09:00-11:30" in run(volbot, env, "pattern", "list")[1]
    with svc.db.transaction() as s:
        assert s.scalar(select(ShiftPattern.min_staff)) == 2
        a = volunteer(s, "o_act_a")
        s.add(CalloutOptIn(volunteer_id=a.id, opted_in_at=datetime.now(timezone.utc)))
        shift_id = s.scalar(select(func.min(Shift.id)).join(Shift.activity).where(Activity.pattern_id == 1))
    assert "asked 1 volunteer(s)" in run(volbot, env, "activity", "callout", "--shift", str(shift_id))[1]
    with svc.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Callout)) == 1
