"""Volunteer service stations (志愿服务站) and star-rated plazas (星级志愿服务广场).

A place is where residents find help ("near me") and where volunteers check in: its QR
code carries the scene `st:<id>`. Latitude and longitude are indexed so the nearest places
are found with a bounding-box range query before any exact distance is computed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.models.base import Base, utcnow
from store.models.district import Community, Team

PLACE_KINDS = ("station", "plaza")
DEFAULT_RADIUS_M = 300  # check-in by location must be this close (research: 300-500 m)


class Place(Base):
    __tablename__ = "places"
    __table_args__ = (
        # The bounding box prefilter: a range on lat, then lng, read from the index.
        Index("ix_places_lat_lng", "lat", "lng"),
        Index("ix_places_lng", "lng"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # the district's own id; imports upsert on it
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # one of PLACE_KINDS
    star_rating: Mapped[int | None]  # plazas: 1-5 stars
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    address: Mapped[str] = mapped_column(String(255), default="")
    lat: Mapped[float]
    lng: Mapped[float]
    radius_m: Mapped[int] = mapped_column(default=DEFAULT_RADIUS_M)
    opening_times: Mapped[str] = mapped_column(String(255), default="")  # as published, e.g. "周六 9:00-11:30"
    phone: Mapped[str] = mapped_column(String(32), default="", server_default="")  # the station's desk, as published
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))  # the team in charge
    services: Mapped[list] = mapped_column(JSON, default=list)  # e.g. ["理发", "义诊"]
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community | None] = relationship()
    team: Mapped[Team | None] = relationship()

    @property
    def scene(self) -> str:
        """The QR scene printed at the place (scanned to check in, or to follow)."""
        return f"st:{self.id}"

    @property
    def kind_label(self) -> str:
        return "志愿服务广场" if self.kind == "plaza" else "志愿服务站"
