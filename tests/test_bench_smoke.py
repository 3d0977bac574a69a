"""Every bench and drill runs: each script of bench/ and bench/drills/ as a real subprocess,
at the smallest size its flags allow, must exit 0 and print its figures — so a change that
breaks a bench (an import, a renamed function, a driver's API) fails the suite instead of
the next person who wants a number. The figures themselves are not judged here (a tiny run
on a busy machine says nothing about speed); their lines are parsed so a bench that stops
measuring fails too.

The benches that need PostgreSQL run in the suite's PostgreSQL pass (TEST_DATABASE_URL a
postgresql:// URL) and skip otherwise. None of them touches the suite's own database or
Redis: they get a private PostgreSQL cluster and redis-server (bench/drills/support.py's
Stack, on free loopback ports in a temp folder), as the drills start for themselves.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ON_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith(("postgresql:", "postgres:"))


def _postgres_missing() -> str:
    if not ON_POSTGRES:
        return "PostgreSQL pass only (TEST_DATABASE_URL=postgresql://...): this bench measures on PostgreSQL"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "needs the PostgreSQL server binaries (initdb, pg_ctl) for a private cluster"
    return ""


needs_postgres = pytest.mark.skipif(bool(_postgres_missing()), reason=_postgres_missing() or "-")
pytestmark = [pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server"),
              pytest.mark.timeout(180)]


def run(script: str, *args: str, env: dict | None = None, timeout: float = 150) -> str:
    """`script` as a subprocess of this venv's Python; its output, once it exited 0."""
    done = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    assert done.returncode == 0, (f"{script} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
                                  f"\n--- stderr\n{done.stderr[-3000:]}")
    print(done.stdout)
    return done.stdout


def figures(pattern: str, out: str) -> tuple[str, ...]:
    """The groups of `pattern`'s first match in `out` (multiline); fails when it printed none."""
    found = re.search(pattern, out, re.MULTILINE)
    assert found, f"no line matching {pattern!r} in:\n{out[-3000:]}"
    return found.groups()


@pytest.fixture(scope="module")
def backends():
    """A private PostgreSQL cluster and redis-server for the benches that take URLs."""
    from bench.drills.support import Stack

    with Stack("bench-smoke", postgres="private") as stack:
        base = stack.database_url.rsplit("/", 1)[0]
        yield {"postgres": base, "database": stack.database_url, "redis": stack.redis.url}


# ---- bench/ ---------------------------------------------------------------------------------

@pytest.mark.skipif(ON_POSTGRES, reason="SQLite pass only: on PostgreSQL test_drill_worker_killed runs bench/fanout.py")
def test_fanout():
    """SQLite + embedded Redis, its defaults."""
    out = run("bench/fanout.py", "--subscribers", "20", "--rate", "1000")
    sends = figures(r"^baseline \(one client.*?: ([\d,]+) sends/s$", out)[0]
    assert int(sends.replace(",", "")) > 0
    assert figures(r"^run 1 \(announcement\): (\d+) notices recorded", out) == ("20",)
    assert "AT MOST ONCE: yes" in out


@needs_postgres
def test_webhook(backends):
    out = run("bench/webhook.py", "--seconds", "0.3", "--rounds", "1", "--warmup", "0.1", "--concurrency", "2",
              env={"BENCH_DATABASE_URL": backends["database"], "BENCH_REDIS_URL": backends["redis"]})
    for app in ("bare", "bot"):
        for mode in ("plain", "aes"):
            requests, errors = figures(rf"^{app}\s+{mode}\s+(\d+)\s+\d+\s+[\d.]+\s+[\d.]+\s+(\d+)", out)
            assert int(requests) > 0 and errors == "0", (app, mode, requests, errors)
    figures(r"^target: .*: (met|NOT met)$", out)


@needs_postgres
def test_load(backends):
    out = run("bench/load.py", "--users", "2", "--rate", "20", "--clients", "2", "--workers", "1",
              "--baseline-seconds", "0.3", "--warmup", "0", "--database-url", backends["postgres"] + "/volbot_load")
    requests, non200 = figures(r"^volbot serve @20/s\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)", out)
    assert requests == "40" and non200 == "0"
    assert figures(r"^rows written: (\d+) orders for (\d+) confirmations answered \(each once\)", out) == ("2", "2")
    figures(r"^CPU per push: web workers ([\d.]+) ms", out)


@needs_postgres
def test_turns(backends):
    out = run("bench/turns.py", "--users", "2", "--rounds", "1", "--database-url", backends["postgres"] + "/volbot_turns")
    bot, bare = figures(r"^all\s+([\d.]+)\s+([\d.]+)$", out)
    assert float(bot) > float(bare) > 0
    figures(r"^bot over bare: ([\d.]+) ms/push", out)


@needs_postgres
def test_console(backends):
    out = run("bench/console.py", "--volunteers", "30", "--hours", "100", "--orders", "20", "--repeat", "1",
              "--database-url", backends["postgres"] + "/volbot_console", "--redis-url", backends["redis"])
    figures(r"^baseline /healthz .*: ([\d.]+) ms median$", out)
    # Every page of the three roles answered (403s are another role's page, not measured).
    measured = int(figures(r"^(\d+) pages measured \(1 loads each\)", out)[0])
    assert measured >= 50, measured


@needs_postgres
def test_pages(backends):
    out = run("bench/pages.py", "--volunteers", "30", "--hours", "100", "--orders", "60", "--records", "40",
              "--repeat", "1", "--database-url", backends["postgres"] + "/volbot_pages", "--redis-url", backends["redis"])
    figures(r"^baseline /healthz .*: ([\d.]+) ms median$", out)
    assert figures(r"^(\d+) pages measured \(1 loads each\) for a volunteer with 40 records", out) == ("14",)


# ---- bench/drills/ --------------------------------------------------------------------------

@needs_postgres
def test_drill_callback_burst():
    out = run("bench/drills/callback_burst.py", "--callbacks", "20", "--over", "0.2", "--lanes", "2", "--workers", "1")
    assert figures(r"^volbot serve: (\d+) callbacks answered", out) == ("20",)
    assert "all acknowledged and applied: yes" in out


@needs_postgres
def test_drill_postgres_restart():
    out = run("bench/drills/postgres_restart.py", "--residents", "2", "--load-threads", "1", "--at", "1",
              "--down", "1", "--think", "0.2")
    assert figures(r"^residents: (\d+)/(\d+) got an order number", out) == ("2", "2")
    figures(r"^background pushes: .*p99 (\d+) ms", out)
    assert "RESULT: PASS" in out


@needs_postgres
def test_drill_redis_restart():
    out = run("bench/drills/redis_restart.py", "--residents", "2", "--at", "1", "--down", "1", "--think", "0.2")
    assert figures(r"^residents: (\d+)/(\d+) got an order number", out) == ("2", "2")
    figures(r"^volbot serve logged (\d+) error lines", out)
    assert "RESULT: PASS" in out


@needs_postgres
def test_drill_wechat_faults():
    out = run("bench/drills/wechat_faults.py", "--pushes", "5", "--outage", "1")
    assert figures(r"^  after: all (\d+) sent", out) == ("5",)
    assert "RESULT: PASS" in out


@needs_postgres
def test_drill_worker_killed():
    out = run("bench/drills/worker_killed.py", "--subscribers", "20", "--rate", "1000")
    assert figures(r"^run 2 \(change, worker SIGKILLed at (\d+) sent", out)
    assert "AT MOST ONCE: yes" in out and "RESULT: PASS" in out
