"""Pages benchmark: the web pages at /m for one volunteer with 2,000 hour records (and a
time-bank ledger entry for each approved one) on the district-sized database of
`bench/console.py`.

    .venv/bin/python bench/pages.py [--volunteers 40000] [--hours 1000000] [--orders 30000]
                                    [--records 2000] [--repeat 7] [--database-url ...] [--redis-url ...]

Seeds a dedicated PostgreSQL database (`BENCH_DATABASE_URL`, default
postgresql://postgres@127.0.0.1:5432/volbot_pages_bench, emptied first) with console.py's
generated district (labelled "bench", not real people), then gives volunteer 1 a follower
row, `--records` more hour records over three years with their time-bank deposits (through
`rules.timebank.deposit_for_hours`) and 50 orders. Serves the real app on a loopback port
with the WeChat emulator in-process, signs in through the real OAuth round trip, requests
every page `--repeat` times and prints them by median, slowest first, marking those over
the 200 ms target. The baseline, measured in the same run, is `/healthz`.
"""

from __future__ import annotations

import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests
from sqlalchemy import select, text
from werkzeug.serving import make_server

from bench.console import TARGET_MS, bench_arguments, ensure_database, seed, timed
from bot.app import create_app
from bot.config import load_config
from bot.services import Services
from emulator import create_emulator, make_emulator_server
from rules import timebank, volunteering
from store.models import Follower, HourRecord, Volunteer

OPENID = "o_bench_volunteer_0001"


def give_records(svc, records: int) -> None:
    """Volunteer 1: a follower, `records` hour records with deposits, 50 orders."""
    rnd = random.Random(20261206)
    now = datetime.now(timezone.utc)
    bank = volunteering.rules().bank
    with svc.db.transaction() as s:
        follower = Follower(openid=OPENID, subscribed=True, subscribed_at=now)
        s.add(follower)
        s.flush()
        volunteer = s.get(Volunteer, 1)
        volunteer.follower_id = follower.id
        for i in range(records):
            at = now - timedelta(minutes=rnd.randrange(3 * 365 * 24 * 60))
            minutes = rnd.choice((30, 60, 90, 120))
            state = "pending" if i % 40 == 0 else ("rejected" if i % 57 == 0 else "approved")
            s.add(HourRecord(volunteer_id=1, source=rnd.choice(("activity", "order", "manual")),
                             source_ref=f"bench-page:{i}", minutes=minutes, started_at=at,
                             ended_at=at + timedelta(minutes=minutes), description=f"bench页面服务{i % 30}",
                             state=state, decided_at=at if state != "pending" else None, created_at=at))
        s.flush()
        approved = s.scalars(select(HourRecord).where(HourRecord.volunteer_id == 1, HourRecord.state == "approved")
                             .order_by(HourRecord.started_at)).all()
        for record in approved:
            timebank.deposit_for_hours(s, record, actor="bench", now=record.started_at, rules=bank)
        s.execute(text("UPDATE orders SET follower_id = :f WHERE id <= 50"), {"f": follower.id})


def pages(svc, http: requests.Session, base: str) -> list[str]:
    with svc.db.session() as s:
        number = s.scalar(text("SELECT number FROM orders WHERE id = 1"))
    year = datetime.now(timezone.utc).year
    page = http.get(base + "/m/certificates")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    cert = http.post(base + "/m/certificates", data={"csrf_token": token, "period": "all"}, allow_redirects=False)
    cert_path = cert.headers["Location"]
    code = http.get(base + cert_path).text.split("/m/verify/", 1)[1].split("/", 1)[0]
    return ["/m/", "/m/records", f"/m/records?year={year - 1}", f"/m/records?year={year - 1}&page=3",
            f"/m/records.csv?year={year - 1}", "/m/orders", f"/m/orders/{number}", "/m/activities",
            "/m/activities/mine", "/m/certificates", cert_path, "/m/bus", "/m/nearby?lat=36.7&lng=119.1",
            f"/m/verify/{code}"]


def main() -> None:
    ap = bench_arguments(__doc__.split("\n\n")[0], "volbot_pages_bench", 11)
    ap.add_argument("--records", type=int, default=2_000)
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ensure_database(args.database_url)
    emulator_app = create_emulator({"wxbenchpages000001": "bench-pages-secret"})
    emulator = make_emulator_server(emulator_app)
    threading.Thread(target=emulator.serve_forever, daemon=True).start()
    emulator_url = f"http://127.0.0.1:{emulator.server_port}"
    config = load_config(Path(tempfile.mkdtemp(prefix="volbot-bench-")), environ={}, env="testing",
                         database_url=args.database_url, redis_url=args.redis_url,
                         wechat_appid="wxbenchpages000001", wechat_secret="bench-pages-secret",
                         wechat_api_base=emulator_url + "/cgi-bin/")
    svc = Services(config)
    svc.redis.flushdb()
    if not args.no_seed:
        with svc.db.engine.begin() as conn:  # a dedicated database: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        svc.db.create_all()
        print(f"seeding {args.volunteers:,} volunteers, {args.hours:,} hour records, {args.orders:,} orders …",
              flush=True)
        seeded = seed(svc, args.volunteers, args.hours, args.orders)
        t0 = time.perf_counter()
        give_records(svc, args.records)
        print(f"seeded in {seeded['seconds']:.0f} s, the volunteer's {args.records:,} records in "
              f"{time.perf_counter() - t0:.0f} s")
        with svc.db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            raw.commit()
            raw.autocommit = True
            with raw.cursor() as cur:
                cur.execute("ANALYZE")
            raw.autocommit = False
    server = make_server("127.0.0.1", 0, create_app(services=svc), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    baseline = statistics.median(timed(requests.Session(), base + "/healthz", args.repeat * 3))
    http = requests.Session()
    signed = http.get(f"{emulator_url}/_emulator/webview", params={"openid": OPENID, "url": base + "/m/records"})
    assert signed.status_code == 200 and "我的志愿记录" in signed.text, signed.text[:300]
    results = []
    for path in pages(svc, http, base):
        times = timed(http, base + path, args.repeat)
        results.append((statistics.median(times), times[0], path))
    server.shutdown()
    emulator.shutdown()
    svc.close()
    results.sort(reverse=True)
    print(f"\nbaseline /healthz (Flask + HTTP, no SQL): {baseline:.1f} ms median\n")
    print(f"{'median ms':>10} {'first ms':>9}  page")
    for med, first, path in results:
        flag = "  <-- over target" if med > TARGET_MS else ""
        print(f"{med:10.1f} {first:9.1f}  {path}{flag}")
    over = [r for r in results if r[0] > TARGET_MS]
    print(f"\n{len(results)} pages measured ({args.repeat} loads each) for a volunteer with {args.records:,} "
          f"records; {len(over)} over {TARGET_MS} ms (median).")


if __name__ == "__main__":
    main()
