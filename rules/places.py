"""Stations and plazas: distances, the nearest places to a point, and importing the list.

"Near me" must stay fast with 10,000 places: a bounding box around the point is a range
query on the indexed lat/lng columns; exact (haversine) distances are computed only for
the places inside it. The box starts small and doubles until it holds enough places
within its inscribed circle, which makes the answer the same as a scan of every place.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from store.models import Community, Team
from store.models.places import DEFAULT_RADIUS_M, PLACE_KINDS, Place

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
HALF_CIRCUMFERENCE_M = math.pi * EARTH_RADIUS_M  # no two points are farther apart
FIRST_RADIUS_M = 2_000


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lng: float, radius_m: float):
    """Latitude range and longitude ranges that contain every point within `radius_m`.

    Returns (min_lat, max_lat, lng_ranges) where lng_ranges is a list of (lo, hi) pairs:
    two when the box crosses the 180th meridian, and [(-180, 180)] near a pole.
    """
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    min_lat, max_lat = lat - dlat, lat + dlat
    if min_lat <= -90 or max_lat >= 90:
        return max(min_lat, -90.0), min(max_lat, 90.0), [(-180.0, 180.0)]
    # The widest longitude span of the circle is at its latitude farthest from the equator.
    widest = math.radians(max(abs(min_lat), abs(max_lat)))
    dlng = math.degrees(radius_m / (EARTH_RADIUS_M * math.cos(widest)))
    if dlng >= 180:
        return min_lat, max_lat, [(-180.0, 180.0)]
    lo, hi = lng - dlng, lng + dlng
    if lo < -180:
        return min_lat, max_lat, [(lo + 360, 180.0), (-180.0, hi)]
    if hi > 180:
        return min_lat, max_lat, [(lo, 180.0), (-180.0, hi - 360)]
    return min_lat, max_lat, [(lo, hi)]


@dataclass(frozen=True)
class Nearby:
    place: Place
    distance_m: float


def nearest(session: Session, lat: float, lng: float, n: int = 3, *, kinds=PLACE_KINDS,
            first_radius_m: float = FIRST_RADIUS_M) -> list[Nearby]:
    """The `n` active places nearest to (lat, lng), nearest first (ties by id)."""
    radius = first_radius_m
    while True:
        everything = radius >= HALF_CIRCUMFERENCE_M
        query = select(Place).where(Place.active.is_(True), Place.kind.in_(kinds))
        if not everything:
            query = query.where(in_box(Place, lat, lng, radius))
        found = [Nearby(p, haversine_m(lat, lng, p.lat, p.lng)) for p in session.scalars(query)]
        # Only places inside the circle are certain to beat every place outside the box.
        sure = found if everything else [f for f in found if f.distance_m <= radius]
        if len(sure) >= n or everything:
            sure.sort(key=lambda f: (f.distance_m, f.place.id))
            return sure[:n]
        radius *= 2 if len(found) else 4


def in_box(model, lat: float, lng: float, radius_m: float):
    """A WHERE clause: rows of `model` (lat/lng columns) inside the bounding box of the
    circle; the caller computes exact distances."""
    min_lat, max_lat, lng_ranges = bounding_box(lat, lng, radius_m)
    return and_(model.lat.between(min_lat, max_lat),
                or_(*[model.lng.between(lo, hi) for lo, hi in lng_ranges]))


def format_distance(metres: float) -> str:
    if metres < 1000:
        return f"约{max(10, round(metres / 10) * 10)}米"
    return f"约{metres / 1000:.1f}公里"


CALL_RADIUS_M = 5_000  # a station farther than this from a community is not "theirs" to call


def station_to_call(session: Session, community: Community | None) -> Place | None:
    """The place a resident of `community` can telephone: an active place with a phone in
    the community itself (a station before a plaza), else the nearest one to the community
    within CALL_RADIUS_M; None when there is none (the district hotline is said instead)."""
    if community is None:
        return None
    with_phone = select(Place).where(Place.active.is_(True), Place.phone != "")
    own = session.scalars(with_phone.where(Place.community_id == community.id)
                          .order_by((Place.kind != "station"), Place.id).limit(1)).first()
    if own is not None or community.lat is None or community.lng is None:
        return own
    near = [(haversine_m(community.lat, community.lng, p.lat, p.lng), p.id, p)
            for p in session.scalars(with_phone.where(in_box(Place, community.lat, community.lng, CALL_RADIUS_M)))]
    near = [n for n in near if n[0] <= CALL_RADIUS_M]
    return min(near)[2] if near else None


# ---- importing ---------------------------------------------------------------------------

KIND_WORDS = {"station": "station", "站": "station", "服务站": "station", "志愿服务站": "station",
              "plaza": "plaza", "广场": "plaza", "志愿服务广场": "plaza", "星级广场": "plaza"}
FIELDS = ("code", "name", "kind", "community", "address", "lat", "lng", "opening_times", "phone", "team",
          "services", "radius_m", "star_rating", "description", "active")


class BadFile(ValueError):
    """A file that cannot be imported; `problems` lists each bad row (numbered from 1)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a CSV (with a header line) or YAML (a list, or {places: [...]}) file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".yaml", ".yml"):
        doc = yaml.safe_load(text) or []
        if isinstance(doc, dict):
            doc = next((v for v in doc.values() if isinstance(v, list)), [])
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise BadFile([f"{path.name}: expected a list of rows"])
        return doc
    return list(csv.DictReader(io.StringIO(text, newline="")))


def split_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    parts = str(value).replace("，", ",").replace("、", ",").replace(";", ",").replace("；", ",").replace("|", ",")
    return [p.strip() for p in parts.split(",") if p.strip()]


def _float(value, name: str, lo: float, hi: float) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not lo <= number <= hi:
        raise ValueError(f"{name} {number} is outside {lo}..{hi}")
    return number


def _optional_int(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} is not a whole number: {value!r}") from None


def _place_values(session: Session, row: dict) -> dict:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    unknown = set(row) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}")
    code = str(row.get("code") or "").strip()
    name = str(row.get("name") or "").strip()
    if not code or not name:
        raise ValueError("code and name are required")
    kind = KIND_WORDS.get(str(row.get("kind") or "station").strip().lower())
    if kind is None:
        raise ValueError(f"kind must be station or plaza, not {row.get('kind')!r}")
    values = {
        "code": code[:32], "name": name[:128], "kind": kind,
        "address": str(row.get("address") or "").strip()[:255],
        "lat": _float(row.get("lat"), "lat", -90, 90),
        "lng": _float(row.get("lng"), "lng", -180, 180),
        "opening_times": str(row.get("opening_times") or "").strip()[:255],
        "phone": str(row.get("phone") or "").strip()[:32],
        "services": split_list(row.get("services")),
        "radius_m": _optional_int(row.get("radius_m"), "radius_m") or DEFAULT_RADIUS_M,
        "star_rating": _optional_int(row.get("star_rating"), "star_rating"),
        "description": str(row.get("description") or "").strip(),
        "active": str(row.get("active", "true")).strip().lower() not in ("false", "0", "no", "否"),
        "community_id": None, "team_id": None,
    }
    community = str(row.get("community") or "").strip()
    if community:
        found = session.scalar(select(Community.id).where(
            or_(Community.code == community, Community.name == community)))
        if found is None:
            raise ValueError(f"unknown community {community!r}")
        values["community_id"] = found
    team = str(row.get("team") or "").strip()
    if team:
        found = session.scalar(select(Team.id).where(or_(Team.code == team, Team.name == team)))
        if found is None:
            raise ValueError(f"unknown team {team!r}")
        values["team_id"] = found
    return values


def import_places(session: Session, rows: list[dict], now) -> tuple[int, int]:
    """Insert or update places by `code`; all or nothing. Returns (created, updated)."""
    problems, parsed = [], []
    for i, row in enumerate(rows, 1):
        try:
            parsed.append(_place_values(session, row))
        except ValueError as e:
            problems.append(f"row {i}: {e}")
    codes = [p["code"] for p in parsed]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        problems.append(f"code repeated in the file: {', '.join(dupes)}")
    if problems:
        raise BadFile(problems)
    existing = {p.code: p for p in session.scalars(select(Place).where(Place.code.in_(codes)))} if codes else {}
    created = updated = 0
    for values in parsed:
        place = existing.get(values["code"])
        if place is None:
            session.add(Place(**values, created_at=now, updated_at=now))
            created += 1
        else:
            for key, value in values.items():
                setattr(place, key, value)
            place.updated_at = now
            updated += 1
    session.flush()
    return created, updated
