"""Fan-out benchmark: one bus visit to every subscriber of one community, through the real
pipeline (SQL rows → `volbot scheduler` → RQ → 2 × `volbot worker` → the WeChat emulator).

    .venv/bin/python bench/fanout.py [--subscribers 40000] [--rate 5000]
                                     [--database-url postgresql://...] [--redis-url redis://...]

Prints:
- baseline: template sends/s of one client calling the emulator directly in a loop (no SQL,
  no queue), measured in the same run on the same machine;
- run 1: a visit scheduled; sends/s and end-to-end time with 2 workers;
- run 2: the visit changed (a second fan-out); one worker is SIGKILLed half-way and started
  again; the counts from the emulator's record and from SQL show every subscriber got
  exactly one push of the change.

Without URLs it uses a fresh SQLite file and an embedded Redis in a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.config import child_environ

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select

from bot.config import load_config
from bot.services import Services
from emulator import create_emulator, make_emulator_server
from pushes.client import ApiClient
from rules import bus
from store.models import BusSubscription, BusVisit, Community, Follower, Push

VOLBOT = str(Path(sys.executable).with_name("volbot"))


def start_emulator(config) -> tuple[str, object]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    app = create_emulator({config.wechat_appid: config.wechat_secret}, token=config.wechat_token)
    server = make_emulator_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/cgi-bin/", app.extensions["emulator"]


def seed(svc, n: int) -> Community:
    """One community with `n` following subscribers (bulk inserts: this is set-up, not measured)."""
    with svc.db.transaction() as s:
        community = Community(code="BENCH-C1", name="奎文巴士基准社区", street="东关街道")
        s.add(community)
        s.flush()
        now = datetime.now(timezone.utc)
        for i in range(0, n, 5000):
            s.execute(insert(Follower), [{"openid": f"o_bench_{j:06d}", "subscribed": True, "subscribed_at": now}
                                         for j in range(i, min(n, i + 5000))])
        ids = s.scalars(select(Follower.id).order_by(Follower.id)).all()
        for i in range(0, len(ids), 5000):
            s.execute(insert(BusSubscription), [{"follower_id": f, "community_id": community.id, "source": "cli"}
                                                for f in ids[i:i + 5000]])
        return community


def baseline(api_base: str, svc, config, count: int = 1000) -> float:
    client = ApiClient(config.wechat_appid, config.wechat_secret, svc.redis, api_base=api_base)
    started = time.perf_counter()
    for i in range(count):
        client.send_template(f"o_baseline_{i:05d}", "volbot-baseline", {"first": {"value": "基准"}})
    return count / (time.perf_counter() - started)


def spawn(env: dict, *args: str) -> subprocess.Popen:
    """A `volbot` child; its output goes to a log file in the instance folder."""
    log = open(Path(env["VOLBOT_INSTANCE"]) / f"{args[0]}-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen([VOLBOT, *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log_path = log.name
    return proc


def check_alive(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is not None:
            tail = Path(p.log_path).read_text(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(p.args[1:])} exited ({p.returncode}):\n{tail}")


def batch_counts(svc, batch: str) -> Counter:
    with svc.db.transaction() as s:
        return Counter(dict(s.execute(select(Push.state, func.count()).where(Push.batch == batch)
                                      .group_by(Push.state)).all()))


def wait_done(svc, batch: str, total: int, procs, *, on_progress=None, timeout: float = 3600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        check_alive(procs)
        counts = batch_counts(svc, batch)
        done = counts["sent"] + counts["delivered"] + counts["failed"]
        if on_progress:
            on_progress(done)
        if done >= total:
            return time.perf_counter() - started
        time.sleep(1.0)  # the count takes SQLite's write lock too: poll gently
    raise SystemExit(f"timed out: {dict(batch_counts(svc, batch))}")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=40_000)
    ap.add_argument("--rate", type=float, default=5000, help="token-bucket limit, sends/s across workers")
    ap.add_argument("--database-url")
    ap.add_argument("--redis-url")
    args = ap.parse_args()
    n = args.subscribers

    tmp = Path(tempfile.mkdtemp(prefix="volbot-fanout-"))
    config = load_config(tmp, environ={}, env="testing", database_url=args.database_url,
                         redis_url=args.redis_url, wechat_api_base="http://127.0.0.1:9/cgi-bin/")
    svc = Services(config)
    svc.db.drop_all()
    svc.db.create_all()
    if args.redis_url:
        svc.redis.flushdb()
    api_base, emu = start_emulator(config)
    env = child_environ(VOLBOT_INSTANCE=str(tmp), VOLBOT_ENV="testing",
                        DATABASE_URL=args.database_url or config.sqlalchemy_url, REDIS_URL=svc.redis_url,
                        WECHAT_API_BASE=api_base, PUSH_RATE=str(args.rate))  # the default lease: recovery
    # of the killed worker's job comes from its missing heartbeats, as in production
    print(f"fan-out benchmark: {n} subscribers, 2 workers, rate limit {args.rate:g}/s, "
          f"{'PostgreSQL' if not svc.db.is_sqlite else 'SQLite'}, "
          f"{'Redis server' if args.redis_url else 'embedded Redis'}; emulator at {api_base}")

    base = baseline(api_base, svc, config)
    print(f"baseline (one client → emulator, no SQL/queue): {base:,.0f} sends/s")

    t0 = time.perf_counter()
    community = seed(svc, n)
    print(f"set-up: {n} followers subscribed in {time.perf_counter() - t0:.1f} s")

    procs = [spawn(env, "scheduler", "--interval", "0.5"), spawn(env, "worker", "--name", "bench-w1"),
             spawn(env, "worker", "--name", "bench-w2")]
    # Let them start before the fan-out: on SQLite its one big transaction holds the write
    # lock for seconds, and a process starting meanwhile fails its start-up check.
    time.sleep(5)
    try:
        check_alive(procs)
        # ---- run 1: a visit scheduled ---------------------------------------------------------
        day = (datetime.now(bus.CHINA) + timedelta(days=3)).date()
        start, end = bus.local_span(day, datetime.strptime("09:00", "%H:%M").time(),
                                    datetime.strptime("11:30", "%H:%M").time())
        t0 = time.perf_counter()
        with svc.db.transaction() as s:
            visit = bus.schedule(s, community=s.get(Community, community.id), starts_at=start, ends_at=end,
                                 place="基准社区广场", services=["health", "lawyer"], now=datetime.now(timezone.utc))
            visit_id, batch = visit.id, bus.batch_id(visit)
        recorded = time.perf_counter() - t0
        elapsed = recorded + wait_done(svc, batch, n, procs)
        print(f"run 1 (schedule): {n} pushes recorded in {recorded:.1f} s; all sent in {elapsed:.1f} s "
              f"end to end → {n / elapsed:,.0f} sends/s ({n / elapsed / base:.0%} of baseline)")

        # ---- run 2: the visit changed; a worker is killed half-way and restarted --------------------
        t0 = time.perf_counter()
        with svc.db.transaction() as s:
            visit = bus.change(s, s.get(BusVisit, visit_id), now=datetime.now(timezone.utc), place="基准社区北门",
                               reason="广场施工")
            batch2 = bus.batch_id(visit)
        killed = {}

        def kill_half_way(done: int) -> None:
            if not killed and done >= n // 2:
                procs[1].send_signal(signal.SIGKILL)
                procs[1].wait()
                killed["at"] = done
                # restarted under the same name, as systemd's Restart=always does with the unit's
                # `--name %H-%i` (a worker refusing the name would stop the run: check_alive)
                procs[1] = spawn(env, "worker", "--name", "bench-w1")

        elapsed = time.perf_counter() - t0 + wait_done(svc, batch2, n, procs, on_progress=kill_half_way)
        print(f"run 2 (change, worker SIGKILLed at {killed.get('at')} sent and restarted): all done in "
              f"{elapsed:.1f} s → {n / elapsed:,.0f} sends/s")
    finally:
        stop(procs)

    # ---- the proof: exactly one push of the change per subscriber ---------------------------------
    with emu.lock:
        change_msgs = [m for m in emu.messages if m["template_id"] == "volbot-bus-change"]
        visit_msgs = [m for m in emu.messages if m["template_id"] == "volbot-bus-visit"]
        dedup_hits = sum(1 for c in emu.calls if c.get("dedup"))
    per_openid = Counter(m["openid"] for m in change_msgs)
    sql = batch_counts(svc, batch2)
    with svc.db.transaction() as s:
        max_attempts = s.scalar(select(func.max(Push.attempts)).where(Push.batch == batch2))
        retried = s.scalar(select(func.count()).where(Push.batch == batch2, Push.attempts > 1))
    print("emulator record (what WeChat accepted):")
    print(f"  run 1 visit notices: {len(visit_msgs)} to {len({m['openid'] for m in visit_msgs})} subscribers")
    print(f"  run 2 change notices: {len(change_msgs)} to {len(per_openid)} subscribers; "
          f"max per subscriber {max(per_openid.values(), default=0)}; "
          f"resends dropped by client_msg_id dedup: {dedup_hits}")
    print(f"SQL (batch {batch2}): {dict(sql)}; rows sent more than once (attempts > 1): {retried}, "
          f"max attempts {max_attempts}")
    exact = (len(change_msgs) == n and len(per_openid) == n and sql["sent"] == n
             and len(visit_msgs) == n)
    print("EXACTLY ONCE: " + ("yes — every subscriber got one push per announcement" if exact else "NO"))
    svc.close()
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
