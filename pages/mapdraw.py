"""Maps drawn as SVG from the district's own coordinates: no tile server is needed (the
pages must work on an intranet). Points are placed by the Web Mercator projection inside
the bounds of what is shown; with a tiles URL configured (`PAGES_MAP_TILES`, a
`{z}/{x}/{y}` template) the same projection lays the tiles underneath.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH, HEIGHT = 340, 260
PAD = 18  # px kept free around the points (labels, the marker's size)
TILE = 256


def _mercator(lat: float, lng: float) -> tuple[float, float]:
    """World pixel coordinates at zoom 0 (0..256)."""
    lat = max(min(lat, 85.0), -85.0)
    x = (lng + 180.0) / 360.0 * TILE
    s = math.sin(math.radians(lat))
    y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * TILE
    return x, y


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    label: str
    kind: str  # station | plaza | community | me
    href: str = ""


class Map:
    """The view around `points` ((lat, lng) pairs): `place(lat, lng)` gives SVG x, y."""

    def __init__(self, points: list[tuple[float, float]], *, min_span_m: float = 800.0):
        pts = [_mercator(lat, lng) for lat, lng in points] or [_mercator(36.7, 119.1)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        # A span of at least min_span_m (at the centre's latitude), so one point is not a dot on nothing.
        lat_c = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * cy / TILE))))
        metres_per_unit = 40_075_016.7 * math.cos(math.radians(lat_c)) / TILE
        span = max(max(xs) - min(xs), (max(ys) - min(ys)) * WIDTH / HEIGHT, min_span_m / metres_per_unit)
        self.scale = (WIDTH - 2 * PAD) / span  # SVG px per world unit (zoom 0 px)
        self.cx, self.cy = cx, cy

    def place(self, lat: float, lng: float) -> tuple[float, float]:
        x, y = _mercator(lat, lng)
        return (round(WIDTH / 2 + (x - self.cx) * self.scale, 1), round(HEIGHT / 2 + (y - self.cy) * self.scale, 1))

    def marker(self, lat: float, lng: float, label: str, kind: str, href: str = "") -> Marker:
        x, y = self.place(lat, lng)
        return Marker(x, y, label, kind, href)

    def tiles(self, template: str) -> list[dict]:
        """The tiles covering the view at the zoom nearest to its scale: href, x, y, size."""
        if not template:
            return []
        zoom = max(0, min(19, round(math.log2(self.scale))))
        size = TILE * self.scale / (2 ** zoom)  # a tile's SVG size at this view's scale
        world = 2 ** zoom
        left = (self.cx - WIDTH / 2 / self.scale) * world / TILE
        top = (self.cy - HEIGHT / 2 / self.scale) * world / TILE
        out = []
        for tx in range(int(math.floor(left)), int(math.floor(left + WIDTH / size)) + 1):
            for ty in range(int(math.floor(top)), int(math.floor(top + HEIGHT / size)) + 1):
                if 0 <= ty < world:
                    out.append({"href": template.format(z=zoom, x=tx % world, y=ty),
                                "x": round((tx - left) * size, 1), "y": round((ty - top) * size, 1),
                                "size": round(size + 0.5, 1)})
        return out
