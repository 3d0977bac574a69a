"""`volbot chat` and `volbot demo` end to end, as subprocesses over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bot.config import Config
from bot.sender import WeChatSender
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.protocol_support import free_port

VOLBOT = Path(sys.executable).with_name("volbot")
SCRIPT = "\n".join([
    "/follow", "菜单", "帮助", "/click HELP", "/voice 菜单", "/loc 36.71 119.12 奎文区",
    "/nonsense", "", "]]><xml>", "/unfollow", "/quit", "after quit",
]) + "\n"


def env_for(tmp_path, **extra) -> dict:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "VOLBOT_INSTANCE": str(tmp_path / "instance"), "PYTHONWARNINGS": "ignore", **extra}


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_chat_against_the_live_app(base_url, tmp_path, safe):
    env = env_for(tmp_path, WECHAT_TOKEN=TEST_TOKEN, WECHAT_APPID=TEST_APPID,
                  **({"WECHAT_AES_KEY": TEST_AES_KEY} if safe else {}))
    done = subprocess.run([str(VOLBOT), "chat", "--url", base_url + "/wechat", "--openid", "o_chat_cli"],
                          input=SCRIPT, env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert ("safe (AES)" if safe else "plain") + " mode" in out
    assert out.count("机器人>") >= 6, out
    assert "欢迎关注" in out and "使用说明" in out and "请回复数字选择服务" in out
    assert "/follow [scene]" in out  # the help line for /nonsense
    assert "（无回复）" in out  # unsubscribe answers nothing
    assert "HTTP" not in out and "连接失败" not in out
    assert "after quit" not in out


def test_chat_reports_a_wrong_token_and_a_dead_server(base_url, tmp_path):
    env = env_for(tmp_path, WECHAT_TOKEN="not-the-token")
    done = subprocess.run([str(VOLBOT), "chat", "--url", base_url + "/wechat"], input="菜单\n",
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "HTTP 403" in done.stdout
    done = subprocess.run([str(VOLBOT), "chat", "--url", f"http://127.0.0.1:{free_port()}/wechat"],
                          input="菜单\n", env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "连接失败" in done.stdout



# The demo brings its own SQLite and embedded Redis whatever the test settings say: once,
# in the SQLite pass, is enough.
@pytest.mark.skipif((os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql"),
                    reason="SQLite pass only: the demo runs on its own SQLite and embedded Redis")
def test_demo_from_a_clean_instance(tmp_path):
    """`volbot demo` (what `make demo` runs; the command itself is demo/cli.py):
    migrates a fresh instance with the embedded defaults, serves, answers a follow through
    the webhook, and stops cleanly on Ctrl-C, taking its embedded Redis with it."""
    port = free_port()
    proc = subprocess.Popen([str(VOLBOT), "demo", "--port", str(port), "--emulator-port", str(free_port())],
                            env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail("demo did not come up")
        assert requests.get(base + "/readyz").json()["status"] == "ok"
        defaults = Config(instance_path=tmp_path)
        sender = WeChatSender(defaults.wechat_token, defaults.wechat_appid)
        sent = sender.post(requests.Session(), base + "/wechat", sender.event("o_demo", "subscribe"))
        assert sent.status == 200 and "欢迎关注" in sent.text
        assert (tmp_path / "instance" / "volbot.sqlite3").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode in (0, 130, -signal.SIGINT), output
    assert f"127.0.0.1:{port}" in output
    # The embedded Redis went down with the demo: nothing listens on its socket any more.
    sockets = list((tmp_path / "instance" / "redis").glob("*.socket")) + list(
        (tmp_path / "instance" / "redis").glob("*.sock"))
    for sock in sockets:
        with socket.socket(socket.AF_UNIX) as s, pytest.raises(OSError):
            s.connect(str(sock))
