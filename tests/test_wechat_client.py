"""The one WeChat API client against the emulator: one token fetch for many worker
processes, bounded recovery from a refused token, quota and permanent errors surfaced."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pushes.client import ApiClient, WeChatError
from tests.conftest import TEST_APPID

WORKER = """
import sys, time, redis
from pushes.client import ApiClient
start = float(sys.argv[3])
client = ApiClient(sys.argv[4], 'volbot-dev-secret', redis.Redis.from_url(sys.argv[1]), api_base=sys.argv[2])
time.sleep(max(0, start - time.time()))
print(client.access_token, client.fetches)
"""


def test_token_shared_by_worker_processes_is_fetched_once(emulator, svc):
    start = time.time() + 2.0  # every process asks at the same moment, on a cold Redis
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, svc.redis_url, emulator.base, str(start), TEST_APPID],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in results]
    tokens = {out.split()[0] for out, _ in results}
    fetched = sum(int(out.split()[1]) for out, _ in results)
    assert len(tokens) == 1 and fetched == 1
    assert emulator.stats()["token_fetches"] == 1


def test_refused_token_is_refreshed_once_and_the_call_retried(api, emulator):
    api.send_template("o_client_1", "t1", {"thing1": {"value": "a"}})
    emulator.admin("revoke-tokens")  # every token stale: 40001
    msgid = api.send_template("o_client_1", "t1", {"thing1": {"value": "b"}})
    assert msgid and len(emulator.messages()) == 2
    assert [c["errcode"] for c in emulator.calls("template")] == [0, 40001, 0]
    assert emulator.stats()["token_fetches"] == 2


def test_expired_token_42001_recovers(api, emulator):
    api.send_template("o_client_1", "t1", {"thing1": {"value": "a"}})
    emulator.admin("clock", advance=7300)  # our Redis copy still looks fresh; WeChat says 42001
    api.send_template("o_client_1", "t1", {"thing1": {"value": "b"}})
    assert [c["errcode"] for c in emulator.calls("template")] == [0, 42001, 0]


def test_persistent_40001_is_bounded(api, emulator):
    emulator.fault(endpoint="template", errcode=40001, times=None)
    with pytest.raises(WeChatError) as e:
        api.send_template("o_client_1", "t1", {"thing1": {"value": "a"}})
    assert e.value.code == 40001
    assert len(emulator.calls("template")) == 2  # the call and one retry, no recursion
    assert emulator.stats()["token_fetches"] <= 3


def test_quota_and_permanent_errors_are_raised_with_their_code(api, emulator):
    emulator.admin("settings", template_daily_quota=1)
    api.send_template("o_client_1", "t1", {"thing1": {"value": "a"}})
    with pytest.raises(WeChatError) as quota:
        api.send_template("o_client_2", "t1", {"thing1": {"value": "a"}})
    assert quota.value.code == 45009
    emulator.admin("settings", template_daily_quota=100)
    emulator.admin("users", openid="o_client_left", following=False)
    with pytest.raises(WeChatError) as left:
        api.send_template("o_client_left", "t1", {"thing1": {"value": "a"}})
    with pytest.raises(WeChatError) as unknown:
        api.send_template("x", "t1", {"thing1": {"value": "a"}})
    assert (left.value.code, unknown.value.code) == (43004, 40003)


def test_network_failure_is_a_transient_error(svc):
    client = ApiClient(TEST_APPID, "volbot-dev-secret", svc.redis, api_base="http://127.0.0.1:9/cgi-bin/", timeout=1)
    with pytest.raises(WeChatError) as e:
        client.send_template("o_client_1", "t1", {})
    assert e.value.code is None


def test_client_msg_id_menu_and_qr(api, emulator):
    first = api.send_template("o_client_1", "t1", {"thing1": {"value": "a"}}, client_msg_id="volbot-7")
    again = api.send_template("o_client_1", "t1", {"thing1": {"value": "a"}}, client_msg_id="volbot-7")
    assert first == again and len(emulator.messages()) == 1
    menu = {"button": [{"type": "click", "name": "志愿巴士", "key": "BUS"}]}
    api.create_menu(menu)
    assert api.get_menu()["menu"] == menu
    qr = api.create_qr_ticket("cm:KW001")
    import requests

    assert requests.get(qr["image_url"]).content.startswith(b"\x89PNG")


def test_cli_pushes_the_custom_menu_and_makes_qr_codes(emulator, svc):
    from click.testing import CliRunner

    from bot.cli import main
    from menus import custom_menu

    env = {"DATABASE_URL": svc.config.database_url or svc.config.sqlalchemy_url, "REDIS_URL": svc.redis_url,
           "VOLBOT_INSTANCE": str(svc.config.instance_path), "VOLBOT_ENV": "testing",
           "WECHAT_API_BASE": emulator.base, "WECHAT_APPID": TEST_APPID}
    out = CliRunner().invoke(main, ["menu", "push"], env=env)
    assert out.exit_code == 0, out.output
    assert emulator.state.menu == custom_menu.load()
    from store.models import Community

    with svc.db.transaction() as s:  # `volbot qr` checks the scene names a real place
        s.add(Community(code="KW001", name="测试社区"))
    out = CliRunner().invoke(main, ["qr", "cm:KW001"], env=env)
    assert out.exit_code == 0 and "showqrcode?ticket=" in out.output
    emulator.fault(endpoint="menu_create", errcode=40018)
    out = CliRunner().invoke(main, ["menu", "push"], env=env)
    assert out.exit_code != 0 and "40018" in out.output
