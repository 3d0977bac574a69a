"""Drill: more pushes than the machine can answer, and what becomes of them.

    .venv/bin/python bench/drills/overload.py [--factor 2] [--seconds 60] [--workers N] [--nginx]
                                              [--worker-class CLASS] [--postgres private|sqlite]

Starts a private redis-server and PostgreSQL cluster and the web server alone (gunicorn
with `volbot serve`'s settings, no proxy). First it measures what the server sustains: the
same kind of pushes, closed loop on 4 connections a worker, for 10 s after 2 s of warm-up
(capacity). Then it offers `--factor` times that, open loop, for `--seconds`, as WeChat
does: each push is sent at its planned moment on an idle connection, or a new one when none
is idle, up to `--connections` (WeChat does not wait for our earlier answers); an answer
not back within 5 s of the attempt (the wait for a connection included) is given up, as
WeChat gives up. The sender is one thread on a selector with every request built first
(`Sender`), so that it lags its plan by milliseconds and leaves the cores to the server.
A push refused (503, or no answer in 5 s) is sent again a second later, up to 3 times, as
WeChat retries. Every push is a `subscribe` of a new user (it writes one follower row) or
a text turn of a user who followed before.

Prints the answered pushes' latency from their planned moment (p50/p99/max), the goodput
(answered 200 a second) against the capacity, the refusals and time-outs, the refusals the
server counted in /metrics (`volbot_shed_total`), how the retries of refused pushes were
answered, and the follower rows against the subscribes answered: a refused push must have
left nothing behind, its answered retry exactly one row.

`--nginx` puts the shipped nginx site (deploy/nginx/volbot.conf, as bench/drills/nginx_front.py
renders it, with a plain-HTTP listener added to its HTTPS server) in front, and both the
capacity and the overload go through it: nginx then sends `X-Request-Start`, and refusals are
nginx passing the worker's 503 on.

Expected (issue 28): answered p99 < 4.5 s, goodput near capacity, no time-outs, every
refusal counted, followers == subscribes answered.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import selectors
import socket
import sys
import time
from collections import Counter, deque
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.slow_clients import server_choice, server_options, start_server
from bench.drills.support import APPID, TOKEN, Stack, free_port, load_average, percentile, wait_for

WECHAT_TIMEOUT, RETRY_AFTER, RETRIES = 5.0, 1.0, 3
TARGET_P99_MS, TARGET_GOODPUT = 4500.0, 0.8


def pushes(n: int, tag: str) -> list[bytes]:
    """`n` signed pushes as raw HTTP requests: every second one a new user's subscribe."""
    from bot.sender import WeChatSender

    sender = WeChatSender(TOKEN, APPID)
    out = []
    for i in range(n):
        openid = f"o_{tag}_{i:06d}"
        fields = sender.event(openid, "subscribe", "") if i % 2 == 0 else sender.text(f"o_{tag}_{i - 1:06d}", "菜单")
        params, body = sender.request(fields, encrypt=False)
        out.append((f"POST /wechat?{urlencode(params)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


class _Attempt:
    """One delivery of one push: when it was due, and the connection it went out on."""

    __slots__ = ("i", "attempt", "planned", "dispatched", "deadline", "conn")

    def __init__(self, i: int, attempt: int, planned: float):
        self.i, self.attempt, self.planned = i, attempt, planned
        self.dispatched = self.deadline = 0.0
        self.conn = None


class _Connection:
    __slots__ = ("sock", "out", "buf", "attempt", "connecting")

    def __init__(self, sock):
        self.sock, self.out, self.buf, self.attempt, self.connecting = sock, b"", b"", None, True


class Sender:
    """The drill's WeChat, on one thread: non-blocking sockets under one selector, the
    requests' bytes built beforehand, the due attempts in a heap. Each attempt goes out on
    an idle kept-alive connection, or a new one while fewer than `limit` are open (a
    sender's pool is bounded, and so are this process's file descriptors: unbounded, 2x
    capacity for 60 s opened over 20,000), else it waits for one — that wait counts in its
    latency and in its 5 s, as WeChat's whole attempt does. An answer not back within
    `timeout` of the attempt is given up and its connection closed.

    Why not asyncio: at 2x capacity a task, a timer and a stream per attempt made the
    generator lag its own plan by 0.96 s at the median (p99 2.5 s) and took a core from
    the server it measured; this costs a few tens of microseconds an attempt."""

    def __init__(self, port: int, requests: list[bytes], limit: int = 1000, timeout: float = WECHAT_TIMEOUT):
        self.port, self.requests, self.limit, self.timeout = port, requests, limit, timeout
        self.sel = selectors.DefaultSelector()
        self.idle: list[_Connection] = []
        self.open = self.opened = 0
        self.due: list = []  # (moment, seq, attempt)
        self.waiting: deque[_Attempt] = deque()  # due, no connection free
        self.flying: list = []  # (deadline, seq, attempt) of attempts sent
        self.seq = 0
        self.late: list[float] = []

    def plan(self, attempt: _Attempt) -> None:
        self.seq += 1
        heapq.heappush(self.due, (attempt.planned, self.seq, attempt))

    def run(self) -> None:
        """Until nothing is due, waiting or in flight."""
        while self.due or self.waiting or self.flying:
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, _, attempt = heapq.heappop(self.due)
                self.late.append(now - attempt.planned)  # the generator's own lag
                attempt.dispatched, attempt.deadline = now, now + self.timeout
                self.seq += 1
                heapq.heappush(self.flying, (attempt.deadline, self.seq, attempt))
                self.dispatch(attempt)
            while self.flying and (self.flying[0][2].conn is False or self.flying[0][0] <= now):
                _, _, attempt = heapq.heappop(self.flying)
                if attempt.conn is not False:  # still out: given up, as WeChat gives up
                    self.give_up(attempt, now)
            wake = min(self.due[0][0] if self.due else now + 0.05, self.flying[0][0] if self.flying else now + 0.05)
            for key, mask in self.sel.select(max(0.0, min(wake - now, 0.05))):
                self.ready(key.data, mask)

    def dispatch(self, attempt: _Attempt) -> None:
        if self.idle:
            self.send(self.idle.pop(), attempt)
        elif self.open < self.limit:
            self.connect(attempt)
        else:
            self.waiting.append(attempt)

    def connect(self, attempt: _Attempt) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.open += 1
        self.opened += 1
        conn = _Connection(sock)
        conn.attempt, attempt.conn = attempt, conn
        conn.out = self.requests[attempt.i]
        try:
            sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            self.fail(conn, 0)
            return
        self.sel.register(sock, selectors.EVENT_WRITE, conn)

    def send(self, conn: _Connection, attempt: _Attempt) -> None:
        conn.attempt, attempt.conn, conn.buf = attempt, conn, b""
        conn.out = self.requests[attempt.i]
        self.flush(conn)

    def flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.fail(conn, 0)
            return
        conn.out = conn.out[sent:]
        self.sel.modify(conn.sock, selectors.EVENT_WRITE if conn.out else selectors.EVENT_READ, conn)

    def ready(self, conn: _Connection, mask: int) -> None:
        if conn.connecting and mask & selectors.EVENT_WRITE:
            if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.fail(conn, 0)
                return
            conn.connecting = False
        if mask & selectors.EVENT_WRITE and conn.out:
            self.flush(conn)
            return
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.fail(conn, 0)
            return
        conn.buf += chunk
        head_end = conn.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = conn.buf[:head_end].lower()
        length = next((int(line[15:]) for line in head.split(b"\r\n") if line.startswith(b"content-length:")), 0)
        if len(conn.buf) < head_end + 4 + length:
            return
        attempt, conn.attempt, status = conn.attempt, None, int(conn.buf[9:12])
        if b"connection: close" in head:
            self.close(conn)
        else:
            self.release(conn)
        if attempt is not None:
            attempt.conn = False  # answered
            self.answered(attempt, status, time.monotonic())

    def release(self, conn: _Connection) -> None:
        """A kept-alive connection free again: to the oldest attempt waiting, or idle."""
        if self.waiting:
            self.send(conn, self.waiting.popleft())
        else:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            self.idle.append(conn)

    def close(self, conn: _Connection) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        self.open -= 1
        if conn in self.idle:  # the server closed an idle one
            self.idle.remove(conn)
        if self.waiting and self.open < self.limit:
            self.connect(self.waiting.popleft())

    def fail(self, conn: _Connection, status: int) -> None:
        """The connection broke (closed, reset, refused): its attempt got no answer."""
        attempt, conn.attempt = conn.attempt, None
        self.close(conn)
        if attempt is not None:
            attempt.conn = False
            self.answered(attempt, status, time.monotonic())

    def give_up(self, attempt: _Attempt, now: float) -> None:
        conn, attempt.conn = attempt.conn, False
        if conn is None:  # still waiting for a connection
            self.waiting.remove(attempt)
        else:
            conn.attempt = None
            self.close(conn)  # the connection is spoilt: an answer may still come on it
        self.answered(attempt, -1, now)

    def answered(self, attempt: _Attempt, status: int, now: float) -> None:
        """Override: what to do with an answer (status -1: given up, 0: no answer)."""


class ClosedLoop(Sender):
    """`clients` pushes out at a time, each sent when the last is answered — or a second
    after a refusal, as WeChat retries (sent again at once, a refused push would turn the
    loop into a storm of refusals that measures them, not the server)."""

    def __init__(self, port: int, requests: list[bytes], seconds: float, clients: int):
        super().__init__(port, requests, limit=clients, timeout=30.0)
        self.stop_at, self.done, self.next = time.monotonic() + seconds, 0, 0
        for _ in range(clients):
            self.more(time.monotonic())

    def more(self, at: float) -> None:
        if at < self.stop_at and self.next < len(self.requests):
            self.plan(_Attempt(self.next, 0, at))
            self.next += 1

    def answered(self, attempt: _Attempt, status: int, now: float) -> None:
        self.done += status == 200
        self.more(now if status == 200 else now + RETRY_AFTER)


def closed_loop(port: int, requests: list[bytes], seconds: float, clients: int) -> float:
    """Pushes a second answered, `clients` at a time, each sent when the last is back.
    A few a worker keep every worker busy without a standing queue (with 32 on a loaded
    machine the queue itself passed the overload wait and refusals cut the figure)."""
    started = time.monotonic()
    loop = ClosedLoop(port, requests, seconds, clients)
    loop.run()
    return loop.done / (time.monotonic() - started)


class OpenLoop(Sender):
    """Each push at its planned moment (i / rate), retried as WeChat does when refused."""

    def __init__(self, port: int, requests: list[bytes], rate: float, seconds: float, limit: int):
        super().__init__(port, requests, limit)
        self.n = int(rate * seconds)
        self.start = time.monotonic() + 0.2
        self.r = {"lat": [], "shed": 0, "timeouts": 0, "other": 0, "retries": {}, "final": {}, "answered_at": [],
                  "late": self.late, "n": self.n}
        for i in range(self.n):  # a heap of planned moments in order is a sorted list
            self.due.append((self.start + i / rate, i, _Attempt(i, 0, self.start + i / rate)))
        self.seq = self.n

    def answered(self, attempt: _Attempt, status: int, now: float) -> None:
        r = self.r
        r["final"][attempt.i] = status
        if status == 200:
            r["lat"].append(now - attempt.planned)
            r["answered_at"].append(now - self.start)
            if attempt.attempt:
                r["retries"][attempt.attempt] = r["retries"].get(attempt.attempt, 0) + 1
            return
        r["timeouts" if status == -1 else "shed" if status == 503 else "other"] += 1
        if attempt.attempt < RETRIES:
            self.plan(_Attempt(attempt.i, attempt.attempt + 1, now + RETRY_AFTER))  # WeChat's retry


def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, limit: int = 1000) -> dict:
    loop = OpenLoop(port, requests, rate, seconds, limit)
    loop.run()
    for conn in loop.idle:
        conn.sock.close()
    loop.r["connections"] = loop.opened
    return loop.r


def followers(stack: Stack, tag: str) -> int:
    from sqlalchemy import func, select

    from store.models import Follower

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            return s.scalar(select(func.count()).select_from(Follower).where(Follower.openid.like(f"o_{tag}_%")))
    finally:
        svc.close()


def shed_counted(port: int) -> Counter:
    """The server's refusals so far (`volbot_shed_total`), by reason."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "volbot_shed_total":
                out[sample.labels.get("reason", "")] += int(sample.value)
    return out


def front(stack: Stack, upstream: int, cleanup: contextlib.ExitStack) -> int:
    """The shipped nginx site in front of `upstream`; the port of its plain-HTTP listener."""
    from urllib.request import urlopen

    from bench.drills.nginx_front import PrivateNginx, nginx_binary, nginx_conf, nginx_test, render_site, self_signed

    if not nginx_binary():
        raise SystemExit("--nginx: nginx is not installed (apt-get install nginx)")
    folder = stack.folder / "nginx"
    cert, key = self_signed(folder / "tls")
    plain = free_port()
    # Each proxied request holds two of nginx's connections, and the sender keeps up to 1,000
    # open: sized as docs/performance.md says (with 1,024 nginx closed idle client
    # connections, "worker_connections are not enough", and the drill measured that).
    site = render_site(cert=cert, key=key, log_dir=folder, upstream=f"127.0.0.1:{upstream}",
                       http_port=free_port(), https_port=free_port(), plain_port=plain)
    conf = nginx_conf(folder, site, worker_connections=4096)
    checked = nginx_test(conf)
    if checked.returncode != 0:
        raise SystemExit(f"nginx -t refused the site:\n{checked.stderr}")
    cleanup.callback(PrivateNginx(conf).stop)
    wait_for(lambda: urlopen(f"http://127.0.0.1:{plain}/healthz", timeout=2).status == 200, 30, "nginx")
    return plain


def main(argv: list[str] | None = None) -> bool:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, default=2.0, help="offered load as a multiple of the capacity")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--capacity-seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=1000, help="most connections the sender keeps open")
    ap.add_argument("--nginx", action="store_true", help="through the shipped nginx site")
    server_options(ap)
    args = ap.parse_args(argv)
    workers, worker_class = server_choice(args)
    print(f"overload drill: {args.factor:g}x capacity for {args.seconds:g} s; {workers} workers of "
          f"{worker_class}, {'the nginx site in front' if args.nginx else 'no proxy'}; {load_average()}")
    with Stack("overload", postgres=args.postgres) as stack, contextlib.ExitStack() as cleanup:
        server_port = port = start_server(stack, workers, args.worker_class)
        if args.nginx:
            port = front(stack, server_port, cleanup)
        clients = 4 * workers
        closed_loop(port, pushes(3000, "warm"), 2.0, clients)  # each worker's first turns import and connect
        capacity = closed_loop(port, pushes(int(3000 * args.capacity_seconds), "cap"), args.capacity_seconds, clients)
        shed_before = shed_counted(server_port)
        rate = capacity * args.factor
        requests = pushes(int(rate * args.seconds) + 1, "over")
        print(f"capacity (closed loop, {clients} connections, {args.capacity_seconds:g} s): {capacity:.0f} pushes/s "
              f"({sum(shed_before.values())} refused); "
              f"offering {rate:.0f}/s; {load_average()}")
        r = open_loop(port, requests, rate, args.seconds, args.connections)
        lat = r["lat"]
        in_window = sum(1 for at in r["answered_at"] if at <= args.seconds)
        goodput = in_window / args.seconds
        subscribes = sum(1 for i, status in r["final"].items() if i % 2 == 0 and status == 200)
        rows = followers(stack, "over")
        by_reason = shed_counted(server_port) - shed_before
        counted = sum(by_reason.values())
        never = sum(1 for status in r["final"].values() if status != 200)
        print(f"offered {r['n']} pushes ({r['connections']} connections opened); answered 200: {len(lat)}, "
              f"p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
              f"max {max(lat, default=0) * 1000:.0f} ms (from the planned moment of the attempt answered)")
        print(f"goodput {goodput:.0f}/s in the {args.seconds:g} s window = {goodput / capacity:.0%} of capacity; "
              f"refused 503: {r['shed']} (the server counted {counted}: {dict(sorted(by_reason.items()))}), no answer in 5 s: {r['timeouts']}, "
              f"other: {r['other']}; answered on a retry (by attempt): {dict(sorted(r['retries'].items()))}; "
              f"refused all {RETRIES + 1} times: {never}")
        late = r["late"]
        print(f"the generator's lag (sent after the planned moment): p50 {percentile(late, 50) * 1000:.0f} ms, "
              f"p99 {percentile(late, 99) * 1000:.0f} ms")
        errors = (stack.folder / "nginx" / "error.log").read_text(errors="replace").strip() if args.nginx else ""
        if errors:
            lines = errors.splitlines()
            print(f"nginx error.log ({len(lines)} lines), the last:\n" + "\n".join(lines[-5:]))
        print(f"follower rows {rows} for {subscribes} subscribes answered "
              f"({'each once, none for a refused one' if rows == subscribes else 'MISMATCH'}); {load_average()}")
    ok = (percentile(lat, 99) * 1000 < TARGET_P99_MS and goodput >= TARGET_GOODPUT * capacity
          and r["timeouts"] == 0 and rows == subscribes and counted >= r["shed"] and not r["other"])
    print(f"target: answered p99 < {TARGET_P99_MS:g} ms, goodput >= {TARGET_GOODPUT:.0%} of capacity, no time-outs, "
          f"refusals counted, rows == subscribes answered: " + ("PASS" if ok else "FAIL"))
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
