"""Stations and plazas: distances, bounding boxes, "near me" against a brute-force scan of
10,000 places, and importing the list from CSV or YAML."""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text

from rules import places
from rules.places import bounding_box, haversine_m, nearest
from store.models import Place
from tests import seeds

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def destination(lat: float, lng: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point `distance_m` from (lat, lng) along `bearing_deg` on the sphere."""
    d = distance_m / places.EARTH_RADIUS_M
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lng)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def in_bbox(box, lat: float, lng: float) -> bool:
    min_lat, max_lat, ranges = box
    return min_lat <= lat <= max_lat and any(lo <= lng <= hi for lo, hi in ranges)


def test_haversine_known_distances():
    assert haversine_m(36.0, 119.0, 37.0, 119.0) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(0, 0, 0, 180) == pytest.approx(places.HALF_CIRCUMFERENCE_M, rel=1e-9)
    assert haversine_m(36.7, 119.1, 36.7, 119.1) == 0
    # Across the 180th meridian the short way round
    assert haversine_m(0, 179.9, 0, -179.9) == pytest.approx(22_239, rel=1e-3)


@settings(max_examples=400, deadline=None)
@given(lat=st.floats(-89.9, 89.9), lng=st.floats(-180, 180), radius=st.floats(1, 3_000_000),
       bearing=st.floats(0, 360), fraction=st.floats(0, 0.999))
def test_bounding_box_holds_every_point_of_the_circle(lat, lng, radius, bearing, fraction):
    plat, plng = destination(lat, lng, bearing, radius * fraction)
    assert in_bbox(bounding_box(lat, lng, radius), plat, plng)


def test_bounding_box_splits_at_the_antimeridian_and_opens_at_the_poles():
    _, _, ranges = bounding_box(10, 179.99, 5_000)
    assert len(ranges) == 2 and ranges[1][0] == -180.0
    _, _, ranges = bounding_box(89.99, 0, 5_000)
    assert ranges == [(-180.0, 180.0)]


def generated_places(n: int, rng: random.Random) -> list[dict]:
    """Dense in the district, sparse around it, a few far away (so the box must widen)."""
    rows = []
    for i in range(n):
        r = rng.random()
        if r < 0.8:
            lat, lng = rng.uniform(36.62, 36.80), rng.uniform(119.02, 119.25)
        elif r < 0.98:
            lat, lng = rng.uniform(35.5, 38.0), rng.uniform(117.5, 121.0)
        else:
            lat, lng = rng.uniform(-60, 70), rng.uniform(-180, 180)
        rows.append({"code": f"GEN{i:05d}", "name": f"生成站点{i}", "kind": rng.choice(("station", "plaza")),
                     "lat": lat, "lng": lng, "address": "", "opening_times": "", "services": [],
                     "radius_m": 300, "active": rng.random() > 0.05, "description": "",
                     "created_at": NOW, "updated_at": NOW})
    return rows


def brute_force(rows: list[dict], ids: dict[str, int], lat: float, lng: float, n: int) -> list[tuple[int, float]]:
    scored = sorted((haversine_m(lat, lng, r["lat"], r["lng"]), ids[r["code"]]) for r in rows if r["active"])
    return [(pid, d) for d, pid in scored[:n]]


def test_nearest_matches_a_brute_force_scan_of_10000_places(svc):
    rng = random.Random(20261128)
    rows = generated_places(10_000, rng)
    with svc.db.transaction() as s:
        s.execute(insert(Place), rows)
    with svc.db.transaction() as s:
        ids = dict(s.execute(select(Place.code, Place.id)).all())
        queries = [(rng.uniform(36.62, 36.80), rng.uniform(119.02, 119.25)) for _ in range(40)]
        queries += [(rng.uniform(-80, 80), rng.uniform(-180, 180)) for _ in range(10)]  # far from most
        queries += [(36.70, 179.999), (-89.0, 10.0)]
        for lat, lng in queries:
            for n in (1, 3, 10):
                got = [(f.place.id, f.distance_m) for f in nearest(s, lat, lng, n)]
                want = brute_force(rows, ids, lat, lng, n)
                assert [g[0] for g in got] == [w[0] for w in want], (lat, lng, n)
                assert [g[1] for g in got] == pytest.approx([w[1] for w in want])


def test_nearest_reads_few_rows_through_the_lat_lng_index(svc):
    rng = random.Random(7)
    with svc.db.transaction() as s:
        s.execute(insert(Place), generated_places(10_000, rng))
    fetched = []
    from sqlalchemy import event

    def count_rows(conn, cursor, statement, parameters, context, executemany):
        if "FROM places" in statement:
            fetched.append(statement)

    event.listen(svc.db.engine, "after_cursor_execute", count_rows)
    try:
        with svc.db.transaction() as s:
            found = nearest(s, 36.71, 119.12, 3)
            # The first box (2 km) in the dense district already holds 3 places.
            assert len(found) == 3 and len(fetched) == 1
            box = places.in_box(Place, 36.71, 119.12, places.FIRST_RADIUS_M)
            in_first_box = s.scalar(select(func.count()).select_from(Place).where(box))
            assert in_first_box < 500  # of 10,000: the prefilter, not a scan
            if svc.db.is_sqlite:
                plan = " ".join(str(r) for r in s.execute(text(
                    "EXPLAIN QUERY PLAN SELECT id FROM places WHERE lat BETWEEN 36.69 AND 36.73 "
                    "AND lng BETWEEN 119.10 AND 119.14")))
            else:
                s.execute(text("ANALYZE places"))
                plan = " ".join(r[0] for r in s.execute(text(
                    "EXPLAIN SELECT id FROM places WHERE lat BETWEEN 36.69 AND 36.73 "
                    "AND lng BETWEEN 119.10 AND 119.14")))
            assert "ix_places_l" in plan, plan
    finally:
        event.remove(svc.db.engine, "after_cursor_execute", count_rows)


def test_nearest_skips_inactive_places_and_returns_fewer_when_there_are_few(svc):
    with svc.db.transaction() as s:
        s.add_all([Place(code="A", name="甲", kind="station", lat=36.70, lng=119.10, services=[]),
                   Place(code="B", name="乙", kind="plaza", lat=36.71, lng=119.10, services=[], active=False)])
    with svc.db.transaction() as s:
        found = nearest(s, 36.709, 119.10, 3)
        assert [f.place.code for f in found] == ["A"]
        assert nearest(s, 36.709, 119.10, 3, kinds=("plaza",)) == []


# ---- importing ---------------------------------------------------------------------------

CSV = """code,name,kind,community,address,lat,lng,opening_times,phone,team,services,radius_m,star_rating
P-1,东风站,服务站,VT-C-DF,东风街1号,36.708,119.12,周一至周五 8:30-17:30, 0536-8123456 ,VT-DF,理发、义诊,,
P-2,文化广场,广场,,文化路2号,36.715,119.13,每周六 9:00-11:30,,,文艺演出;便民维修,500,5
"""


def test_import_places_csv_then_yaml_updates_by_code(svc, tmp_path):
    seeds.apply(svc, ["vol_teams"])
    csv_file = tmp_path / "places.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    with svc.db.transaction() as s:
        assert places.import_places(s, places.read_rows(csv_file), NOW) == (2, 0)
    yaml_file = tmp_path / "places.yaml"
    yaml_file.write_text("places:\n  - {code: P-2, name: 文化广场, kind: plaza, lat: 36.716, lng: 119.131,"
                         " services: [健康义诊], active: false}\n  - {code: P-3, name: 新站, lat: 36.7, lng: 119.1}\n",
                         encoding="utf-8")
    with svc.db.transaction() as s:
        assert places.import_places(s, places.read_rows(yaml_file), NOW) == (1, 1)
    with svc.db.transaction() as s:
        p1, p2, p3 = (s.scalar(select(Place).where(Place.code == c)) for c in ("P-1", "P-2", "P-3"))
        assert p1.kind == "station" and p1.services == ["理发", "义诊"] and p1.radius_m == 300
        assert p1.community.name == "东风社区" and p1.team.code == "VT-DF" and p1.phone == "0536-8123456"
        assert p2.phone == "" and p3.phone == ""
        assert p2.kind == "plaza" and p2.services == ["健康义诊"] and p2.active is False and p2.lat == 36.716
        assert p3.kind == "station"


def test_import_places_refuses_the_whole_file_on_any_bad_row(svc, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,kind,lat,lng\nX-1,好站,station,36.7,119.1\nX-2,坏站,tower,36.7,119.1\n"
                   "X-3,远站,station,136.7,119.1\nX-1,重复,station,36.7,119.1\n", encoding="utf-8")
    with pytest.raises(places.BadFile) as e:
        with svc.db.transaction() as s:
            places.import_places(s, places.read_rows(bad), NOW)
    text_ = "\n".join(e.value.problems)
    assert "row 2: kind" in text_ and "row 3: lat" in text_ and "repeated in the file: X-1" in text_
    with svc.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Place)) == 0
