"""Drill: PostgreSQL restarted under load.

    .venv/bin/python bench/drills/postgres_restart.py [--residents 30] [--load-threads 8]
                                                      [--at 2] [--down 3] [--think 0.6]

Starts a private PostgreSQL cluster (initdb + pg_ctl on a free port in a temp folder — the
machine's shared server is never touched), a private redis-server and `volbot serve`
(gunicorn, 2 workers). Background threads send 菜单 / 我的时长 pushes as fast as they are
answered while residents order a service by chat (support.Resident). Mid-way PostgreSQL
is stopped (`pg_ctl stop -m fast`: connections are cut, in-flight transactions roll back)
and started again `--down` seconds later.

Expected: no 500 and no time-out; pushes that need SQL during the gap are answered
系统繁忙 within the deadline; pooled connections broken by the restart are replaced
(an idle one is pinged at checkout, one in use is retried once by the pipeline) without
an error reaching a user; every resident ends with exactly one
order, and every order number given is in SQL.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import BUSY_TEXT, Client, Conversations, Stack, load_average, percentile


def background(port: int, stop: threading.Event, seen: Counter, latencies: list, n: int) -> None:
    client = Client(port)
    words = ("菜单", "我的时长", "帮助")
    i = 0
    while not stop.is_set():
        i += 1
        status, body, took = client.post(client.sender.text(f"o_bg_{n:03d}_{i % 50}", words[i % 3]))
        latencies.append(took)
        seen["timeout" if status == 0 else "busy" if BUSY_TEXT in body else "ok" if status == 200 else f"http {status}"] += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=30)
    ap.add_argument("--load-threads", type=int, default=8)
    ap.add_argument("--at", type=float, default=2.0, help="seconds into the run PostgreSQL restarts")
    ap.add_argument("--down", type=float, default=3.0, help="seconds PostgreSQL stays down")
    ap.add_argument("--think", type=float, default=0.6, help="seconds a resident reads each reply")
    args = ap.parse_args()
    print(f"drill: PostgreSQL restarted under load — {args.residents} residents ordering, {args.load_threads} "
          f"threads of background pushes; {load_average()}")
    with Stack("drill-pg", postgres="private") as stack:
        stack.create_schema()
        port = int(stack.serve(workers=2).rsplit(":", 1)[1])
        chats = Conversations(stack, args.residents, think=args.think)
        bg_seen, bg_lat, bg_stop = Counter(), [], threading.Event()
        bg = [threading.Thread(target=background, args=(port, bg_stop, bg_seen, bg_lat, n))
              for n in range(args.load_threads)]
        chats.start()
        for t in bg:
            t.start()
        time.sleep(args.at)
        down = chats.mark("postgres stopped")
        stack.postgres.stop()  # -m fast: connections cut, open transactions rolled back
        time.sleep(args.down)
        stack.postgres.start()
        print(f"PostgreSQL was down {chats.mark('postgres back') - down:.1f} s")
        ok = chats.finish()
        bg_stop.set()
        for t in bg:
            t.join()
        print(f"background pushes: {dict(bg_seen)}; p50 {percentile(bg_lat, 50) * 1000:.0f} ms, "
              f"p99 {percentile(bg_lat, 99) * 1000:.0f} ms, max {max(bg_lat) * 1000:.0f} ms")
        ok = ok and not any(k.startswith(("http", "timeout")) for k in bg_seen) and max(bg_lat) < 5
        print(f"{load_average()}; RESULT: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
