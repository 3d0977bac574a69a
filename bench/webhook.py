"""Benchmark: text-message round trips through gunicorn against a bare baseline.

    .venv/bin/python bench/webhook.py [--seconds 10] [--concurrency 16]

Starts, one after the other, gunicorn (2 workers, `volbot serve`'s settings) serving
- the bot (`bot.wsgi:app`) on PostgreSQL + Redis: verify, (decrypt), parse, dedup, lock,
  state, one SQL transaction, the dialogue engine, (encrypt) the reply;
- a bare Flask app (`bench.webhook:bare_app`) that only checks the signature and returns
  a constant reply;
and drives each with `--concurrency` client threads sending signed text pushes (plain and
AES) from many different users for a bounded time. Prints req/s, p50/p99 latency and the
bot's throughput as a share of the bare app's, measured in the same run.

Uses a dedicated database (`BENCH_DATABASE_URL`, default
postgresql://postgres@127.0.0.1:5432/volbot_bench; create it once with
`createdb -h 127.0.0.1 -U postgres volbot_bench`) and Redis database
(`BENCH_REDIS_URL`, default redis://127.0.0.1:6379/12), both emptied first.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, request

from bot.config import child_environ, environ_value

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.sender import WeChatSender

TOKEN = "volbot-bench-token"
APPID = "wx49f0ab532d5d035a"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
TARGET_SHARE, TARGET_P99_MS = 0.5, 50.0


# ---- the baseline: a bare app that only checks the signature -------------------------------

bare_app = Flask("bare")
_CONSTANT = ("<xml><ToUserName><![CDATA[o_user]]></ToUserName><FromUserName><![CDATA[gh_bench]]>"
             "</FromUserName><CreateTime>0</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             "<Content><![CDATA[ok]]></Content></xml>")


@bare_app.post("/wechat")
def bare_receive():
    from wechatpy.exceptions import InvalidSignatureException
    from wechatpy.utils import check_signature

    args = request.args
    try:
        check_signature(TOKEN, args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
    except InvalidSignatureException:
        return Response("bad signature", status=403)
    request.get_data()
    return Response(_CONSTANT, mimetype="application/xml")


# ---- running servers -----------------------------------------------------------------------

def gunicorn_command(target: str, port: int, workers: int = 2, threads: int | None = None) -> list[str]:
    """gunicorn serving `target` with `volbot serve`'s settings (bot/gunicorn_conf.py: the
    worker class, a socket per worker, threads, time-outs): the bare app and the bot are
    measured under the same server. Run it with cwd and PYTHONPATH at the repository."""
    from bot.serving import worker_class_for

    gunicorn = Path(sys.executable).with_name("gunicorn")
    pool = ["--threads", str(threads), "--worker-class", worker_class_for(threads)] if threads else []
    return [str(gunicorn), "-c", "python:bot.gunicorn_conf", "--bind", f"127.0.0.1:{port}", "--workers",
            str(workers), *pool, "--log-level", "warning", target]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    def __init__(self, target: str, env: dict, workers: int = 2, threads: int | None = None):
        self.port = free_port()
        self.proc = subprocess.Popen(gunicorn_command(target, self.port, workers, threads),
                                     env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn {target} died: {self.proc.stderr.read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"gunicorn {target} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- the load ------------------------------------------------------------------------------

def drive(port: int, encrypt: bool, seconds: float, concurrency: int, users: int = 500) -> dict:
    """Send signed text pushes from `concurrency` threads for `seconds`; latencies in ms."""
    sender = WeChatSender(TOKEN, APPID, AES_KEY)
    latencies: list[float] = []
    failures = {"http": 0, "busy": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, bad, busy = [], 0, 0
        while time.monotonic() < stop_at:
            n = next(counter)
            params, body = sender.request(sender.text(f"o_bench_{n % users}", "菜单"), encrypt=encrypt)
            started = time.perf_counter()
            conn.request("POST", "/wechat?" + urlencode(params), body, {"Content-Type": "text/xml"})
            resp = conn.getresponse()
            data = resp.read()
            mine.append((time.perf_counter() - started) * 1000)
            if resp.status != 200:
                bad += 1
            elif encrypt is False and "系统繁忙".encode() in data:
                busy += 1
        with lock:
            latencies.extend(mine)
            failures["http"] += bad
            failures["busy"] += busy

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
        **failures,
    }


def reset_backends(database_url: str, redis_url: str) -> None:
    import redis
    from sqlalchemy import create_engine

    from bot.config import normalise_database_url
    from store.models import Base

    engine = create_engine(normalise_database_url(database_url))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    redis.Redis.from_url(redis_url).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per app and mode (median kept)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    database_url = environ_value("BENCH_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/volbot_bench"
    redis_url = environ_value("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/12"
    reset_backends(database_url, redis_url)

    instance = tempfile.mkdtemp(prefix="volbot-bench-")
    env = child_environ(VOLBOT_INSTANCE=instance, DATABASE_URL=database_url, REDIS_URL=redis_url,
                        WECHAT_TOKEN=TOKEN, WECHAT_APPID=APPID, WECHAT_AES_KEY=AES_KEY,
                        WECHAT_API_BASE="http://127.0.0.1:9/cgi-bin/", PYTHONPATH=str(REPO))
    # Both servers run for the whole benchmark and are driven in alternation, so a change
    # in the machine's background load hits both alike (the median of the rounds is kept).
    servers = {"bare": Gunicorn("bench.webhook:bare_app", env), "bot": Gunicorn("bot.wsgi:app", env)}
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        for server in servers.values():
            for mode in ("plain", "aes"):
                drive(server.port, mode == "aes", args.warmup, args.concurrency)
        for _ in range(args.rounds):
            for mode in ("plain", "aes"):
                for name, server in servers.items():
                    runs.setdefault((name, mode), []).append(
                        drive(server.port, mode == "aes", args.seconds, args.concurrency))
    finally:
        for server in servers.values():
            server.stop()
    results = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in runs.items()}

    from bot.config import load_config
    from bot.serving import worker_class_for

    worker_class = worker_class_for(load_config().threads)  # volbot serve's

    print(f"gunicorn 2 workers ({worker_class.rsplit('.', 1)[1]}, a socket each) each, concurrency {args.concurrency}, median of {args.rounds} "
          f"alternating {args.seconds:g} s runs, PostgreSQL + Redis, {os.cpu_count()} CPUs, "
          f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(f"{'app':<6}{'mode':<7}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'busy':>6}{'share':>8}")
    ok = True
    for name in ("bare", "bot"):
        for mode in ("plain", "aes"):
            r = results[(name, mode)]
            share = r["rps"] / results[("bare", mode)]["rps"]
            print(f"{name:<6}{mode:<7}{r['requests']:>9}{r['rps']:>9.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
                  f"{r['http']:>8}{r['busy']:>6}{share:>8.0%}")
            if name == "bot":
                ok &= share >= TARGET_SHARE and r["p99"] < TARGET_P99_MS and not r["http"]
    print(f"target: >= {TARGET_SHARE:.0%} of the bare app's req/s and p99 < {TARGET_P99_MS:g} ms: "
          + ("met" if ok else "NOT met"))


if __name__ == "__main__":
    main()
