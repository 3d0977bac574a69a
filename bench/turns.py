"""Benchmark: the CPU one push costs the web process, measured in one process, one push
after another — the steady figure to compare two versions of the hot path by.

    .venv/bin/python bench/turns.py [--users 300] [--rounds 3] [--database-url URL] [--profile N]
    .venv/bin/python bench/turns.py --instructions [--users 20]

`bench/load.py` tells whether the server keeps up; its CPU per push moves by ±20% with
whatever else the 2-core machine does. Here nothing runs concurrently in this process:
each of `--users` users plays `bench/load.py`'s 20-push visit (same mix, same order
form, the demo district seeded in PostgreSQL, a private Redis), straight into the WSGI
app (no gunicorn, no sockets), and the process CPU time of every push is taken. The same
requests then go to the bare app (`bench/webhook.py`'s: signature check only) in the same
run, so what the bot adds over Flask and the signature is its own line.

Each round replays the visits against a fresh database and Redis; the best round is
reported (the least disturbed by the machine), with the spread of all rounds.
`--profile N` prints the N functions with the most own (`--sort cumulative`: inclusive)
time over one more round (cProfile, with the turn run on the request thread so that it is
seen; it slows everything, so only the shares are meaningful).

Even the best of several rounds moves by 10-20% when the machine is busy elsewhere. For
an A/B of a change to the hot path, `--instructions` counts the instructions this process
executes per push instead (valgrind's callgrind, counting only while the visits are
replayed, after a warm-up on other users): the same count, within 0.2%, run after run. It
leaves out what the kernel does for the process (system calls, thread switches), so a
change that saves round trips saves more than it shows. Under valgrind a push takes about
0.15 s: keep `--users` small (20 users, 400 pushes: about a minute for each app).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.drills.support import Stack
from bench.load import build, reset_database, step_names


def environs(scripts: list) -> list[tuple[tuple[str, int], dict]]:
    """Every push of every visit as ((kind, step), WSGI environ), users interleaved as in
    bench/load.py's lanes. Built before a replay: not part of what is measured."""
    from werkzeug.test import EnvironBuilder

    from bench.load import lanes

    return [((kind, step), EnvironBuilder(path=path, method="POST", data=body, content_type="text/xml").get_environ())
            for kind, path, body, step in lanes(scripts, 1)[0]]


def replay(app, envs: list[tuple[tuple[str, int], dict]]) -> dict[tuple[str, int], list[float]]:
    """Each push into `app`, one after the other; the CPU seconds of each push by (kind, step)."""
    costs: dict[tuple[str, int], list[float]] = defaultdict(list)
    statuses: list[str] = []

    def start(status, headers, exc=None):
        statuses.append(status)

    clock = time.process_time
    for key, environ in envs:
        t0 = clock()
        for _ in app(environ, start):
            pass
        costs[key].append(clock() - t0)
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"{len(bad)} pushes were not answered 200: {bad[:3]}")
    return costs


class InlineExecutor:
    """Runs the submitted call at once, on the calling thread."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller as the pool would
            future.set_exception(e)
        return future


def summary(costs: dict[tuple[str, int], list[float]]) -> tuple[float, dict[str, float], dict[int, float]]:
    """ms per push: over all pushes, by kind, and by step of the visit."""
    n = sum(len(v) for v in costs.values())
    whole = sum(sum(v) for v in costs.values()) * 1000 / n
    by_kind: dict[str, list[float]] = defaultdict(list)
    for (kind, _), v in costs.items():
        by_kind[kind].extend(v)
    return (whole, {kind: sum(v) * 1000 / len(v) for kind, v in sorted(by_kind.items())},
            {step: sum(v) * 1000 / len(v) for (_, step), v in sorted(costs.items(), key=lambda kv: kv[0][1])})


def fresh_app(stack: Stack, url: str):
    """The bot's WSGI app over a freshly created and seeded database and an empty Redis."""
    from bot.app import create_app
    from demo import district

    reset_database(url)
    svc = stack.services()
    svc.redis.flushdb()
    svc.db.create_all()
    with svc.db.transaction() as session:
        district.seed(session, now=svc.clock.now(), pii_key=svc.keyring)
    app = create_app(services=svc)
    gc.collect()
    return app, svc


def count_instructions(args) -> None:
    """Run this file under callgrind once per app; print instructions per push."""
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    pushes = args.users * 20
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for app in ("bot", "bare"):
            out = Path(tmp) / f"{app}.callgrind"
            subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                            sys.executable, __file__, "--counted-replay", app, "--users", str(args.users),
                            "--database-url", args.database_url], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
            counts[app] = int(totals[-1].split()[1]) / pushes
    print(f"instructions per push ({args.users} users x 20 pushes, callgrind): bot {counts['bot'] / 1e6:.3f} M, "
          f"bare app {counts['bare'] / 1e6:.3f} M, bot over bare {(counts['bot'] - counts['bare']) / 1e6:.3f} M")


def counted_replay(args) -> None:
    """(Under callgrind) warm up on other users, then count only the replay itself."""
    import logging

    from bench.webhook import bare_app

    scripts, warm = build(range(args.users)), build(range(10_000, 10_000 + args.users))
    with Stack("turns", database_url=args.database_url) as stack:
        logging.disable(logging.WARNING)
        app, svc = fresh_app(stack, args.database_url)
        try:
            target = app if args.counted_replay == "bot" else bare_app
            replay(target, environs(warm))  # compiled statements, parsed menus, imports: not per push
            envs = environs(scripts)
            subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True,
                           stdout=subprocess.DEVNULL)
            replay(target, envs)
            subprocess.run(["callgrind_control", "--instr=off", str(os.getpid())], check=True,
                           stdout=subprocess.DEVNULL)
        finally:
            svc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=None, help="300 (--instructions: 20)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/volbot_turns")
    ap.add_argument("--profile", type=int, default=0, help="print this many functions of a profiled round")
    ap.add_argument("--sort", default="tottime", help="the profile's order: tottime (own time) or cumulative")
    ap.add_argument("--instructions", action="store_true", help="count instructions per push (callgrind)")
    ap.add_argument("--counted-replay", choices=("bot", "bare"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.counted_replay:
        return counted_replay(args)
    if args.instructions:
        args.users = args.users or 20
        return count_instructions(args)
    args.users = args.users or 300

    import logging

    from bench.webhook import bare_app

    scripts = build(range(args.users))
    pushes = sum(len(s) for s in scripts)
    print(f"turn cost: {args.users} users x 20 pushes = {pushes} pushes per round, one process, "
          f"one push at a time, PostgreSQL + a private Redis; best of {args.rounds} rounds")
    with Stack("turns", database_url=args.database_url) as stack:
        logging.disable(logging.WARNING)  # the JSON access lines are not what is measured
        rounds, bare_rounds = [], []
        for _ in range(args.rounds):
            app, svc = fresh_app(stack, args.database_url)
            try:
                rounds.append(summary(replay(app, environs(scripts))))
            finally:
                svc.close()
            bare_rounds.append(summary(replay(bare_app, environs(scripts))))
        best = min(rounds, key=lambda r: r[0])
        bare = min(bare_rounds, key=lambda r: r[0])
        spread = ", ".join(f"{r[0]:.3f}" for r in rounds)
        print(f"{'kind':<16}{'bot ms/push':>12}{'bare ms/push':>14}")
        for kind, ms in best[1].items():
            print(f"{kind:<16}{ms:>12.3f}{bare[1][kind]:>14.3f}")
        print(f"{'all':<16}{best[0]:>12.3f}{bare[0]:>14.3f}")
        print(f"bot over bare: {best[0] - bare[0]:.3f} ms/push; bot rounds: {spread} ms/push")
        labels = step_names()
        print("by step of the visit (the best round), ms/push:")
        for step, ms in best[2].items():
            print(f"  {step:>2} {labels[step]:<16}{ms:>8.3f}")

        if args.profile:
            app, svc = fresh_app(stack, args.database_url)
            # cProfile sees one thread: the turn runs on the request thread for this round.
            app.extensions["volbot.pipeline"].executor = InlineExecutor()
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on servers
            try:
                envs = environs(scripts)
                profiler.enable()
                replay(app, envs)
                profiler.disable()
            finally:
                svc.close()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.profile)
            print(out.getvalue())


if __name__ == "__main__":
    main()
