"""Drill: the WeChat API answering HTTP 5xx, then 45009 (daily quota), for a while.

    .venv/bin/python bench/drills/wechat_faults.py [--pushes 300] [--outage 6]

Starts a private redis-server and PostgreSQL cluster, the WeChat API emulator (in this
process, behind a switch that answers every API call `503 Service Unavailable`), two
`volbot worker`s and a `volbot scheduler`.

Phase 1 — 5xx: `--pushes` pushes are recorded while the API answers 503 for `--outage`
seconds. Expected: each failed attempt goes back to pending with growing backoff (no
push fails, none is lost); once the API answers again, every push is sent exactly once.

Phase 2 — 45009: the emulator answers 45009 ("reach max api daily quota limit") to
template sends. Expected: the worker stops sending at the first 45009 (the rest of its
handful waits too), and every push waits for the next day in Beijing (00:05) — pending, the
attempt not counted, not failed. The drill then plays "the next day" by moving those due
times to now (SQL) and clears the fault: every push is sent exactly once.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import APPID, TOKEN, Stack, load_average, wait_for


class Switch:
    """WSGI middleware: while `down`, every /cgi-bin/ call gets 503 (as from a proxy)."""

    def __init__(self, app):
        self.app = app
        self.down = False
        self.refused = 0

    def __call__(self, environ, start_response):
        if self.down and environ.get("PATH_INFO", "").startswith("/cgi-bin/"):
            self.refused += 1
            start_response("503 Service Unavailable", [("Content-Type", "text/html"), ("Content-Length", "19")])
            return [b"503 Service Unavail"]
        return self.app(environ, start_response)


def record(stack: Stack, n: int, tag: str, prefix: str = "o_fault_") -> None:
    from store.outbox import notify

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            for i in range(n):
                # Template sends (client_msg_id, 45009 daily quota): a template kind.
                notify(s, openid=f"{prefix}{i:04d}", kind="order_update", title="服务订单状态更新",
                       fields={"订单号": f"KW-{i:04d}", "服务项目": "上门理发", "状态": "已接单",
                               "时间": "2026年12月01日 09:00", "备注": "—"},
                       dedup_key=f"drill-{tag}-{i}", batch=f"drill-{tag}")
    finally:
        svc.close()


def counts(stack: Stack, tag: str) -> tuple[Counter, int, datetime | None]:
    from sqlalchemy import func, select

    from store.models import Push

    svc = stack.services()
    try:
        with svc.db.transaction() as s:
            states = Counter(dict(s.execute(select(Push.state, func.count()).where(Push.batch == f"drill-{tag}")
                                            .group_by(Push.state)).all()))
            attempts = s.scalar(select(func.max(Push.attempts)).where(Push.batch == f"drill-{tag}")) or 0
            due = s.scalar(select(func.min(Push.due_at)).where(Push.batch == f"drill-{tag}", Push.state == "pending"))
        return states, attempts, due
    finally:
        svc.close()


def api_errors(stack: Stack) -> dict:
    from bot.observability import API_ERRORS_KEY

    svc = stack.services()
    try:
        return {k.decode(): int(v) for k, v in svc.redis.hgetall(API_ERRORS_KEY).items()}
    finally:
        svc.close()


def per_recipient(emulator, template_id: str) -> Counter:
    with emulator.lock:
        return Counter(m["openid"] for m in emulator.messages
                       if m["template_id"] == template_id and m["openid"].startswith("o_fault_"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushes", type=int, default=300)
    ap.add_argument("--outage", type=float, default=6.0, help="seconds the API answers 503 / 45009")
    args = ap.parse_args()
    print(f"drill: WeChat API 5xx then 45009 — {args.pushes} pushes per phase; {load_average()}")
    import logging

    from emulator import create_emulator, make_emulator_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per API call

    emulator_app = create_emulator({APPID: "volbot-dev-secret"}, token=TOKEN)
    switch = Switch(emulator_app)
    server = make_emulator_server(switch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    emulator = emulator_app.extensions["emulator"]
    ok = True
    with Stack("drill-wechat", postgres="private") as stack:
        stack.create_schema()
        stack.env.update(WECHAT_API_BASE=f"http://127.0.0.1:{server.server_port}/cgi-bin/", PUSH_RATE="500",
                         PUSH_BACKOFF_SECONDS="1", PUSH_BACKOFF_MAX_SECONDS="4", PUSH_MAX_ATTEMPTS="12")

        # ---- phase 1: 5xx ------------------------------------------------------------------
        procs = [stack.spawn("scheduler", "--interval", "0.5"), stack.spawn("worker", "--name", "drill-w1", name="w1"),
                 stack.spawn("worker", "--name", "drill-w2", name="w2")]
        record(stack, 1, "warm-up", prefix="o_warm_")  # the processes are up and hold a token
        wait_for(lambda: counts(stack, "warm-up")[0]["sent"] == 1, 120, "a first push sent", interval=0.5)
        switch.down = True
        t0 = time.monotonic()
        record(stack, args.pushes, "5xx")
        wait_for(lambda: switch.refused > 0, 60, "a first refused call")
        time.sleep(args.outage)
        during, attempts_during, _ = counts(stack, "5xx")
        switch.down = False
        recovered = time.monotonic()
        wait_for(lambda: counts(stack, "5xx")[0]["sent"] + counts(stack, "5xx")[0]["delivered"] >= args.pushes, 120,
                 "phase 1 pushes sent", interval=0.5)
        states, attempts, _ = counts(stack, "5xx")
        got = per_recipient(emulator, "volbot-order-status")
        print(f"phase 1 (API answered 503 for {args.outage:g} s, {switch.refused} calls refused):")
        print(f"  during the outage: {dict(during)}, max attempts so far {attempts_during} (backoff 1 s doubling, "
              f"cap 4 s)")
        print(f"  after: all {args.pushes} sent {time.monotonic() - recovered:.1f} s after the API came back; "
              f"SQL {dict(states)}, max attempts {attempts}; emulator accepted {sum(got.values())} for "
              f"{len(got)} recipients, max {max(got.values(), default=0)} each")
        phase1 = (states["sent"] + states["delivered"] == args.pushes and not states["failed"]
                  and sum(got.values()) == args.pushes and len(got) == args.pushes)
        print(f"  {'PASS' if phase1 else 'FAIL'}: no push failed or was lost, none sent twice")
        ok &= phase1

        # ---- phase 2: 45009 ----------------------------------------------------------------
        before = sum(per_recipient(emulator, "volbot-order-status").values())
        with emulator.lock:
            from emulator.state import Fault

            emulator.faults.append(Fault(endpoint="template", errcode=45009, times=None))
        record(stack, args.pushes, "quota")
        wait_for(lambda: counts(stack, "quota")[0]["pending"] == args.pushes and counts(stack, "quota")[2] is not None
                 and counts(stack, "quota")[2] > datetime.now(timezone.utc), 60, "phase 2 pushes deferred", interval=0.5)
        time.sleep(args.outage)
        states, attempts, due = counts(stack, "quota")
        quota_calls = sum(1 for c in emulator.calls if c.get("errcode") == 45009)
        print(f"phase 2 (45009 for every template send, {args.outage:g} s):")
        print(f"  {quota_calls} send(s) answered 45009 (at most one per queue job), then the workers stopped sending; SQL {dict(states)}, "
              f"max attempts {attempts}, next try at {due.astimezone().isoformat(timespec='minutes') if due else None} "
              f"(00:05 Beijing)")
        jobs = -(-args.pushes // 50)  # PUSH_CHUNK: at most one 45009 per queued job
        deferred = states["pending"] == args.pushes and not states["failed"] and quota_calls <= jobs
        with emulator.lock:
            emulator.faults.clear()
        svc = stack.services()
        try:
            from sqlalchemy import update

            from store.models import Push

            with svc.db.transaction() as s:  # "the next day"
                s.execute(update(Push).where(Push.batch == "drill-quota", Push.state == "pending")
                          .values(due_at=svc.clock.now()))
        finally:
            svc.close()
        wait_for(lambda: counts(stack, "quota")[0]["sent"] + counts(stack, "quota")[0]["delivered"] >= args.pushes, 120,
                 "phase 2 pushes sent", interval=0.5)
        states, attempts, _ = counts(stack, "quota")
        got = per_recipient(emulator, "volbot-order-status")
        new = sum(got.values()) - before
        print(f"  the next day: SQL {dict(states)}; emulator accepted {new} more, max {max(got.values())} per "
              f"recipient over both phases (one per phase)")
        phase2 = deferred and new == args.pushes and max(got.values()) == 2 and not states["failed"]
        print(f"  {'PASS' if phase2 else 'FAIL'}: nothing sent into the quota wall, nothing lost, none twice")
        ok &= phase2
        print(f"WeChat API errors counted for /metrics (volbot_wechat_api_errors): {api_errors(stack)}")
        for p in procs:
            stack.stop(p)
    server.shutdown()
    print(f"{load_average()}; RESULT: {'PASS' if ok else 'FAIL'} ({time.monotonic() - t0:.0f} s from the first outage)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
