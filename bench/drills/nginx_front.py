"""Drill: the shipped nginx site (deploy/nginx/volbot.conf) in front of `volbot serve`.

    .venv/bin/python bench/drills/nginx_front.py [--receipts 2000] [--lanes 32] [--database private|sqlite]

Starts a private redis-server (and PostgreSQL cluster, or SQLite), `volbot serve`, and the
machine's nginx as a private instance (its own prefix folder, pid and logs; never the
system's nginx service) loading the shipped site file with only what a deployment changes
rewritten: the certificate (a throw-away self-signed one made here), the log path, the
loopback ports it listens on and the upstream's address. Then, over HTTPS through nginx:

- a chat turn (a signed text message to /wechat) answered with a real reply,
- a console page (/console/, following the login redirect) served,
- port 80 redirecting to HTTPS,
- a burst of TEMPLATESENDJOBFINISH receipts on `--lanes` kept-alive connections, all
  answered `success` and applied in SQL; the same burst straight to `volbot serve` first,
  as the baseline of the same run.

Expected: every answer 200 and nothing 系统繁忙; prints both bursts' p50/p99.
The helpers here (`self_signed`, `render_site`, `nginx_conf`) are also what
tests/test_deploy_files.py uses to run `nginx -t` on the shipped file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import BUSY_TEXT, ROOT, Stack, free_port, load_average, percentile, wait_for

SITE = ROOT / "deploy" / "nginx" / "volbot.conf"


def self_signed(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A throw-away certificate and key for `name` and 127.0.0.1 (PEM files in `folder`)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:  # the shipped file changed: say so rather than test something else
        raise ValueError(f"deploy/nginx/volbot.conf no longer contains {old!r}")
    return text.replace(old, new)


def render_site(*, cert: Path, key: str | Path, log_dir: Path, upstream: str | None = None,
                http_port: int | None = None, https_port: int | None = None, plain_port: int | None = None) -> str:
    """The shipped site with what a deployment sets rewritten: certificate, log folder and,
    when given, the upstream address and loopback ports. Nothing else is touched, except
    that `plain_port` gives the HTTPS server a plain-HTTP listener as well (for
    bench/drills/overload.py, whose sender would spend the cores on TLS)."""
    text = SITE.read_text()
    text = _replace(text, "/etc/ssl/volbot/fullchain.pem", str(cert))
    text = _replace(text, "/etc/ssl/volbot/privkey.pem", str(key))
    text = _replace(text, "/var/log/nginx/", f"{log_dir}/")
    if upstream:
        text = _replace(text, "server 127.0.0.1:8000;", f"server {upstream};")
    if http_port:
        text = _replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    if https_port:
        text = _replace(text, "listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")
    if plain_port:
        text = _replace(text, "    server_name volbot.example.org;\n    ssl_certificate",
                        f"    listen 127.0.0.1:{plain_port};\n    server_name volbot.example.org;\n    ssl_certificate")
    return text


def nginx_conf(folder: Path, site: str, worker_connections: int = 1024) -> Path:
    """A main nginx.conf in `folder` that includes `site` at http level, as Debian's
    /etc/nginx/nginx.conf includes sites-enabled/*, with its pid, logs and temp files there.
    (Debian's own has `worker_connections 768`; deploy/README.md says what to set.)"""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "volbot.conf").write_text(site)
    temps = []
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        path = folder / f"{kind}_temp"
        path.mkdir(exist_ok=True)
        path.chmod(0o777)  # nginx's workers run as an unprivileged user when started by root
        temps.append(f"    {kind}_temp_path {path};")
    conf = folder / "nginx.conf"
    conf.write_text("\n".join([
        f"pid {folder}/nginx.pid;",
        f"error_log {folder}/error.log warn;",
        "worker_processes 2;",
        f"events {{ worker_connections {worker_connections}; }}",
        "http {",
        f"    access_log {folder}/access.log;",
        *temps,
        f"    include {folder}/volbot.conf;",
        "}", ""]))
    return conf


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([nginx_binary(), "-t", "-q", "-p", str(conf.parent), "-c", str(conf),
                           "-e", str(conf.parent / "error.log")], capture_output=True, text=True)


class PrivateNginx:
    """nginx started on `conf` in the foreground of its own process (stopped by pid)."""

    def __init__(self, conf: Path):
        self.conf = conf
        self.proc = subprocess.Popen([nginx_binary(), "-p", str(conf.parent), "-c", str(conf),
                                      "-e", str(conf.parent / "error.log"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the traffic ---------------------------------------------------------------------------

def signed(sender, fields: dict) -> tuple[str, bytes]:
    params, body = sender.request(fields, encrypt=False)
    return "/wechat?" + urlencode(params), body


def chat_turn(session, base: str, sender, verify) -> tuple[int, str, str | None]:
    path, body = signed(sender, sender.text("o_nginx_chat", "菜单"))
    r = session.post(base + path, data=body, headers={"Content-Type": "text/xml"}, timeout=10, verify=verify)
    return r.status_code, r.text, r.headers.get("X-Request-Id")


def receipt_burst(base: str, planned: list[tuple[str, bytes]], lanes: int, verify) -> dict:
    """Post every receipt, `lanes` kept-alive connections at once (closed loop); latencies."""
    import requests

    lat: list[float] = []
    out: Counter = Counter()
    lock = threading.Lock()

    def lane(items):
        with requests.Session() as s:
            for path, body in items:
                started = time.perf_counter()
                try:
                    r = s.post(base + path, data=body, headers={"Content-Type": "text/xml"}, timeout=10,
                               verify=verify)
                    outcome = "success" if r.status_code == 200 and r.text == "success" else f"{r.status_code}"
                except requests.RequestException as e:
                    outcome = type(e).__name__
                with lock:
                    lat.append(time.perf_counter() - started)
                    out[outcome] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=lane, args=(planned[k::lanes],)) for k in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    return {"out": out, "took": took, "p50": percentile(lat, 50) * 1000, "p99": percentile(lat, 99) * 1000,
            "max": max(lat) * 1000 if lat else float("nan")}


def sent_pushes(stack: Stack, n: int) -> list[tuple[str, str]]:
    """`n` pushes recorded as sent (callback_burst's), each with a WeChat msgid of digits,
    as WeChat's are (the webhook drops a receipt whose MsgID cannot be ours): (openid, msgid)."""
    from sqlalchemy import String, cast, select, update

    from bench.drills.callback_burst import record_sent
    from store.models import Push

    record_sent(stack, n)
    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            s.execute(update(Push).where(Push.batch == "drill-burst").values(wechat_msgid=cast(Push.id, String))
                      .execution_options(synchronize_session=False))
            return [(openid, str(pid)) for pid, openid in
                    s.execute(select(Push.id, Push.openid).where(Push.batch == "drill-burst").order_by(Push.id))]
    finally:
        svc.close()


def receipts(sender, pushes: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    created = int(time.time())
    return [signed(sender, {**sender.event(openid, "TEMPLATESENDJOBFINISH", None), "MsgID": msgid,
                            "Status": "success", "CreateTime": created})
            for openid, msgid in pushes]


def failed_login_address(session, base: str, verify: str, stack: Stack) -> str | None:
    """Fail a console login through nginx claiming another address in X-Forwarded-For; the
    address the audit log then holds. nginx sets the header to the address it saw, and the
    app (VOLBOT_TRUSTED_PROXIES=1) trusts that one hop only, so the claim must not show."""
    import re

    from sqlalchemy import select

    from store.models import AuditLog

    page = session.get(base + "/console/login", timeout=10, verify=verify)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    session.post(base + "/console/login", data={"username": "drill", "password": "wrong password", "csrf_token": token},
                 headers={"X-Forwarded-For": "203.0.113.50"}, timeout=10, verify=verify, allow_redirects=False)
    svc = stack.services()
    try:
        with svc.db.session() as s:
            return s.scalar(select(AuditLog.ip).where(AuditLog.action == "login.failed").order_by(AuditLog.id.desc()))
    finally:
        svc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receipts", type=int, default=2000, help="receipts in each burst")
    ap.add_argument("--lanes", type=int, default=32, help="kept-alive client connections")
    ap.add_argument("--workers", type=int, default=2, help="volbot serve's gunicorn workers")
    ap.add_argument("--database", choices=("private", "sqlite"), default="private")
    args = ap.parse_args(argv)
    import requests

    from bench.drills.callback_burst import delivered
    from bench.drills.support import APPID, TOKEN
    from bot.sender import WeChatSender

    if not nginx_binary():
        print("drill: nginx is not installed (apt-get install nginx); RESULT: FAIL")
        return 1
    version = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()
    print(f"drill: {version} in front of volbot serve ({args.workers} workers); a chat turn, a console page, "
          f"2 x {args.receipts} receipts on {args.lanes} connections; {load_average()}")
    with Stack("drill-nginx", postgres=args.database) as stack:
        stack.create_schema()
        pushes = sent_pushes(stack, 2 * args.receipts)
        url = stack.serve(workers=args.workers, VOLBOT_TRUSTED_PROXIES="1")  # nginx is the one proxy
        folder = stack.folder / "nginx"
        cert, key = self_signed(folder / "tls")
        http_port, https_port = free_port(), free_port()
        conf = nginx_conf(folder, render_site(cert=cert, key=key, log_dir=folder, upstream=f"127.0.0.1:{stack.web_port}",
                                              http_port=http_port, https_port=https_port))
        checked = nginx_test(conf)
        if checked.returncode != 0:
            print(f"nginx -t refused the site:\n{checked.stderr}RESULT: FAIL")
            return 1
        nginx = PrivateNginx(conf)
        base = f"https://127.0.0.1:{https_port}"
        try:
            wait_for(lambda: requests.get(base + "/healthz", verify=str(cert), timeout=2).status_code == 200,
                     30, "nginx")
            sender = WeChatSender(TOKEN, APPID)
            with requests.Session() as s:  # (verify per request: a session's is overridden by the environment's)
                status, text, rid = chat_turn(s, base, sender, str(cert))
                chat_ok = status == 200 and "<Content>" in text and BUSY_TEXT not in text and bool(rid)
                print(f"chat turn through nginx: HTTP {status}, {'a reply' if '<Content>' in text else 'no reply'}"
                      f"{' (系统繁忙!)' if BUSY_TEXT in text else ''}, X-Request-Id {rid or 'missing'}")
                page = s.get(base + "/console/", timeout=10, verify=str(cert))
                console_ok = page.status_code == 200 and "<html" in page.text.lower()
                print(f"console page through nginx: HTTP {page.status_code} at {page.url.replace(base, '')} "
                      f"({len(page.content)} bytes)")
                address = failed_login_address(s, base, str(cert), stack)
                address_ok = address == "127.0.0.1"
                print(f"a failed console login with a forged X-Forwarded-For is audited from {address} "
                      "(the address nginx saw)")
            redirect = requests.get(f"http://127.0.0.1:{http_port}/wechat", allow_redirects=False, timeout=5)
            redirect_ok = redirect.status_code == 301 and redirect.headers.get("Location", "").startswith("https://")
            print(f"port 80: HTTP {redirect.status_code} → {redirect.headers.get('Location')}")
            stack.spawn("scheduler", "--interval", "1")  # applies the queued receipts, as in production
            with requests.Session() as warm:  # both paths warmed alike before they are timed
                for target, verify in ((url, True), (base, str(cert))):
                    for _ in range(10):
                        chat_turn(warm, target, sender, verify)
            direct = receipt_burst(url, receipts(sender, pushes[:args.receipts]), args.lanes, True)
            front = receipt_burst(base, receipts(sender, pushes[args.receipts:]), args.lanes, str(cert))
        finally:
            nginx.stop()
        answered = time.monotonic()
        states = delivered(stack)
        while states["delivered"] < 2 * args.receipts and time.monotonic() - answered < 30:
            time.sleep(0.3)
            states = delivered(stack)
        for name, r in (("straight to volbot serve (HTTP)", direct), ("through nginx (HTTPS)", front)):
            print(f"receipts {name}: {sum(r['out'].values())} in {r['took']:.2f} s "
                  f"({sum(r['out'].values()) / r['took']:.0f}/s); answers {dict(r['out'])}; latency p50 "
                  f"{r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.0f} ms")
        print(f"SQL: {dict(states)}")
        errors = (stack.folder / "nginx" / "error.log").read_text(errors="replace").strip()
        if errors:
            print("nginx error.log:\n" + errors[-1500:])
        burst_ok = front["out"]["success"] == args.receipts and direct["out"]["success"] == args.receipts
        ok = chat_ok and console_ok and address_ok and redirect_ok and burst_ok and states["delivered"] == 2 * args.receipts
        print(f"{load_average()}; RESULT: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
