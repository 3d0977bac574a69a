"""A fresh clone serves the demo quickly: copy HEAD to a temp folder, run `make demo` there
with a new venv and an empty instance folder, and time until /healthz answers.

Slow (it installs every dependency into a new venv): skipped unless VOLBOT_FRESH_DEMO=1,
or when `git` or `make` is missing. The budget is 90 seconds on the project's machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
BUDGET = float(os.environ.get("VOLBOT_FRESH_DEMO_BUDGET", "90"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("VOLBOT_FRESH_DEMO") != "1",
                       reason="slow: set VOLBOT_FRESH_DEMO=1 to time `make demo` from a fresh clone"),
    pytest.mark.skipif(not (shutil.which("git") and shutil.which("make")), reason="needs git and make"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(600)
def test_make_demo_from_a_fresh_clone_serves_within_budget(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    port, emulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VOLBOT_", "DATABASE_URL", "REDIS_URL", "WECHAT_", "VIRTUAL_ENV", "PYTEST"))}
    env.update(VOLBOT_INSTANCE=str(tmp_path / "instance"), VOLBOT_DEMO_PORT=str(port),
               VOLBOT_DEMO_EMULATOR_PORT=str(emulator_port), PYTHON=sys.executable)
    log = open(tmp_path / "demo.log", "wb")
    started = time.monotonic()
    proc = subprocess.Popen(["make", "demo", f"PYTHON={sys.executable}"], cwd=clone, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    elapsed = None
    phases: dict[str, float] = {}  # first time each milestone shows in the output
    milestones = {"installed": "volbot demo: instance folder", "seeded": "started web"}
    try:
        while time.monotonic() - started < max(BUDGET, 300):
            if proc.poll() is not None:
                break
            so_far = (tmp_path / "demo.log").read_text(errors="replace")
            for name, mark in milestones.items():
                if name not in phases and mark in so_far:
                    phases[name] = round(time.monotonic() - started, 1)
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    elapsed = time.monotonic() - started
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        if elapsed is not None:
            page = requests.get(f"http://127.0.0.1:{port}/simulator/", timeout=5)
            assert page.status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT) if proc.poll() is None else None
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "demo.log").read_text(errors="replace")
    print(f"make demo from a fresh clone: serving after {elapsed if elapsed is None else round(elapsed, 1)} s "
          f"(venv installed at {phases.get('installed')} s, district seeded at {phases.get('seeded')} s; "
          f"load average {os.getloadavg()[0]:.1f})")
    assert elapsed is not None, output[-3000:]
    assert elapsed <= BUDGET, f"serving after {elapsed:.1f} s (budget {BUDGET:.0f} s)\n{output[-2000:]}"
