"""The deploy files work as shipped (issue 28.8): `nginx -t` loads deploy/nginx/volbot.conf
with a throw-away certificate on the machine's nginx (Debian 12: 1.22), `systemd-analyze
verify` accepts the units, and the drill (bench/drills/nginx_front.py) runs a chat turn, a
console page and a receipt burst through nginx in front of `volbot serve`, at tiny size.
Each is skipped, with the reason, only where its program is not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.drills.nginx_front import nginx_binary, nginx_conf, nginx_test, render_site, self_signed

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (apt-get install nginx)")


@needs_nginx
def test_nginx_loads_the_shipped_site(tmp_path):
    cert, key = self_signed(tmp_path / "tls")
    conf = nginx_conf(tmp_path / "nginx", render_site(cert=cert, key=key, log_dir=tmp_path))
    checked = nginx_test(conf)
    assert checked.returncode == 0, checked.stderr
    # Clean: no warning, but the one nginx >= 1.25.1 gives for "listen ... http2" (still
    # honoured there; the site's header says what to change on such a version).
    warnings = [line for line in checked.stderr.splitlines()
                if "[warn]" in line and '"listen ... http2" directive is deprecated' not in line]
    assert not warnings, checked.stderr


@needs_nginx
def test_the_check_catches_a_broken_site(tmp_path):
    cert, key = self_signed(tmp_path / "tls")
    broken = render_site(cert=cert, key=key, log_dir=tmp_path).replace("4800ms", "4.8s")
    checked = nginx_test(nginx_conf(tmp_path / "nginx", broken))
    assert checked.returncode != 0 and "proxy_read_timeout" in checked.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    assert {u.name for u in UNITS} == {"volbot-web.service", "volbot-worker@.service", "volbot-scheduler.service"}
    volbot = Path(sys.executable).parent / "volbot"
    for unit in UNITS:  # the install path pointed at this checkout's venv: verify checks ExecStart exists
        text = unit.read_text()
        assert "/opt/volbot/.venv/bin/volbot" in text
        (tmp_path / unit.name).write_text(text.replace("/opt/volbot/.venv/bin/volbot", str(volbot)))
    done = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / u.name) for u in UNITS]],
                          capture_output=True, text=True)
    # Any line is a complaint (an unknown key is only "ignoring" with status 0).
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


@needs_nginx
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
@pytest.mark.timeout(300)
def test_the_nginx_drill_passes_at_tiny_size():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "drills" / "nginx_front.py"), "--receipts", "20",
                           "--lanes", "4", "--database", "sqlite"], cwd=ROOT, capture_output=True, text=True,
                          timeout=280)
    assert "RESULT: PASS" in done.stdout and done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "chat turn through nginx: HTTP 200, a reply" in done.stdout
    assert "forged X-Forwarded-For is audited from 127.0.0.1" in done.stdout
