"""Where the demo district lies: a simplified outline of Kuiwen District (奎文区, Weifang)
and its sub-districts (街道), with deterministic points inside it.

The outline is a hand-simplified polygon of the urban district east of the Bailang River
(白浪河) — west edge near lng 119.095, east edge near 119.195, from about lat 36.675 in the
south to 36.752 in the north. It is for placing demo data and drawing the simulator's map,
not a survey boundary.
"""

from __future__ import annotations

import random

# (lat, lng) vertices, clockwise from the north-west corner.
OUTLINE: tuple[tuple[float, float], ...] = (
    (36.7515, 119.0985), (36.7505, 119.1210), (36.7490, 119.1405), (36.7460, 119.1600),
    (36.7420, 119.1760), (36.7380, 119.1935), (36.7220, 119.1945), (36.7040, 119.1920),
    (36.6900, 119.1880), (36.6790, 119.1760), (36.6765, 119.1560), (36.6770, 119.1350),
    (36.6790, 119.1150), (36.6850, 119.1010), (36.6960, 119.0955), (36.7120, 119.0965),
    (36.7280, 119.0950), (36.7420, 119.0960),
)

# Sub-districts (街道) with a rough centre each; demo places cluster around them.
STREETS: tuple[tuple[str, float, float], ...] = (
    ("东关街道", 36.7080, 119.1150),
    ("大虞街道", 36.7000, 119.1380),
    ("梨园街道", 36.7200, 119.1520),
    ("廿里堡街道", 36.7300, 119.1750),
    ("潍州路街道", 36.6880, 119.1200),
    ("北苑街道", 36.7400, 119.1250),
    ("广文街道", 36.6920, 119.1600),
    ("清池街道", 36.7150, 119.1820),
)


def bounds() -> dict:
    lats = [p[0] for p in OUTLINE]
    lngs = [p[1] for p in OUTLINE]
    return {"south": min(lats), "north": max(lats), "west": min(lngs), "east": max(lngs)}


def contains(lat: float, lng: float) -> bool:
    """Ray casting: is the point inside the outline?"""
    inside = False
    n = len(OUTLINE)
    for i in range(n):
        (y1, x1), (y2, x2) = OUTLINE[i], OUTLINE[(i + 1) % n]
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lng < x_cross:
                inside = not inside
    return inside


def point_near(rng: random.Random, lat: float, lng: float, spread: float = 0.012) -> tuple[float, float]:
    """A point inside the district near (lat, lng); falls back to the centre's own spot."""
    for _ in range(200):
        p = (round(lat + rng.uniform(-spread, spread), 6), round(lng + rng.uniform(-spread, spread) * 1.25, 6))
        if contains(*p):
            return p
    return round(lat, 6), round(lng, 6)
