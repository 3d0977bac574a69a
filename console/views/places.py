"""Places: the subtree's volunteer service stations and star-rated plazas, with their
opening times and services; brigade and detachment coordinators can edit them.

Places are loaded in bulk with `volbot import places` (`rules.places`); this page edits
what changes week to week: opening times, services, description, and whether it is open.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for

from console.views.common import args_builder, page_number, paged
from console.web import audit, console, flash, needs, render
from rules import access
from rules import places as place_rules
from rules.audit import snapshot
from store.models.places import PLACE_KINDS, Place

AUDITED = ("opening_times", "services", "description", "active")


@console.get("/places")
def places():
    stmt = access.places(g.scope)
    kind = request.args.get("kind", "")
    if kind in PLACE_KINDS:
        stmt = stmt.where(Place.kind == kind)
    q = (request.args.get("q") or "").strip()[:32]
    if q:
        stmt = stmt.where(Place.name.contains(q, autoescape=True))
    page = page_number()
    rows, has_next = paged(g.db, stmt.order_by(Place.kind, Place.name), page)
    return render("places.html", rows=rows, page=page, has_next=has_next, args=args_builder(),
                  can_edit=g.scope.can("places.manage"))


@console.route("/places/<int:place_id>", methods=["GET", "POST"])
def place_detail(place_id: int):
    place = access.get(g.db, g.scope, Place, place_id)
    if request.method == "POST":
        return place_save(place)
    return render("place.html", place=place, can_edit=g.scope.can("places.manage"))


@needs("places.manage")
def place_save(place: Place):
    before = snapshot(place, AUDITED)
    place.opening_times = (request.form.get("opening_times") or "").strip()[:255]
    place.services = place_rules.split_list(request.form.get("services") or "")
    place.description = (request.form.get("description") or "").strip()
    place.active = request.form.get("active") == "1"
    place.updated_at = g.now
    audit("place.edit", entity="place", entity_id=place.id, before=before,
          after=snapshot(place, AUDITED))
    g.db.commit()
    flash("已保存。")
    return redirect(url_for("console.place_detail", place_id=place.id))
