"""Drill: Redis restarted in the middle of conversations.

    .venv/bin/python bench/drills/redis_restart.py [--residents 30] [--down 3] [--at 2] [--think 0.6]

Starts a private redis-server and PostgreSQL cluster (never the machine's shared ones) and
`volbot serve` (gunicorn, 2 workers) on loopback. Residents order a service by chat, each
at their own pace (see support.Resident). Mid-way Redis is stopped for `--down` seconds and
started again empty (no persistence: the worst case — dedup marks, locks and every form in
progress are gone).

Expected: during the gap every push is answered 200 with 系统繁忙 within the deadline (no
500, no time-out); afterwards residents whose form was lost start again from the menu; in
the end every resident has exactly one order, and every order number a resident was given
is in SQL.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import Conversations, Stack, load_average


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=30)
    ap.add_argument("--down", type=float, default=3.0, help="seconds Redis stays down")
    ap.add_argument("--at", type=float, default=2.0, help="seconds into the conversations Redis stops")
    ap.add_argument("--think", type=float, default=0.6, help="seconds a resident reads each reply")
    args = ap.parse_args()
    print(f"drill: Redis restarted mid-conversation — {args.residents} residents, Redis down {args.down:g} s; "
          f"{load_average()}")
    with Stack("drill-redis") as stack:
        stack.create_schema()
        stack.serve(workers=2)
        chats = Conversations(stack, args.residents, think=args.think)
        chats.start()
        time.sleep(args.at)
        chats.mark("redis stopped")
        stack.redis.stop()
        time.sleep(args.down)
        stack.redis.start()
        chats.mark("redis started (empty)")
        ok = chats.finish()
        server_errors = stack.log_tail("serve", 10**7).count('"level": "error"')
        print(f"volbot serve logged {server_errors} error lines (turns that failed while Redis was away)")
        print(f"{load_average()}; RESULT: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
