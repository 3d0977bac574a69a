"""Any `volbot` command typed beside a running demo leaves the demo working (issue 28.10).

A real `volbot demo` runs in a folder of its own (SQLite and the embedded Redis under
`./instance`); then every top-level command runs there as a person would type it, in a new
process and without exporting VOLBOT_INSTANCE or REDIS_URL; after each one the demo must
still reach its Redis (`/readyz`), and at the end a chat turn (`volbot chat`) gets a real
answer. Before the fix the first command to finish stopped the demo's Redis (its socket
went away and every turn answered 系统繁忙).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from bot.cli import main
from demo.supervisor import volbot_argv
from tests.processes import stop_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


def one_shot(port: int, web: int) -> dict[str, list[str]]:
    """An invocation of each top-level command that ends by itself (a refusal counts)."""
    return {
        "activity": ["activity", "close-overdue"],
        "backup": ["backup"],
        "bus": ["bus", "list"],
        "console": ["console", "deactivate", "--username", "nobody-here"],
        "coordinator": ["coordinator", "add", "--team", "NO-SUCH", "--openid", "o_nobody", "--name", "某人"],
        "db": ["db", "upgrade"],
        "demo": ["demo", "--port", str(free_port()), "--emulator-port", str(free_port())],
        "hours": ["hours", "list", "--limit", "3"],
        "import": ["import", "teams", "empty.csv"],
        "menu": ["menu", "show"],
        "order": ["order", "due"],
        "pattern": ["pattern", "list"],
        "pii": ["pii", "status"],
        "project": ["project", "add", "--name", "旁边的项目", "--team", "NO-SUCH"],
        "push": ["push", "status"],
        "qr": ["qr", "--scene", "cm:NO-SUCH", "--local", "--out", "qr.png"],
        "reports": ["reports", "audit"],
        "restore": ["restore", "no-such-backup.sqlite3"],
        "run": ["run", "--port", str(web)],  # the demo's port: refused, after building services
        "scheduler": ["scheduler", "--once"],
        "timebank": ["timebank", "audit"],
        "volunteer": ["volunteer", "approve", "999999"],
        "worker": ["worker", "--burst"],
    }


# Commands that serve until stopped: started on a free port, stopped with TERM once ready.
SERVERS = {
    "serve": (["serve", "--bind", "127.0.0.1:{port}", "--workers", "1"], "/healthz"),
    "wechat-emulator": (["wechat-emulator", "--port", "{port}"], "/_emulator/stats"),
}


# The demo brings its own SQLite and embedded Redis whatever the test settings say: once,
# in the SQLite pass, is enough.
@pytest.mark.skipif((os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql"),
                    reason="SQLite pass only: the demo runs on its own SQLite and embedded Redis")
@pytest.mark.timeout(420)
def test_every_command_beside_the_demo_leaves_it_working(tmp_path):
    web, emulator = free_port(), free_port()
    # A person's shell in the checkout: none of the demo's settings exported.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VOLBOT_", "DATABASE_URL", "REDIS_URL", "WECHAT_", "PYTEST", "TEST_"))}
    (tmp_path / "empty.csv").write_text("")
    demo_log = open(tmp_path / "demo.log", "wb")
    demo = subprocess.Popen(volbot_argv("demo", "--port", str(web), "--emulator-port", str(emulator)),
                            cwd=tmp_path, env=env, stdout=demo_log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{web}"
    log = lambda: (tmp_path / "demo.log").read_text(errors="replace")[-3000:]  # noqa: E731 - read afresh at each failure message
    try:
        assert wait_for(base + "/readyz", 180, demo), log()
        marker = tmp_path / "instance" / "redis" / "server.json"
        redis_socket = json.loads(marker.read_text())["socket"] if marker.exists() else None

        commands = one_shot(free_port(), web)
        assert set(commands) | set(SERVERS) | {"chat"} == set(main.commands), \
            "a new command must be tried beside the demo too"
        for name, args in commands.items():
            done = subprocess.run(volbot_argv(*args), cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=90, stdin=subprocess.DEVNULL)
            output = done.stdout + done.stderr
            assert "Traceback" not in output, f"volbot {' '.join(args)}:\n{output[-2000:]}"
            assert requests.get(base + "/readyz", timeout=3).status_code == 200, \
                f"the demo lost its Redis after `volbot {' '.join(args)}`:\n{output[-1500:]}"
            if name == "demo":
                assert done.returncode == 2 and "already running" in output, output
        for name, (args, ready) in SERVERS.items():
            port = free_port()
            argv = volbot_argv(*[a.format(port=port) for a in args])
            server = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True)
            try:
                assert wait_for(f"http://127.0.0.1:{port}{ready}", 60, server), server.communicate()[0][-2000:]
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                output = server.communicate(timeout=30)[0].decode(errors="replace")
            assert "Traceback" not in output, f"volbot {name}:\n{output[-2000:]}"
            assert requests.get(base + "/readyz", timeout=3).status_code == 200, \
                f"the demo lost its Redis after `volbot {name}` stopped:\n{output[-1500:]}"

        chat = subprocess.run(volbot_argv("chat", "--url", base + "/wechat", "--openid", "o_beside_demo"),
                              cwd=tmp_path, env=env, input="你好\n/quit\n", capture_output=True,
                              text=True, timeout=60)
        assert "机器人>" in chat.stdout and "系统繁忙" not in chat.stdout, chat.stdout + chat.stderr
        assert demo.poll() is None, log()
        assert json.loads(marker.read_text())["socket"] == redis_socket  # the same server all along
    finally:
        stop_group(demo)
        demo_log.close()
    # The demo started the server, so its stop took it away.
    assert demo.returncode == 0, log()
    assert redis_socket and not Path(redis_socket).exists() and not marker.exists(), log()
