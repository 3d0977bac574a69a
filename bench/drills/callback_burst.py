"""Drill: a burst of 2,000 TEMPLATESENDJOBFINISH callbacks in one second.

    .venv/bin/python bench/drills/callback_burst.py [--callbacks 2000] [--over 1.0] [--workers N]

After a fan-out WeChat posts one delivery receipt per template message, in bursts. Starts a
private redis-server and PostgreSQL cluster and `volbot serve`; records `--callbacks` pushes
as sent (each with its WeChat msgid); then posts one signed receipt per push, spread evenly
over `--over` seconds (open loop: each is sent at its planned moment, whatever the answers
before it), from 64 client threads.

Expected: every receipt is answered 200 `success` (nothing for WeChat to retry), p99 under
100 ms, and every push is `delivered` in SQL. The webhook only queues a receipt in Redis;
`volbot scheduler` (running through the burst, as in production) applies the queue in bulk
on its next pass, so the drill also prints how long after the last answer SQL had them all. For scale, the same burst first goes to a bare
app (bench/webhook.py's: signature check, constant answer) under the same gunicorn settings:
what this machine can do at all.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import Client, Stack, load_average, percentile  # noqa: E402


def record_sent(stack: Stack, n: int) -> None:
    from sqlalchemy import update

    from pushes.outbox import notify_many
    from store.models import Push

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            notify_many(s, [dict(openid=f"o_burst_{i:05d}", kind="bus_visit", title="志愿巴士到访通知",
                                 fields={"community": "东风社区"}, dedup_key=f"burst-{i}", batch="drill-burst")
                            for i in range(n)])
            s.execute(update(Push).where(Push.batch == "drill-burst")
                      .values(state="sent", attempts=1, wechat_msgid=Push.dedup_key)
                      .execution_options(synchronize_session=False))
    finally:
        svc.close()


def delivered(stack: Stack) -> Counter:
    from sqlalchemy import func, select

    from store.models import Push

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            return Counter(dict(s.execute(select(Push.state, func.count()).where(Push.batch == "drill-burst")
                                          .group_by(Push.state)).all()))
    finally:
        svc.close()


def start_bare(stack: Stack, workers: int) -> int:
    """bench/webhook.py's bare app (signature check, constant answer) under the same gunicorn."""
    import subprocess

    from bench.drills.support import ROOT, free_port, wait_for
    from bench.webhook import gunicorn_command

    port = free_port()
    proc = subprocess.Popen(gunicorn_command("bench.webhook:bare_app", port, workers), env=stack.env, cwd=ROOT)
    stack.procs.append(proc)
    wait_for(lambda: Client(port).post_raw("/wechat", b"")[0] == 403, 60, "the bare app")
    return port


def burst(port: int, planned: list, threads: int) -> dict:
    """Post `planned` (offset, path, body) open-loop from `threads` threads; what came back."""
    outcomes, latencies, late = Counter(), [], []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.2

    def run(mine):
        c = Client(port)
        mine_lat, mine_out, mine_late = [], Counter(), []
        for at, path, body in mine:
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                mine_late.append(-delay)
            status, data, took = c.post_raw(path, body)
            mine_lat.append(took)
            mine_out["success" if status == 200 and data == "success" else f"{status} {data[:30]}"] += 1
        with lock:
            latencies.extend(mine_lat)
            outcomes.update(mine_out)
            late.extend(mine_late)

    workers = [threading.Thread(target=run, args=(planned[k::threads],)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return {"lat": latencies, "out": outcomes, "late": late, "took": time.monotonic() - t0,
            "p50": percentile(latencies, 50) * 1000, "p99": percentile(latencies, 99) * 1000,
            "max": max(latencies) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callbacks", type=int, default=2000)
    ap.add_argument("--over", type=float, default=1.0, help="seconds the burst is spread over")
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: volbot serve's)")
    args = ap.parse_args()
    from bot.gunicorn_conf import default_workers, threads

    workers = args.workers or default_workers()
    print(f"drill: {args.callbacks} TEMPLATESENDJOBFINISH callbacks in {args.over:g} s, volbot serve "
          f"{workers} workers x {threads} threads; {load_average()}")
    with Stack("drill-burst", postgres="private") as stack:
        stack.create_schema()
        record_sent(stack, args.callbacks)
        url = stack.serve(workers=workers)
        port = int(url.rsplit(":", 1)[1])
        client = Client(port)
        sender = client.sender
        created = int(time.time())
        planned = []
        for i in range(args.callbacks):
            fields = {**sender.event(f"o_burst_{i:05d}", "TEMPLATESENDJOBFINISH", None), "MsgID": f"burst-{i}",
                      "Status": "success", "CreateTime": created}
            params, body = sender.request(fields, encrypt=False)
            planned.append((i * args.over / args.callbacks, "/wechat?" + urlencode(params), body))
        # warm the connections and the workers (a few pushes of another kind)
        for _ in range(20):
            client.post(sender.text("o_burst_warm", "菜单"))

        bare = burst(start_bare(stack, workers), planned, args.threads)
        stack.spawn("scheduler", "--interval", "1")
        result = burst(port, planned, args.threads)
        answered = time.monotonic()
        states = delivered(stack)
        while states["delivered"] < args.callbacks and time.monotonic() - answered < 30:
            time.sleep(0.2)
            states = delivered(stack)
        applied_after = time.monotonic() - answered
        for name, r in (("bare app (machine ceiling)", bare), ("volbot serve", result)):
            print(f"{name}: {len(r['lat'])} callbacks answered within {r['took']:.2f} s of the first "
                  f"({len(r['lat']) / r['took']:.0f}/s); {len(r['late'])} sent late (their client thread was still "
                  f"waiting for an earlier answer) by up to {max(r['late'], default=0) * 1000:.0f} ms; answers "
                  f"{dict(r['out'])}; latency p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.0f} ms")
        print(f"SQL: {dict(states)}, {applied_after:.1f} s after the last answer (scheduler pass every 1 s)")
        ok = result["out"]["success"] == args.callbacks and states["delivered"] == args.callbacks
        p99 = result["p99"]
        print(f"all acknowledged and applied: {'yes' if ok else 'NO'}; p99 < 100 ms: {'yes' if p99 < 100 else 'NO'}")
        print(f"{load_average()}; RESULT: {'PASS' if ok and p99 < 100 else 'FAIL'}")
        return 0 if ok and p99 < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
