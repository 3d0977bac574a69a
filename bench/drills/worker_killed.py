"""Drill: a push worker SIGKILLed in the middle of a fan-out.

    .venv/bin/python bench/drills/worker_killed.py [--subscribers 5000]

Reuses the pushes benchmark (bench/fanout.py: a bus visit announced to every subscriber of a
community through `volbot scheduler` → RQ → 2 × `volbot worker` → the WeChat API emulator;
on the second fan-out one worker is SIGKILLed half-way and started again), pointed at a
private PostgreSQL cluster and a private redis-server started here.

Expected: nobody gets a notice twice (the emulator's record and SQL agree); the notices the
killed worker had in flight end "outcome unknown", never resent (bizsend has no
client_msg_id to drop a resend), and are shown as such. Template messages keep exactly
once through a SIGKILL by client_msg_id (tests/test_worker_restart.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.drills.support import ROOT, Stack, load_average


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=2000, help="sends/s allowed across workers")
    args = ap.parse_args()
    print(f"drill: worker killed mid fan-out — {args.subscribers} subscribers; {load_average()}")
    with Stack("drill-worker", postgres="private") as stack:
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "fanout.py"), "--subscribers", str(args.subscribers),
                               "--rate", str(args.rate), "--database-url", stack.database_url,
                               "--redis-url", stack.redis.url], cwd=ROOT, capture_output=True, text=True)
        print(done.stdout.rstrip())
        if done.returncode not in (0, 1):
            print(done.stderr[-3000:])
        ok = done.returncode == 0 and "AT MOST ONCE: yes" in done.stdout
        print(f"{load_average()}; RESULT: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
