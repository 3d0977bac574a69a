"""Console benchmark: every page against a district-sized PostgreSQL database.

    .venv/bin/python bench/console.py [--volunteers 40000] [--hours 1000000] [--orders 30000]
                                      [--repeat 7] [--database-url ...] [--redis-url ...]

Seeds a dedicated database (`BENCH_DATABASE_URL`, default
postgresql://postgres@127.0.0.1:5432/volbot_console_bench, created when missing and emptied
first) with bulk COPY: a team tree of 1 brigade, 75 detachments and 115 squads with their
communities, 40,000 volunteers, 1,000,000 hour records over three years, orders with their
events, projects, activities, places and audit entries — generated figures, labelled
"bench" everywhere, not real people. Then serves the real app on a loopback port, signs in
as a brigade admin, a detachment lead and a squad lead, requests every console page
`--repeat` times each and prints the pages by median time, slowest first, marking those over
the 200 ms target, with the first load beside the median (the reports' Redis cache is
emptied before each page, so a report page's or export's first load computes its tables).
The baseline, measured in the same run, is `/healthz` (Flask and HTTP with no SQL).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.config import environ_value

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests
from sqlalchemy import create_engine, select, text
from werkzeug.serving import make_server

from bot.app import create_app
from bot.config import load_config, normalise_database_url
from bot.services import Services
from console.accounts import hash_password
from rules import reports
from rules import teams as team_rules
from store import sealing
from store.models import Coordinator, Team

TARGET_MS = 200
PASSWORD = "bench password 1"
SKILLS = ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
STATES = ["submitted", "offered", "accepted", "in_service", "completed", "confirmed", "rated", "cancelled"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"


def ensure_database(url: str) -> None:
    url = normalise_database_url(url)
    name = url.rsplit("/", 1)[1]
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def _copy_field(value) -> str:
    """One value in COPY's text format (psycopg2 takes the stream as text)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy(raw, table: str, columns: list[str], rows, chunk: int = 50_000) -> int:
    """COPY `rows` into `table`, `chunk` rows to a statement (the generators stay lazy)."""
    n = 0
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cur:
        buf = io.StringIO()
        for row in rows:
            buf.write("\t".join(_copy_field(v) for v in row) + "\n")
            n += 1
            if n % chunk == 0:
                buf.seek(0)
                cur.copy_expert(sql, buf)
                buf = io.StringIO()
        if buf.tell():
            buf.seek(0)
            cur.copy_expert(sql, buf)
    return n


def run(raw, *statements: str) -> None:
    """Statements on the driver connection (psycopg2: through a cursor)."""
    with raw.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def team_tree() -> list[dict]:
    """1 brigade → 75 detachments → 115 squads (one community each)."""
    squads_left = 115
    detachments = []
    for d in range(75):
        count = 2 if d < 40 else 1
        count = min(count, squads_left)
        squads_left -= count
        street = f"街道{d + 1:02d}"
        detachments.append({"code": f"BD{d:02d}", "name": f"bench{street}分队", "kind": "detachment", "street": street,
                            "children": [{"code": f"BS{d:02d}{s}", "name": f"bench{street}社区{s + 1}小队",
                                          "kind": "squad", "community": f"BC{d:02d}{s}",
                                          "community_name": f"bench{street}社区{s + 1}", "street": street}
                                         for s in range(count)]})
    return [{"code": "BKW", "name": "bench奎文区志愿服务大队", "kind": "brigade", "children": detachments}]


def seed(svc, volunteers: int, hours: int, orders: int) -> dict:
    rnd = random.Random(20261128)
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    t0 = time.perf_counter()
    with svc.db.transaction() as s:
        team_rules.import_rows(s, team_rules.rows_from_yaml({"teams": team_tree()}))
        squads = list(s.execute(select(Team.id, Team.code, Team.community_id).where(Team.kind == "squad")
                                .order_by(Team.id)))
        pw = hash_password(PASSWORD)
        logins = {}
        for username, code, role in (("admin", "BKW", "brigade"), ("detachment", "BD00", "detachment"),
                                     ("squad", "BS000", "squad")):
            c = Coordinator(team_id=team_rules.by_code(s, code).id, name=f"bench {role}", role=role,
                            username=username, password_hash=pw)
            s.add(c)
            s.flush()
            logins[username] = c.id
    engine = svc.db.engine
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        run(raw, "SET statement_timeout = 0")  # the app's 4 s limit is for requests, not bulk loads
        cols = ["id", "number", "name", "phone_enc", "phone_hash", "phone_last4", "id_number_enc", "id_number_hash",
                "id_number_last4", "birth_year", "team_id", "skills", "availability", "state", "star_level", "is_demo",
                "created_at"]
        vol_team = []
        keys = svc.keyring

        def vol_rows():
            for i in range(1, volunteers + 1):
                team_id = squads[(i - 1) % len(squads)].id  # from the first squad: a small seed fills BS000
                vol_team.append(team_id)
                state = "pending" if i % 97 == 0 else "active"
                phone = f"13{rnd.randrange(10**9):09d}"  # sealed as the app seals it (store.sealing)
                yield (i, f"KW2025{i:06d}", rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN),
                       keys.encrypt(phone, sealing.PHONE), keys.hash(phone, sealing.PHONE), phone[-4:],
                       "bench", f"bench-{i}", "0000", 1960 + i % 45, team_id,
                       json.dumps(rnd.sample(SKILLS, 2)), "[]", state, 0, False, now - timedelta(days=i % 900))
        copy(raw, "volunteers", cols, vol_rows())
        start = now - timedelta(days=3 * 365)
        cols = ["volunteer_id", "source", "source_ref", "minutes", "travel_minutes", "started_at", "ended_at",
                "description", "state", "created_at"]

        def hour_rows():
            for i in range(hours):
                at = start + timedelta(minutes=rnd.randrange(3 * 365 * 24 * 60))
                minutes = rnd.choice((60, 90, 120, 180, 240))
                roll = rnd.random()
                state = "pending" if roll < 0.002 or at > now - timedelta(days=2) else \
                    ("rejected" if roll < 0.03 else "approved")
                yield (1 + i % volunteers, rnd.choice(("activity", "activity", "order", "manual")), f"bench:{i}",
                       minutes, 0, at, at + timedelta(minutes=minutes), f"bench服务项目{i % 150}", state, at)
        copy(raw, "hour_records", cols, hour_rows())
        cols = ["id", "number", "channel", "sub_code", "sub_name", "category_code", "category_name", "mode", "minutes",
                "community_id", "preferred_date", "preferred_slot", "status", "rating", "erase_on_close",
                "created_at", "updated_at"]
        events = []

        def order_rows():
            for i in range(1, orders + 1):
                at = now - timedelta(minutes=rnd.randrange(2 * 365 * 24 * 60))
                if i % 50 == 0:
                    at = now - timedelta(minutes=rnd.randrange(600))  # some of today's
                cat = SKILLS[i % 12]
                status = rnd.choice(STATES)
                if i == 1:
                    status = "submitted"  # the squad lead's open order page, at any --orders
                events.append((i, at, None, "submitted", "resident"))
                if status not in ("submitted", "offered", "cancelled"):
                    events.append((i, at + timedelta(hours=rnd.uniform(0.2, 30)), "submitted", "accepted", "volunteer"))
                if status in ("completed", "confirmed", "rated"):
                    events.append((i, at + timedelta(hours=rnd.uniform(30, 80)), "in_service", "completed", "volunteer"))
                yield (i, f"B{i:08d}", "wechat", f"{cat}-01", "bench服务", cat, f"bench类别{cat}", "onsite", 60,
                       squads[(i - 1) % len(squads)].community_id, at.date(), "am", status,
                       rnd.randint(3, 5) if status == "rated" else None, False, at, at)
        copy(raw, "orders", cols, order_rows())
        copy(raw, "order_events", ["order_id", "at", "from_status", "to_status", "actor_kind"], events)
        copy(raw, "projects", ["id", "name", "team_id", "description", "active", "is_demo", "created_at"],
             ((i, f"bench项目{i}", squads[i % len(squads)].id, "", True, False, now) for i in range(1, 151)))
        acts = []
        for i in range(1, 3001):
            at = now + timedelta(days=rnd.randrange(-700, 30), hours=rnd.randrange(8, 18))
            acts.append((i, 1 + i % 150, f"bench活动{i}", "", "", 300, at, at + timedelta(hours=2), 10, "[]",
                         "published", False, now))
        copy(raw, "activities", ["id", "project_id", "title", "description", "address", "radius_m", "starts_at",
                                 "ends_at", "capacity", "skills", "state", "is_demo", "created_at"], acts)
        copy(raw, "shifts", ["id", "activity_id", "name", "starts_at", "ends_at", "capacity"],
             ((a[0], a[0], "全程", a[6], a[7], 10) for a in acts))
        copy(raw, "places", ["code", "name", "kind", "community_id", "address", "lat", "lng", "radius_m",
                             "opening_times", "team_id", "services", "description", "active", "is_demo",
                             "created_at", "updated_at"],
             ((f"BP{i}", f"bench站点{i}", "station" if i > 13 else "plaza", squads[i % len(squads)].community_id,
               "bench路", 36.7, 119.1, 300, "周六 9:00-11:30", squads[i % len(squads)].id, '["理发"]', "", True, False,
               now, now) for i in range(273)))
        copy(raw, "audit_log", ["coordinator_id", "actor", "team_path", "action", "entity", "entity_id", "created_at"],
             ((logins["squad"], "bench squad", "/1/2/3/", "hours.approve", "hour_record", str(i),
               now - timedelta(minutes=i)) for i in range(50_000)))
        for table in ("volunteers", "orders", "projects", "activities", "shifts"):
            run(raw, f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        raw.autocommit = True
        run(raw, "ANALYZE")
        raw.autocommit = False  # the connection goes back to the pool for sessions
    # COPY bypasses rules.volunteering.decide_hours, so the reports' running totals of
    # approved hours are computed once from the records, as `volbot reports rebuild` does.
    with svc.db.transaction() as s:
        reports.rebuild(s)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.commit()
        raw.autocommit = True
        run(raw, "ANALYZE hour_month_totals, hour_year_totals")
        raw.autocommit = False
    return {"logins": logins, "seconds": time.perf_counter() - t0}


def pages(svc) -> list[str]:
    with svc.db.session() as s:
        vid = s.scalar(text("SELECT id FROM volunteers WHERE team_id = (SELECT id FROM teams WHERE code='BS000') LIMIT 1"))
        oid = s.scalar(text("SELECT id FROM orders WHERE community_id = (SELECT community_id FROM teams WHERE code='BS000') "
                            "AND status='submitted' LIMIT 1"))
        aid = s.scalar(text("SELECT a.id FROM activities a JOIN projects p ON p.id=a.project_id "
                            "WHERE p.team_id=(SELECT id FROM teams WHERE code='BS000') LIMIT 1"))
        name = s.scalar(text("SELECT name FROM volunteers WHERE id = :v"), {"v": vid})
        year = datetime.now(timezone.utc).year
    return ["/console/", "/console/hours", "/console/hours?state=approved", "/console/hours?state=approved&page=20",
            "/console/volunteers", f"/console/volunteers?q={name}", "/console/volunteers?q=1234",
            "/console/volunteers?q=KW2025000123", f"/console/volunteers/{vid}", "/console/orders",
            "/console/orders?state=completed&category=05", f"/console/orders/{oid}", "/console/activities",
            f"/console/activities/{aid}", "/console/bus", "/console/places", "/console/audit",
            f"/console/reports?year={year}", f"/console/reports?year={year}&fresh=1",  # fresh: every load computes
            f"/console/reports/hours.xlsx?year={year}",
            f"/console/reports/volunteer_ranking.csv?year={year}"]


def login(base: str, username: str) -> requests.Session:
    http = requests.Session()
    import re

    page = http.get(base + "/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = http.post(base + "/console/login", data={"username": username, "password": PASSWORD, "csrf_token": token},
                  allow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    return http


def timed(http, url: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = http.get(url, allow_redirects=False)
        times.append((time.perf_counter() - t) * 1000)
        if r.status_code not in (200, 403):
            raise SystemExit(f"{url}: HTTP {r.status_code} {r.headers.get('Location', '')}")
        if r.status_code == 403:
            return []  # not this role's page
    return times


def bench_arguments(description: str, database: str, redis_db: int) -> argparse.ArgumentParser:
    """The options of the benches on the seeded district (this one and bench/pages.py)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--volunteers", type=int, default=40_000)
    ap.add_argument("--hours", type=int, default=1_000_000)
    ap.add_argument("--orders", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--database-url", default=environ_value(
        "BENCH_DATABASE_URL") or f"postgresql://postgres@127.0.0.1:5432/{database}")
    ap.add_argument("--redis-url", default=environ_value("BENCH_REDIS_URL") or f"redis://127.0.0.1:6379/{redis_db}")
    ap.add_argument("--no-seed", action="store_true", help="reuse the database seeded by a previous run")
    return ap


def main() -> None:
    args = bench_arguments(__doc__.split("\n\n")[0], "volbot_console_bench", 10).parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ensure_database(args.database_url)
    config = load_config(Path(tempfile.mkdtemp(prefix="volbot-bench-")), environ={}, env="testing",
                         database_url=args.database_url, redis_url=args.redis_url,
                         console_2fa_roles="none")  # the pages are timed, not the sign-in
    svc = Services(config)
    svc.redis.flushdb()
    if not args.no_seed:
        with svc.db.engine.begin() as conn:  # a dedicated database: start from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        svc.db.create_all()
        print(f"seeding {args.volunteers:,} volunteers, {args.hours:,} hour records, {args.orders:,} orders …", flush=True)
        seeded = seed(svc, args.volunteers, args.hours, args.orders)
        print(f"seeded in {seeded['seconds']:.0f} s")
    server = make_server("127.0.0.1", 0, create_app(services=svc), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    baseline = statistics.median(timed(requests.Session(), base + "/healthz", args.repeat * 3))
    results = []
    for username in ("admin", "detachment", "squad"):
        http = login(base, username)
        for path in pages(svc):
            for key in svc.redis.scan_iter("console:report:*"):
                svc.redis.delete(key)  # so every report page's and export's first load computes it
            times = timed(http, base + path, args.repeat)
            if times:
                results.append((statistics.median(times), times[0], username, path))
    server.shutdown()
    svc.close()
    results.sort(reverse=True)
    print(f"\nbaseline /healthz (Flask + HTTP, no SQL): {baseline:.1f} ms median\n")
    print(f"{'median ms':>10} {'first ms':>9}  {'as':<11} page")
    for med, first, who, path in results:
        flag = "  <-- over target" if med > TARGET_MS else ""
        print(f"{med:10.1f} {first:9.1f}  {who:<11} {path}{flag}")
    over = [r for r in results if r[0] > TARGET_MS]
    print(f"\n{len(results)} pages measured ({args.repeat} loads each); {len(over)} over {TARGET_MS} ms (median). "
          "'first' is the first load: reports are computed then (the cache was emptied before each page).")


if __name__ == "__main__":
    main()
