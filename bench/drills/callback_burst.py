"""Drill: a burst of 2,000 TEMPLATESENDJOBFINISH callbacks in one second.

    .venv/bin/python bench/drills/callback_burst.py [--callbacks 2000] [--over 1.0] [--workers N]

After a fan-out WeChat posts one delivery receipt per template message, in bursts. Starts a
private redis-server and PostgreSQL cluster and `volbot serve`; records `--callbacks` pushes
as sent (each with its WeChat msgid); then posts one signed receipt per push, spread evenly
over `--over` seconds (open loop: each is sent at its planned moment, or as soon as its
lane's previous answer is back, and its latency counts from the planned moment), on 64
kept-alive connections driven by bench/load.py's one-thread generator (64 threads on
http.client took a third of a millisecond of CPU per callback themselves, on the machine
being measured).

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
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import Client, Stack, load_average, wait_for


def msgid(i: int) -> str:
    """The WeChat msgid of the drill's push `i`: digits, as WeChat's are (the webhook drops a
    receipt whose MsgID could not be one); each push's dedup key too, so SQL can copy it."""
    return str(2_400_000_000 + i)


def record_sent(stack: Stack, n: int) -> None:
    from sqlalchemy import update

    from store.models import Push
    from store.outbox import notify_many

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            # Receipts (TEMPLATESENDJOBFINISH) follow template messages: a template kind.
            notify_many(s, [dict(openid=f"o_burst_{i:05d}", kind="hours_result", title="服务时长审核结果",
                                 fields={"number": "KW2026000001", "result": "已通过", "hours": "2小时", "note": "—"},
                                 dedup_key=msgid(i), batch="drill-burst")
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

    from bench.drills.support import ROOT, free_port
    from bench.webhook import gunicorn_command

    port = free_port()
    proc = subprocess.Popen(gunicorn_command("bench.webhook:bare_app", port, workers), env=stack.env, cwd=ROOT)
    stack.procs.append(proc)
    wait_for(lambda: Client(port).post_raw("/wechat", b"")[0] == 403, 60, "the bare app")
    return port


def burst(port: int, planned: list, lanes: int, over: float) -> dict:
    """Post `planned` (offset, path, body) open-loop on `lanes` connections; what came back."""
    from bench.load import drive

    plan = [[("receipt", path, body, None) for _, path, body in planned[k::lanes]] for k in range(lanes)]
    r = drive(port, plan, over + 60, rate=len(planned) / over)
    outcomes = Counter()
    for (status, body), n in r["answers"].items():
        outcomes["success" if status == 200 and body == b"success" else f"{status} {body[:30]!r}"] += n
    return {"lat": r["lat"], "out": outcomes, "late": r["late"], "took": r["seconds"], "p50": r["p50"],
            "p99": r["p99"], "max": max(r["lat"]) * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callbacks", type=int, default=2000)
    ap.add_argument("--over", type=float, default=1.0, help="seconds the burst is spread over")
    ap.add_argument("--lanes", type=int, default=64, help="kept-alive client connections")
    ap.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: volbot serve's)")
    args = ap.parse_args()
    from bot.config import load_config
    from bot.serving import default_workers

    threads = load_config().threads  # volbot serve's

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
            fields = {**sender.event(f"o_burst_{i:05d}", "TEMPLATESENDJOBFINISH", None), "MsgID": msgid(i),
                      "Status": "success", "CreateTime": created}
            params, body = sender.request(fields, encrypt=False)
            planned.append((i * args.over / args.callbacks, "/wechat?" + urlencode(params), body))
        # warm the connections and the workers (a few pushes of another kind)
        for _ in range(20):
            client.post(sender.text("o_burst_warm", "菜单"))

        bare = burst(start_bare(stack, workers), planned, args.lanes, args.over)
        # The scheduler runs before the burst, as in production (its start-up, a second of
        # imports, would otherwise take CPU from the burst).
        stack.spawn("scheduler", "--interval", "1")
        wait_for(lambda: "a pass every" in stack.log_tail("scheduler"), 60, "the scheduler")
        time.sleep(1)  # and its first pass done
        result = burst(port, planned, args.lanes, args.over)
        answered = time.monotonic()
        states = delivered(stack)
        while states["delivered"] < args.callbacks and time.monotonic() - answered < 30:
            time.sleep(0.2)
            states = delivered(stack)
        applied_after = time.monotonic() - answered
        for name, r in (("bare app (machine ceiling)", bare), ("volbot serve", result)):
            print(f"{name}: {len(r['lat'])} callbacks answered within {r['took']:.2f} s of the first "
                  f"({len(r['lat']) / r['took']:.0f}/s); {r['late']} sent late (their connection was still "
                  f"waiting for an earlier answer); answers "
                  f"{dict(r['out'])}; latency p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.0f} ms")
        print(f"SQL: {dict(states)}, {applied_after:.1f} s after the last answer (scheduler pass every 1 s)")
        ok = result["out"]["success"] == args.callbacks and states["delivered"] == args.callbacks
        p99 = result["p99"]
        print(f"all acknowledged and applied: {'yes' if ok else 'NO'}; p99 < 100 ms: {'yes' if p99 < 100 else 'NO'}")
        print(f"{load_average()}; RESULT: {'PASS' if ok and p99 < 100 else 'FAIL'}")
        return 0 if ok and p99 < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
