"""The web server's drills (bench/drills/slow_clients.py, bench/drills/overload.py) run end
to end at a tiny size: one worker, SQLite, a few seconds. Their figures mean nothing here;
the point is that they still run and report what they are meant to."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="the drills start a redis-server")


def test_the_slow_clients_drill_runs_and_reports(capsys):
    from bench.drills import slow_clients

    slow_clients.main(["--slow", "4", "--seconds", "3", "--users", "2", "--workers", "1", "--postgres", "sqlite"])
    out = capsys.readouterr().out
    assert "with 4 slow connections" in out and "target: p99 < 1000 ms" in out, out


def test_the_overload_drill_runs_and_reports(capsys):
    from bench.drills import overload

    overload.main(["--seconds", "2", "--capacity-seconds", "1", "--workers", "1", "--postgres", "sqlite"])
    out = capsys.readouterr().out
    assert "capacity (closed loop" in out and "refused 503:" in out and "follower rows" in out, out
