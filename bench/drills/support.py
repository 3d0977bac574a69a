"""What the fault drills and bench/load.py start: private backing services on loopback
(a redis-server, a PostgreSQL cluster in a temp folder — never the machine's shared ones,
which other people use), `volbot serve` / `worker` / `scheduler` as real processes, and a
client that talks to the webhook exactly as WeChat does.

Every process started here is stopped by `Stack.close()` (or its `with` block), by pid.
"""

from __future__ import annotations

import glob
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

from bot.config import child_environ

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
TOKEN = "volbot-bench-token"  # the same as bench/webhook.py, whose bare app bench/load.py reuses
APPID = "wx49f0ab532d5d035a"
BUSY_TEXT = "系统繁忙"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on {os.cpu_count()} cores"


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


class PrivateRedis:
    """A redis-server of our own on a free loopback port (no persistence)."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_for(lambda: redis.Redis(port=self.port).ping(), 10, "redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temp folder, pg_ctl on a free port)."""

    def __init__(self, folder: Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1]).parent
        self.data = folder / "pgdata"
        self.port = free_port()
        self.log = folder / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/volbot"
        self._as = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(folder, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self._as, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        self.start()
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "volbot"],
                       check=True)

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args],
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self._ctl("-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off "
                        f"-c max_connections=200", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass


class Stack:
    """Backing services plus volbot processes sharing one environment."""

    def __init__(self, name: str, *, postgres: str = "private", database_url: str | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix=f"volbot-{name}-"))
        os.chmod(self.folder, 0o755)
        self.procs: list[subprocess.Popen] = []
        self.redis = PrivateRedis(self.folder)
        self.postgres = None
        if database_url:
            self.database_url = database_url
        elif postgres == "private":
            pg_folder = self.folder / "pg"
            pg_folder.mkdir()
            self.postgres = PrivatePostgres(pg_folder)
            self.database_url = self.postgres.url
        else:
            self.database_url = f"sqlite:///{self.folder}/volbot.sqlite3"
        self.env = child_environ(VOLBOT_INSTANCE=str(self.folder / "instance"), VOLBOT_ENV="testing",
                                 DATABASE_URL=self.database_url, REDIS_URL=self.redis.url, WECHAT_TOKEN=TOKEN,
                                 WECHAT_APPID=APPID, WECHAT_API_BASE="http://127.0.0.1:9/cgi-bin/",
                                 PYTHONPATH=str(ROOT))
        for key in ("WECHAT_AES_KEY", "PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY"):
            self.env.pop(key, None)
        self.web_port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def services(self):
        from bot.config import load_config
        from bot.services import Services

        env = {k: v for k, v in self.env.items() if k not in ("VOLBOT_INSTANCE",)}
        return Services(load_config(self.env["VOLBOT_INSTANCE"], environ=env))

    def create_schema(self) -> None:
        svc = self.services()
        try:
            svc.db.create_all()
        finally:
            svc.close()

    def spawn(self, *args: str, name: str | None = None, **env) -> subprocess.Popen:
        name = name or args[0]
        log = open(self.folder / f"{name}.log", "a")
        proc = subprocess.Popen([str(BIN / "volbot"), *args], env={**self.env, **env}, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        proc.log_path = log.name
        proc.name = name
        self.procs.append(proc)
        return proc

    def serve(self, workers: int = 2, threads: int | None = None, **env) -> str:
        """`volbot serve` on a free port (`threads` None: its default), once every worker listens."""
        self.web_port = free_port()
        self.spawn("serve", "--bind", f"127.0.0.1:{self.web_port}", "--workers", str(workers),
                   *(["--threads", str(threads)] if threads else []), name="serve", **env)
        url = f"http://127.0.0.1:{self.web_port}"
        wait_for(lambda: _get(self.web_port, "/healthz") == 200, 90, "volbot serve")
        # Every worker listening (a socket each): a client connecting earlier would stay on
        # the first workers for the whole run.
        self.wait_workers(workers)
        return url

    def wait_workers(self, workers: int) -> None:
        """Until `workers` gunicorn workers listen (each says so in the instance folder)."""
        ready = Path(self.env["VOLBOT_INSTANCE"]) / "gunicorn-ready"
        wait_for(lambda: len(list(ready.iterdir())) >= workers, 90, f"{workers} workers")

    def stop(self, proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        self.redis.stop()
        if self.postgres:
            self.postgres.close()

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


class Client:
    """One keep-alive connection that posts signed pushes, as WeChat does, and times them."""

    def __init__(self, port: int, token: str = TOKEN, appid: str = APPID, timeout: float = 10):
        from bot.sender import WeChatSender

        self.port = port
        self.sender = WeChatSender(token, appid)
        self.timeout = timeout
        self.conn = None

    def post(self, fields: dict) -> tuple[int, str, float]:
        """(HTTP status, body, seconds); status 0 for a connection error or a time-out."""
        params, body = self.sender.request(fields, encrypt=False)
        return self.post_raw("/wechat?" + urlencode(params), body)

    def post_raw(self, path: str, body: bytes) -> tuple[int, str, float]:
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.request("POST", path, body, {"Content-Type": "text/xml"})
                resp = self.conn.getresponse()
                data = resp.read().decode("utf-8", "replace")
                return resp.status, data, time.perf_counter() - started
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                # A keep-alive connection the server closed between requests: one retry.
                if attempt == 2 or time.perf_counter() - started > 1:
                    return 0, "", time.perf_counter() - started
        return 0, "", time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


# ---- a resident who wants exactly one order -------------------------------------------------

# What the order form asks (a substring of each question) and what the resident answers.
# The first marker found decides, so the summary (which repeats every label) comes early.
ORDER_ANSWERS = (
    ("订单号", None),  # done
    ("请核对您的预约", "确认"),
    ("继续填写", "1"),
    ("请选择服务类别", "1"),
    ("请选择服务项目", "1"),
    ("请简单说说", "家里水管漏水，想请志愿者上门看看"),
    ("请输入服务地址", "奎文区东风东街88号3号楼2单元501"),
    ("哪个社区", "跳过"),
    ("希望什么时间", "明天下午"),
    ("联系电话", None),  # the resident's own phone
    ("时间银行", "1"),
)


class Resident:
    """Orders one service by chat, reacting to each reply as a person would: the next
    answer for a question; the same answer again (a new message) after 系统繁忙; the menu
    button again when the form is gone (Redis lost it, or it expired)."""

    def __init__(self, client: Client, n: int):
        self.client = client
        self.openid = f"o_drill_{n:04d}"
        self.phone = f"137{n:08d}"
        self.done = False
        self.seen = {"replies": 0, "busy": 0, "http_errors": 0, "timeouts": 0, "restarts": 0, "order_number": None,
                     "max_seconds": 0.0}
        self.log: list[tuple[float, str]] = []  # (time, outcome) for the timeline
        self.last = None
        self._click_time = int(time.time())

    def _send(self, fields: dict) -> str | None:
        status, body, took = self.client.post(fields)
        self.seen["max_seconds"] = max(self.seen["max_seconds"], took)
        now = time.monotonic()
        if status == 0:
            self.seen["timeouts"] += 1
            self.log.append((now, "timeout"))
            return None
        if status != 200:
            self.seen["http_errors"] += 1
            self.log.append((now, f"http {status}"))
            return None
        self.seen["replies"] += 1
        if BUSY_TEXT in body:
            self.seen["busy"] += 1
            self.log.append((now, "busy"))
            return None
        self.log.append((now, "ok"))
        return body

    def start_order(self) -> str | None:
        self._click_time += 1  # a new click has a new CreateTime (its dedup identity)
        fields = {**self.client.sender.event(self.openid, "CLICK", "ORDER"), "CreateTime": self._click_time}
        self.last = fields
        return self._send(fields)

    def answer(self, reply: str | None) -> str | None:
        if reply is None:  # busy, an error or a time-out: say the same thing again
            time.sleep(0.3)
            if self.last is None or self.last.get("MsgType") == "event":
                return self.start_order()
            fields = self.client.sender.text(self.openid, self.last["Content"])
            self.last = fields
            return self._send(fields)
        for marker, text in ORDER_ANSWERS:
            if marker in reply:
                if marker == "订单号":
                    self.done = True
                    self.seen["order_number"] = reply.split("订单号：", 1)[1].split()[0][:32]
                    return None
                fields = self.client.sender.text(self.openid, text or self.phone)
                self.last = fields
                return self._send(fields)
        self.seen["restarts"] += 1  # the form is gone: start again from the menu
        return self.start_order()

    def run(self, until: float, think: float = 0.05) -> None:
        reply = self.start_order()
        while not self.done and time.monotonic() < until:
            time.sleep(think)
            reply = self.answer(reply)


def orders_by_openid(stack: Stack, prefix: str = "o_drill_") -> dict[str, int]:
    from sqlalchemy import func, select

    from store.models import Follower, Order

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            rows = s.execute(select(Follower.openid, func.count(Order.id)).join(Order, Order.follower_id == Follower.id)
                             .where(Follower.openid.like(prefix + "%")).group_by(Follower.openid)).all()
        return {openid: n for openid, n in rows}
    finally:
        svc.close()


def report_residents(residents: list[Resident], orders: dict[str, int]) -> bool:
    """Print what the residents saw and what SQL holds; True when nothing was lost or doubled."""
    total = {k: sum(r.seen[k] for r in residents) for k in ("replies", "busy", "http_errors", "timeouts", "restarts")}
    done = [r for r in residents if r.done]
    doubled = {o: n for o, n in orders.items() if n > 1}
    lost = [r.openid for r in done if orders.get(r.openid, 0) == 0]
    unconfirmed = [r.openid for r in residents if not r.done and orders.get(r.openid, 0)]
    slowest = max(r.seen["max_seconds"] for r in residents)
    print(f"residents: {len(done)}/{len(residents)} got an order number; replies {total['replies']} "
          f"(系统繁忙 {total['busy']}), HTTP errors {total['http_errors']}, time-outs {total['timeouts']}, "
          f"forms restarted from the menu {total['restarts']}, slowest answer {slowest * 1000:.0f} ms")
    print(f"SQL: {sum(orders.values())} orders for {len(orders)} residents; doubled: {len(doubled)} {doubled or ''}; "
          f"confirmed but missing: {len(lost)}; written but never confirmed to the resident: {len(unconfirmed)}")
    ok = (len(done) == len(residents) and not doubled and not lost and total["http_errors"] == 0
          and total["timeouts"] == 0 and slowest < 5.0)
    return ok


def timeline(residents: list[Resident], t0: float, marks: dict[str, float], step: float = 1.0) -> None:
    """Per second: answers by outcome, with the drill's own events marked."""
    events = sorted((t, outcome) for r in residents for t, outcome in r.log)
    if not events:
        return
    end = events[-1][0]
    print("  second  ok  busy  errors   (events)")
    t = t0
    while t <= end:
        window = Counter(o if o in ("ok", "busy") else "error" for at, o in events if t <= at < t + step)
        notes = ", ".join(name for name, at in marks.items() if t <= at < t + step)
        print(f"  {t - t0:6.0f} {window['ok']:>3} {window['busy']:>5} {window['error']:>7}   {notes}")
        t += step


class Conversations:
    """`count` residents ordering by chat against the stack's web server, each on its own
    thread, answering `think` seconds after each reply (a person reads the question: the
    conversations last several seconds, so a fault a couple of seconds in finds them
    mid-form), and the drill's own events (`mark`) for the timeline."""

    def __init__(self, stack: Stack, count: int, think: float = 0.6, limit: float = 90.0):
        self.stack = stack
        self.residents = [Resident(Client(stack.web_port), n) for n in range(count)]
        self.t0 = time.monotonic()
        until = self.t0 + limit
        self.threads = [threading.Thread(target=r.run, args=(until, think)) for r in self.residents]
        self.marks: dict[str, float] = {}

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def mark(self, event: str) -> float:
        self.marks[event] = time.monotonic()
        return self.marks[event]

    def finish(self) -> bool:
        """Wait for every resident, print the timeline and the outcome; True if all is well."""
        for t in self.threads:
            t.join()
        timeline(self.residents, self.t0, self.marks)
        return report_residents(self.residents, orders_by_openid(self.stack))
