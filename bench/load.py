"""Load test: a realistic mix of WeChat pushes from 5,000 distinct users against
`volbot serve` (gunicorn) on PostgreSQL and Redis, at a fixed rate, for a bounded time.

    .venv/bin/python bench/load.py [--users 5000] [--rate 500] [--seconds S] [--clients 64]
                                   [--workers N] [--threads N] [--database-url URL] [--profile S]

Each user plays one scripted visit of 20 pushes, in order (a user waits for each reply,
as a person does): follow, 预约志愿服务 by menu click, the order form answered by text and
one location (category, service, need, address as a location, room, community, time, phone,
确认 — an order row is written), 我的订单, 菜单 and a number, a second order started and
cancelled, 志愿活动, a reported LOCATION event. That is 14 text turns inside forms and
menus (70%), 4 clicks (20%), 2 locations/events (10%).

WeChat sends a push when a person types, whatever our earlier answers took: the load is an
open loop at `--rate` pushes a second. `--clients` lanes (kept-alive connections) share the rate.
Each lane's users join one per round and then send one push each per round, so after the
first 20 rounds the 20 users active on a lane are at the 20 steps of the visit: the mix
holds from second to second, not only over the run (64 lanes: 1,280 users in the middle
of a visit at once, each pushing every 2.6 s). The run ends when every visit is done
(users x 20 / rate = 200 s by default; `--seconds` cuts it short). A push is
sent at its planned moment, or as soon as its lane's previous answer is back; its latency
counts from the planned moment, so a server that falls behind shows it in p99 instead of
slowing the generator down (no coordinated omission).

Set-up (not timed): a private redis-server on a free port; PostgreSQL from `--database-url`
(default: a database `volbot_load` on the machine's server at 127.0.0.1:5432, dropped and
recreated) seeded with the demo district (demo/), so the forms see a real catalog, then
VACUUM ANALYZE'd as after any bulk load. Requests are built and signed before the clock
starts. Before the timed run, `volbot serve` gets `--warmup` seconds (20) of other users'
visits at the same rate, not counted: a running deployment's workers have compiled their
statements and opened their connections long before (a cold start's first 20 seconds here
had p99 1.3 s).

Prints, in one run on the same machine: the generator's own ceiling (the same requests as
fast as they are answered, closed loop, against a bare app that only checks the signature,
under the same gunicorn settings) and its latency at the run's rate against that bare app
(what the generator and the machine add by themselves); then the bot's achieved rate, p50/p90/p99 and errors
(non-200 answers, time-outs, 系统繁忙), the orders and followers written against the
visits sent, the CPU time each process kind spent per push (web workers, PostgreSQL, Redis,
the generator) — the one figure a shared, noisy machine does not blur — beside the bare
app's web CPU per push at the same rate, and the load average.
"""

from __future__ import annotations

import argparse
import heapq
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

from bot.config import environ_value, export

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.drills.support import APPID, BIN, BUSY_TEXT, TOKEN, Stack, free_port, load_average, percentile
from bench.webhook import gunicorn_command

TARGET_RPS, TARGET_P99_MS = 500, 100.0
LATE_MS = 10  # a push sent this much after its planned moment counts as late


def visit(sender, user: int, created: int) -> list[tuple[str, dict]]:
    """The 20 pushes of one user's visit, as (kind, fields)."""
    openid = f"o_load_{user:05d}"
    phone = f"139{user:08d}"

    def text(t):
        return "text", sender.text(openid, t)

    def click(key, n):
        return "click", {**sender.event(openid, "CLICK", key), "CreateTime": created + n}

    lat, lng = 36.70 + (user % 100) / 2000, 119.10 + (user % 70) / 2000
    return [
        ("location/event", {**sender.event(openid, "subscribe", ""), "CreateTime": created}),
        click("ORDER", 1),
        text("1"), text("1"), text("老人行动不便，想请志愿者上门帮忙"),
        ("location/event", sender.location(openid, lat, lng, "奎文区东风东街")),
        text(f"{user % 20 + 1}号楼{user % 5 + 1}单元{user % 30 + 101}"), text("1"), text("明天下午"), text(phone),
        text("确认"),
        click("MY_ORDERS", 2),
        text("菜单"), text("4"),
        click("ORDER", 3),
        text("5"), text("1"), text("想请人陪老人去医院复查"), text("取消"),
        click("ACTIVITIES", 4),
        ("location/event", {**sender.event(openid, "LOCATION", None), "Latitude": lat, "Longitude": lng,
                            "Precision": 30, "CreateTime": created + 5}),
    ][:20]


def build(users: range) -> list[list[tuple[str, str, bytes, int]]]:
    """Per user: the visit as (kind, path with signed query, body, step), ready to send."""
    from bot.sender import WeChatSender

    sender = WeChatSender(TOKEN, APPID)
    created = int(time.time())
    out = []
    for user in users:
        script = []
        for step, (kind, fields) in enumerate(visit(sender, user, created)):
            params, body = sender.request(fields, encrypt=False)
            script.append((kind, "/wechat?" + urlencode(params), body, step))
        out.append(script)
    return out


def stride(visit_length: int) -> int:
    """The phase step from one lane to the next: prime to the visit's length (so that any
    `visit_length` neighbouring lanes are at as many different steps) and near its golden
    section (so that the steps of lanes close together are far apart: 7 for 20)."""
    from math import gcd

    best = max(1, round(visit_length * 0.382))
    return next(s for s in sorted(range(1, visit_length + 1), key=lambda s: abs(s - best))
                if gcd(s, visit_length) == 1) if visit_length > 1 else 1


def lanes(scripts: list, n: int) -> list[list[tuple[str, str, bytes]]]:
    """The pushes of each of `n` lanes, in order. A lane's users (every n-th) join one per
    round and each active user sends one push per round, so once 20 have joined the users
    of a lane are at the 20 different steps of the visit: every round carries the visit's
    mix (not 2,000 users at 确认 at once), and one user leaves as the next joins.

    The lanes are staggered: lane k starts each round at a different one of its users, so
    at any moment the lanes are at different steps. Every lane's n-th push goes out in the
    same 1/rate-wide slot of the schedule, so without the stagger all 64 lanes sent the
    same step within one lane interval (0.13 s at 500/s): 64 order confirmations at once,
    every 2.6 s, and nothing else in between. WeChat's users are not in step like that.
    Neighbouring lanes (whose pushes follow each other within the slot) are `stride()` steps
    apart (7 of the visit's 20), not a third of one: with phases rising lane by lane the slot swept through the visit in
    order, and the five heavy steps of the order form (the room number to 确认) came as one
    burst of a quarter of each slot.
    A user's pushes stay in order whatever the order inside a round: each sends one a round."""
    out = []
    visit_length = len(scripts[0]) if scripts else 0
    for k in range(n):
        waiting, active, pushes = list(scripts[k::n]), [], []
        shift = k * stride(visit_length)  # this lane's phase, in steps of the visit
        while waiting or active:
            if waiting:
                active.append([waiting.pop(0), 0])
            first = shift % len(active)
            for entry in active[first:] + active[:first]:
                script, pos = entry
                pushes.append(script[pos])
                entry[1] += 1
            active = [entry for entry in active if entry[1] < len(entry[0])]
        out.append(pushes)
    return out


def drive(port: int, plan: list, seconds: float, rate: float | None = None) -> dict:
    """Each lane, on a keep-alive connection of its own, sends its pushes in order: at
    `rate` pushes a second over all lanes (open loop), or each as soon as the previous is
    answered (closed loop, `rate` None), until its pushes or `seconds` run out.

    One thread drives every lane through a selector, with the requests' bytes built
    beforehand: the generator shares the machine with the server it measures, so it should
    take as little of it as it can (64 threads on http.client took 0.31 ms of CPU per push,
    a tenth of the machine at 500/s; this takes about a third of that)."""
    n = len(plan)
    start = time.perf_counter() + 0.5
    stop_at = start + seconds
    lanes = [_Lane(port, k, pushes) for k, pushes in enumerate(plan)]
    paces = intervals(plan, rate) if rate else [0.0] * n  # closed loop: no schedule
    for lane, pace in zip(lanes, paces):
        lane.interval = pace
    results = {"lat": [], "when": [], "kinds": Counter(), "http": Counter(), "busy": 0, "timeouts": 0, "late": 0,
               "confirms": 0, "answers": Counter(), "steps": [], "lanes": [], "owners": owners(lanes),
               "reconnects": 0}
    sel = selectors.DefaultSelector()
    due: list[tuple[float, int]] = []  # (planned moment, lane) of each lane's next push

    def plan_next(lane: _Lane, now: float) -> None:
        if lane.j < len(lane.pushes):
            planned = lane.planned(start, n, rate, now)
            if planned < stop_at:
                heapq.heappush(due, (planned, lane.k))

    for lane in lanes:
        plan_next(lane, start)
    waiting: dict[int, _Lane] = {}
    checked = start
    while due or waiting:
        now = time.perf_counter()
        while due and due[0][0] <= now:
            planned, k = heapq.heappop(due)
            lane = lanes[k]
            if now - planned > LATE_MS / 1000:
                results["late"] += 1
            lane.send(planned, now, sel)
            waiting[lane.sock.fileno()] = lane
        timeout = max(0.0, due[0][0] - now) if due else 0.05
        for key, _ in sel.select(min(timeout, 0.05)):
            lane = waiting[key.fd]
            done = lane.receive()
            if done is None:
                continue
            status, body = done
            at = time.perf_counter()
            del waiting[key.fd]
            sel.unregister(key.fileobj)
            if lane.closed:
                lane.reconnect()
                results["reconnects"] += 1
            lane.record(status, body, at, start, results)
            plan_next(lane, at)
        now = time.perf_counter()
        if now - checked < 0.5:
            continue
        checked = now
        for fd, lane in list(waiting.items()):
            if now - lane.sent_at > 10:  # no answer: a time-out, on a new connection
                del waiting[fd]
                sel.unregister(lane.sock)
                lane.record(0, b"", now, start, results)
                lane.reconnect()
                plan_next(lane, now)
    results["owners_at_end"] = owners(lanes)
    for lane in lanes:
        lane.sock.close()
    elapsed = time.perf_counter() - start
    lat = results["lat"]
    return {"n": len(lat), "rps": len(lat) / elapsed, "seconds": elapsed,
            "p50": percentile(lat, 50) * 1000, "p90": percentile(lat, 90) * 1000, "p99": percentile(lat, 99) * 1000,
            "errors": sum(results["http"].values()) + results["timeouts"] + results["busy"], **results}


_BUSY, _CONFIRMED = BUSY_TEXT.encode(), "预约已提交".encode()


class _Lane:
    """One lane of `drive`: its pushes as ready-made HTTP requests, and its connection."""

    def __init__(self, port: int, k: int, pushes: list):
        self.port, self.k, self.j = port, k, 0
        self.interval = 0.0  # seconds between two of this lane's pushes (open loop; set by drive)
        self.sock = None
        self.pushes = [(kind, (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                               f"Content-Length: {len(body)}\r\n\r\n").encode() + body, step)
                       for kind, path, body, step in pushes]
        self.reconnect()

    def reconnect(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.closed = False
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""

    def planned(self, start: float, n: int, rate: float | None, now: float) -> float:
        return start + planned_at(self.j, self.k, n, self.interval) if rate else max(now, start)

    def send(self, planned: float, now: float, sel) -> None:
        self.planned_at, self.sent_at, self.buf = planned, now, b""
        try:
            self.sock.sendall(self.pushes[self.j][1])
        except OSError:  # the server closed the kept-alive connection: one new one
            self.reconnect()
            self.sock.setblocking(True)
            self.sock.sendall(self.pushes[self.j][1])
            self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ)

    def receive(self) -> tuple[int, bytes] | None:
        """(status, body) once the whole answer is in; status 0 if the connection closed."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return 0, b""
        self.buf += chunk
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self.buf[:head_end].lower()
        length = next((int(line[15:]) for line in head.split(b"\r\n") if line.startswith(b"content-length:")), 0)
        if len(self.buf) < head_end + 4 + length:
            return None
        status = int(self.buf[9:12])
        body = self.buf[head_end + 4:head_end + 4 + length]
        self.closed = b"connection: close" in head
        return status, body

    def record(self, status: int, body: bytes, at: float, start: float, results: dict) -> None:
        kind, _, step = self.pushes[self.j]
        self.j += 1
        results["lat"].append(at - self.planned_at)
        results["when"].append(self.planned_at - start)
        results["steps"].append(step)
        results["lanes"].append(self.k)
        results["kinds"][kind] += 1
        results["answers"][(status, body[:30])] += 1
        if status == 0:
            results["timeouts"] += 1
        elif status != 200:
            results["http"][status] += 1
        elif _BUSY in body:
            results["busy"] += 1
        elif _CONFIRMED in body:
            results["confirms"] += 1


def duration(plan: list, rate: float) -> float:
    """How long the whole plan takes at `rate`: every push once."""
    return sum(len(pushes) for pushes in plan) / rate


def intervals(plan: list, rate: float) -> list[float]:
    """Each lane's time between two pushes, so that every lane sends its last push by the
    plan's `duration` and the lanes together offer `rate` to the end. Users rarely divide
    evenly over the lanes (5,000 over 64: 8 lanes of 79, 56 of 78); at one shared
    interval the longer lanes went on alone after the others were done (2 s at an eighth
    of the rate), or were cut at 200 s with 136 pushes unsent."""
    whole = duration(plan, rate)
    return [whole / len(pushes) if pushes else 0.0 for pushes in plan]


def planned_at(j: int, k: int, n: int, interval: float) -> float:
    """The moment (from the start) of lane k's j-th push: lane k of n goes k/n of an
    interval after lane 0, so the lanes' pushes interleave evenly."""
    return (j + k / n) * interval


def offered(plan: list, rate: float, seconds: float) -> float:
    """The pushes a second the schedule offers over `seconds` (the rate itself when
    `seconds` is the plan's `duration`; less when a run is cut shorter than a lane's
    interval allows for, or longer)."""
    n = len(plan)
    paces = intervals(plan, rate)
    return sum(sum(1 for j in range(len(pushes)) if planned_at(j, k, n, paces[k]) < seconds)
               for k, pushes in enumerate(plan)) / seconds


def grouped(keys, r: dict) -> dict:
    """The run's latencies grouped by `keys` (one key per push, in `r["lat"]`'s order)."""
    groups: dict = {}
    for key, took in zip(keys, r["lat"]):
        groups.setdefault(key, []).append(took)
    return groups


def _p50_p99(v: list[float]) -> str:
    return f"p50 {percentile(v, 50) * 1000:7.1f}  p99 {percentile(v, 99) * 1000:7.1f}"


def timeline(r: dict, step: float = 10) -> str:
    """p50/p99/max of the pushes planned in each `step` seconds of the run: a stall shows
    where it happened."""
    buckets = grouped((int(at // step) for at in r["when"]), r)
    return "\n".join(f"  {k * step:>4.0f}-{(k + 1) * step:<4.0f}s {len(v):>6} pushes  {_p50_p99(v)}  "
                     f"max {max(v) * 1000:7.1f} ms" for k, v in sorted(buckets.items()))


def owners(lanes: list) -> dict[int, int]:
    """Which server process holds each lane's connection (lane -> pid), from the kernel's
    socket table: a worker that got more than its share of connections shows in `by_worker`."""
    import psutil

    port_of = {lane.sock.getsockname()[1]: lane.k for lane in lanes}
    server = lanes[0].port
    out = {}
    for c in psutil.net_connections("tcp"):
        if c.raddr and c.laddr.port == server and c.raddr.port in port_of and c.pid:
            out[port_of[c.raddr.port]] = c.pid
    return out


def by_worker(r: dict) -> str:
    """Per server process: its lanes (kept-alive connections) at the start and at the end
    (the workers close connections beyond their share, bot/gunicorn_worker.py), and the
    p50/p99 of the pushes of the lanes it held at the start."""
    groups = grouped((r["owners"].get(lane, 0) for lane in r["lanes"]), r)
    at_start, at_end = Counter(r["owners"].values()), Counter(r["owners_at_end"].values())
    return "\n".join(f"  pid {pid:>7}  {at_start[pid]:>3} lanes at the start, {at_end[pid]:>3} at the end; "
                      f"{len(v):>7} pushes  {_p50_p99(v)} ms"
                      for pid, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))) + (
        f"\n  connections closed by the server and opened again: {r['reconnects']}")


def by_step(r: dict) -> str:
    """p50/p99 of each step of the visit: which push makes the tail."""
    names = step_names()
    return "\n".join(f"  {k:>2} {names[k]:<16} {_p50_p99(v)} ms" for k, v in sorted(grouped(r["steps"], r).items()))


def step_names() -> list[str]:
    """Each step of `visit`, named as the tables name it."""
    from bot.sender import WeChatSender

    return [step_name(kind, fields) for kind, fields in visit(WeChatSender(TOKEN, APPID), 0, 0)]


def step_name(kind: str, fields: dict) -> str:
    """A step of `visit` in a few characters: what was typed or clicked."""
    return (fields.get("Content", "")[:8] or (f"click {fields['EventKey']}" if fields.get("EventKey") else "")
            or fields.get("Event") or fields["MsgType"])


def line(name: str, r: dict) -> str:
    return (f"{name:<22}{r['n']:>8}{r['rps']:>9.0f}{r['p50']:>9.1f}{r['p90']:>9.1f}{r['p99']:>9.1f}"
            f"{sum(r['http'].values()):>7}{r['timeouts']:>9}{r['busy']:>6}")


def reply_buckets(url: str) -> dict[str, float]:
    """The server's own reply-time histogram (`volbot_reply_seconds`, from the request's
    arrival in the app to its reply) from /metrics: cumulative counts by upper bound."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(urlopen(url + "/metrics", timeout=10).read().decode()):
        for sample in family.samples:
            if sample.name == "volbot_reply_seconds_bucket":
                le = sample.labels["le"]
                out[le] = out.get(le, 0.0) + sample.value
    return out


def server_side(before: dict, after: dict) -> str:
    """The share of the replies between two `reply_buckets` readings that took at most each bound."""
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    if not total:
        return "(no replies counted)"
    return ", ".join(f"<= {le} s {(after[le] - before.get(le, 0)) / total:.1%}" for le in ("0.01", "0.025", "0.05", "0.1", "0.25")
                     if le in after)


def run_outside_transactions(url: str, *statements: str) -> None:
    """`statements` on an autocommit connection (what DROP/CREATE DATABASE and VACUUM need)."""
    from sqlalchemy import create_engine, text

    from bot.config import normalise_database_url

    engine = create_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def reset_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    run_outside_transactions(base + "/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                             f'CREATE DATABASE "{name}"')


def row_counts(stack: Stack) -> tuple[int, int]:
    """(orders, followers) in SQL now."""
    from sqlalchemy import func, select

    from store.models import Follower, Order

    svc = stack.services()
    try:
        with svc.db.transaction() as session:
            return (session.scalar(select(func.count()).select_from(Order)),
                    session.scalar(select(func.count()).select_from(Follower)))
    finally:
        svc.close()


def analyze(url: str) -> None:
    """VACUUM ANALYZE after the bulk seed, as after any bulk load: otherwise autovacuum
    does it during the run, on the same two cores."""
    run_outside_transactions(url, "VACUUM ANALYZE")


def cpu_seconds(root) -> float:
    """CPU time (user + system) of a process and its descendants, the exited ones included
    (their time is added to the parent that reaped them)."""
    import psutil

    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuMeter:
    """CPU seconds each kind of process spends between `start()` and `stop()`."""

    def __init__(self, stack: Stack, serve_proc):
        import psutil

        postmasters = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"
                       and p.parent() is not None and p.parent().name() != "postgres"]
        self.roots = {"web workers": [psutil.Process(serve_proc.pid)], "PostgreSQL": postmasters,
                      "Redis": [psutil.Process(stack.redis.proc.pid)]}

    def _read(self) -> dict[str, float]:
        spent = {kind: sum(cpu_seconds(p) for p in procs) for kind, procs in self.roots.items()}
        own = os.times()  # this process alone: its children are the servers above
        return {**spent, "generator": own.user + own.system}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {kind: after[kind] - self.before[kind] for kind in after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=TARGET_RPS, help="pushes a second (open loop)")
    ap.add_argument("--seconds", type=float, default=None, help="stop early (default: when every visit is done)")
    ap.add_argument("--baseline-seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=20, help="seconds of other users' pushes before the run (0: none)")
    ap.add_argument("--clients", type=int, default=64, help="lanes: kept-alive client connections")
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: volbot serve's)")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: volbot serve's)")
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/volbot_load")
    ap.add_argument("--profile", type=float, default=0,
                    help="py-spy the workers' Python CPU (--gil) for this many seconds mid-run")
    args = ap.parse_args()
    from bot.config import load_config
    from bot.serving import default_workers

    threads = load_config().threads  # volbot serve's

    workers = args.workers or default_workers()
    args.threads = args.threads or threads
    seconds = args.seconds or args.users * 20 / args.rate  # the plan's duration: every visit done
    print(f"load test: {args.users} users at {args.rate:g} pushes/s on {args.clients} connections for "
          f"{seconds:g} s; volbot serve: {workers} workers x {args.threads} threads; {load_average()}")
    reset_database(args.database_url)
    with Stack("load", database_url=args.database_url) as stack:
        svc = stack.services()
        try:
            svc.db.create_all()
            from demo import district

            t0 = time.monotonic()
            with svc.db.transaction() as session:
                district.seed(session, now=svc.clock.now(), pii_key=svc.keyring)
            print(f"set-up: demo district seeded in {time.monotonic() - t0:.0f} s")
        finally:
            svc.close()
        analyze(args.database_url)
        t0 = time.monotonic()
        scripts = build(range(args.users))
        plan = lanes(scripts, args.clients)
        total = sum(len(s) for s in scripts)
        offer = offered(plan, args.rate, seconds)
        print(f"set-up: {total} requests built and signed in {time.monotonic() - t0:.1f} s "
              f"({Counter(k for s in scripts for k, _, _, _ in s)}); offered over the run: "
              f"{offer:.1f} pushes/s")

        # The generator's ceiling: the same requests against a bare app under the same gunicorn.
        port = free_port()
        bare = subprocess.Popen(gunicorn_command("bench.webhook:bare_app", port, workers, args.threads),
                                env={**stack.env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(stack.folder / "bare.log", "w"))
        stack.procs.append(bare)
        stack.wait_workers(workers)
        bare_result = drive(port, plan, args.baseline_seconds)
        # ... and at the run's own rate: the latency the generator and machine add by themselves.
        bare_meter = CpuMeter(stack, bare)
        bare_meter.start()
        bare_paced = drive(port, plan, args.baseline_seconds, args.rate)
        bare_web = bare_meter.stop()["web workers"] * 1000 / max(bare_paced["n"], 1)
        stack.stop(bare)
        print(f"generator ceiling (bare app, signature check only, closed loop): {bare_result['rps']:.0f} req/s, "
              f"p50 {bare_result['p50']:.1f} ms, p99 {bare_result['p99']:.1f} ms; at {args.rate:g}/s: "
              f"p50 {bare_paced['p50']:.1f} ms, p99 {bare_paced['p99']:.1f} ms; {load_average()}")

        url = stack.serve(workers=workers, threads=args.threads, VOLBOT_LOG_FORMAT="json")
        web_port = int(url.rsplit(":", 1)[1])
        if args.warmup:
            # A running deployment's workers have compiled their statements, filled their
            # caches and opened their connections long before: so do these, on other users
            # (their rows stay, as a running district's would).
            warm = drive(web_port, lanes(build(range(100_000, 100_000 + args.clients * 20)), args.clients),
                         args.warmup, args.rate)
            print(f"warm-up (not counted): {warm['n']} pushes of other users at {args.rate:g}/s, "
                  f"p99 {warm['p99']:.0f} ms; {load_average()}")
        rows_before = row_counts(stack)  # the warm-up's users wrote theirs
        profiler = None
        if args.profile:
            profiler = threading.Timer(seconds / 3, profile_worker, args=(stack, args.profile))
            profiler.start()
        meter = CpuMeter(stack, next(p for p in stack.procs if getattr(p, "name", "") == "serve"))
        buckets = reply_buckets(url)
        meter.start()
        result = drive(web_port, plan, seconds, args.rate)
        cpu = meter.stop()
        buckets = server_side(buckets, reply_buckets(url))
        if profiler:
            profiler.join()
        orders, followers = (after - before for after, before in zip(row_counts(stack), rows_before))
        print(f"{load_average()} at the end")
        print(f"{'run':<22}{'requests':>8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non200':>7}"
              f"{'timeouts':>9}{'busy':>6}")
        print(line("bare app (ceiling)", bare_result))
        print(line(f"bare app @{args.rate:g}/s", bare_paced))
        print(line(f"volbot serve @{args.rate:g}/s", result))
        print("latency over the run (by planned moment):\n" + timeline(result))
        print("latency by step of the visit:\n" + by_step(result))
        print("latency by web worker (the process holding each lane's connection):\n" + by_worker(result))
        print(f"the server's own reply time (volbot_reply_seconds, arrival in the app to reply): {buckets}")
        print(f"sent late (lane still waiting for an answer) by > {LATE_MS} ms: {result['late']}; "
              f"mix sent: {dict(result['kinds'])}")
        print(f"rows written: {orders} orders for {result['confirms']} confirmations answered "
              f"({'each once' if orders == result['confirms'] else 'MISMATCH'}), {followers} followers")
        n = max(result["n"], 1)
        per_push = {kind: secs * 1000 / n for kind, secs in cpu.items()}
        cores = os.cpu_count() or 1
        whole = sum(per_push.values())
        print("CPU per push: " + ", ".join(f"{kind} {ms:.2f} ms" for kind, ms in per_push.items())
              + f"; {whole:.2f} ms in all, so {cores} cores could carry at most {cores * 1000 / whole:.0f} pushes/s")
        print(f"the bare app's web workers at {args.rate:g}/s: {bare_web:.2f} ms per push (gunicorn, HTTP, Flask, "
              f"the signature: what every push costs before the bot's own work)")
        # Kept pace: the achieved rate is the offered one (within the 1% the last answers'
        # latency adds to the window), and the offer was the target's.
        ok = (offer >= 0.99 * TARGET_RPS and result["rps"] >= 0.99 * offer and result["p99"] < TARGET_P99_MS
              and result["errors"] == 0 and orders == result["confirms"])
        print(f"target >= {TARGET_RPS} msg/s, p99 < {TARGET_P99_MS:g} ms, 0 errors: {'met' if ok else 'NOT met'}")


def profile_worker(stack: Stack, seconds: float) -> None:
    """py-spy every gunicorn worker for `seconds` (at once), sampling only the thread that
    holds the GIL — the Python CPU time; waiting threads are not told apart from idle ones
    on every machine. The top functions over all workers go to the output, with how the
    samples spread over the workers."""
    import psutil

    master = next(p for p in stack.procs if getattr(p, "name", "") == "serve")
    children = [c for c in psutil.Process(master.pid).children() if "redis" not in c.name()]
    spies = []
    for child in children:
        out = stack.folder / f"profile-{child.pid}.txt"
        spies.append((out, subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(child.pid), "--duration",
                                             str(int(seconds)), "--format", "raw", "--output", str(out),
                                             "--gil", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    for _, spy in spies:
        spy.wait()
    merged = stack.folder / "profile.txt"
    per_worker = []
    with open(merged, "w") as f:
        for out, _ in spies:
            text = out.read_text() if out.exists() else ""
            per_worker.append(sum(int(r.rpartition(" ")[2]) for r in text.splitlines() if r.rpartition(" ")[2].isdigit()))
            f.write(text)
    print(f"py-spy profile of {len(spies)} workers (samples per worker: {per_worker}): {merged}")
    summarize_profile(merged)


PROJECT = ("bot/", "dialogue/", "handlers/", "store/", "pushes/", "console/")


def summarize_profile(path: Path, top: int = 20) -> None:
    """From py-spy's raw output: the project's functions by share of samples with them on
    the stack (inclusive)."""
    if not path.exists():
        print("  (no profile: py-spy failed)")
        return
    inclusive, total = Counter(), 0
    for row in path.read_text().splitlines():
        stack_text, _, count = row.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack_text.split(";")
        for frame in set(frames):
            if any(p in frame for p in PROJECT):
                inclusive[frame] += n
    if not total:
        print("  (no samples)")
        return
    print(f"  {total} samples of the GIL holder; project functions by share of samples on the stack:")
    for frame, n in inclusive.most_common(top):
        print(f"  {n / total:6.1%}  {frame[:140]}")


if __name__ == "__main__":
    export(PYTHONUNBUFFERED=environ_value("PYTHONUNBUFFERED") or "1")  # the servers it starts
    main()
