"""Load test: a realistic mix of WeChat pushes from 5,000 distinct users against
`volbot serve` (gunicorn) on PostgreSQL and Redis, for a bounded time.

    .venv/bin/python bench/load.py [--users 5000] [--seconds 60] [--concurrency 32]
                                   [--workers N] [--threads N] [--database-url URL]

Each user plays one scripted visit of 20 pushes, in order (a user waits for each reply,
as a person does): follow, 预约志愿服务 by menu click, the order form answered by text and
one location (category, service, need, address as a location, room, community, time, phone,
确认 — an order row is written), 我的订单, 菜单 and a number, a second order started and
cancelled, 志愿活动, a reported LOCATION event. That is 14 text turns inside forms and
menus (70%), 4 clicks (20%), 2 locations/events (10%). Requests are built and signed before
the clock starts; each client thread owns a slice of the users and talks with 8 of them at
a time, one push each per round, taking the next user when one finishes.

Set-up (not timed): a private redis-server on a free port; PostgreSQL from `--database-url`
(default: a database `volbot_load` on the machine's server at 127.0.0.1:5432, dropped and
recreated) seeded with the demo district (demo/), so the forms see a real catalog.

Prints, in one run on the same machine: the generator's own ceiling (the same requests
against a bare app that only checks the signature, under the same gunicorn settings), then
the bot's throughput, p50/p90/p99 and errors (non-200 answers, time-outs, 系统繁忙), with
the load average — the machine is shared, so numbers are noisy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.drills.support import (  # noqa: E402
    APPID, BIN, BUSY_TEXT, TOKEN, Client, Stack, free_port, load_average, percentile, wait_for,
)

TARGET_RPS, TARGET_P99_MS = 500, 100.0
WINDOW = 8  # users each client thread talks with at once
KINDS = ("text", "click", "location/event")


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


def build(users: range) -> list[list[tuple[str, str, bytes]]]:
    """Per user: the visit as (kind, path with signed query, body), ready to send."""
    from bot.sender import WeChatSender

    sender = WeChatSender(TOKEN, APPID)
    created = int(time.time())
    out = []
    for user in users:
        script = []
        for kind, fields in visit(sender, user, created):
            params, body = sender.request(fields, encrypt=False)
            script.append((kind, "/wechat?" + urlencode(params), body))
        out.append(script)
    return out


def drive(port: int, scripts: list, seconds: float, concurrency: int) -> dict:
    """Closed loop: `concurrency` threads, each going round its own users, for `seconds`."""
    results = {"lat": [], "kinds": Counter(), "http": Counter(), "busy": 0, "timeouts": 0, "exhausted": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(mine: list):
        # A window of WINDOW users at a time, each one push per round: every user's pushes
        # stay in order, and the mix is the visit's mix from the first second on.
        client = Client(port, timeout=10)
        lat, kinds, http, busy, timeouts = [], Counter(), Counter(), 0, 0
        pending = iter(mine)
        window = [[script, 0] for script in (next(pending, None) for _ in range(WINDOW)) if script]
        while window and time.monotonic() < stop_at:
            for entry in list(window):
                script, pos = entry
                kind, path, body = script[pos]
                entry[1] += 1
                if entry[1] >= len(script):
                    window.remove(entry)
                    nxt = next(pending, None)
                    if nxt is not None:
                        window.append([nxt, 0])
                status, data, took = client.post_raw(path, body)
                lat.append(took)
                kinds[kind] += 1
                if status == 0:
                    timeouts += 1
                elif status != 200:
                    http[status] += 1
                elif BUSY_TEXT in data:
                    busy += 1
                if time.monotonic() >= stop_at:
                    break
        with lock:
            if not window:
                results["exhausted"] += 1
            results["lat"].extend(lat)
            results["kinds"].update(kinds)
            results["http"].update(http)
            results["busy"] += busy
            results["timeouts"] += timeouts

    threads = [threading.Thread(target=worker, args=(scripts[k::concurrency],)) for k in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    lat = results["lat"]
    return {"n": len(lat), "rps": len(lat) / elapsed, "seconds": elapsed,
            "p50": percentile(lat, 50) * 1000, "p90": percentile(lat, 90) * 1000, "p99": percentile(lat, 99) * 1000,
            "errors": sum(results["http"].values()) + results["timeouts"] + results["busy"], **results}


def line(name: str, r: dict) -> str:
    return (f"{name:<22}{r['n']:>8}{r['rps']:>9.0f}{r['p50']:>9.1f}{r['p90']:>9.1f}{r['p99']:>9.1f}"
            f"{sum(r['http'].values()):>7}{r['timeouts']:>9}{r['busy']:>6}")


def reset_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    from bot.config import normalise_database_url

    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    engine = create_engine(normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--baseline-seconds", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: volbot serve's)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/volbot_load")
    ap.add_argument("--profile", type=float, default=0, help="py-spy a worker for this many seconds mid-run")
    args = ap.parse_args()
    from bot.gunicorn_conf import default_workers

    workers = args.workers or default_workers()

    print(f"load test: {args.users} users, {args.concurrency} client threads, {args.seconds:g} s; "
          f"volbot serve: {workers} workers x {args.threads} threads; {load_average()}")
    reset_database(args.database_url)
    with Stack("load", database_url=args.database_url) as stack:
        svc = stack.services()
        try:
            svc.db.create_all()
            from demo import district

            t0 = time.monotonic()
            with svc.db.transaction() as session:
                district.seed(session, now=svc.clock.now(), pii_key=svc.config.pii_key)
            print(f"set-up: demo district seeded in {time.monotonic() - t0:.0f} s")
        finally:
            svc.close()
        t0 = time.monotonic()
        scripts = build(range(args.users))
        total = sum(len(s) for s in scripts)
        print(f"set-up: {total} requests built and signed in {time.monotonic() - t0:.1f} s "
              f"({Counter(k for s in scripts for k, _, _ in s)})")

        # The generator's ceiling: the same requests against a bare app under the same gunicorn.
        port = free_port()
        bare = subprocess.Popen([str(BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "gthread",
                                 "--threads", str(args.threads), "--bind", f"127.0.0.1:{port}", "--no-control-socket",
                                 "--log-level", "warning", "bench.webhook:bare_app"],
                                env={**stack.env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        stack.procs.append(bare)
        wait_for(lambda: Client(port).post_raw(scripts[0][2][1], scripts[0][2][2])[0] == 200, 60, "bare app")
        bare_result = drive(port, scripts, args.baseline_seconds, args.concurrency)
        stack.stop(bare)
        print(f"generator ceiling (bare app, signature check only): {bare_result['rps']:.0f} req/s, "
              f"p50 {bare_result['p50']:.1f} ms, p99 {bare_result['p99']:.1f} ms; {load_average()}")

        url = stack.serve(workers=workers, threads=args.threads, VOLBOT_LOG_FORMAT="json")
        web_port = int(url.rsplit(":", 1)[1])
        profiler = None
        if args.profile:
            profiler = threading.Timer(args.seconds / 3, profile_worker, args=(stack, args.profile))
            profiler.start()
        result = drive(web_port, scripts, args.seconds, args.concurrency)
        if profiler:
            profiler.join()
        svc = stack.services()
        try:
            from sqlalchemy import func, select

            from store.models import Follower, Order

            with svc.db.transaction() as session:
                orders = session.scalar(select(func.count()).select_from(Order))
                followers = session.scalar(select(func.count()).select_from(Follower))
        finally:
            svc.close()
        print(f"{load_average()} at the end")
        print(f"{'run':<22}{'requests':>8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non200':>7}"
              f"{'timeouts':>9}{'busy':>6}")
        print(line("bare app (ceiling)", bare_result))
        print(line("volbot serve", result))
        print(f"mix sent: {dict(result['kinds'])}; rows written: {followers} followers, {orders} orders"
              + (f"; {result['exhausted']} client threads ran out of scripted pushes" if result["exhausted"] else ""))
        ok = result["rps"] >= TARGET_RPS and result["p99"] < TARGET_P99_MS and result["errors"] == 0
        print(f"target >= {TARGET_RPS} msg/s, p99 < {TARGET_P99_MS:g} ms, 0 errors: {'met' if ok else 'NOT met'}")


def profile_worker(stack: Stack, seconds: float) -> None:
    """py-spy every gunicorn worker for `seconds` (at once); the top functions over all of
    them go to the output, with how the samples spread over the workers."""
    import psutil

    master = next(p for p in stack.procs if getattr(p, "name", "") == "serve")
    children = [c for c in psutil.Process(master.pid).children() if "redis" not in c.name()]
    spies = []
    for child in children:
        out = stack.folder / f"profile-{child.pid}.txt"
        spies.append((out, subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(child.pid), "--duration",
                                             str(int(seconds)), "--format", "raw", "--output", str(out),
                                             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
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
WAITS = {"Connection.wait (psycopg/": "waiting for PostgreSQL", "_read_from_socket (redis/": "waiting for Redis"}


def summarize_profile(path: Path, top: int = 20) -> None:
    """From py-spy's raw output: the project's functions by share of samples with them on
    the stack (inclusive), and how much of the time was spent waiting on each backend."""
    if not path.exists():
        print("  (no profile: py-spy failed)")
        return
    inclusive, waits, total = Counter(), Counter(), 0
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
        for marker, what in WAITS.items():
            if marker in stack_text:
                waits[what] += n
    if not total:
        print("  (no samples)")
        return
    print(f"  {total} samples; {', '.join(f'{what} {n / total:.0%}' for what, n in waits.items())}; "
          "project functions by share of samples on the stack:")
    for frame, n in inclusive.most_common(top):
        print(f"  {n / total:6.1%}  {frame[:140]}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
